//! Every failure is an OpenAI-shaped error with its real status, never a 200.

use hailuo_sim::{Fault, Simulator};
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn malformed_json_is_a_400() -> TestResult {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth("token-a")
        .header("content-type", "application/json")
        .body("{\"messages\": [")
        .send()
        .await?;
    assert_openai_error(response, 400).await;
    assert!(app.sim.conversations().chats().is_empty());
    Ok(())
}

#[tokio::test]
async fn wrong_types_and_odd_parts_are_400s() -> TestResult {
    let app = spawn_app().await;
    for body in [
        json!({"messages": "hello"}),
        json!({"model": "hailuo"}),
        json!({"messages": [{"role": "user", "content": 42}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "video", "video": "x"}]}]}),
        json!({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
        json!([1, 2, 3]),
    ] {
        let response = app.chat("token-a", &body).await;
        assert_openai_error(response, 400).await;
    }
    assert!(app.sim.conversations().chats().is_empty());
    Ok(())
}

#[tokio::test]
async fn empty_messages_are_a_400_naming_the_parameter() -> TestResult {
    let app = spawn_app().await;
    let error = assert_openai_error(app.chat("token-a", &json!({"messages": []})).await, 400).await;
    assert_eq!(error["param"], "messages");
    assert_eq!(error["type"], "invalid_request_error");
    Ok(())
}

#[tokio::test]
async fn messages_without_any_text_are_a_400() -> TestResult {
    let app = spawn_app().await;
    for body in [
        json!({"messages": [{"role": "user", "content": "   "}]}),
        json!({"messages": [{"role": "user", "content": []}]}),
        json!({"messages": [{"role": "assistant", "content": null}]}),
    ] {
        assert_openai_error(app.chat("token-a", &body).await, 400).await;
    }
    assert!(app.sim.conversations().chats().is_empty());
    Ok(())
}

#[tokio::test]
async fn a_request_without_usable_authorization_is_a_401() -> TestResult {
    let app = spawn_app().await;
    let missing = app
        .client
        .post(app.url("/v1/chat/completions"))
        .json(&ask("hi"))
        .send()
        .await?;
    let error = assert_openai_error(missing, 401).await;
    assert_eq!(error["type"], "authentication_error");
    let empty = app.chat(" , ,", &ask("hi")).await;
    assert_openai_error(empty, 401).await;
    assert!(app.sim.conversations().chats().is_empty());
    Ok(())
}

#[tokio::test]
async fn an_unknown_route_is_a_404() -> TestResult {
    let app = spawn_app().await;
    assert_openai_error(app.get("/v1/nothing-here").await, 404).await;
    Ok(())
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() -> TestResult {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 1_000).await;
    let response = app.chat("token-a", &ask(&"x".repeat(2_000))).await;
    assert_openai_error(response, 413).await;
    // Without a Content-Length (chunked), the limit holds too.
    let chunks = futures::stream::iter(vec![Ok::<_, std::io::Error>(serde_json::to_vec(&ask(
        &"y".repeat(2_000)
    ))?)]);
    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth("token-a")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await?;
    assert_openai_error(response, 413).await;
    // A body under the limit still works.
    app.chat_ok("token-a", &ask("short")).await;
    Ok(())
}

#[tokio::test]
async fn content_the_upstream_refuses_is_a_400_with_its_reason() -> TestResult {
    let app = spawn_app().await;
    app.sim.faults().inject(Fault::ContentFiltered { after_events: 0 });
    let error = assert_openai_error(app.chat("token-a", &ask("something bad")).await, 400).await;
    assert_eq!(error["code"], "content_filtered", "{error}");
    assert_eq!(error["param"], "messages", "{error}");
    assert!(
        error["message"]
            .as_str()
            .expect("a message")
            .contains("内容涉及敏感信息"),
        "{error}"
    );
    // Refused requests are not retried elsewhere.
    assert_eq!(app.sim.conversations().chats().len(), 1);
    Ok(())
}

