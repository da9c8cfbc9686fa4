//! Browsers: CORS preflights answered before the API key, `Access-Control-Allow-Origin` on
//! every answer to an allowed page (whole, streamed, failed), `server.cors_origins`
//! restricting the pages, and `Allow` on `OPTIONS` and 405.

use hailuo_free_api::config::{CorsOrigins, Settings};
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::json;

use crate::helpers::*;

const PAGE: &str = "http://localhost:3000";

/// What the OpenAI JS SDK's `fetch` from a page asks a preflight for (v4/v5).
const SDK_HEADERS: &str = "authorization,content-type,x-stainless-arch,x-stainless-lang,x-stainless-os,\
                           x-stainless-package-version,x-stainless-retry-count,x-stainless-runtime,\
                           x-stainless-runtime-version,x-stainless-timeout";

fn with_keys(settings: &mut Settings) {
    settings.auth.api_keys = vec!["sk-browser-test".to_owned()];
    settings.auth.tokens = vec!["pool-token".to_owned()];
}

impl TestApp {
    /// A preflight from `origin` for `method path`, asking for `headers`.
    async fn preflight(&self, origin: &str, method: &str, path: &str, headers: &str) -> reqwest::Response {
        self.client
            .request(Method::OPTIONS, self.url(path))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", method)
            .header("Access-Control-Request-Headers", headers)
            .send()
            .await
            .expect("request sent")
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn listed(items: &[&str]) -> CorsOrigins {
    CorsOrigins::Listed(items.iter().map(|item| (*item).to_owned()).collect())
}

#[tokio::test]
async fn a_preflight_is_answered_before_the_api_key_and_allows_the_sdk_s_headers() -> TestResult {
    let app = spawn_app_with(with_keys).await;
    let response = app.preflight(PAGE, "POST", "/v1/chat/completions", SDK_HEADERS).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
    let headers = response.headers();
    assert_eq!(header(headers, "access-control-allow-origin"), Some("*"));
    let methods = header(headers, "access-control-allow-methods").unwrap_or_default();
    assert!(methods.split(", ").any(|method| method == "POST"), "{methods}");
    let allowed = header(headers, "access-control-allow-headers").unwrap_or_default();
    for asked in [
        "authorization",
        "content-type",
        "x-stainless-os",
        "x-stainless-retry-count",
    ] {
        assert!(
            allowed.split(',').any(|name| name.trim() == asked),
            "{asked} not in {allowed}"
        );
    }
    assert!(header(headers, "access-control-max-age").is_some());

    // The same preflight for an upload, and for a route of no body.
    let upload = app
        .preflight(PAGE, "POST", "/v1/audio/transcriptions", "authorization")
        .await;
    assert_eq!(upload.status(), 204);
    let models = app.preflight(PAGE, "GET", "/v1/models/hailuo", "authorization").await;
    assert_eq!(models.status(), 204);
    assert_eq!(
        header(models.headers(), "access-control-allow-methods"),
        Some("GET, HEAD, OPTIONS")
    );
    Ok(())
}

#[tokio::test]
async fn a_cross_origin_answer_carries_allow_origin_whole_streamed_and_failed() -> TestResult {
    let app = spawn_app_with(|settings| settings.server.max_body_bytes = 64 * 1024).await;
    let post = |path: &str| app.client.post(app.url(path)).header("Origin", PAGE);

    let whole = post("/v1/chat/completions")
        .bearer_auth("token-a")
        .json(&ask("hi"))
        .send()
        .await?;
    assert_eq!(whole.status(), 200);
    assert_eq!(header(whole.headers(), "access-control-allow-origin"), Some("*"));
    assert_eq!(
        header(whole.headers(), "access-control-expose-headers"),
        Some("Retry-After")
    );
    assert!(content(&whole.json().await?).starts_with("海螺收到"));

    let mut streamed_request = ask("hi");
    streamed_request["stream"] = json!(true);
    let streamed = post("/v1/chat/completions")
        .bearer_auth("token-a")
        .json(&streamed_request)
        .send()
        .await?;
    assert_eq!(streamed.status(), 200);
    assert!(header(streamed.headers(), "content-type").is_some_and(|kind| kind.starts_with("text/event-stream")));
    assert_eq!(header(streamed.headers(), "access-control-allow-origin"), Some("*"));
    let events = sse_data(streamed).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{events:?}");

    let failures = [
        (
            post("/v1/chat/completions")
                .bearer_auth("token-a")
                .json(&json!({"messages": "no"})),
            400,
        ),
        (post("/v1/chat/completions").json(&ask("hi")), 401),
        (app.client.get(app.url("/v1/nothing-here")).header("Origin", PAGE), 404),
        (app.client.get(app.url("/v1/models/gpt-9")).header("Origin", PAGE), 404),
        (
            post("/v1/chat/completions")
                .bearer_auth("token-a")
                .json(&ask(&"x".repeat(100 * 1024))),
            413,
        ),
    ];
    for (request, status) in failures {
        let response = request.send().await?;
        assert_eq!(
            header(response.headers(), "access-control-allow-origin"),
            Some("*"),
            "the {status}"
        );
        assert_openai_error(response, status).await;
    }

    // 401 from the API key gate too.
    let keyed = spawn_app_with(with_keys).await;
    let refused = keyed
        .client
        .get(keyed.url("/v1/models"))
        .header("Origin", PAGE)
        .bearer_auth("sk-wrong")
        .send()
        .await?;
    assert_eq!(header(refused.headers(), "access-control-allow-origin"), Some("*"));
    assert_openai_error(refused, 401).await;
    Ok(())
}

#[tokio::test]
async fn a_restricted_origin_list_echoes_its_origins_and_refuses_another_s_preflight() -> TestResult {
    let app = spawn_app_with(|settings| {
        settings.server.cors_origins = listed(&[PAGE, "https://chat.example.com"]);
    })
    .await;
    let allowed = app
        .preflight(
            "https://chat.example.com",
            "POST",
            "/v1/chat/completions",
            "authorization",
        )
        .await;
    assert_eq!(allowed.status(), 204);
    assert_eq!(
        header(allowed.headers(), "access-control-allow-origin"),
        Some("https://chat.example.com")
    );
    assert!(header(allowed.headers(), "vary").is_some_and(|vary| vary.contains("Origin")));

    let refused = app
        .preflight("https://evil.example", "POST", "/v1/chat/completions", "authorization")
        .await;
    assert_eq!(header(refused.headers(), "access-control-allow-origin"), None);
    let error = assert_openai_error(refused, 403).await;
    assert_eq!(error["code"], "origin_not_allowed");

    // A request of another origin is served, but its page gets no header to read it by (and
    // a same-origin page, such as the gateway's own /docs, needs none).
    let answered = app
        .client
        .post(app.url("/v1/chat/completions"))
        .header("Origin", "https://evil.example")
        .bearer_auth("token-a")
        .json(&ask("hi"))
        .send()
        .await?;
    assert_eq!(answered.status(), 200);
    assert_eq!(header(answered.headers(), "access-control-allow-origin"), None);
    assert_eq!(header(answered.headers(), "vary"), Some("Origin"));

    let listed_page = app
        .client
        .get(app.url("/v1/models"))
        .header("Origin", PAGE)
        .send()
        .await?;
    assert_eq!(header(listed_page.headers(), "access-control-allow-origin"), Some(PAGE));

    let none = spawn_app_with(|settings| settings.server.cors_origins = listed(&[])).await;
    let refused = none.preflight(PAGE, "GET", "/v1/models", "authorization").await;
    assert_openai_error(refused, 403).await;
    Ok(())
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_405_with_allow_before_the_key_or_the_body() -> TestResult {
    let app = spawn_app_with(with_keys).await;
    let send = |method: Method, path: &str| app.client.request(method, app.url(path));

    let refused = send(Method::DELETE, "/v1/models").send().await?;
    assert_eq!(header(refused.headers(), "allow"), Some("GET, HEAD, OPTIONS"));
    assert_eq!(assert_openai_error(refused, 405).await["code"], "method_not_allowed");

    let with_body = send(Method::PUT, "/v1/chat/completions")
        .json(&ask("hi"))
        .send()
        .await?;
    assert_eq!(header(with_body.headers(), "allow"), Some("POST, OPTIONS"));
    assert_openai_error(with_body, 405).await;

    let retrieve = send(Method::POST, "/v1/models/hailuo").send().await?;
    assert_eq!(header(retrieve.headers(), "allow"), Some("GET, HEAD, OPTIONS"));
    assert_openai_error(retrieve, 405).await;

    let ping = send(Method::POST, "/ping").send().await?;
    assert_eq!(header(ping.headers(), "allow"), Some("GET, HEAD, OPTIONS"));
    assert_openai_error(ping, 405).await;

    // OPTIONS without a preflight says what the route takes.
    let options = send(Method::OPTIONS, "/v1/audio/speech").send().await?;
    assert_eq!(options.status(), 204);
    assert_eq!(header(options.headers(), "allow"), Some("POST, OPTIONS"));
    let unknown = send(Method::OPTIONS, "/nothing-here").send().await?;
    assert_openai_error(unknown, 404).await;

    let head = send(Method::HEAD, "/ping").send().await?;
    assert_eq!(head.status(), 200);
    Ok(())
}

#[tokio::test]
async fn the_metrics_label_a_templated_route_by_its_template() -> TestResult {
    let app = spawn_app().await;
    for model in ["hailuo", "tts-1", "no-such-model"] {
        app.get(&format!("/v1/models/{model}")).await;
    }
    app.client
        .request(Method::OPTIONS, app.url("/v1/models/whatever"))
        .header("Origin", PAGE)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await?;
    let body = app.get("/metrics").await.text().await?;
    let lines: Vec<&str> = body
        .lines()
        .filter(|line| line.starts_with("http_server_requests_total{") && line.contains("/v1/models/"))
        .collect();
    assert!(!lines.is_empty(), "{body}");
    assert!(
        lines
            .iter()
            .all(|line| line.contains(r#"http_route="/v1/models/{model}""#)),
        "{lines:#?}"
    );
    Ok(())
}
