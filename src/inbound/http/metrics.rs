//! Observability of the HTTP surface: [`RequestTelemetry`] gives every request a server span
//! (continuing the caller's W3C `traceparent`), one log line and its metrics, once it is
//! answered (a stream once it ends); [`serve_metrics`]
//! serves the metrics as Prometheus text at `GET /metrics`.

use std::time::Instant;

use futures::StreamExt;
use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use poem::http::HeaderMap;
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, handler};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::metrics::instruments;

/// `GET /metrics`: every metric in the Prometheus text format.
#[handler]
pub fn serve_metrics() -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::outbound::telemetry::prometheus_text())
}

/// The middleware: a span, a log line and metrics per request. Neither the query string nor
/// any header (least of all `Authorization`) is recorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTelemetry;

impl<E: Endpoint> Middleware<E> for RequestTelemetry {
    type Output = RequestTelemetryEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestTelemetryEndpoint { inner }
    }
}

/// An endpoint wrapped by [`RequestTelemetry`].
pub struct RequestTelemetryEndpoint<E> {
    inner: E,
}

/// Reads the propagation headers of a request.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

impl<E: Endpoint> Endpoint for RequestTelemetryEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = %format!("{method} {path}"),
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %method,
            url.path = %path,
            http.route = Empty,
            http.response.status_code = Empty,
            gen_ai.request.model = Empty,
            stream = Empty,
        );
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to continue.
        let _ = span.set_parent(parent);
        let started = Instant::now();
        let response = match self.inner.call(request).instrument(span.clone()).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        let route = response
            .extensions()
            .get::<super::routes::RouteLabel>()
            .map(|label| std::sync::Arc::clone(&label.0));
        let record = RequestRecord {
            span,
            method,
            path,
            route,
            status: response.status().as_u16(),
            started,
        };
        if !is_event_stream(&response) {
            drop(record);
            return Ok(response);
        }
        // A stream is recorded when its body ends or the client leaves: its latency is then the
        // whole answer's, and the log line is not written in front of the first token.
        let (parts, body) = response.into_parts();
        let body = body.into_bytes_stream().map(move |chunk| {
            let _ = &record;
            chunk
        });
        Ok(Response::from_parts(parts, Body::from_bytes_stream(body)))
    }
}

/// Whether a response is server-sent events.
fn is_event_stream(response: &Response) -> bool {
    response
        .headers()
        .get(poem::http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/event-stream"))
}

/// What is known of a request once it is answered: dropped, it completes the span and writes
/// the metrics and the log line.
struct RequestRecord {
    span: tracing::Span,
    method: String,
    path: String,
    /// The route's template, when the request went through the routing table.
    route: Option<std::sync::Arc<str>>,
    status: u16,
    started: Instant,
}

impl Drop for RequestRecord {
    fn drop(&mut self) {
        let latency = self.started.elapsed();
        let status = self.status;
        // Unmatched paths share one label, and a path of a templated route is labelled with its
        // template, so scanners cannot blow up the series count.
        let route = match &self.route {
            _ if status == 404 => "unmatched",
            Some(template) => template,
            None => self.path.as_str(),
        };
        self.span.record("http.route", route);
        self.span.record("http.response.status_code", status);
        if status >= 500 {
            self.span.record("otel.status_code", "ERROR");
        }
        let labels = [
            KeyValue::new("http.request.method", self.method.clone()),
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        let metrics = instruments();
        metrics.requests.add(1, &labels);
        metrics.request_duration.record(latency.as_secs_f64(), &labels);
        self.span.in_scope(|| {
            tracing::info!(
                method = %self.method,
                path = %self.path,
                status,
                latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                "request"
            );
        });
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::fmt::Write as _;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use poem::http::Uri;
    use poem::{EndpointExt, Route, get};
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::{Context, SubscriberExt};

    use super::*;

    /// The fields of every event logged, one string each.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<String>>>);

    struct Fields<'a>(&'a mut String);

    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            let _ = write!(self.0, "{}={:?} ", field.name(), value);
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Lines {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut fields = String::new();
            event.record(&mut Fields(&mut fields));
            self.0.lock().unwrap().push(fields);
        }
    }

    impl Lines {
        fn requests(&self) -> Vec<String> {
            let lines = self.0.lock().unwrap();
            lines
                .iter()
                .filter(|line| line.contains("message=request"))
                .cloned()
                .collect()
        }
    }

    #[handler]
    fn events() -> Response {
        let chunks = futures::stream::iter(["data: a\n\n", "data: b\n\n"])
            .map(|chunk| Ok::<_, std::io::Error>(Bytes::from_static(chunk.as_bytes())));
        Response::builder()
            .content_type("text/event-stream")
            .body(Body::from_bytes_stream(chunks))
    }

    #[handler]
    fn document() -> &'static str {
        "{}"
    }

    fn get_request(path: &'static str) -> Request {
        Request::builder().uri(Uri::from_static(path)).finish()
    }

    #[tokio::test]
    async fn an_answer_is_logged_at_once_and_a_stream_when_its_body_ends() {
        let lines = Lines::default();
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.clone()));
        let app = Route::new()
            .at("/events", get(events))
            .at("/document", get(document))
            .with(RequestTelemetry);

        let answer = app.call(get_request("/document")).await.unwrap();
        assert_eq!(lines.requests().len(), 1, "{:?}", lines.requests());
        assert_eq!(answer.into_body().into_string().await.unwrap(), "{}");

        let stream = app.call(get_request("/events")).await.unwrap();
        assert_eq!(
            lines.requests().len(),
            1,
            "logged before the stream ended: {:?}",
            lines.requests()
        );
        let body = stream.into_body().into_string().await.unwrap();
        assert_eq!(body, "data: a\n\ndata: b\n\n");
        let logged = lines.requests();
        assert_eq!(logged.len(), 2, "{logged:?}");
        assert!(
            logged[1].contains("path=/events") && logged[1].contains("status=200"),
            "{logged:?}"
        );
    }

    #[tokio::test]
    async fn a_stream_left_by_its_client_is_logged_when_dropped() {
        let lines = Lines::default();
        let _subscriber = tracing::subscriber::set_default(tracing_subscriber::registry().with(lines.clone()));
        let app = Route::new().at("/events", get(events)).with(RequestTelemetry);
        let stream = app.call(get_request("/events")).await.unwrap();
        assert!(lines.requests().is_empty());
        drop(stream);
        assert_eq!(lines.requests().len(), 1, "{:?}", lines.requests());
    }
}