#[tokio::test]
async fn an_upstream_error_after_streaming_began_ends_the_stream_with_an_error_event() -> TestResult {
    let app = spawn_app().await;
    app.sim.faults().inject(Fault::ContentFiltered { after_events: 3 });
    let mut body = ask("a long answer that will be filtered halfway");
    body["stream"] = json!(true);
    let (status, data) = app.chat_stream("token-a", &body).await;
    assert_eq!(status, 200);
    let last: Value = serde_json::from_str(data.last().expect("events"))?;
    assert!(
        last["error"]["message"]
            .as_str()
            .expect("a message")
            .contains("内容涉及敏感信息"),
        "{last}"
    );
    assert_eq!(last["error"]["code"], "content_filtered", "{last}");
    assert!(!data.iter().any(|d| d == "[DONE]"));
    assert!(data.len() >= 2, "some content came before the error");
    Ok(())
}

#[tokio::test]
async fn a_silent_upstream_is_a_504() -> TestResult {
    let app = spawn_app_with(|s| {
        s.upstream.idle_timeout = std::time::Duration::from_secs(1);
        s.upstream.retries = 0;
    })
    .await;
    app.sim.faults().inject(Fault::Hang);
    let error = assert_openai_error(app.chat("token-a", &ask("hello?")).await, 504).await;
    assert_eq!(error["type"], "timeout_error");
    Ok(())
}

#[tokio::test]
async fn a_5xx_once_is_retried_and_answered() -> TestResult {
    let app = spawn_app().await;
    app.sim.faults().inject(Fault::ServerError);
    let completion = app.chat_ok("token-a", &ask("hi")).await;
    let record = app.last_chat().expect("the upstream got the chat");
    assert_eq!(content(&completion), Simulator::answer_for(&record.msg_content));
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn a_stream_cut_before_any_content_is_retried() -> TestResult {
    let app = spawn_app().await;
    app.sim.faults().inject(Fault::CutStream { after_events: 0 });
    let completion = app.chat_ok("token-a", &ask("hi")).await;
    let record = app.last_chat().expect("the upstream got the chat");
    assert_eq!(content(&completion), Simulator::answer_for(&record.msg_content));
    Ok(())
}

#[tokio::test]
async fn a_stream_cut_after_content_is_an_error_not_a_retry() -> TestResult {
    let app = spawn_app().await;
    app.sim.faults().inject(Fault::CutStream { after_events: 3 });
    let mut body = ask("a long answer that will be cut off in the middle");
    body["stream"] = json!(true);
    let (status, data) = app.chat_stream("token-a", &body).await;
    assert_eq!(status, 200);
    let last: Value = serde_json::from_str(data.last().expect("events"))?;
    assert_eq!(last["error"]["type"], "upstream_error", "{last}");
    assert_eq!(
        app.sim.conversations().chats().len(),
        1,
        "nothing is retried once content reached the client"
    );
    Ok(())
}

#[tokio::test]
async fn a_persistently_failing_upstream_is_a_502_after_the_retries() -> TestResult {
    let app = spawn_app_with(|s| s.upstream.retries = 2).await;
    for _ in 0..3 {
        app.sim.faults().inject(Fault::ServerError);
    }
    let error = assert_openai_error(app.chat("token-a", &ask("hi")).await, 502).await;
    assert_eq!(error["code"], "upstream_unavailable");
    // The fourth request finds the upstream healthy again.
    app.chat_ok("token-a", &ask("hi")).await;
    Ok(())
}

#[tokio::test]
async fn an_unreachable_upstream_is_a_502() -> TestResult {
    let app = spawn_app_with(|s| {
        s.upstream.base_url = "http://127.0.0.1:9".parse().expect("a URL");
        s.upstream.retries = 1;
    })
    .await;
    assert_openai_error(app.chat("token-a", &ask("hi")).await, 502).await;
    Ok(())
}

#[tokio::test]
async fn a_malformed_event_is_skipped() -> TestResult {
    let app = spawn_app().await;
    app.sim.faults().inject(Fault::MalformedEvent);
    let completion = app.chat_ok("token-a", &ask("hi")).await;
    let record = app.last_chat().expect("the upstream got the chat");
    assert_eq!(content(&completion), Simulator::answer_for(&record.msg_content));
    Ok(())
}
