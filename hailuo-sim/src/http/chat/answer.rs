//! How the simulator plays a chat answer: the cumulative `message_result` events with torn
//! characters, heartbeats and torn writes (protocol §5.2), the faults that break a stream,
//! and the streams of a single error event or of silence.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::Response;
use serde_json::json;

use crate::fault::{Fault, RESET_PAUSE};
use crate::http::sse::{ClientGone, EventWriter, event_stream_response, event_text};
use crate::state::{SimState, StreamGuard};

/// How long a [`Fault::Hang`] stream stays silent.
const HANG_FOR: Duration = Duration::from_secs(3600);

/// A stream holding one error event (busy account, unknown conversation, a refusal).
pub(super) fn single_error_stream(guard: StreamGuard, code: i64, message: String) -> Response {
    let (mut writer, body) = EventWriter::channel(Some(guard));
    tokio::spawn(async move {
        let data = json!({"type": 2, "statusInfo": {"code": code, "message": message}, "data": {}});
        let _ = writer.event("message_result", &data.to_string()).await;
    });
    event_stream_response(body)
}

/// Headers, then silence for an hour or until the client leaves (poem's server only notices
/// a client that left when it writes, so the connection's probe watches for it).
pub(super) fn hanging_stream(state: &Arc<SimState>, peer: Option<SocketAddr>, guard: StreamGuard) -> Response {
    let (writer, body) = EventWriter::channel(Some(guard));
    let state = Arc::clone(state);
    tokio::spawn(async move {
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

/// One answer to play.
pub(super) struct AnswerPlan {
    /// The conversation answered on.
    pub chat_id: String,
    /// The id of the user's message (`send_result`).
    pub user_msg_id: String,
    /// The conversation's title, which `send_result` names on the `hailuo-intl` dialect.
    pub chat_title: Option<String>,
    /// The id of the assistant's message.
    pub msg_id: String,
    /// The whole answer.
    pub answer: String,
    /// Characters added per event.
    pub chunk_chars: usize,
    /// The pause between events.
    pub delay: Duration,
    /// The pause inside a torn event.
    pub tear_pause: Duration,
    /// The pause between the final event and the end marker.
    pub end_marker_delay: Duration,
    /// The fault this answer plays.
    pub fault: Option<Fault>,
    /// The connection to reset for a [`Fault::ResetStream`].
    pub reset: Option<(Arc<SimState>, SocketAddr)>,
}

impl AnswerPlan {
    /// Plays the answer: `send_result`, cumulative `message_result` events with torn
    /// characters, heartbeats and torn writes, the final `isEnd: 0` event and the `type: 8` end.
    pub(super) async fn play(self, mut writer: EventWriter) -> Result<(), ClientGone> {
        if matches!(self.fault, Some(Fault::MalformedEvent)) {
            writer
                .write("event: message_result\ndata: {this is not json\n\n")
                .await?;
        }
        let mut send_result = json!({"chatID": self.chat_id, "msgID": self.user_msg_id, "isNewChat": true});
        if let Some(title) = &self.chat_title {
            send_result["chatTitle"] = json!(title);
        }
        let sent = json!({
            "type": 1,
            "statusInfo": {"code": 0, "message": ""},
            "data": {"sendResult": send_result}
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
        if !self.end_marker_delay.is_zero() {
            writer.pause(self.end_marker_delay).await?;
        }
        let end = json!({"type": 8, "statusInfo": {"code": 0, "message": ""}, "data": {}});
        writer.event("close_chunk", &end.to_string()).await
    }

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
