//! Leaving no trace: conversations created upstream are deleted once idle, on every dialect.

use std::time::Duration;

use hailuo_free_api::config::Dialect;
use hailuo_sim::Fault;
use serde_json::json;

use crate::helpers::*;

on_every_dialect! {
    async fn with_no_idle_time_a_conversation_is_deleted_as_soon_as_its_answer_ends(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.session.idle_ttl = Duration::from_secs(0)).await;
        let completion = app.chat_ok("token-a", &ask("hi")).await;
        let id = completion["id"].as_str().expect("an id").to_owned();
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(3)).await);
        assert_eq!(app.sim.conversations().deleted(), vec![id]);
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_conversation_is_deleted_once_idle_for_the_ttl_and_not_before(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.session.idle_ttl = Duration::from_secs(2)).await;
        app.chat_ok("token-a", &ask("hi")).await;
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(
            app.sim.conversations().live("token-a").len(),
            1,
            "still there before the TTL"
        );
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(4)).await);
        app.assert_protocol_clean();
        Ok(())
    }

    async fn continuing_a_conversation_refreshes_its_idle_time(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.session.idle_ttl = Duration::from_secs(2)).await;
        let first = app.chat_ok("token-a", &ask("hi")).await;
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        let body = json!({"conversation_id": first["id"], "messages": [{"role": "user", "content": "again"}]});
        app.chat_ok("token-a", &body).await;
        tokio::time::sleep(Duration::from_millis(1_300)).await;
        // 2.6 s after it began, but 1.3 s after its last use.
        assert_eq!(app.sim.conversations().live("token-a").len(), 1);
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(4)).await);
        Ok(())
    }

    async fn a_failed_deletion_is_retried_later(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.session.idle_ttl = Duration::from_secs(0)).await;
        app.sim.faults().fail_deletes(1);
        app.chat_ok("token-a", &ask("hi")).await;
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(5)).await);
        assert_eq!(app.sim.conversations().deleted().len(), 1);
        Ok(())
    }

    async fn a_conversation_already_deleted_upstream_is_done_not_retried(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.session.idle_ttl = Duration::from_secs(1)).await;
        let completion = app.chat_ok("token-a", &ask("hi")).await;
        let id = completion["id"].as_str().expect("an id").to_owned();
        // Its user deletes it in the web app before the sweeper does.
        app.sim.conversations().delete_in_web_app(&id);
        let asked = eventually(Duration::from_secs(5), || async {
            app.sim.conversations().delete_requests() >= 1
        })
        .await;
        assert!(asked, "the sweeper never asked");
        // A failed deletion is retried 1 s later, then 2 s: past both, it was asked once.
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        assert_eq!(app.sim.conversations().delete_requests(), 1, "asked once, not retried");
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_device_the_upstream_forgot_is_registered_again_to_delete_a_conversation(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.session.idle_ttl = Duration::from_secs(1)).await;
        app.chat_ok("token-a", &ask("hi")).await;
        app.sim.accounts().forget_devices("token-a");
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(5)).await);
        assert_eq!(app.sim.accounts().registrations("token-a"), 2);
        app.assert_protocol_clean();
        Ok(())
    }
}

/// A continuation is the business of the client that started the conversation.
mod ownership {
    use super::*;

    fn with_keys(settings: &mut hailuo_free_api::config::Settings) {
        settings.auth.api_keys = vec!["sk-alice".into(), "sk-bob".into()];
        settings.auth.tokens = vec!["pool-1".into()];
    }

    fn again(id: &serde_json::Value) -> serde_json::Value {
        json!({"conversation_id": id, "messages": [{"role": "user", "content": "again"}]})
    }

    #[tokio::test]
    async fn another_key_cannot_continue_a_conversation_and_is_told_it_does_not_exist() -> TestResult {
        let app = spawn_app_with(with_keys).await;
        let first = app.chat_ok("sk-alice", &ask("hi")).await;
        let stolen = assert_openai_error(app.chat("sk-bob", &again(&first["id"])).await, 404).await;
        assert_eq!(stolen["code"], "conversation_not_found");
        assert_eq!(stolen["param"], "conversation_id");
        let unknown = assert_openai_error(app.chat("sk-bob", &again(&json!("243600000000000042"))).await, 404).await;
        assert_eq!(unknown["message"], stolen["message"], "the same answer");
        // Its owner still can, and only one chat reached the upstream for the refusals: none.
        let continued = app.chat_ok("sk-alice", &again(&first["id"])).await;
        assert_eq!(continued["id"], first["id"]);
        assert_eq!(app.sim.conversations().chats().len(), 2);
        app.assert_protocol_clean();
        Ok(())
    }

    #[tokio::test]
    async fn without_keys_a_conversation_is_continued_only_with_its_account_token() -> TestResult {
        let app = spawn_app().await;
        let first = app.chat_ok("token-a", &ask("hi")).await;
        let other = assert_openai_error(app.chat("token-b", &again(&first["id"])).await, 404).await;
        assert_eq!(other["code"], "conversation_not_found");
        let continued = app.chat_ok("token-b,token-a", &again(&first["id"])).await;
        assert_eq!(continued["id"], first["id"]);
        app.assert_protocol_clean();
        Ok(())
    }

    #[tokio::test]
    async fn without_keys_an_id_the_upstream_does_not_know_is_404_not_502() -> TestResult {
        let app = spawn_app().await;
        let error = assert_openai_error(app.chat("token-a", &again(&json!("243600000000000042"))).await, 404).await;
        assert_eq!(error["code"], "conversation_not_found");
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("the agent upstream generates an answer to its end whoever polls it: the account stays busy until then")
    async fn a_client_that_disconnects_mid_stream_frees_the_account_at_once(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| {
            s.accounts.busy_wait = Duration::from_secs(2);
            s.session.idle_ttl = Duration::from_secs(1);
        })
        .await;
        // This answer would take about 10 s at this pace.
        app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(500)));
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
                async move { sim.accounts().active_streams() == 0 }
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
        assert_eq!(app.sim.conversations().deleted().len(), 2);
        Ok(())
    }
}
