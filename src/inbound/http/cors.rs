//! Browsers: CORS, and what `OPTIONS` and 405 answers say. [`Cors`] sits in front of every
//! other layer, so a preflight (which carries no `Authorization` and no body) is answered
//! before the API key is checked or a body limit applies; every answer to a page of an
//! allowed origin (`server.cors_origins`) carries `Access-Control-Allow-Origin`, errors and
//! event streams included. `OPTIONS` without a preflight is answered `204` with `Allow`, and a
//! method a route does not take gets 405 with `Allow` ([`Routes`]), also before the key and
//! the body.
//!
//! poem's own `Cors` middleware refuses with 403 every request whose `Origin` is not listed,
//! which includes the same-origin requests of the gateway's own Swagger UI once the list is
//! restricted; here such a request is served without the header, and only its page's script
//! is kept from reading the answer, as the Fetch standard intends.

use std::sync::Arc;

use poem::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ALLOW, CONNECTION, CONTENT_LENGTH, ORIGIN, TRANSFER_ENCODING, VARY,
};
use poem::http::{HeaderMap, HeaderValue, Method, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use super::error::{ApiError, ErrorCode, ErrorType};
use super::routes::{RouteLabel, Routes};
use crate::config::CorsOrigins;

/// How long a browser may cache a preflight's answer, in seconds (Chromium's own cap).
const PREFLIGHT_MAX_AGE_SECS: u32 = 7200;

/// The response headers a page's script may read besides the CORS-safelisted ones.
const EXPOSED_HEADERS: &str = "Retry-After";

/// The methods a preflight for a path of no route is told: those the API serves anywhere,
/// so the real request can then read its 404.
const ANY_ROUTE_METHODS: &str = "GET, HEAD, POST, OPTIONS";

/// Chromium's Private Network Access: a public page asking to reach a gateway on a private
/// address or loopback.
const REQUEST_PRIVATE_NETWORK: &str = "access-control-request-private-network";
const ALLOW_PRIVATE_NETWORK: &str = "access-control-allow-private-network";

/// The CORS and `Allow` middleware.
pub struct Cors {
    origins: Arc<CorsOrigins>,
    routes: Arc<Routes>,
}

impl Cors {
    /// The middleware for `origins` over the server's `routes`.
    pub fn new(origins: CorsOrigins, routes: Arc<Routes>) -> Self {
        Self {
            origins: Arc::new(origins),
            routes,
        }
    }
}

impl<E: Endpoint> Middleware<E> for Cors {
    type Output = CorsEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        CorsEndpoint {
            inner,
            origins: Arc::clone(&self.origins),
            routes: Arc::clone(&self.routes),
        }
    }
}

/// An endpoint behind [`Cors`].
pub struct CorsEndpoint<E> {
    inner: E,
    origins: Arc<CorsOrigins>,
    routes: Arc<Routes>,
}

impl<E> CorsEndpoint<E> {
    /// The `Access-Control-Allow-Origin` value for a request from `origin`, when it is allowed.
    fn allowed_origin(&self, origin: Option<&HeaderValue>) -> Option<HeaderValue> {
        let origin = origin?;
        match &*self.origins {
            CorsOrigins::Any => Some(HeaderValue::from_static("*")),
            listed => origin
                .to_str()
                .ok()
                .filter(|origin| listed.allows(origin))
                .map(|_| origin.clone()),
        }
    }

    /// Adds the CORS headers of an answer (not a preflight's) to `response`.
    fn decorate(&self, response: &mut Response, allowed: Option<HeaderValue>) {
        let headers = response.headers_mut();
        if let Some(allowed) = allowed {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
        }
        // The answer depends on the Origin only when the origins are listed.
        if matches!(*self.origins, CorsOrigins::Listed(_)) {
            headers.append(VARY, HeaderValue::from_static("Origin"));
        }
    }

    /// The answer to a preflight from `origin` for `path`.
    fn preflight(&self, headers: &HeaderMap, allowed: Option<HeaderValue>, methods: Option<String>) -> Response {
        let Some(allowed) = allowed else {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorType::InvalidRequestError,
                ErrorCode::OriginNotAllowed,
                "this origin may not call the API from a browser: it is not in `server.cors_origins`",
            )
            .into_response();
        };
        let mut response = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(ACCESS_CONTROL_ALLOW_ORIGIN, allowed)
            .header(
                ACCESS_CONTROL_ALLOW_METHODS,
                methods.unwrap_or_else(|| ANY_ROUTE_METHODS.to_owned()),
            )
            .header(ACCESS_CONTROL_MAX_AGE, PREFLIGHT_MAX_AGE_SECS)
            .header(
                VARY,
                "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
            )
            .finish();
        let answer = response.headers_mut();
        // Every header asked for is allowed: `*` would not cover `Authorization`.
        if let Some(asked) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
            answer.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
        }
        if headers
            .get(REQUEST_PRIVATE_NETWORK)
            .is_some_and(|asked| asked.as_bytes().eq_ignore_ascii_case(b"true"))
        {
            answer.insert(ALLOW_PRIVATE_NETWORK, HeaderValue::from_static("true"));
        }
        response
    }
}

