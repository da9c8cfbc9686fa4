//! Observability: `/metrics` serves Prometheus text that counts what happened, without secrets.

use serde_json::json;

use crate::helpers::{ask, spawn_app};

const TOKEN: &str = "observability-secret-token-7f3a";

#[tokio::test]
async fn metrics_count_chats_and_upstream_calls_without_showing_tokens() {
    let app = spawn_app().await;
    app.chat_ok(TOKEN, &ask("hello")).await;
    app.chat_ok(TOKEN, &ask("hello again")).await;
    let (status, _) = app
        .chat_stream(
            TOKEN,
            &json!({"model": "hailuo", "stream": true, "messages": [{"role": "user", "content": "stream"}]}),
        )
        .await;
    assert_eq!(status, 200);

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let body = response.text().await.unwrap();

    let chats = body
        .lines()
        .find(|line| {
            line.starts_with("http_server_requests_total{")
                && line.contains(r#"http_route="/v1/chat/completions""#)
                && line.contains(r#"http_response_status_code="200""#)
        })
        .unwrap_or_else(|| panic!("no chat request counter in:\n{body}"));
    let count: f64 = chats.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count >= 3.0, "{chats}");
    assert!(
        body.contains("# TYPE hailuo_upstream_duration_seconds histogram"),
        "{body}"
    );
    assert!(body.contains(r#"url_path="/v4/api/chat/msg""#), "{body}");
    assert!(body.contains("hailuo_chat_time_to_first_token_seconds_count"), "{body}");
    assert!(body.contains("hailuo_accounts_busy"), "{body}");
    assert!(!body.contains(TOKEN), "a token leaked into the metrics");
}
