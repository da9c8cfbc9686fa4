//! The `POST /v1/chat/completions` operation: reads the request, has the chat use case
//! answer it, and sends the answer whole or as an event stream.

use std::sync::Arc;
use std::time::Instant;

use poem::http::StatusCode;
use poem::{Body, IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, OpenApi};

use crate::domain::service::ChatService;
use crate::inbound::http::ApiTags;
use crate::inbound::http::auth::HailuoTokens;
use crate::inbound::http::error::{ApiError, ErrorResponse};
use crate::inbound::http::openapi::Success;
use crate::inbound::http::usage;

use super::answer::{AssistantMessage, ChatCompletion, CompletionChoice};
use super::dto::ChatCompletionRequest;
use super::read::{Delivery, PromptRequest, ReadLimits, read_request};
use super::sse::{ChatCompletionChunk, ChatCompletionEvent, CompletionChunks};

/// The chat completions resource.
pub struct ChatApi {
    chat: Arc<ChatService>,
    limits: ReadLimits,
}

impl ChatApi {
    /// The resource over the chat use case, reading requests within `limits`.
    pub fn new(chat: Arc<ChatService>, limits: ReadLimits) -> Self {
        Self { chat, limits }
    }
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
        Success::new(
            "The answer: a `chat.completion` object, or with `stream: true` server-sent events, \
                each `data:` a `chat.completion.chunk` (an error after streaming began arrives as \
                `data: {\"error\":{...}}`), ending with `data: [DONE]`.",
        )
        .media("application/json; charset=utf-8", ChatCompletion::schema_ref())
        .media("text/event-stream", ChatCompletionEvent::schema_ref())
        .header(
            "X-Accel-Buffering",
            "`no` on streams, so reverse proxies do not buffer them.",
        )
        .and_errors(crate::inbound::http::error::docs::CHAT)
    }

    fn register(registry: &mut Registry) {
        ChatCompletion::register(registry);
        ChatCompletionEvent::register(registry);
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
    /// answer per account at a time; the request waits for a free one). Messages are text or
    /// content parts: text, images and documents (those of the last message are attached),
    /// and speech (`input_audio`, transcribed into the text in its place); `developer` is
    /// read as `system`. With `stream: true` the answer arrives as server-sent events the
    /// moment the upstream produces it. The `id` of the answer is the upstream conversation: pass it back as
    /// `conversation_id` to continue that conversation. Conversations created upstream are
    /// deleted once idle for `session.idle_ttl_secs`.
    #[oai(
        path = "/v1/chat/completions",
        method = "post",
        operation_id = "createChatCompletion"
    )]
    async fn create(&self, auth: HailuoTokens, request: Json<ChatCompletionRequest>) -> ChatResponse {
        match self.answer(auth, request.0).await {
            Ok(response) => response,
            Err(error) => ChatResponse::Error(error),
        }
    }
}

impl ChatApi {
    async fn answer(&self, auth: HailuoTokens, request: ChatCompletionRequest) -> Result<ChatResponse, ApiError> {
        let started = Instant::now();
        let PromptRequest {
            model,
            delivery,
            mut prompt,
        } = read_request(request.0, &self.limits)?;
        prompt.client = auth.client();
        // Heard before the prompt is counted: the transcripts are part of it.
        let prompt = self.chat.hear(&auth.tokens(), prompt).await?;
        let span = tracing::Span::current();
        span.record("gen_ai.request.model", model.as_str());
        span.record("stream", matches!(delivery, Delivery::Stream { .. }));
        let created = unix_seconds();
        match delivery {
            Delivery::Stream { include_usage } => {
                // Counted only when reported: a stream reports usage only when asked to.
                let prompt_tokens = include_usage.then(|| usage::prompt_tokens(&prompt.messages));
                let answer = self.chat.chat(&auth.tokens(), prompt).await?;
                let chunks = CompletionChunks::new(
                    answer.conversation().to_string(),
                    created,
                    model,
                    prompt_tokens,
                    started,
                );
                Ok(ChatResponse::Stream(Body::from_bytes_stream(chunks.stream(answer))))
            }
            Delivery::Whole => {
                let prompt_tokens = usage::prompt_tokens(&prompt.messages);
                let completion = self.chat.complete(&auth.tokens(), prompt).await?;
                let (id, content) = (completion.conversation.to_string(), completion.text);
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
    }
}

/// Now, in Unix seconds (the `created` of an answer).
fn unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
