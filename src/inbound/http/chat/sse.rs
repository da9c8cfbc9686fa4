//! The event stream of a streamed chat answer: the `chat.completion.chunk` events OpenAI's
//! clients read, written the moment each piece of the answer arrives, ending with
//! `data: [DONE]` (or an error event after streaming began).

use std::time::Instant;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use poem_openapi::Object;
use serde::Serialize;

use crate::domain::metrics::instruments;
use crate::domain::service::{Answer, ChatError};
use crate::inbound::http::error::ApiError;
use crate::inbound::http::usage;

use super::answer::Usage;

/// One server-sent event of a streamed answer, as the stream carries it: `data: ...` and a
/// blank line.
#[derive(Debug, Object)]
#[oai(rename = "ChatCompletionEvent")]
pub struct ChatCompletionEvent {
    /// A `ChatCompletionChunk` as JSON; an error after streaming began as
    /// `{"error": {...}}`; and last, `[DONE]`.
    pub data: String,
}

/// The JSON a server-sent event of a streamed answer carries (`data: {...}`).
#[derive(Debug, Object, Serialize)]
pub struct ChatCompletionChunk {
    /// The upstream conversation id, the same on every chunk.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model named in the request.
    pub model: String,
    /// One choice, or none on the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Null, but on the last chunk when `stream_options.include_usage` is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// The change a chunk carries.
#[derive(Debug, Object, Serialize)]
pub struct ChunkChoice {
    /// Always 0.
    pub index: u32,
    /// New text (and the role, on the first chunk).
    pub delta: ChunkDelta,
    /// `stop` on the last content chunk, else null.
    pub finish_reason: Option<String>,
}

/// New text of a streamed answer.
#[derive(Debug, Object, Serialize)]
pub struct ChunkDelta {
    /// `assistant`, on the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The new text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Writes a streamed answer as OpenAI `chat.completion.chunk` events.
pub struct CompletionChunks {
    id: String,
    created: i64,
    model: String,
    /// The prompt's tokens, when the last chunk reports the usage.
    usage_prompt_tokens: Option<u32>,
    /// When the request arrived, until the first text is sent (time to first token).
    first_token: Option<Instant>,
    _active: ActiveStream,
}

/// Counts a streamed answer among the active streams while it lives.
struct ActiveStream;

impl ActiveStream {
    fn begin() -> Self {
        instruments().active_streams.add(1, &[]);
        Self
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        instruments().active_streams.add(-1, &[]);
    }
}

/// Where a streamed answer is.
enum Phase {
    Answering,
    Ended,
}

impl CompletionChunks {
    /// The writer of the answer of conversation `id` to a request for `model` that arrived
    /// at `started`, counted among the active streams while it lives; with
    /// `usage_prompt_tokens`, a last chunk reports the usage.
    pub fn new(id: String, created: i64, model: String, usage_prompt_tokens: Option<u32>, started: Instant) -> Self {
        Self {
            id,
            created,
            model,
            usage_prompt_tokens,
            first_token: Some(started),
            _active: ActiveStream::begin(),
        }
    }

    fn event(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>, out: &mut String) {
        let chunk = ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        };
        write_data(&chunk, out);
    }

    fn delta(
        &self,
        role: Option<&'static str>,
        content: Option<String>,
        finish: Option<&'static str>,
        out: &mut String,
    ) {
        let choice = ChunkChoice {
            index: 0,
            delta: ChunkDelta {
                role: role.map(str::to_owned),
                content,
            },
            finish_reason: finish.map(str::to_owned),
        };
        self.event(vec![choice], None, out);
    }

    /// The SSE byte stream: the role chunk, one chunk per delta as it arrives, the stop
    /// chunk, the usage chunk when asked, `[DONE]`; or an error event that ends it.
    pub fn stream(self, answer: Answer) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
        let mut head = String::new();
        self.delta(Some("assistant"), Some(String::new()), None, &mut head);
        let completion = String::new();
        let state = (self, answer, completion, Phase::Answering);
        let body = futures::stream::unfold(state, |(mut chunks, mut answer, mut completion, phase)| async move {
            if matches!(phase, Phase::Ended) {
                return None;
            }
            let mut out = String::new();
            let phase = match answer.next().await {
                Some(Ok(delta)) => {
                    if chunks.usage_prompt_tokens.is_some() {
                        completion.push_str(&delta.text);
                    }
                    if !delta.text.is_empty() {
                        if let Some(started) = chunks.first_token.take() {
                            instruments()
                                .time_to_first_token
                                .record(started.elapsed().as_secs_f64(), &[]);
                        }
                        chunks.delta(None, Some(delta.text), None, &mut out);
                    }
                    if delta.finished {
                        chunks.finish(&completion, &mut out);
                        Phase::Ended
                    } else {
                        Phase::Answering
                    }
                }
                Some(Err(error)) => {
                    write_error(error, &mut out);
                    Phase::Ended
                }
                None => {
                    chunks.finish(&completion, &mut out);
                    Phase::Ended
                }
            };
            Some((Ok(Bytes::from(out)), (chunks, answer, completion, phase)))
        });
        futures::stream::once(async move { Ok(Bytes::from(head)) })
            .chain(body.filter(|chunk| std::future::ready(!matches!(chunk, Ok(bytes) if bytes.is_empty()))))
    }

    fn finish(&self, completion: &str, out: &mut String) {
        self.delta(None, None, Some("stop"), out);
        if let Some(prompt_tokens) = self.usage_prompt_tokens {
            self.event(Vec::new(), Some(usage::usage(prompt_tokens, completion)), out);
        }
        out.push_str("data: [DONE]\n\n");
    }
}

/// An error after streaming began: one `data: {"error":{...}}` event, OpenAI-shaped as
/// the error would have been before it.
fn write_error(error: ChatError, out: &mut String) {
    write_data(&ApiError::from(error).body, out);
}

/// One `data:` event holding `value` as JSON.
fn write_data(value: &impl Serialize, out: &mut String) {
    if let Ok(json) = serde_json::to_string(value) {
        out.push_str("data: ");
        out.push_str(&json);
        out.push_str("\n\n");
    }
}
