//! Leaving no trace: conversations created upstream are deleted once idle.

use std::time::Duration;

use hailuo_free_api::sim::Fault;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn with_no_idle_time_a_conversation_is_deleted_as_soon_as_its_answer_ends() -> TestResult {
    let app = spawn_app_with(|s| s.session.idle_ttl_secs = 0).await;
    let completion = app.chat_ok("token-a", &ask("hi")).await;
    let id = completion["id"].as_str().expect("an id").to_owned();
    assert!(app.all_conversations_deleted("token-a", Duration::from_secs(3)).await);
    assert_eq!(app.sim.deleted_conversations(), vec![id]);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn a_conversation_is_deleted_once_idle_for_the_ttl_and_not_before() -> TestResult {
    let app = spawn_app_with(|s| s.session.idle_ttl_secs = 2).await;
    app.chat_ok("token-a", &ask("hi")).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        app.sim.live_conversations("token-a").len(),
        1,
        "still there before the TTL"
    );
    assert!(app.all_conversations_deleted("token-a", Duration::from_secs(4)).await);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn continuing_a_conversation_refreshes_its_idle_time() -> TestResult {
    let app = spawn_app_with(|s| s.session.idle_ttl_secs = 2).await;
    let first = app.chat_ok("token-a", &ask("hi")).await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let body = json!({"conversation_id": first["id"], "messages": [{"role": "user", "content": "again"}]});
    app.chat_ok("token-a", &body).await;
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    // 2.6 s after it began, but 1.3 s after its last use.
    assert_eq!(app.sim.live_conversations("token-a").len(), 1);
    assert!(app.all_conversations_deleted("token-a", Duration::from_secs(4)).await);
    Ok(())
}

#[tokio::test]
async fn a_failed_deletion_is_retried_later() -> TestResult {
    let app = spawn_app_with(|s| s.session.idle_ttl_secs = 0).await;
    app.sim.fail_deletes(1);
    app.chat_ok("token-a", &ask("hi")).await;
    assert!(app.all_conversations_deleted("token-a", Duration::from_secs(5)).await);
    assert_eq!(app.sim.deleted_conversations().len(), 1);
    Ok(())
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_frees_the_account_at_once() -> TestResult {
    let app = spawn_app_with(|s| {
        s.accounts.busy_wait_secs = 2;
        s.session.idle_ttl_secs = 1;
    })
    .await;
    // This answer would take about 10 s at this pace.
    app.sim.inject(Fault::SlowChunks(Duration::from_millis(500)));
    let mut body = ask("a long, slow answer that the client will not wait for, not at all, never");
    body["stream"] = json!(true);
    let response = app.chat("token-a", &body).await;
    let mut bytes = response.bytes_stream();
    read_until_first_words(&mut bytes).await;
    drop(bytes);

    // We stop reading upstream: the simulator sees its stream closed (at its next write,
    // after the server noticed at its own next write: two 500 ms chunks; the bound leaves
    // room for a loaded machine and stays well under the ~10 s the answer would take).
    let sim = app.sim.clone();
    assert!(
        eventually(Duration::from_secs(5), || {
            let sim = sim.clone();
            async move { sim.active_streams() == 0 }
        })
        .await,
        "the upstream stream was closed"
    );
    // The account is free again long before the abandoned answer would have ended (~10 s),
    // within the 2 s a request may wait for it.
    let completion = app.chat_ok("token-a", &ask("next")).await;
    assert!(completion["id"].is_string());
    // Both conversations are left to the sweeper, which deletes them.
    assert!(app.all_conversations_deleted("token-a", Duration::from_secs(5)).await);
    assert_eq!(app.sim.deleted_conversations().len(), 2);
    Ok(())
}
