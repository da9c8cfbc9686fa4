//! Graceful shutdown: streams in flight finish, new connections are refused, due deletions run.

use std::time::Duration;

use futures::StreamExt;
use hailuo_sim::Fault;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_shutdown_during_a_stream_lets_it_end_with_done() -> TestResult {
    let mut app = spawn_app_with(|s| s.session.idle_ttl = Duration::from_secs(0)).await;
    app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(60)));
    let mut body = ask("a story that is still being told when the server is asked to stop");
    body["stream"] = json!(true);
    let response = app.chat("token-a", &body).await;
    assert_eq!(response.status(), 200);
    let mut bytes = response.bytes_stream();
    let mut seen = read_until_first_words(&mut bytes).await;

    app.begin_shutdown();
    // New connections are refused while the stream goes on.
    let refused = eventually(Duration::from_secs(2), || async {
        reqwest::Client::new().get(app.url("/ping")).send().await.is_err()
    })
    .await;
    assert!(refused, "the listener closed");

    while let Some(chunk) = bytes.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk?));
    }
    assert!(seen.trim_end().ends_with("data: [DONE]"), "the stream finished: {seen}");
    // The deletion that fell due at the end of the answer ran before the server stopped.
    assert!(app.all_conversations_deleted("token-a", Duration::from_secs(3)).await);
    Ok(())
}
