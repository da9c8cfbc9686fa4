//! The `minimax-agent` chat endpoints (§12.4): `send_msg` starts an answer that grows with
//! time at the simulator's chunk pace, `get_chat_detail` shows the conversation's messages as
//! they are at the moment of the poll, and `delete_chat` refuses with `chat is running` while
//! an answer is being generated. They answer the `base_resp` envelope, and every request
//! passes the common checks with the agent's `x-timestamp` and `x-signature` headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::{Request, Response};
use serde_json::{Value, json};

mod body;

use super::admission::{Expectation, SignedBody, admit, admit_json_body, body_text, busy_status};
use crate::fault::Fault;
use crate::ledger::{AgentTurn, AssistantMessage, PollFault};
use crate::records::ChatRecord;
use crate::refusal::RefusedCall;
use crate::replies;
use crate::state::SimState;
use crate::verify::Rejection;
use body::{chat_id_of, check_send_body, parse_body};

/// `status_msg` of a busy account, and of a deletion while an answer is generated.
pub(crate) const CHAT_RUNNING: &str = "chat is running";
/// `status_code` of [`CHAT_RUNNING`].
const CHAT_RUNNING_CODE: i64 = 1_200_009;
/// `status_code` of a conversation that does not exist (for this token).
const NO_CONVERSATION_CODE: i64 = 1_200_002;
/// How long a [`Fault::Hang`] holds `send_msg` without an answer.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// A `base_resp` answer: `body` with `{"base_resp":{"status_code","status_msg"}}`.
fn base_resp(code: i64, message: &str, mut body: Value) -> Response {
    body["base_resp"] = json!({"status_code": code, "status_msg": message});
    Response::builder()
        .content_type("application/json")
        .body(body.to_string())
}

/// A `base_resp` refusal with HTTP `status`.
fn base_resp_with_status(status: StatusCode, code: i64, message: &str) -> Response {
    let mut response = base_resp(code, message, json!({}));
    response.set_status(status);
    response
}

/// The success answer.
fn success(body: Value) -> Response {
    base_resp(0, "success", body)
}

/// Answers a rejection in the `base_resp` envelope, recording its violation.
fn refuse(state: &SimState, req: &Request, rejection: Rejection) -> Response {
    if let Some(what) = rejection.violation {
        let token = req.header("Token").unwrap_or("");
        let short: String = token.chars().take(12).collect();
        state.violation(format!("POST {} (token {short:?}): {what}", req.uri().path()));
    }
    base_resp(rejection.code, rejection.message, json!({}))
}

