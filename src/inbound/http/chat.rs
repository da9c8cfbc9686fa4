//! `POST /v1/chat/completions`: OpenAI's chat completions, answered by a Hailuo account,
//! as one JSON document or as server-sent events forwarded the moment they arrive.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use poem::http::StatusCode;
use poem::{Body, IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::{Example, Type};
use poem_openapi::{ApiResponse, Object, OpenApi, Union};
use serde::Serialize;

use crate::domain::chat::{ChatMessage, ChatPrompt, ContentPart, ConversationId};
use crate::domain::metrics::instruments;
use crate::domain::service::{Answer, ChatService, GatewayError};

use super::ApiTags;
use super::auth::HailuoTokens;
use super::error::{ApiError, ErrorResponse};
use super::text::Text;
use super::usage;

/// The model name answered when the request names none.
const DEFAULT_MODEL: &str = "hailuo";

/// The chat completions resource.
pub struct ChatApi {
    chat: Arc<ChatService>,
}

impl ChatApi {
    /// The resource over the chat use case.
    pub fn new(chat: Arc<ChatService>) -> Self {
        Self { chat }
    }
}

/// A chat completion request (OpenAI's format). Unknown fields are accepted and ignored.
#[derive(Debug, Object)]
#[oai(example)]
pub struct ChatCompletionRequest {
    /// Any model name; it is echoed back (`hailuo`, `MiniMax-Text-01`, ...). Default `hailuo`.
    pub model: Option<Text>,
    /// The conversation so far, oldest first. At least one message.
    pub messages: Vec<ChatMessageDto>,
    /// `true` streams the answer as server-sent events (`chat.completion.chunk`), ending with `data: [DONE]`.
    #[oai(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Extension: continue an upstream conversation by its id (the `id` of an earlier answer,
    /// 18 or more digits). Only the new messages need to be sent; other values are ignored.
    pub conversation_id: Option<Text>,
}

impl Example for ChatCompletionRequest {
    fn example() -> Self {
        Self {
            model: Some(Text::from("hailuo")),
            messages: vec![
                ChatMessageDto {
                    role: Text::from("system"),
                    content: Some(MessageContent::Text(Text::from("You are a concise assistant."))),
                },
                ChatMessageDto {
                    role: Text::from("user"),
                    content: Some(MessageContent::Text(Text::from("What is the capital of France?"))),
                },
            ],
            stream: false,
            stream_options: None,
            conversation_id: None,
        }
    }
}

/// Options of a streamed answer.
#[derive(Debug, Object)]
pub struct StreamOptions {
    /// `true` adds a last chunk with `choices: []` and the `usage` of the whole request.
    #[oai(default)]
    pub include_usage: bool,
}

/// One message.
#[derive(Debug, Object)]
pub struct ChatMessageDto {
    /// `system`, `user`, `assistant` (or `developer`, `tool`).
    pub role: Text,
    /// The text, or a list of parts (`text`, `image_url`, `file`).
    pub content: Option<MessageContent>,
}

/// A message's content: plain text or a list of parts.
#[derive(Debug, Union)]
pub enum MessageContent {
    /// Plain text.
    Text(Text),
    /// Parts: text, images, files.
    Parts(Vec<ContentPartDto>),
}

/// One part of a message's content.
#[derive(Debug, Union)]
#[oai(discriminator_name = "type")]
pub enum ContentPartDto {
    /// `{"type":"text","text":"..."}`
    #[oai(mapping = "text")]
    Text(TextPart),
    /// `{"type":"image_url","image_url":{"url":"https://... or data:image/png;base64,..."}}`
    #[oai(mapping = "image_url")]
    Image(ImagePart),
    /// `{"type":"file","file_url":{"url":"https://... or data:application/pdf;base64,..."}}`
    #[oai(mapping = "file")]
    File(FilePart),
}

/// A text part.
#[derive(Debug, Object)]
pub struct TextPart {
    /// The text.
    pub text: Text,
}

/// An image part.
#[derive(Debug, Object)]
pub struct ImagePart {
    /// Where the image is.
    pub image_url: UrlRef,
}

/// A document part.
#[derive(Debug, Object)]
pub struct FilePart {
    /// Where the document is.
    pub file_url: UrlRef,
}

/// A reference to content by URL.
#[derive(Debug, Object)]
pub struct UrlRef {
    /// An `http(s)` URL or a `data:<mime>;base64,<data>` URL.
    pub url: Text,
}

impl ChatCompletionRequest {
    fn into_prompt(self) -> Result<(String, bool, bool, ChatPrompt), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid_request("`messages` must hold at least one message").with_param("messages"));
        }
        let messages = self
            .messages
            .into_iter()
            .map(|message| ChatMessage {
                role: message.role.0,
                parts: match message.content {
                    None => Vec::new(),
                    Some(MessageContent::Text(text)) => vec![ContentPart::Text(text.0)],
                    Some(MessageContent::Parts(parts)) => parts
                        .into_iter()
                        .map(|part| match part {
                            ContentPartDto::Text(part) => ContentPart::Text(part.text.0),
                            ContentPartDto::Image(part) => ContentPart::Image {
                                url: part.image_url.url.0,
                            },
                            ContentPartDto::File(part) => ContentPart::File {
                                url: part.file_url.url.0,
                            },
                        })
                        .collect(),
                },
            })
            .collect();
        let conversation = self
            .conversation_id
            .as_ref()
            .and_then(|id| ConversationId::parse(&id.0));
        let model = self
            .model
            .map(|m| m.0)
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        let include_usage = self.stream_options.is_some_and(|o| o.include_usage);
        Ok((model, self.stream, include_usage, ChatPrompt { messages, conversation }))
    }
}

