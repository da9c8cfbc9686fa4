//! A refusal is answered with the status of whoever is at fault: what is wrong with the
//! request is a 4xx naming it, what is wrong with the account a 401 or 429, and only what is
//! wrong with the upstream a 5xx.

use hailuo_free_api::config::Dialect;
use serde_json::{Value, json};

use crate::helpers::*;

/// A conversation id of the upstream's shape that neither the gateway nor the upstream made.
const NEVER_MADE: &str = "243699999999999999";

fn continuing(conversation: &str, stream: bool) -> Value {
    json!({
        "conversation_id": conversation,
        "stream": stream,
        "messages": [{"role": "user", "content": "and then?"}]
    })
}

on_every_dialect! {
    async fn an_unknown_conversation_is_a_404_asked_upstream_once(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        for stream in [false, true] {
            let error = assert_openai_error(app.chat("token-a,token-b", &continuing(NEVER_MADE, stream)).await, 404).await;
            assert_eq!(error["code"], "conversation_not_found", "{error}");
            assert_eq!(error["param"], "conversation_id", "{error}");
            assert_eq!(error["type"], "invalid_request_error", "{error}");
        }
        // Each was asked once, on one account: a client's mistake is not retried elsewhere.
        let chats = app.sim.conversations().chats();
        assert_eq!(chats.len(), 2, "{chats:?}");
        assert!(chats.iter().all(|chat| chat.requested_chat_id == NEVER_MADE));
        app.assert_protocol_clean();
        Ok(())
    }
}