/// `POST /matrix/api/v1/chat/send_msg` → `{"chat_id", "msg_id", "base_resp"}`.
pub(crate) async fn send_msg(state: &Arc<SimState>, mut req: Request) -> Response {
    let admitted = async {
        let text = body_text(&mut req).await?;
        let body = parse_body(&text)?;
        // A continued conversation is sent from its page, as on the other dialects.
        let continued = chat_id_of(&body);
        let expect = Expectation {
            registering: None,
            referer_chat: continued.as_deref(),
            event_stream: false,
            signed: SignedBody::Json(&text),
            own_query: &[],
        };
        let caller = admit(state, &req, &expect)?;
        let message = check_send_body(state, &caller.token, &body)?;
        Ok::<_, Rejection>((caller.token, message))
    }
    .await;
    let (token, message) = match admitted {
        Ok(admitted) => admitted,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let (mut guard, busy) = state.open_stream(&token);
    if busy {
        // Every form of the agent's refusal is its `base_resp`; the status may differ.
        return match &state.config.busy_reply {
            Some(reply) => base_resp_with_status(
                busy_status(reply.form).unwrap_or(StatusCode::OK),
                reply.code,
                &reply.message,
            ),
            None => base_resp(CHAT_RUNNING_CODE, CHAT_RUNNING, json!({})),
        };
    }
    let fault = state.ledger().faults.next_chat_fault();
    let peer = req.remote_addr().as_socket_addr().copied();
    let referer = req.header("Referer").unwrap_or("").to_owned();
    let record = |chat_id: &str| ChatRecord {
        token: token.clone(),
        chat_id: chat_id.to_owned(),
        requested_chat_id: message.chat_id.clone().unwrap_or_else(|| "0".to_owned()),
        msg_content: message.text.clone(),
        form: None,
        files: message.files.clone(),
        referer: referer.clone(),
    };
    // Every admitted message is recorded once, whatever answered it; a fault or a refusal
    // that answers instead records the conversation asked for.
    let requested = message.chat_id.clone().unwrap_or_else(|| "0".to_owned());
    let refusal = state.ledger().faults.take_refusal(RefusedCall::Chat);
    if let Some(refusal) = refusal {
        state.ledger().conversations.chats.push(record(&requested));
        let status = if refusal.too_many_requests() {
            StatusCode::TOO_MANY_REQUESTS
        } else {
            StatusCode::OK
        };
        return base_resp_with_status(status, refusal.code(), refusal.message());
    }
    if let Some(response) = answer_instead(state, fault.as_ref(), peer).await {
        state.ledger().conversations.chats.push(record(&requested));
        return response;
    }
    let chat_id = match &message.chat_id {
        None => {
            let chat_id = state.new_id();
            state.ledger().conversations.open(&chat_id, &token);
            chat_id
        }
        Some(requested) => {
            let owner = state.ledger().conversations.owner(requested).map(str::to_owned);
            match owner {
                Some(owner) if owner == token => requested.clone(),
                other => {
                    if other.is_some() {
                        state.violation(format!(
                            "POST /matrix/api/v1/chat/send_msg: conversation {requested} continued on a token that does not own it"
                        ));
                    }
                    state.ledger().conversations.chats.push(record(requested));
                    return base_resp(NO_CONVERSATION_CODE, "对话不存在", json!({}));
                }
            }
        }
    };
    let turn = new_turn(state, &message.text, fault.as_ref());
    let (msg_id, user_msg_id, ends_at) = (turn.msg_id.clone(), turn.user_msg_id.clone(), turn.ends_at());
    {
        let mut ledger = state.ledger();
        let conversations = &mut ledger.conversations;
        if turn.filtered_after.is_none() && turn.poll_fault.is_none() {
            let content = turn.answer.iter().collect();
            let answered = AssistantMessage {
                token: token.clone(),
                chat_id: chat_id.clone(),
                content,
                answered: Instant::now(),
            };
            conversations.messages.insert(msg_id, answered);
        }
        conversations.turns.entry(chat_id.clone()).or_default().push(turn);
        conversations.chats.push(record(&chat_id));
    }
    // The account is busy until the answer is generated, whoever polls it.
    tokio::spawn(async move {
        tokio::time::sleep_until(ends_at.into()).await;
        guard.ended();
        drop(guard);
    });
    success(json!({"chat_id": id_number(&chat_id), "msg_id": id_number(&user_msg_id)}))
}

/// An id as a JSON number when it is one.
fn id_number(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |number| json!(number))
}