/// The 405 of a method the route does not take, answered before the API key or the body is
/// looked at; a body sent with it is left unread, so the connection closes after it.
fn method_not_allowed(headers: &HeaderMap) -> Response {
    let mut response = ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::InvalidRequestError,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this route: `Allow` lists the methods it takes",
    )
    .into_response();
    if headers.contains_key(CONTENT_LENGTH) || headers.contains_key(TRANSFER_ENCODING) {
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

impl<E: Endpoint> Endpoint for CorsEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let origin = request.headers().get(ORIGIN).cloned();
        let allowed = self.allowed_origin(origin.as_ref());
        let matched = self.routes.find(request.uri().path());
        let label = RouteLabel(matched.map_or_else(|| Arc::from("unmatched"), |m| Arc::clone(m.template)));
        let allow = matched.map(|matched| matched.allow());
        if request.method() == Method::OPTIONS {
            let is_preflight = origin.is_some() && request.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
            if is_preflight {
                let mut response = self.preflight(request.headers(), allowed, allow);
                response.extensions_mut().insert(label);
                return Ok(response);
            }
            if let Some(allow) = allow {
                let mut response = Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .header(ALLOW, allow)
                    .finish();
                self.decorate(&mut response, allowed);
                response.extensions_mut().insert(label);
                return Ok(response);
            }
        }
        if let Some(matched) = matched
            && !matched.takes(request.method())
        {
            let mut response = method_not_allowed(request.headers());
            if let Some(allow) = allow
                && let Ok(allow) = HeaderValue::from_str(&allow)
            {
                response.headers_mut().insert(ALLOW, allow);
            }
            self.decorate(&mut response, allowed);
            response.extensions_mut().insert(label);
            return Ok(response);
        }
        let mut response = match self.inner.call(request).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        if response.status() == StatusCode::METHOD_NOT_ALLOWED
            && let Some(allow) = allow
            && let Ok(allow) = HeaderValue::from_str(&allow)
        {
            response.headers_mut().insert(ALLOW, allow);
        }
        self.decorate(&mut response, allowed);
        response.extensions_mut().insert(label);
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use poem::http::Uri;
    use poem::{EndpointExt, Route, get, handler, post};

    use super::*;

    #[handler]
    fn hello() -> &'static str {
        "hello"
    }

    fn app(origins: CorsOrigins) -> impl Endpoint<Output = Response> {
        let routes = Routes::default()
            .with("/hello", [Method::GET])
            .with("/send", [Method::POST]);
        Route::new()
            .at("/hello", get(hello))
            .at("/send", post(hello))
            .with(Cors::new(origins, Arc::new(routes)))
    }

    fn request(method: Method, path: &'static str, headers: &[(&'static str, &'static str)]) -> Request {
        let mut builder = Request::builder().method(method).uri(Uri::from_static(path));
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.finish()
    }

    fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
        response.headers().get(name).and_then(|value| value.to_str().ok())
    }

    const PREFLIGHT: [(&str, &str); 3] = [
        ("origin", "http://localhost:3000"),
        ("access-control-request-method", "POST"),
        (
            "access-control-request-headers",
            "authorization, content-type, x-stainless-os",
        ),
    ];

    #[tokio::test]
    async fn a_preflight_is_answered_with_the_route_s_methods_and_every_header_asked_for() {
        let app = app(CorsOrigins::Any);
        let answer = app.call(request(Method::OPTIONS, "/send", &PREFLIGHT)).await.unwrap();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&answer, "access-control-allow-origin"), Some("*"));
        assert_eq!(header(&answer, "access-control-allow-methods"), Some("POST, OPTIONS"));
        assert_eq!(
            header(&answer, "access-control-allow-headers"),
            Some("authorization, content-type, x-stainless-os")
        );
        assert_eq!(header(&answer, "access-control-max-age"), Some("7200"));
    }

    #[tokio::test]
    async fn a_listed_origin_is_echoed_and_another_is_refused_its_preflight_but_served() {
        let app = app(CorsOrigins::Listed(vec!["http://localhost:3000".into()]));
        let answer = app.call(request(Method::OPTIONS, "/send", &PREFLIGHT)).await.unwrap();
        assert_eq!(answer.status(), StatusCode::NO_CONTENT);
        assert_eq!(
            header(&answer, "access-control-allow-origin"),
            Some("http://localhost:3000")
        );
        let other = [("origin", "https://evil.example"), PREFLIGHT[1], PREFLIGHT[2]];
        let refused = app.call(request(Method::OPTIONS, "/send", &other)).await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(header(&refused, "access-control-allow-origin"), None);
        let served = app
            .call(request(Method::GET, "/hello", &[("origin", "https://evil.example")]))
            .await
            .unwrap();
        assert_eq!(served.status(), StatusCode::OK);
        assert_eq!(header(&served, "access-control-allow-origin"), None);
        assert_eq!(header(&served, "vary"), Some("Origin"));
    }

    #[tokio::test]
    async fn options_without_a_preflight_and_a_405_say_allow() {
        let app = app(CorsOrigins::Any);
        let options = app.call(request(Method::OPTIONS, "/hello", &[])).await.unwrap();
        assert_eq!(options.status(), StatusCode::NO_CONTENT);
        assert_eq!(header(&options, "allow"), Some("GET, HEAD, OPTIONS"));
        let refused = app.call(request(Method::DELETE, "/send", &[])).await.unwrap();
        assert_eq!(refused.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(header(&refused, "allow"), Some("POST, OPTIONS"));
        let unknown = app.call(request(Method::OPTIONS, "/nothing", &[])).await.unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    }
}
