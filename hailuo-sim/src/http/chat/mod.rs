//! `POST /v4/api/chat/msg`: checks the multipart chat request (and its `form` of attached
//! files, §7) and answers it as the upstream does, with a cumulative Server-Sent Events stream
//! written in real, sometimes torn, writes (protocol §5), or with the fault a test injected.
//!
//! A request goes through five steps: read its fields, admit it (the common checks and the
//! form), draw its fault, resolve its conversation, stream the answer. Every request that is
//! admitted is recorded once, in [`chat_message`], whatever the step that answered it.

mod answer;
mod fields;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use poem::http::{HeaderValue, StatusCode};
use poem::{Request, Response};
use serde_json::json;

use super::admission::{Expectation, SignedBody, admit, busy_envelope, envelope, refusal_envelope, refuse};
use super::files;
use super::sse::{EventWriter, event_stream_response};
use crate::fault::Fault;
use crate::ledger::AssistantMessage;
use crate::profile::Dialect;
use crate::records::{ChatRecord, FormFile};
use crate::refusal::{Refusal, RefusedCall};
use crate::replies;
use crate::state::{SimState, StreamGuard};
use crate::verify::{ChatSignedFields, Rejection};
use answer::{AnswerPlan, hanging_stream, single_error_stream};
use fields::{ChatFields, read_chat_fields};

/// `statusInfo.code` of a conversation that does not exist (for this token).
const NO_CONVERSATION_CODE: i64 = 1_200_002;

/// A chat request that passed the protocol checks.
struct AdmittedChat {
    /// The `Token` it came with.
    token: String,
    /// Its fields, as sent.
    fields: ChatFields,
    /// The files its `form` attached, in form order.
    files: Vec<FormFile>,
    /// Its `Referer` header.
    referer: String,
}

impl AdmittedChat {
    /// Whether it continues a conversation (else it starts one).
    fn continuing(&self) -> bool {
        self.fields.chat_id != "0"
    }

    /// Its record, answered on `chat_id` (`None`: no conversation was made or found, and the
    /// requested id is recorded).
    fn record(self, chat_id: Option<String>) -> ChatRecord {
        ChatRecord {
            token: self.token,
            chat_id: chat_id.unwrap_or_else(|| self.fields.chat_id.clone()),
            requested_chat_id: self.fields.chat_id,
            msg_content: self.fields.msg_content,
            form: self.fields.form,
            files: self.files,
            referer: self.referer,
        }
    }
}

