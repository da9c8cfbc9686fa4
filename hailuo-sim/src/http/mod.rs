//! The simulator's HTTP surface: the dispatch of every request by method and path to its
//! handler. The admission check every endpoint shares is in `admission`, the account endpoints
//! in `account`, chat in `chat` (its event stream written by `sse`), files and the OSS bucket
//! in `files` and `oss`, speech and its MP3s in `speech`, voice messages in `transcription`.

mod account;
mod admission;
mod chat;
mod files;
mod matrix;
mod oss;
mod speech;
mod sse;
mod transcription;

use std::sync::Arc;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, Request, Response};

use crate::profile::Dialect;
use crate::state::SimState;
use account::HISTORY_PREFIX;

/// The endpoint serving every simulated path.
pub(crate) struct SimEndpoint {
    pub state: Arc<SimState>,
}

impl Endpoint for SimEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path().to_owned();
        let method = req.method().clone();
        let state = &self.state;
        if state.config.dialect == Dialect::MinimaxAgent && !serves_agent(&path) {
            state.violation(format!(
                "{method} {path}: the minimax-agent upstream has no such endpoint"
            ));
            return Ok(Response::builder().status(StatusCode::NOT_FOUND).body("not found"));
        }
        Ok(match (method, path.as_str()) {
            (Method::POST, "/matrix/api/v1/chat/send_msg") => matrix::send_msg(state, req).await,
            (Method::POST, "/matrix/api/v1/chat/get_chat_detail") => matrix::get_chat_detail(state, req).await,
            (Method::POST, "/matrix/api/v1/chat/delete_chat") => matrix::delete_chat(state, req).await,
            (Method::POST, "/v1/api/user/device/register") => account::register_device(state, req).await,
            (Method::GET, "/v1/api/user/info") => account::user_info(state, req).await,
            (Method::POST, "/v4/api/chat/msg") => chat::chat_message(state, req).await,
            (Method::DELETE, p) if p.starts_with(HISTORY_PREFIX) => account::delete_conversation(state, req).await,
            (Method::GET, "/v1/api/files/request_policy") => files::request_policy(state, req).await,
            (Method::POST, "/v1/api/files/policy_callback") => files::policy_callback(state, req).await,
            (Method::POST, "/v1/api/chat/update_robot_custom_config") => speech::select_voice(state, req).await,
            (Method::GET, "/v1/api/chat/msg_tts") => speech::msg_tts(state, req).await,
            (Method::POST, "/v1/api/chat/phone_msg") => transcription::phone_msg(state, req).await,
            (Method::GET | Method::HEAD, p) if p.starts_with(speech::AUDIO_PREFIX) => speech::audio_file(state, req),
            // Path-style OSS: `/<bucket>/<key>`, any path outside the API's own prefixes.
            (Method::PUT | Method::HEAD, p) if !is_api_path(p) => oss::object(state, req).await,
            _ => Response::builder().status(StatusCode::NOT_FOUND).body("not found"),
        })
    }
}

/// Whether the `minimax-agent` upstream serves `path`: its matrix chat, the account and file
/// endpoints it shares with the others and the OSS bucket, but no event-stream chat, no
/// history deletion, no speech and no voice messages.
fn serves_agent(path: &str) -> bool {
    path.starts_with("/matrix/")
        || path.starts_with("/v1/api/user/")
        || path.starts_with("/v1/api/files/")
        || !is_api_path(path)
}

/// Whether `path` belongs to the Hailuo API (or the speech audio) rather than to the OSS bucket.
fn is_api_path(path: &str) -> bool {
    path.starts_with("/v1/")
        || path.starts_with("/v4/")
        || path.starts_with("/matrix/")
        || path.starts_with(speech::AUDIO_PREFIX)
}
