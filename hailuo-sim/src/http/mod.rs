//! The simulator's HTTP surface: the admission check every endpoint shares, the JSON endpoints
//! (device registration, user info, conversation deletion) and the dispatch by method and path
//! (files and the OSS bucket live in `files` and `oss`, speech and its MP3s in `speech`, voice
//! messages in `transcription`).

use std::sync::Arc;

use poem::http::{Method, StatusCode};
use poem::{Endpoint, Request, Response};
use serde_json::{Value, json};

use super::state::SimState;
use super::verify::{self, ChatSignedFields, ProfileQuery, Rejection, VoiceSignedFields};
use super::{chat, files, oss, speech, transcription};

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
        Ok(match (method, path.as_str()) {
            (Method::POST, "/v1/api/user/device/register") => register_device(state, req).await,
            (Method::GET, "/v1/api/user/info") => user_info(state, req).await,
            (Method::POST, "/v4/api/chat/msg") => chat::chat_message(state, req).await,
            (Method::DELETE, p) if p.starts_with(HISTORY_PREFIX) => delete_conversation(state, req).await,
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

const HISTORY_PREFIX: &str = "/v1/api/chat/history/";

/// Whether `path` belongs to the Hailuo API (or the speech audio) rather than to the OSS bucket.
fn is_api_path(path: &str) -> bool {
    path.starts_with("/v1/") || path.starts_with("/v4/") || path.starts_with(speech::AUDIO_PREFIX)
}

/// Who is calling, once the request passed the checks.
pub(crate) struct Caller {
    /// The `Token` header.
    pub token: String,
    /// The checked profile query.
    pub query: ProfileQuery,
}

/// What is signed by `Yy`.
pub(crate) enum SignedBody<'a> {
    /// A JSON request: the exact body text (empty when there is none).
    Json(&'a str),
    /// A chat message: its fields.
    Chat(ChatSignedFields<'a>),
    /// A voice message (`phone_msg`): its fields and the head of its audio.
    Voice(VoiceSignedFields<'a>),
}

/// What an endpoint expects beyond the common rules.
pub(crate) struct Expectation<'a> {
    /// `Some(uuid from the body)` on device registration (no `device_id`, no known device yet).
    pub registering: Option<&'a str>,
    /// The conversation a chat continues, which the `Referer` names.
    pub referer_chat: Option<&'a str>,
    /// Whether `Accept` must ask for an event stream.
    pub event_stream: bool,
    /// What the signature covers.
    pub signed: SignedBody<'a>,
    /// The keys of the path's own query (e.g. `msg_tts?msgID=..&timbre=..`), which come, in
    /// this order, before the common query appended with `&`.
    pub own_query: &'a [&'a str],
}

/// Runs every common check of protocol sections 1–3 on a request.
///
/// # Errors
/// The [`Rejection`] to answer, with the violation to record when there is one.
pub(crate) fn admit(state: &SimState, req: &Request, expect: &Expectation<'_>) -> Result<Caller, Rejection> {
    let token = match req.header("Token") {
        Some(token) if !token.trim().is_empty() => token.to_owned(),
        Some(_) => return Err(Rejection::not_logged_in("header Token is empty")),
        None => return Err(Rejection::not_logged_in("header Token missing")),
    };
    if state.is_dead(&token) {
        return Err(Rejection::logged_out());
    }
    let profile = &state.config.profile;
    let raw_query = req.uri().query().unwrap_or("");
    let common_query = verify::strip_own_query(raw_query, expect.own_query)?;
    let query = verify::check_profile_query(common_query, profile, expect.registering.is_some())?;
    match expect.registering {
        Some(body_uuid) => {
            if query.uuid != body_uuid {
                return Err(Rejection::bad_parameter(format!(
                    "query uuid {} differs from the body's uuid {body_uuid}",
                    query.uuid
                )));
            }
        }
        None => {
            let device = (query.uuid.clone(), query.device_id.clone().unwrap_or_default());
            let ledger = state.ledger();
            let known = ledger
                .devices
                .get(&token)
                .is_some_and(|devices| devices.contains(&device));
            let forgotten = ledger
                .forgotten_devices
                .get(&token)
                .is_some_and(|devices| devices.contains(&device));
            drop(ledger);
            if forgotten {
                return Err(Rejection::device_forgotten());
            }
            if !known {
                return Err(Rejection::unknown_device(format!(
                    "uuid {} / device_id {} was never registered for this token",
                    device.0, device.1
                )));
            }
        }
    }
    let referer = match expect.referer_chat {
        Some(chat_id) => format!("{}/?chat={chat_id}", profile.origin),
        None => format!("{}/", profile.origin),
    };
    verify::check_browser_headers(req, profile, &referer, expect.event_stream)?;
    if let Some(trace_id) = verify::sentry_trace_id(req)
        && !state.ledger().trace_ids.insert(trace_id.clone())
    {
        return Err(Rejection::bad_parameter(format!(
            "Sentry-Trace trace id {trace_id} reused; it must be fresh"
        )));
    }

    let full_uri = match req.uri().query() {
        Some(query) => format!("{}?{query}", req.uri().path()),
        None => req.uri().path().to_owned(),
    };
    let salt = &profile.salt;
    let expected = match &expect.signed {
        SignedBody::Json(body) => verify::json_signature(&full_uri, body, &query.unix, salt),
        SignedBody::Chat(fields) => verify::chat_signature(&full_uri, fields, &query.unix, salt),
        SignedBody::Voice(fields) => verify::voice_signature(&full_uri, fields, &query.unix, salt),
    };
    match req.header("Yy") {
        Some(sent) if sent == expected => Ok(Caller { token, query }),
        Some(sent) => Err(Rejection::bad_signature(format!(
            "Yy {sent} is wrong, expected {expected}"
        ))),
        None => Err(Rejection::bad_signature("header Yy missing")),
    }
}

/// A JSON envelope `{"statusInfo":{"code","message"},"data"}` with HTTP 200.
pub(crate) fn envelope(code: i64, message: &str, data: Value) -> Response {
    let body = json!({"statusInfo": {"code": code, "message": message}, "data": data});
    Response::builder()
        .content_type("application/json")
        .body(body.to_string())
}

/// The success envelope.
pub(crate) fn success(data: Value) -> Response {
    envelope(0, "Success", data)
}

/// Answers a rejection, recording its violation.
pub(crate) fn refuse(state: &SimState, req: &Request, rejection: Rejection) -> Response {
    if let Some(what) = rejection.violation {
        let token = req.header("Token").unwrap_or("");
        let short: String = token.chars().take(12).collect();
        state.violation(format!(
            "{} {} (token {short:?}): {what}",
            req.method(),
            req.uri().path()
        ));
    }
    envelope(rejection.code, rejection.message, json!({}))
}

/// Reads the whole body as text.
pub(crate) async fn body_text(req: &mut Request) -> Result<String, Rejection> {
    req.take_body()
        .into_string()
        .await
        .map_err(|err| Rejection::bad_parameter(format!("unreadable body: {err}")))
}

/// `POST /v1/api/user/device/register`, body `{"uuid": "..."}` → `{"deviceIDStr": "<digits>"}`.
async fn register_device(state: &Arc<SimState>, mut req: Request) -> Response {
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
            let mut ledger = state.ledger();
            *ledger.registrations.entry(caller.token.clone()).or_default() += 1;
            ledger
                .devices
                .entry(caller.token)
                .or_default()
                .insert((uuid, device_id.clone()));
            success(json!({"deviceIDStr": device_id}))
        }
        Err(rejection) => refuse(state, &req, rejection),
    }
}