/// A complete answer (`stream: false`).
#[derive(Debug, Object, Serialize)]
pub struct ChatCompletion {
    /// The upstream conversation id: send it back as `conversation_id` to continue.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model named in the request.
    pub model: String,
    /// One choice.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (o200k tokenizer).
    pub usage: Usage,
}

/// The one choice of a complete answer.
#[derive(Debug, Object, Serialize)]
pub struct CompletionChoice {
    /// Always 0.
    pub index: u32,
    /// The assistant's message.
    pub message: AssistantMessage,
    /// Always `stop`.
    pub finish_reason: String,
}

/// The assistant's message.
#[derive(Debug, Object, Serialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The answer.
    pub content: String,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Object, Serialize)]
pub struct Usage {
    /// Tokens in the messages sent.
    pub prompt_tokens: u32,
    /// Tokens in the answer.
    pub completion_tokens: u32,
    /// The sum.
    pub total_tokens: u32,
}

/// One server-sent event of a streamed answer (`data: {...}`).
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

/// The answer: JSON, an event stream, or an error.
pub enum ChatResponse {
    /// `stream: false`.
    Completion(ChatCompletion),
    /// `stream: true`.
    Stream(Body),
    /// A failure before any answer.
    Error(ApiError),
}

impl IntoResponse for ChatResponse {
    fn into_response(self) -> Response {
        match self {
            ChatResponse::Completion(completion) => Json(completion).into_response(),
            ChatResponse::Stream(body) => Response::builder()
                .status(StatusCode::OK)
                .content_type("text/event-stream; charset=utf-8")
                .header("Cache-Control", "no-cache")
                .header("X-Accel-Buffering", "no")
                .body(body),
            ChatResponse::Error(error) => error.into_response(),
        }
    }
}

impl ApiResponse for ChatResponse {
    const BAD_REQUEST_HANDLER: bool = true;

    fn meta() -> MetaResponses {
        let ok = MetaResponse {
            description: "The answer: a `chat.completion` object, or with `stream: true` server-sent events, \
                each `data:` a `chat.completion.chunk` (an error after streaming began arrives as \
                `data: {\"error\":{...}}`), ending with `data: [DONE]`.",
            status: Some(200),
            status_range: None,
            content: vec![
                MetaMediaType {
                    content_type: "application/json; charset=utf-8",
                    schema: ChatCompletion::schema_ref(),
                },
                MetaMediaType {
                    content_type: "text/event-stream",
                    schema: ChatCompletionChunk::schema_ref(),
                },
            ],
            headers: vec![MetaHeader {
                name: "X-Accel-Buffering".into(),
                description: Some("`no` on streams, so reverse proxies do not buffer them.".into()),
                required: false,
                deprecated: false,
                schema: String::schema_ref(),
            }],
        };
        let mut responses = vec![ok];
        responses.extend(ApiError::meta().responses);
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        ChatCompletion::register(registry);
        ChatCompletionChunk::register(registry);
        ErrorResponse::register(registry);
    }