/// The answer of a fault that comes instead of `send_msg`'s (before any conversation is
/// made); `None` for the faults the answer plays, after the pause of a late one.
async fn answer_instead(state: &Arc<SimState>, fault: Option<&Fault>, peer: Option<SocketAddr>) -> Option<Response> {
    Some(match fault? {
        Fault::ResetBeforeResponse => {
            if !peer.is_some_and(|peer| state.connections.reset(peer)) {
                tracing::warn!("hailuo-sim: no connection to reset; answering 500 instead");
                return Some(server_error());
            }
            Response::builder().status(StatusCode::BAD_GATEWAY).body("never sent")
        }
        Fault::MalformedEnvelope => Response::builder()
            .content_type("application/json")
            .body("{\"base_resp\":"),
        Fault::ServerError => server_error(),
        Fault::AccountRefused => {
            let refused = Rejection::logged_out();
            base_resp(refused.code, refused.message, json!({}))
        }
        Fault::Hang => {
            let gone = async {
                match peer {
                    Some(peer) => state.connections.client_gone(peer).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(HANG_FOR) => {}
                () = gone => {}
            }
            server_error()
        }
        Fault::LateAnswer(delay) => {
            tokio::time::sleep(*delay).await;
            return None;
        }
        _ => return None,
    })
}

/// HTTP 500 with a non-JSON body.
fn server_error() -> Response {
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .content_type("text/html")
        .body("<html><body><h1>500 Internal Server Error</h1></body></html>")
}

/// The turn answering `text`, playing the answer's part of `fault`.
fn new_turn(state: &SimState, text: &str, fault: Option<&Fault>) -> AgentTurn {
    let (filtered_after, poll_fault) = match fault {
        Some(Fault::ContentFiltered { after_events }) => (Some(*after_events), None),
        Some(Fault::CutStream { after_events }) => (None, Some((*after_events, PollFault::ServerError))),
        Some(Fault::ResetStream { after_events }) => (None, Some((*after_events, PollFault::Reset))),
        Some(Fault::MalformedEvent) => (None, Some((0, PollFault::NotJson))),
        _ => (None, None),
    };
    let delay = match fault {
        Some(Fault::SlowChunks(delay)) => *delay,
        _ => state.config.chunk_delay,
    };
    AgentTurn {
        user_msg_id: state.new_id(),
        text: text.to_owned(),
        msg_id: state.new_id(),
        answer: replies::answer_for(text).chars().collect(),
        started: Instant::now(),
        chunk_chars: state.config.chunk_chars.max(1),
        delay,
        filtered_after,
        poll_fault,
    }
}

/// Admits a signed matrix call whose JSON body names a `chat_id` (`endpoint` names the call in
/// a rejection): the caller's token and the conversation.
async fn admit_chat_call(
    state: &Arc<SimState>,
    req: &mut Request,
    endpoint: &str,
) -> Result<(String, String), Rejection> {
    let (caller, body) = admit_json_body(state, req).await?;
    let chat_id = chat_id_of(&parse_body(&body)?)
        .ok_or_else(|| Rejection::bad_parameter(format!("{endpoint} body {body:?} has no chat_id")))?;
    Ok((caller.token, chat_id))
}

/// `POST /matrix/api/v1/chat/get_chat_detail {"chat_id"}` → `{"messages": [...], "base_resp"}`.
pub(crate) async fn get_chat_detail(state: &Arc<SimState>, mut req: Request) -> Response {
    let (token, chat_id) = match admit_chat_call(state, &mut req, "get_chat_detail").await {
        Ok(admitted) => admitted,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let now = Instant::now();
    let mut ledger = state.ledger();
    ledger.conversations.detail_polls += 1;
    if ledger.conversations.owner(&chat_id) != Some(token.as_str()) {
        return base_resp(NO_CONVERSATION_CODE, "对话不存在", json!({}));
    }
    let end_marker = state.config.agent_end_marker.clone();
    let Some(turns) = ledger.conversations.turns.get_mut(&chat_id) else {
        return success(json!({"messages": []}));
    };
    if let Some(fault) = turns.last_mut().and_then(|turn| turn.take_poll_fault(now)) {
        drop(ledger);
        return play_poll_fault(state, &req, fault);
    }
    if turns.last().is_some_and(|turn| turn.filtered(now)) {
        return base_resp(1_500_001, "内容涉及敏感信息，请修改后重试", json!({}));
    }
    let mut messages = Vec::new();
    for turn in turns.iter() {
        messages.push(json!({"msg_id": id_number(&turn.user_msg_id), "msg_type": 1, "msg_content": turn.text}));
        if let Some(content) = turn.content_at(now) {
            let mut answer = json!({"msg_id": id_number(&turn.msg_id), "msg_type": 2, "msg_content": content});
            if let Some(marker) = &end_marker {
                answer[marker.as_str()] = json!(!turn.generating(now));
            }
            messages.push(answer);
        }
    }
    success(json!({"chat_id": id_number(&chat_id), "messages": messages}))
}

/// Answers a poll with its fault.
fn play_poll_fault(state: &SimState, req: &Request, fault: PollFault) -> Response {
    match fault {
        PollFault::ServerError => server_error(),
        PollFault::NotJson => Response::builder()
            .content_type("application/json")
            .body("{this is not json"),
        PollFault::Reset => {
            let peer = req.remote_addr().as_socket_addr().copied();
            if peer.is_some_and(|peer| state.connections.reset(peer)) {
                Response::builder().status(StatusCode::BAD_GATEWAY).body("never sent")
            } else {
                server_error()
            }
        }
    }
}

/// `POST /matrix/api/v1/chat/delete_chat {"chat_id"}`: refused with `chat is running` while
/// the conversation's answer is generated.
pub(crate) async fn delete_chat(state: &Arc<SimState>, mut req: Request) -> Response {
    let (token, chat_id) = match admit_chat_call(state, &mut req, "delete_chat").await {
        Ok(admitted) => admitted,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let now = Instant::now();
    let mut ledger = state.ledger();
    ledger.conversations.delete_requests += 1;
    if ledger.faults.take_failing_delete() {
        return server_error();
    }
    let running = ledger
        .conversations
        .turns
        .get(&chat_id)
        .and_then(|turns| turns.last())
        .is_some_and(|turn| turn.generating(now));
    match ledger.conversations.owner(&chat_id) {
        Some(owner) if owner == token => {
            if running {
                ledger.conversations.running_deletes += 1;
                return base_resp(CHAT_RUNNING_CODE, CHAT_RUNNING, json!({}));
            }
            ledger.conversations.delete(chat_id);
            success(json!({}))
        }
        Some(_) => {
            drop(ledger);
            refuse(
                state,
                &req,
                Rejection::violation(
                    NO_CONVERSATION_CODE,
                    "对话不存在",
                    format!("conversation {chat_id} belongs to another token"),
                ),
            )
        }
        None => base_resp(NO_CONVERSATION_CODE, "对话不存在", json!({})),
    }
}