/// Admits a plain JSON call of a registered device (signed over its body, or `{}`).
pub(crate) async fn admit_json_call(state: &Arc<SimState>, req: &mut Request) -> Result<Caller, Rejection> {
    admit_json_body(state, req).await.map(|(caller, _)| caller)
}

/// Admits a JSON call of a registered device, and hands back its body text.
pub(crate) async fn admit_json_body(state: &Arc<SimState>, req: &mut Request) -> Result<(Caller, String), Rejection> {
    let body = body_text(req).await?;
    let expect = Expectation {
        registering: None,
        referer_chat: None,
        event_stream: false,
        signed: SignedBody::Json(&body),
        own_query: &[],
    };
    admit(state, req, &expect).map(|caller| (caller, body))
}

/// `GET /v1/api/user/info` → `{"userInfo": {...}}`.
async fn user_info(state: &Arc<SimState>, mut req: Request) -> Response {
    let outcome = admit_json_call(state, &mut req).await;
    match outcome {
        Ok(caller) => {
            *state.ledger().user_info_calls.entry(caller.token.clone()).or_default() += 1;
            success(json!({"userInfo": {"userID": caller.query.uuid, "nickName": "sim", "isNewUser": false}}))
        }
        Err(rejection) => refuse(state, &req, rejection),
    }
}

/// `DELETE /v1/api/chat/history/<chatID>`: the conversation must be the caller's.
async fn delete_conversation(state: &Arc<SimState>, mut req: Request) -> Response {
    let chat_id = req.uri().path().trim_start_matches(HISTORY_PREFIX).to_owned();
    let outcome = admit_json_call(state, &mut req).await;
    let caller = match outcome {
        Ok(caller) => caller,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let mut ledger = state.ledger();
    ledger.delete_requests += 1;
    if ledger.failing_deletes > 0 {
        ledger.failing_deletes -= 1;
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body("simulated failure");
    }
    match ledger.conversation_owner(&chat_id) {
        Some(owner) if owner == caller.token => {
            ledger.conversations.retain(|(id, _)| *id != chat_id);
            ledger.deleted.push(chat_id);
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
