//! The account endpoints: device registration, user info and conversation deletion.

use poem::http::StatusCode;
use poem::{Request, Response};
use serde_json::{Value, json};

use super::admission::{Expectation, SignedBody, admit, admit_json_call, body_text, envelope, refuse, success};
use crate::state::SimState;
use crate::verify::{self, Rejection};

/// Where conversations are deleted: `DELETE /v1/api/chat/history/<chatID>`.
pub(crate) const HISTORY_PREFIX: &str = "/v1/api/chat/history/";

/// `POST /v1/api/user/device/register`, body `{"uuid": "..."}` → `{"deviceIDStr": "<digits>"}`.
pub(crate) async fn register_device(state: &SimState, mut req: Request) -> Response {
    let outcome = async {
        let body = body_text(&mut req).await?;
        let uuid = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|value| value.get("uuid").and_then(Value::as_str).map(str::to_owned))
            .ok_or_else(|| Rejection::bad_parameter(format!("register body {body:?} is not {{\"uuid\": \"...\"}}")))?;
        if !verify::is_dashed_uuid(&uuid) {
            return Err(Rejection::bad_parameter(format!(
                "register uuid {uuid:?} is not a dashed uuid"
            )));
        }
        let expect = Expectation {
            registering: Some(&uuid),
            referer_chat: None,
            event_stream: false,
            signed: SignedBody::Json(&body),
            own_query: &[],
        };
        let caller = admit(state, &req, &expect)?;
        Ok((caller, uuid))
    }
    .await;
    match outcome {
        Ok((caller, uuid)) => {
            let device_id = state.new_id();
            state
                .ledger()
                .accounts
                .register(caller.token, (uuid, device_id.clone()));
            success(json!({"deviceIDStr": device_id}))
        }
        Err(rejection) => refuse(state, &req, rejection),
    }
}

/// `GET /v1/api/user/info` → `{"userInfo": {...}}`.
pub(crate) async fn user_info(state: &SimState, mut req: Request) -> Response {
    let outcome = admit_json_call(state, &mut req).await;
    match outcome {
        Ok(caller) => {
            *state
                .ledger()
                .accounts
                .user_info_calls
                .entry(caller.token.clone())
                .or_default() += 1;
            success(json!({"userInfo": {"userID": caller.query.uuid, "nickName": "sim", "isNewUser": false}}))
        }
        Err(rejection) => refuse(state, &req, rejection),
    }
}

/// `DELETE /v1/api/chat/history/<chatID>`: the conversation must be the caller's.
pub(crate) async fn delete_conversation(state: &SimState, mut req: Request) -> Response {
    let chat_id = req.uri().path().trim_start_matches(HISTORY_PREFIX).to_owned();
    let outcome = admit_json_call(state, &mut req).await;
    let caller = match outcome {
        Ok(caller) => caller,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let mut ledger = state.ledger();
    ledger.conversations.delete_requests += 1;
    if ledger.faults.take_failing_delete() {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body("simulated failure");
    }
    match ledger.conversations.owner(&chat_id) {
        Some(owner) if owner == caller.token => {
            ledger.conversations.delete(chat_id);
            success(json!({}))
        }
        Some(_) => {
            drop(ledger);
            refuse(
                state,
                &req,
                Rejection::violation(
                    1200002,
                    "对话不存在",
                    format!("conversation {chat_id} belongs to another token"),
                ),
            )
        }
        None => envelope(1200002, "对话不存在", json!({})),
    }
}