/// Handles one chat request: read → admit → fault → resolve the conversation → stream.
pub(crate) async fn chat_message(state: &Arc<SimState>, req: Request) -> Response {
    let (req, mut body) = req.split();
    let fields = match read_chat_fields(&req, &mut body).await {
        Ok(fields) => fields,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let chat = match admit_chat(state, &req, fields) {
        Ok(chat) => chat,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    // A busy account refuses before anything else happens: no fault is drawn, nothing is
    // recorded as a chat (the refusals are counted apart).
    let (guard, busy) = state.open_stream(&chat.token);
    if busy {
        let reply = state.busy_reply();
        return match busy_envelope(&reply) {
            Some(response) => response,
            None => single_error_stream(guard, reply.code, reply.message),
        };
    }
    // A refusal of what the request asks comes before any conversation is made.
    let refusal = state.ledger().faults.take_refusal(RefusedCall::Chat);
    if let Some(refusal) = refusal {
        state.ledger().conversations.chats.push(chat.record(None));
        return match refusal {
            Refusal::TextTooLong => single_error_stream(guard, refusal.code(), refusal.message().to_owned()),
            _ => refusal_envelope(refusal),
        };
    }
    let fault = state.ledger().faults.next_chat_fault();
    let peer = req.remote_addr().as_socket_addr().copied();
    let (response, answered_on) = respond(state, &chat, fault, peer, guard).await;
    // The one place a chat is recorded; the response has not left yet, so a test that has
    // read it finds the record.
    state.ledger().conversations.chats.push(chat.record(answered_on));
    response
}

/// The common checks (signed over the chat's fields) and the `form` against the files this
/// token confirmed.
fn admit_chat(state: &SimState, req: &Request, fields: ChatFields) -> Result<AdmittedChat, Rejection> {
    let continuing = fields.chat_id != "0";
    let expect = Expectation {
        registering: None,
        referer_chat: continuing.then_some(fields.chat_id.as_str()),
        event_stream: true,
        signed: SignedBody::Chat(ChatSignedFields {
            character_id: &fields.character_id,
            msg_content: &fields.msg_content,
            chat_id: &fields.chat_id,
            form: fields.form.as_deref(),
        }),
        own_query: &[],
    };
    let token = admit(state, req, &expect)?.token;
    let files = match &fields.form {
        Some(form) => files::check_form(state, &token, form, &fields.msg_content)?,
        None => Vec::new(),
    };
    Ok(AdmittedChat {
        token,
        fields,
        files,
        referer: req.header("Referer").unwrap_or("").to_owned(),
    })
}

/// Answers an admitted chat under `fault`, its account's stream open (`guard`); the response
/// and the conversation it was answered on (`None` when the fault or a refusal came first).
async fn respond(
    state: &Arc<SimState>,
    chat: &AdmittedChat,
    fault: Option<Fault>,
    peer: Option<SocketAddr>,
    guard: StreamGuard,
) -> (Response, Option<String>) {
    if let Some(response) = fault.as_ref().and_then(|fault| answer_instead(state, fault, peer)) {
        return (response, None);
    }
    if let Some(Fault::LateAnswer(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    if matches!(fault, Some(Fault::Hang)) {
        return (hanging_stream(state, peer, guard), None);
    }
    let Some(chat_id) = resolve_conversation(state, chat) else {
        return (
            single_error_stream(guard, NO_CONVERSATION_CODE, "对话不存在".to_owned()),
            None,
        );
    };
    let response = stream_answer(state, chat, &chat_id, fault, peer, guard);
    (response, Some(chat_id))
}

/// The response of a fault that answers instead of a stream (before any conversation is
/// made); `None` for the faults a stream plays.
fn answer_instead(state: &SimState, fault: &Fault, peer: Option<SocketAddr>) -> Option<Response> {
    Some(match fault {
        Fault::ResetBeforeResponse => {
            // The switch fails the connection's first write of this response: not a byte of
            // it leaves, the socket closes with an RST.
            if !peer.is_some_and(|peer| state.connections.reset(peer)) {
                tracing::warn!("hailuo-sim: no connection to reset; answering 500 instead");
                return Some(
                    Response::builder()
                        .status(StatusCode::INTERNAL_SERVER_ERROR)
                        .body("simulated reset"),
                );
            }
            Response::builder().status(StatusCode::BAD_GATEWAY).body("never sent")
        }
        Fault::MalformedEnvelope => Response::builder()
            .content_type("application/json")
            .body("{\"statusInfo\":"),
        Fault::ServerError => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .content_type("text/html")
            .body("<html><body><h1>500 Internal Server Error</h1></body></html>"),
        Fault::AccountRefused => {
            let refused = Rejection::logged_out();
            envelope(refused.code, refused.message, json!({}))
        }
        _ => return None,
    })
}

/// The conversation to answer on: the one continued when it is the token's, else a new one;
/// `None` when the continued one does not exist for this token (continuing another token's
/// conversation is a violation too).
fn resolve_conversation(state: &SimState, chat: &AdmittedChat) -> Option<String> {
    if !chat.continuing() {
        let chat_id = state.new_id();
        state.ledger().conversations.open(&chat_id, &chat.token);
        return Some(chat_id);
    }
    let requested = &chat.fields.chat_id;
    let owner = state.ledger().conversations.owner(requested).map(str::to_owned);
    match owner {
        Some(owner) if owner == chat.token => Some(requested.clone()),
        Some(_) => {
            state.violation(format!(
                "POST /v4/api/chat/msg: conversation {requested} continued on a token that does not own it"
            ));
            None
        }
        None => None,
    }
}

/// Streams the answer on `chat_id` (playing a stream's fault), noting a complete answer as a
/// message `msg_tts` may speak.
fn stream_answer(
    state: &Arc<SimState>,
    chat: &AdmittedChat,
    chat_id: &str,
    fault: Option<Fault>,
    peer: Option<SocketAddr>,
    guard: StreamGuard,
) -> Response {
    let delay = match fault {
        Some(Fault::SlowChunks(delay)) => delay,
        _ => state.config.chunk_delay,
    };
    let plan = AnswerPlan {
        chat_id: chat_id.to_owned(),
        user_msg_id: state.new_id(),
        chat_title: (state.config.dialect == Dialect::HailuoIntl)
            .then(|| chat.fields.msg_content.chars().take(16).collect()),
        msg_id: state.new_id(),
        answer: replies::answer_for(&chat.fields.msg_content),
        chunk_chars: state.config.chunk_chars.max(1),
        delay,
        tear_pause: state.config.tear_pause,
        end_marker_delay: state.config.end_marker_delay,
        fault,
        reset: peer.map(|peer| (Arc::clone(state), peer)),
    };
    let broken = matches!(
        plan.fault,
        Some(Fault::ContentFiltered { .. } | Fault::CutStream { .. } | Fault::ResetStream { .. })
    );
    if !broken {
        let message = AssistantMessage {
            token: chat.token.clone(),
            chat_id: plan.chat_id.clone(),
            content: plan.answer.clone(),
            answered: Instant::now(),
        };
        state
            .ledger()
            .conversations
            .messages
            .insert(plan.msg_id.clone(), message);
    }
    let cut = matches!(plan.fault, Some(Fault::CutStream { .. }));
    let (writer, body) = EventWriter::channel(Some(guard));
    tokio::spawn(async move {
        // The client going away ends the stream early: nothing to do about it.
        let _ = plan.play(writer).await;
    });
    let mut response = event_stream_response(body);
    if cut {
        // A chunked body always ends cleanly here (the server writes the last chunk even after
        // a body error), so a cut stream promises more bytes than it sends: the connection
        // closes mid-body and the client sees a truncated response.
        response
            .headers_mut()
            .insert("Content-Length", HeaderValue::from_static("1048576"));
    }
    response
}
