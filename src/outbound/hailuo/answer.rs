//! Decoding the chat answer stream (protocol §5.2): a pure state machine fed with parsed
//! Server-Sent Events, and the lazy stream that runs a byte stream through the SSE parser
//! and the decoder.

use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

use crate::domain::chat::{AnswerDelta, ConversationId};
use crate::domain::ports::{AnswerStream, ProviderError};

/// The name of the events that carry the answer.
pub const MESSAGE_RESULT_EVENT: &str = "message_result";
/// The `type` of a heartbeat or notice, ignored whatever its code.
const HEARTBEAT_TYPE: i64 = 3;
/// The `type` that ends the stream.
const END_TYPE: i64 = 8;
/// Where the upstream cut a multi-byte character; the rest comes in a later event.
const CUT_MARK: char = '\u{FFFD}';

/// One `data:` payload of the answer stream; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AnswerEvent {
    #[serde(rename = "type")]
    kind: Option<i64>,
    #[serde(rename = "statusInfo")]
    status_info: Option<StatusInfo>,
    data: Option<AnswerData>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct StatusInfo {
    code: Value,
    message: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AnswerData {
    #[serde(rename = "messageResult")]
    message_result: Option<MessageResult>,
    #[serde(rename = "sendResult")]
    send_result: Option<SendResult>,
}

/// The first event's `sendResult`: the conversation is known (made) from here on.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SendResult {
    #[serde(rename = "chatID")]
    chat_id: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MessageResult {
    #[serde(rename = "chatID")]
    chat_id: Value,
    #[serde(rename = "msgID")]
    msg_id: Value,
    #[serde(rename = "isEnd")]
    is_end: Option<i64>,
    content: Option<String>,
}

/// Turns the events of one answer into deltas: tracks how much of the cumulative content was
/// already emitted, and whether the answer is complete.
#[derive(Debug, Default)]
pub struct AnswerDecoder {
    conversation: Option<ConversationId>,
    message_id: String,
    /// How many characters of the cumulative content were emitted so far.
    emitted_chars: usize,
    finished: bool,
}

impl AnswerDecoder {
    /// A decoder at the start of an answer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the final event was seen.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Feeds one event (its name and its `data`) and returns the delta it yields, if any;
    /// a `send_result` naming the conversation yields an empty opening delta, the last delta
    /// has `finished` set, and events after it are ignored.
    ///
    /// # Errors
    /// [`ProviderError::Refused`] for an error event (non-zero code outside heartbeats),
    /// [`ProviderError::BadResponse`] for an answer without a `chatID`; garbled events are skipped.
    pub fn feed(&mut self, event: &str, data: &str) -> Result<Option<AnswerDelta>, ProviderError> {
        if self.finished {
            return Ok(None);
        }
        let is_answer = event == MESSAGE_RESULT_EVENT;
        let parsed: AnswerEvent = match serde_json::from_str(data) {
            Ok(parsed) => parsed,
            // Content is cumulative, so the next answer event carries whatever this one had:
            // skipping a garbled event loses nothing, and a stream of nothing but garbage still
            // fails for want of its final event.
            Err(error) => {
                if is_answer {
                    tracing::warn!(%error, "skipped an answer event that is not the expected JSON");
                }
                return Ok(None);
            }
        };
        if parsed.kind == Some(HEARTBEAT_TYPE) {
            return Ok(None);
        }
        if let Some(status) = &parsed.status_info
            && !is_zero_code(&status.code)
        {
            let message = match status.message.as_deref().map(str::trim) {
                Some(message) if !message.is_empty() => message.to_owned(),
                _ => format!("upstream error code {}", status.code),
            };
            return Err(super::request::known_refusal(&code_text(&status.code), &message)
                .unwrap_or_else(|| ProviderError::refused(message)));
        }

        let ends_stream = parsed.kind == Some(END_TYPE);
        let (result, sent) = match parsed.data {
            Some(data) => (data.message_result, data.send_result),
            None => (None, None),
        };
        // The conversation exists upstream from `send_result` on, before any content: say so
        // at once with an empty delta, so it is cleaned up even when the answer fails.
        if self.conversation.is_none()
            && let Some(id) = sent.and_then(|sent| id_text(&sent.chat_id))
        {
            let conversation = ConversationId::from_upstream(id);
            self.conversation = Some(conversation.clone());
            return Ok(Some(AnswerDelta {
                conversation,
                message_id: String::new(),
                text: String::new(),
                finished: false,
            }));
        }
        let mut text = String::new();
        let mut is_final = ends_stream;
        if let Some(result) = result.filter(|_| is_answer || ends_stream) {
            if let Some(id) = id_text(&result.chat_id) {
                self.conversation = Some(ConversationId::from_upstream(id));
            }
            if let Some(id) = id_text(&result.msg_id) {
                self.message_id = id;
            }
            is_final |= result.is_end == Some(0);
            if let Some(content) = result.content.as_deref() {
                text = self.take_new_text(content, is_final);
            }
        }
        if !is_final && text.is_empty() {
            return Ok(None);
        }
        let Some(conversation) = self.conversation.clone() else {
            return Err(ProviderError::BadResponse {
                message: "the answer carries no chatID".to_owned(),
            });
        };
        self.finished = is_final;
        Ok(Some(AnswerDelta {
            conversation,
            message_id: self.message_id.clone(),
            text,
            finished: is_final,
        }))
    }

    /// Checks the answer is complete once the stream has ended.
    ///
    /// # Errors
    /// [`ProviderError::Unavailable`] when the stream ended before the final event.
    pub fn finish(&self) -> Result<(), ProviderError> {
        if self.finished {
            Ok(())
        } else {
            Err(ProviderError::Unavailable {
                message: "the answer stream ended early".to_owned(),
            })
        }
    }

    /// The part of the cumulative `content` past what was emitted. Text from the first
    /// U+FFFD on waits for a later event, except in the final one where nothing comes later.
    fn take_new_text(&mut self, content: &str, is_final: bool) -> String {
        let visible = match content.find(CUT_MARK) {
            Some(cut) if !is_final => &content[..cut],
            _ => content,
        };
        let text: String = visible.chars().skip(self.emitted_chars).collect();
        self.emitted_chars += text.chars().count();
        text
    }
}

/// Whether an upstream status code is success (`0`, as a number or as text).
/// A code as text: `1003` and `"1003"` alike.
fn code_text(code: &Value) -> String {
    match code {
        Value::String(text) => text.trim().to_owned(),
        other => other.to_string(),
    }
}

fn is_zero_code(code: &Value) -> bool {
    match code {
        Value::Number(number) => number.as_i64() == Some(0) || number.as_u64() == Some(0),
        Value::String(text) => text.trim() == "0",
        // A status without a code says nothing went wrong.
        Value::Null => true,
        _ => false,
    }
}

/// An id the upstream sends as text (or, defensively, as a number).
fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Runs a byte stream (an HTTP body) through the SSE parser and the [`AnswerDecoder`],
/// lazily: each delta is yielded as soon as its event is decoded. After the final delta,
/// polling on reads the rest of the byte stream (the end marker) and ends with it, so the
/// stream ends when the upstream's response has; after an error the byte stream is dropped.
///
/// `transport_error` translates a failure of the byte stream itself.
pub fn decode_answer<S, B, E>(bytes: S, transport_error: fn(E) -> ProviderError) -> AnswerStream
where
    S: Stream<Item = Result<B, E>> + Send + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: Send + 'static,
{
    let events = Box::pin(bytes.eventsource());
    futures::stream::unfold(
        (Some(events), AnswerDecoder::new()),
        move |(mut events, mut decoder)| async move {
            let source = events.as_mut()?;
            loop {
                let next = source.next().await;
                if decoder.is_finished() {
                    // The answer is whole: what is left is read only to see the response end.
                    match next {
                        Some(Ok(_)) => continue,
                        Some(Err(_)) | None => return None,
                    }
                }
                let outcome = match next {
                    Some(Ok(event)) => match decoder.feed(&event.event, &event.data) {
                        Ok(None) => continue,
                        Ok(Some(delta)) => Ok(delta),
                        Err(error) => Err(error),
                    },
                    Some(Err(EventStreamError::Transport(error))) => Err(transport_error(error)),
                    Some(Err(EventStreamError::Utf8(error))) => Err(ProviderError::BadResponse {
                        message: format!("the answer is not UTF-8: {error}"),
                    }),
                    Some(Err(EventStreamError::Parser(error))) => Err(ProviderError::BadResponse {
                        message: format!("the answer is not a valid event stream: {error}"),
                    }),
                    None => match decoder.finish() {
                        Ok(()) => return None,
                        Err(error) => Err(error),
                    },
                };
                if outcome.is_err() {
                    // Closes the broken upstream response now rather than when the client lets go.
                    events = None;
                }
                return Some((outcome, (events, decoder)));
            }
        },
    )
    .boxed()
}

/// Reads what is left of an answer (after its final delta) until the upstream's response
/// ends, for at most `within`; later than that, the rest is dropped (hung up on).
pub async fn read_to_end(mut answer: AnswerStream, within: std::time::Duration) {
    let _ = tokio::time::timeout(within, async { while answer.next().await.is_some() {} }).await;
}

#[cfg(test)]
#[path = "answer_props.rs"]
mod props;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;
    use serde_json::json;

    const CHAT: &str = "243612345678901234";
    const MSG: &str = "243612345678905678";

    fn answer_event(kind: i64, is_end: i64, content: &str) -> String {
        json!({
            "type": kind,
            "statusInfo": {"code": 0, "message": ""},
            "data": {"messageResult": {
                "chatID": CHAT, "msgID": MSG, "isEnd": is_end, "content": content,
                "extra": {"netSearchStatus": {}}, "unknownField": [1, 2]
            }}
        })
        .to_string()
    }

    /// A realistic answer: a send_result, cumulative contents with a cut character, a
    /// heartbeat with a non-zero code, the final event and the end marker.
    fn realistic_events() -> Vec<(String, String)> {
        vec![
            (
                "send_result".into(),
                json!({"type": 1, "statusInfo": {"code": 0, "message": ""}, "data": {"sendResult": {"chatID": CHAT}}})
                    .to_string(),
            ),
            (MESSAGE_RESULT_EVENT.into(), answer_event(2, 1, "你好")),
            (MESSAGE_RESULT_EVENT.into(), answer_event(2, 1, "你好，我是\u{FFFD}")),
            (
                "message_result".into(),
                json!({"type": 3, "statusInfo": {"code": 1_200_001, "message": "排队中"}}).to_string(),
            ),
            (MESSAGE_RESULT_EVENT.into(), answer_event(2, 1, "你好，我是海螺")),
            (MESSAGE_RESULT_EVENT.into(), answer_event(2, 0, "你好，我是海螺AI。")),
            (
                MESSAGE_RESULT_EVENT.into(),
                json!({"type": 8, "statusInfo": {"code": 0}}).to_string(),
            ),
        ]
    }

    const FULL_ANSWER: &str = "你好，我是海螺AI。";

    #[test]
    fn a_realistic_sequence_decodes_to_the_full_answer() {
        let mut decoder = AnswerDecoder::new();
        let mut deltas = Vec::new();
        for (event, data) in realistic_events() {
            if let Some(delta) = decoder.feed(&event, &data).unwrap() {
                deltas.push(delta);
            }
        }
        let texts: Vec<&str> = deltas.iter().map(|d| d.text.as_str()).collect();
        // The send_result opens the answer with an empty piece naming the conversation.
        assert_eq!(texts, ["", "你好", "，我是", "海螺", "AI。"]);
        assert_eq!(deltas[0].conversation.as_str(), CHAT);
        assert!(!deltas[0].finished);
        assert_eq!(deltas.iter().filter(|d| d.finished).count(), 1);
        let last = deltas.last().unwrap();
        assert!(last.finished);
        assert_eq!(last.conversation.as_str(), CHAT);
        assert_eq!(last.message_id, MSG);
        assert!(decoder.finish().is_ok());
    }

    #[test]
    fn a_send_result_names_the_conversation_before_an_error() {
        let mut decoder = AnswerDecoder::new();
        let sent = json!({"type": 1, "statusInfo": {"code": 0}, "data": {"sendResult": {"chatID": CHAT}}});
        let opening = decoder.feed("send_result", &sent.to_string()).unwrap().unwrap();
        assert_eq!(opening.conversation.as_str(), CHAT);
        assert_eq!(opening.text, "");
        // A second one says nothing new.
        assert_eq!(decoder.feed("send_result", &sent.to_string()).unwrap(), None);
        let refused = json!({"type": 2, "statusInfo": {"code": 1_500_001, "message": "内容涉及敏感信息"}});
        assert!(decoder.feed(MESSAGE_RESULT_EVENT, &refused.to_string()).is_err());
    }

    #[test]
    fn the_end_marker_finishes_with_an_empty_delta() {
        let mut decoder = AnswerDecoder::new();
        let first = decoder
            .feed(MESSAGE_RESULT_EVENT, &answer_event(2, 1, "abc"))
            .unwrap()
            .unwrap();
        assert!(!first.finished);
        let end = decoder
            .feed(
                MESSAGE_RESULT_EVENT,
                &json!({"type": 8, "statusInfo": {"code": 0}}).to_string(),
            )
            .unwrap()
            .unwrap();
        assert!(end.finished);
        assert_eq!(end.text, "");
        assert_eq!(
            decoder
                .feed(MESSAGE_RESULT_EVENT, &answer_event(2, 1, "abcdef"))
                .unwrap(),
            None
        );
    }

    #[test]
    fn an_error_event_is_a_refusal_with_the_upstream_message() {
        let mut decoder = AnswerDecoder::new();
        decoder.feed(MESSAGE_RESULT_EVENT, &answer_event(2, 1, "a")).unwrap();
        let error = decoder
            .feed(
                MESSAGE_RESULT_EVENT,
                &json!({"type": 2, "statusInfo": {"code": 1_500_001, "message": "内容违规"}}).to_string(),
            )
            .unwrap_err();
        assert_eq!(error, ProviderError::refused("内容违规"));
    }

    #[test]
    fn a_busy_error_event_is_the_account_being_busy() {
        let mut decoder = AnswerDecoder::new();
        let busy = json!({"type": 2, "statusInfo": {"code": 1_200_009, "message": "上一条回复还未结束"}, "data": {}});
        assert_eq!(
            decoder.feed(MESSAGE_RESULT_EVENT, &busy.to_string()),
            Err(ProviderError::AccountBusy {
                message: "上一条回复还未结束".into()
            })
        );
    }

    #[test]
    fn a_stream_without_a_final_event_ended_early() {
        let mut decoder = AnswerDecoder::new();
        decoder.feed(MESSAGE_RESULT_EVENT, &answer_event(2, 1, "a")).unwrap();
        assert!(matches!(decoder.finish(), Err(ProviderError::Unavailable { .. })));
    }

    #[test]
    fn a_garbled_event_is_skipped_and_the_next_one_carries_its_text() {
        let mut decoder = AnswerDecoder::new();
        assert_eq!(decoder.feed("send_result", "not json").unwrap(), None);
        assert_eq!(decoder.feed("ping", "").unwrap(), None);
        assert_eq!(decoder.feed(MESSAGE_RESULT_EVENT, "{oops").unwrap(), None);
        let delta = decoder
            .feed(MESSAGE_RESULT_EVENT, &answer_event(2, 0, "whole"))
            .unwrap();
        assert_eq!(delta.map(|d| (d.text, d.finished)), Some(("whole".to_owned(), true)));
    }

    fn sse_bytes(line_end: &str) -> Vec<u8> {
        let mut text = String::from(": a comment first").to_owned() + line_end + line_end;
        for (event, data) in realistic_events() {
            text.push_str(&format!("event: {event}{line_end}data: {data}{line_end}{line_end}"));
        }
        text.into_bytes()
    }

    fn decode_chunks(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<Result<AnswerDelta, ProviderError>> {
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        cuts.dedup();
        let chunks: Vec<Result<Bytes, std::io::Error>> = cuts
            .windows(2)
            .map(|w| Ok(Bytes::copy_from_slice(&bytes[w[0]..w[1]])))
            .collect();
        let stream = decode_answer(futures::stream::iter(chunks), |error: std::io::Error| {
            ProviderError::Unavailable {
                message: error.to_string(),
            }
        });
        futures::executor::block_on(stream.collect::<Vec<_>>())
    }

    fn joined(deltas: &[Result<AnswerDelta, ProviderError>]) -> String {
        deltas.iter().map(|d| d.as_ref().unwrap().text.as_str()).collect()
    }

    #[test]
    fn the_byte_stream_decodes_in_one_piece() {
        let deltas = decode_chunks(&sse_bytes("\n"), vec![]);
        assert_eq!(joined(&deltas), FULL_ANSWER);
        assert!(deltas.last().unwrap().as_ref().unwrap().finished);
    }

    #[test]
    fn a_byte_stream_cut_off_before_the_end_is_an_error() {
        let bytes = sse_bytes("\n");
        let deltas = decode_chunks(&bytes[..bytes.len() / 2], vec![]);
        assert!(matches!(deltas.last(), Some(Err(ProviderError::Unavailable { .. }))));
    }

    #[test]
    fn a_transport_error_ends_the_stream_with_it() {
        let chunks: Vec<Result<Bytes, std::io::Error>> = vec![
            Ok(Bytes::from(format!(
                "event: message_result\ndata: {}\n\n",
                answer_event(2, 1, "a")
            ))),
            Err(std::io::Error::other("reset")),
            Ok(Bytes::from_static(b"never read")),
        ];
        let stream = decode_answer(futures::stream::iter(chunks), |_: std::io::Error| {
            ProviderError::Timeout
        });
        let items = futures::executor::block_on(stream.collect::<Vec<_>>());
        assert_eq!(items.len(), 2);
        assert_eq!(items[1], Err(ProviderError::Timeout));
    }

    #[test]
    fn each_delta_is_forwarded_at_once_and_the_stream_ends_with_the_source_after_the_final_one() {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        let mut stream = decode_answer(receiver, |_: std::io::Error| ProviderError::Timeout);
        let event = |is_end, content| {
            Bytes::from(format!(
                "event: message_result\ndata: {}\n\n",
                answer_event(2, is_end, content)
            ))
        };
        futures::executor::block_on(async {
            sender.unbounded_send(Ok(event(1, "你"))).unwrap();
            assert_eq!(stream.next().await.unwrap().unwrap().text, "你");
            sender.unbounded_send(Ok(event(0, "你好"))).unwrap();
            let last = stream.next().await.unwrap().unwrap();
            assert!(last.finished);
            assert!(
                !sender.is_closed(),
                "the rest of the upstream body is still to be read after the final delta"
            );
            let end = json!({"type": 8, "statusInfo": {"code": 0}}).to_string();
            sender
                .unbounded_send(Ok(Bytes::from(format!("event: close_chunk\ndata: {end}\n\n"))))
                .unwrap();
            drop(sender);
            assert!(
                stream.next().await.is_none(),
                "the stream ends when the body ends, with nothing more to yield"
            );
        });
    }

    #[test]
    fn dropping_the_answer_drops_the_upstream_body() {
        let (sender, receiver) = futures::channel::mpsc::unbounded::<Result<Bytes, std::io::Error>>();
        let stream = decode_answer(receiver, |_: std::io::Error| ProviderError::Timeout);
        assert!(!sender.is_closed());
        drop(stream);
        assert!(sender.is_closed());
    }

    proptest! {
        #[test]
        fn any_split_of_the_bytes_gives_the_full_answer(
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
            crlf in any::<bool>(),
        ) {
            let bytes = sse_bytes(if crlf { "\r\n" } else { "\n" });
            let cuts = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
            let deltas = decode_chunks(&bytes, cuts);
            prop_assert!(deltas.iter().all(Result::is_ok));
            prop_assert_eq!(joined(&deltas), FULL_ANSWER);
            prop_assert_eq!(deltas.iter().filter(|d| d.as_ref().is_ok_and(|d| d.finished)).count(), 1);
        }
    }
}
