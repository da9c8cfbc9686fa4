//! `POST /v4/api/chat/msg`: checks the multipart chat request (and its `form` of attached
//! files, §7) and answers it as the upstream does, with a cumulative Server-Sent Events stream
//! written in real, sometimes torn, writes (protocol §5), or with the fault a test injected.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use poem::http::StatusCode;
use poem::web::Multipart;
use poem::{Body, FromRequest, Request, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::files;
use super::routes::{Expectation, SignedBody, admit, envelope, refuse};
use super::state::{AssistantMessage, SimState, StreamGuard};
use super::verify::{self, ChatSignedFields, Rejection};
use super::{ChatRecord, Fault, RESET_PAUSE, Simulator};

/// How long a [`Fault::Hang`] stream stays silent.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// The fields of a chat request, as sent.
struct ChatFields {
    character_id: String,
    msg_content: String,
    chat_id: String,
    form: Option<String>,
}

/// Handles one chat request.
pub(crate) async fn chat_message(state: &Arc<SimState>, req: Request) -> Response {
    let (req, mut body) = req.split();
    let fields = match read_chat_fields(&req, &mut body).await {
        Ok(fields) => fields,
        Err(rejection) => return refuse(state, &req, rejection),
    };
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
    let caller = match admit(state, &req, &expect) {
        Ok(caller) => caller,
        Err(rejection) => return refuse(state, &req, rejection),
    };
    let token = caller.token;
    let attached = match &fields.form {
        Some(form) => match files::check_form(state, &token, form, &fields.msg_content) {
            Ok(attached) => attached,
            Err(rejection) => return refuse(state, &req, rejection),
        },
        None => Vec::new(),
    };
    let record = |chat_id: &str| ChatRecord {
        token: token.clone(),
        chat_id: chat_id.to_owned(),
        requested_chat_id: fields.chat_id.clone(),
        msg_content: fields.msg_content.clone(),
        form: fields.form.clone(),
        files: attached.clone(),
        referer: req.header("Referer").unwrap_or("").to_owned(),
    };
    let fault = state.ledger().next_fault();
    let peer = req.remote_addr().as_socket_addr().copied();

    match fault {
        Some(Fault::ResetBeforeResponse) => {
            state.ledger().chats.push(record(&fields.chat_id));
            // The switch fails the connection's first write of this response: not a byte of
            // it leaves, the socket closes with an RST.
            if !peer.is_some_and(|peer| state.connections.reset(peer)) {
                tracing::warn!("hailuo-sim: no connection to reset; answering 500 instead");
                return Response::builder()
                    .status(StatusCode::INTERNAL_SERVER_ERROR)
                    .body("simulated reset");
            }
            return Response::builder().status(StatusCode::BAD_GATEWAY).body("never sent");
        }
        Some(Fault::MalformedEnvelope) => {
            state.ledger().chats.push(record(&fields.chat_id));
            return Response::builder()
                .content_type("application/json")
                .body("{\"statusInfo\":");
        }
        Some(Fault::ServerError) => {
            state.ledger().chats.push(record(&fields.chat_id));
            return Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .content_type("text/html")
                .body("<html><body><h1>500 Internal Server Error</h1></body></html>");
        }
        Some(Fault::AccountRefused) => {
            state.ledger().chats.push(record(&fields.chat_id));
            let refused = Rejection::logged_out();
            return envelope(refused.code, refused.message, json!({}));
        }
        _ => {}
    }

    if let Some(Fault::LateAnswer(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    let (guard, already_open) = state.open_stream(&token);
    if already_open > 0 {
        state.ledger().chats.push(record(&fields.chat_id));
        return single_error_stream(guard, 1_200_009, "上一条回复还未结束");
    }
    if matches!(fault, Some(Fault::Hang)) {
        state.ledger().chats.push(record(&fields.chat_id));
        return hanging_stream(state, peer, guard);
    }

    let chat_id = {
        let mut ledger = state.ledger();
        if continuing {
            let owner = ledger.conversation_owner(&fields.chat_id).map(str::to_owned);
            match owner {
                Some(owner) if owner == token => {}
                Some(_) => {
                    ledger.chats.push(record(&fields.chat_id));
                    drop(ledger);
                    state.violation(format!(
                        "POST /v4/api/chat/msg: conversation {} continued on a token that does not own it",
                        fields.chat_id
                    ));
                    return single_error_stream(guard, 1_200_002, "对话不存在");
                }
                None => {
                    ledger.chats.push(record(&fields.chat_id));
                    return single_error_stream(guard, 1_200_002, "对话不存在");
                }
            }
            fields.chat_id.clone()
        } else {
            let chat_id = state.new_id();
            ledger.conversations.push((chat_id.clone(), token.clone()));
            ledger.created.push((chat_id.clone(), token.clone()));
            chat_id
        }
    };
    state.ledger().chats.push(record(&chat_id));

    let delay = match fault {
        Some(Fault::SlowChunks(delay)) => delay,
        _ => state.config.chunk_delay,
    };
    let plan = AnswerPlan {
        chat_id,
        user_msg_id: state.new_id(),
        msg_id: state.new_id(),
        answer: Simulator::answer_for(&fields.msg_content),
        chunk_chars: state.config.chunk_chars.max(1),
        delay,
        tear_pause: state.config.tear_pause,
        fault,
        reset: peer.map(|peer| (Arc::clone(state), peer)),
    };
    // A complete answer is a message the account can have spoken (`msg_tts`).
    if !matches!(
        plan.fault,
        Some(Fault::ContentFiltered { .. } | Fault::CutStream { .. } | Fault::ResetStream { .. })
    ) {
        state.ledger().messages.insert(
            plan.msg_id.clone(),
            AssistantMessage {
                token: token.clone(),
                chat_id: plan.chat_id.clone(),
                content: plan.answer.clone(),
            },
        );
    }
    let cut = matches!(plan.fault, Some(Fault::CutStream { .. }));
    let (writer, body) = EventWriter::channel();
    tokio::spawn(async move {
        let _guard = guard;
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
            .insert("Content-Length", poem::http::HeaderValue::from_static("1048576"));
    }
    response
}

/// Reads and checks the multipart fields (§5): exactly the known text fields, none empty.
async fn read_chat_fields(req: &Request, body: &mut poem::RequestBody) -> Result<ChatFields, Rejection> {
    let mut multipart = Multipart::from_request(req, body)
        .await
        .map_err(|err| Rejection::bad_parameter(format!("chat body is not multipart/form-data: {err}")))?;
    let (mut character_id, mut msg_content, mut chat_id, mut search_mode, mut form) = (None, None, None, None, None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => {
                return Err(Rejection::bad_parameter(format!("broken multipart body: {err}")));
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        if let Some(file_name) = field.file_name() {
            return Err(Rejection::bad_parameter(format!(
                "chat field {name} is a file part ({file_name}); none expected"
            )));
        }
        let value = field
            .text()
            .await
            .map_err(|err| Rejection::bad_parameter(format!("chat field {name} unreadable: {err}")))?;
        if value.is_empty() {
            return Err(Rejection::bad_parameter(format!(
                "chat field {name} is empty; empty fields are not sent"
            )));
        }
        let slot = match name.as_str() {
            "characterID" => &mut character_id,
            "msgContent" => &mut msg_content,
            "chatID" => &mut chat_id,
            "searchMode" => &mut search_mode,
            "form" => &mut form,
            other => {
                return Err(Rejection::bad_parameter(format!("unknown chat field {other:?}")));
            }
        };
        if slot.replace(value).is_some() {
            return Err(Rejection::bad_parameter(format!("chat field {name} sent twice")));
        }
    }
    let required = |value: Option<String>, name: &str| {
        value.ok_or_else(|| Rejection::bad_parameter(format!("chat field {name} missing")))
    };
    let fields = ChatFields {
        character_id: required(character_id, "characterID")?,
        msg_content: required(msg_content, "msgContent")?,
        chat_id: required(chat_id, "chatID")?,
        form,
    };
    let search_mode = required(search_mode, "searchMode")?;
    if fields.character_id != "1" {
        return Err(Rejection::bad_parameter(format!(
            "characterID {:?}, expected \"1\"",
            fields.character_id
        )));
    }
    if search_mode != "0" {
        return Err(Rejection::bad_parameter(format!(
            "searchMode {search_mode:?}, expected \"0\""
        )));
    }
    if fields.chat_id != "0" && !verify::is_conversation_id(&fields.chat_id) {
        return Err(Rejection::bad_parameter(format!(
            "chatID {:?} is neither \"0\" nor an 18+ digit id",
            fields.chat_id
        )));
    }
    if let Some(form) = &fields.form
        && !serde_json::from_str::<Value>(form).is_ok_and(|value| value.is_array())
    {
        return Err(Rejection::bad_parameter(format!("form {form:?} is not a JSON array")));
    }
    Ok(fields)
}

/// The `text/event-stream` response over a channel-fed body.
pub(crate) fn event_stream_response(body: Body) -> Response {
    Response::builder()
        .content_type("text/event-stream")
        .header("Cache-Control", "no-cache")
        .body(body)
}

/// A stream holding one error event (busy account, unknown conversation).
fn single_error_stream(guard: StreamGuard, code: i64, message: &'static str) -> Response {
    let (mut writer, body) = EventWriter::channel();
    tokio::spawn(async move {
        let _guard = guard;
        let data = json!({"type": 2, "statusInfo": {"code": code, "message": message}, "data": {}});
        let _ = writer.event("message_result", &data.to_string()).await;
    });
    event_stream_response(body)
}

/// Headers, then silence for an hour or until the client leaves (poem's server only notices
/// a client that left when it writes, so the connection's probe watches for it).
fn hanging_stream(state: &Arc<SimState>, peer: Option<SocketAddr>, guard: StreamGuard) -> Response {
    let (writer, body) = EventWriter::channel();
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let _guard = guard;
        let gone = async {
            match peer {
                Some(peer) => state.connections.client_gone(peer).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = writer.pause(HANG_FOR) => {}
            () = gone => {}
        }
    });
    event_stream_response(body)
}

/// The client closed the stream.
pub(crate) struct ClientGone;

/// One SSE event as the upstream writes it.
fn event_text(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Writes SSE bytes into the response body, one real write per chunk.
pub(crate) struct EventWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl EventWriter {
    /// A writer and the body it feeds.
    pub(crate) fn channel() -> (Self, Body) {
        let (tx, rx) = mpsc::channel(4);
        (Self { tx }, Body::from_bytes_stream(ReceiverStream::new(rx)))
    }

    async fn write(&self, bytes: impl Into<Bytes>) -> Result<(), ClientGone> {
        self.tx.send(Ok(bytes.into())).await.map_err(|_| ClientGone)
    }

    /// Waits, or stops early when the client goes away.
    pub(crate) async fn pause(&self, delay: Duration) -> Result<(), ClientGone> {
        if delay.is_zero() {
            tokio::task::yield_now().await;
            return if self.tx.is_closed() { Err(ClientGone) } else { Ok(()) };
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.tx.closed() => Err(ClientGone),
        }
    }

    /// Writes one event, whole.
    pub(crate) async fn event(&mut self, name: &str, data: &str) -> Result<(), ClientGone> {
        self.write(event_text(name, data)).await
    }

    /// Writes one event in two writes `pause` apart, split inside a multi-byte character when
    /// it has one (else in the middle). A zero pause only yields between the two writes.
    pub(crate) async fn torn_event(&mut self, name: &str, data: &str, pause: Duration) -> Result<(), ClientGone> {
        let text = event_text(name, data);
        let split_at = text
            .char_indices()
            .find(|(_, c)| c.len_utf8() > 1)
            .map_or(text.len() / 2, |(index, _)| index + 1);
        let bytes = Bytes::from(text);
        self.write(bytes.slice(..split_at)).await?;
        self.pause(pause).await?;
        self.write(bytes.slice(split_at..)).await
    }

    /// Breaks the connection: the body ends before its declared length (see the `CutStream`
    /// response), so no clean end reaches the client. It waits [`RESET_PAUSE`] first: the
    /// server drops what it has not flushed when a body fails, and the upstream's bytes before
    /// a break (its `send_result` above all) do reach the client.
    async fn cut(&self) {
        if self.pause(RESET_PAUSE).await.is_err() {
            return;
        }
        let _ = self
            .tx
            .send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "simulated cut")))
            .await;
    }
}

/// One answer to play.
struct AnswerPlan {
    chat_id: String,
    user_msg_id: String,
    msg_id: String,
    answer: String,
    chunk_chars: usize,
    delay: Duration,
    /// The pause inside a torn event.
    tear_pause: Duration,
    fault: Option<Fault>,
    /// The connection to reset for a [`Fault::ResetStream`].
    reset: Option<(Arc<SimState>, SocketAddr)>,
}

impl AnswerPlan {
    /// Plays the answer: `send_result`, cumulative `message_result` events with torn
    /// characters, heartbeats and torn writes, the final `isEnd: 0` event and the `type: 8` end.
    async fn play(self, mut writer: EventWriter) -> Result<(), ClientGone> {
        if matches!(self.fault, Some(Fault::MalformedEvent)) {
            writer
                .write("event: message_result\ndata: {this is not json\n\n")
                .await?;
        }
        let sent = json!({
            "type": 1,
            "statusInfo": {"code": 0, "message": ""},
            "data": {"sendResult": {"chatID": self.chat_id, "msgID": self.user_msg_id, "isNewChat": true}}
        });
        writer.event("send_result", &sent.to_string()).await?;

        let chars: Vec<char> = self.answer.chars().collect();
        let mut shown = 0;
        let mut events = 0;
        while shown < chars.len() {
            match self.fault {
                Some(Fault::ContentFiltered { after_events }) if events == after_events => {
                    return writer.event("message_result", &content_filtered()).await;
                }
                Some(Fault::CutStream { after_events }) if events == after_events => {
                    writer.cut().await;
                    return Ok(());
                }
                Some(Fault::ResetStream { after_events }) if events == after_events => {
                    return self.reset(&writer).await;
                }
                _ => {}
            }
            if events > 0 {
                writer.pause(self.delay).await?;
            }
            events += 1;
            let next = (shown + self.chunk_chars).min(chars.len());
            let mut content: String = chars[..next].iter().collect();
            let final_event = next == chars.len();
            // Every second event whose next character is multi-byte stops inside it, as the
            // upstream does; the cut character comes back whole in the next event.
            let torn = events % 2 == 0 && !final_event && chars[next].len_utf8() > 1;
            if torn {
                content.push('\u{FFFD}');
            }
            let data = json!({
                "type": 2,
                "statusInfo": {"code": 0, "message": ""},
                "data": {"messageResult": {
                    "chatID": self.chat_id,
                    "msgID": self.msg_id,
                    "isEnd": if final_event { 0 } else { 1 },
                    "content": content,
                    "extra": {}
                }}
            });
            let data = data.to_string();
            if events % 2 == 1 {
                writer.torn_event("message_result", &data, self.tear_pause).await?;
            } else {
                writer.event("message_result", &data).await?;
            }
            shown = next;
            if events % 3 == 0 {
                writer.event("message_result", &heartbeat()).await?;
            }
        }
        match self.fault {
            Some(Fault::CutStream { .. }) => {
                writer.cut().await;
                return Ok(());
            }
            Some(Fault::ResetStream { .. }) => return self.reset(&writer).await,
            Some(Fault::ContentFiltered { .. }) => {
                return writer.event("message_result", &content_filtered()).await;
            }
            _ => {}
        }
        let end = json!({"type": 8, "statusInfo": {"code": 0, "message": ""}, "data": {}});
        writer.event("close_chunk", &end.to_string()).await
    }
}

impl AnswerPlan {
    /// Resets the connection [`RESET_PAUSE`] after what was written, so the client has read it;
    /// the next write (a heartbeat that never leaves) trips the reset.
    async fn reset(&self, writer: &EventWriter) -> Result<(), ClientGone> {
        writer.pause(RESET_PAUSE).await?;
        match &self.reset {
            Some((state, peer)) if state.connections.reset(*peer) => {
                writer.write(event_text("message_result", &heartbeat())).await
            }
            // No connection to reset (not over TCP): break it as a cut does.
            _ => {
                writer.cut().await;
                Ok(())
            }
        }
    }
}

/// A heartbeat event's data.
fn heartbeat() -> String {
    json!({"type": 3, "statusInfo": {"code": 1_200_010, "message": "心跳"}, "data": {}}).to_string()
}

/// The error event of a filtered answer.
fn content_filtered() -> String {
    json!({
        "type": 2,
        "statusInfo": {"code": 1_500_001, "message": "内容涉及敏感信息，请修改后重试"},
        "data": {}
    })
    .to_string()
}