    fn from_parse_request_error(error: poem::Error) -> Self {
        ChatResponse::Error(ApiError::from_parse_error(&error))
    }
}

#[OpenApi(tag = "ApiTags::Chat")]
impl ChatApi {
    /// Create a chat completion
    ///
    /// Answers the conversation with a Hailuo account chosen among the bearer tokens (one
    /// answer per account at a time; the request waits for a free one). Text parts count;
    /// with `stream: true` the answer arrives as server-sent events the moment the upstream
    /// produces it. The `id` of the answer is the upstream conversation: pass it back as
    /// `conversation_id` to continue that conversation. Conversations created upstream are
    /// deleted once idle for `session.idle_ttl_secs`.
    #[oai(path = "/v1/chat/completions", method = "post")]
    async fn create(&self, auth: HailuoTokens, request: Json<ChatCompletionRequest>) -> ChatResponse {
        match self.answer(auth, request.0).await {
            Ok(response) => response,
            Err(error) => ChatResponse::Error(error),
        }
    }
}

impl ChatApi {
    async fn answer(&self, auth: HailuoTokens, request: ChatCompletionRequest) -> Result<ChatResponse, ApiError> {
        let started = std::time::Instant::now();
        let (model, stream, include_usage, prompt) = request.into_prompt()?;
        let span = tracing::Span::current();
        span.record("gen_ai.request.model", model.as_str());
        span.record("stream", stream);
        // Counted only when reported: a stream reports usage only when asked to.
        let prompt_tokens = if stream && !include_usage {
            0
        } else {
            usage::prompt_tokens(&prompt.messages)
        };
        let answer = self.chat.chat(&auth.tokens(), prompt).await?;
        let id = answer.conversation().to_string();
        let created = unix_seconds();
        if stream {
            let chunks = CompletionChunks {
                id,
                created,
                model,
                include_usage,
                prompt_tokens,
                first_token: Some(started),
                _active: ActiveStream::begin(),
            };
            return Ok(ChatResponse::Stream(Body::from_bytes_stream(chunks.stream(answer))));
        }
        let content = answer.collect_text().await?;
        let usage = usage::usage(prompt_tokens, &content);
        Ok(ChatResponse::Completion(ChatCompletion {
            id,
            object: "chat.completion".into(),
            created,
            model,
            choices: vec![CompletionChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content,
                },
                finish_reason: "stop".into(),
            }],
            usage,
        }))
    }
}

fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Writes a streamed answer as OpenAI `chat.completion.chunk` events.
struct CompletionChunks {
    id: String,
    created: i64,
    model: String,
    include_usage: bool,
    prompt_tokens: u32,
    /// When the request arrived, until the first text is sent (time to first token).
    first_token: Option<std::time::Instant>,
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
    fn event(&self, choices: Vec<ChunkChoice>, usage: Option<Usage>, out: &mut String) {
        let chunk = ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk".into(),
            created: self.created,
            model: self.model.clone(),
            choices,
            usage,
        };
        if let Ok(json) = serde_json::to_string(&chunk) {
            out.push_str("data: ");
            out.push_str(&json);
            out.push_str("\n\n");
        }
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
    fn stream(self, answer: Answer) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
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
                    if chunks.include_usage {
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
        if self.include_usage {
            self.event(Vec::new(), Some(usage::usage(self.prompt_tokens, completion)), out);
        }
        out.push_str("data: [DONE]\n\n");
    }
}

fn write_error(error: GatewayError, out: &mut String) {
    let error = ApiError::from(error);
    if let Ok(json) = serde_json::to_string(&error.body) {
        out.push_str("data: ");
        out.push_str(&json);
        out.push_str("\n\n");
    }
}

#[cfg(test)]
#[path = "chat_props.rs"]
mod props;
