//! The admission check every endpoint shares (protocol sections 1–3: token, profile query,
//! registered device, browser headers, fresh trace id, signature) and the envelopes the
//! endpoints answer with.

use poem::http::StatusCode;
use poem::{Request, Response};
use serde_json::{Value, json};

use hailuo_free_api::domain::token_expiry;

use crate::profile::Dialect;
use crate::refusal::{BusyForm, BusyReply, Refusal};
use crate::state::SimState;
use crate::verify::{self, ChatSignedFields, ProfileQuery, Rejection, VoiceSignedFields};

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
    let profile = &state.profile;
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
            let (known, forgotten) = {
                let ledger = state.ledger();
                (
                    ledger.accounts.knows(&token, &device),
                    ledger.accounts.forgot(&token, &device),
                )
            };
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
    if state.config.dialect == Dialect::MinimaxAgent {
        check_agent_identity(&token, &query)?;
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
    if state.config.dialect == Dialect::MinimaxAgent
        && let SignedBody::Json(body) = &expect.signed
    {
        check_agent_signature(req, &token, &query.unix, body)?;
    }
    match req.header("Yy") {
        Some(sent) if sent == expected => Ok(Caller { token, query }),
        Some(sent) => Err(Rejection::bad_signature(format!(
            "Yy {sent} is wrong, expected {expected}"
        ))),
        None => Err(Rejection::bad_signature("header Yy missing")),
    }
}

/// The `minimax-agent` query's `token` and `user_id` (§12.4): the token of the header, and the
/// user id its JWT payload names (`user.id`); a token that names none may be sent with any
/// (the account's own, known to the client only: `<userID>+<JWT>`, or the device's `uuid`).
fn check_agent_identity(token: &str, query: &ProfileQuery) -> Result<(), Rejection> {
    if query.token.as_deref() != Some(token) {
        return Err(Rejection::bad_parameter(format!(
            "query token {:?} is not the Token header",
            query.token.as_deref().map(|t| t.chars().take(12).collect::<String>())
        )));
    }
    let Some(expected) = token_expiry::user_id(token) else {
        return Ok(());
    };
    match query.user_id.as_deref() {
        Some(user_id) if user_id == expected => Ok(()),
        sent => Err(Rejection::bad_parameter(format!(
            "query user_id {sent:?}, the token's user is {expected:?}"
        ))),
    }
}

/// The `minimax-agent` headers of a JSON call (§12.4): `x-timestamp`, the query's `unix` in
/// seconds, and `x-signature = md5hex(x-timestamp + token + body)` (`{}` without a body).
fn check_agent_signature(req: &Request, token: &str, unix: &str, body: &str) -> Result<(), Rejection> {
    let seconds = unix.get(..unix.len().saturating_sub(3)).unwrap_or_default();
    match req.header("x-timestamp") {
        Some(sent) if sent == seconds => {}
        Some(sent) => {
            return Err(Rejection::bad_signature(format!(
                "x-timestamp {sent:?}, the query's unix says {seconds:?}"
            )));
        }
        None => return Err(Rejection::bad_signature("header x-timestamp missing")),
    }
    let signed = if body.is_empty() { "{}" } else { body };
    let expected = verify::md5hex(format!("{seconds}{token}{signed}"));
    match req.header("x-signature") {
        Some(sent) if sent == expected => Ok(()),
        Some(sent) => Err(Rejection::bad_signature(format!(
            "x-signature {sent} is wrong, expected {expected}"
        ))),
        None => Err(Rejection::bad_signature("header x-signature missing")),
    }
}

/// A JSON envelope `{"statusInfo":{"code","message"},"data"}` with HTTP 200.
pub(crate) fn envelope(code: i64, message: &str, data: Value) -> Response {
    let body = json!({"statusInfo": {"code": code, "message": message}, "data": data});
    Response::builder()
        .content_type("application/json")
        .body(body.to_string())
}

/// The envelope of `code` and `message`, with HTTP `status`.
pub(crate) fn envelope_with_status(status: StatusCode, code: i64, message: &str) -> Response {
    let mut response = envelope(code, message, json!({}));
    response.set_status(status);
    response
}

/// The answer to a request `refusal` refuses, as an envelope: HTTP 429 when it says so.
pub(crate) fn refusal_envelope(refusal: Refusal) -> Response {
    let status = if refusal.too_many_requests() {
        StatusCode::TOO_MANY_REQUESTS
    } else {
        StatusCode::OK
    };
    envelope_with_status(status, refusal.code(), refusal.message())
}

/// The HTTP status a busy refusal in `form` comes with, when it comes as an envelope; `None`
/// for an error event.
pub(crate) fn busy_status(form: BusyForm) -> Option<StatusCode> {
    match form {
        BusyForm::Event => None,
        BusyForm::Envelope => Some(StatusCode::OK),
        BusyForm::TooManyRequests => Some(StatusCode::TOO_MANY_REQUESTS),
        BusyForm::ServerError => Some(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// A busy refusal as an envelope, when `reply` is one.
pub(crate) fn busy_envelope(reply: &BusyReply) -> Option<Response> {
    busy_status(reply.form).map(|status| envelope_with_status(status, reply.code, &reply.message))
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

/// Admits a plain JSON call of a registered device (signed over its body, or `{}`).
pub(crate) async fn admit_json_call(state: &SimState, req: &mut Request) -> Result<Caller, Rejection> {
    admit_json_body(state, req).await.map(|(caller, _)| caller)
}

/// Admits a JSON call of a registered device, and hands back its body text.
pub(crate) async fn admit_json_body(state: &SimState, req: &mut Request) -> Result<(Caller, String), Rejection> {
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
