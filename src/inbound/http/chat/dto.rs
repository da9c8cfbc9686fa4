//! The request and the complete answer of `POST /v1/chat/completions` in OpenAI's wire
//! format, and the reading of a request into the domain's [`ChatPrompt`].

use poem_openapi::types::Example;
use poem_openapi::{Object, Union};
use serde::Serialize;

use crate::domain::chat::{ChatMessage, ChatPrompt, ContentPart, ConversationId};
use crate::inbound::http::error::ApiError;
use crate::inbound::http::text::Text;

/// The model name answered when the request names none.
pub const DEFAULT_MODEL: &str = "hailuo";

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

/// What a chat completion request asks for, in the domain's terms.
#[derive(Debug)]
pub struct PromptRequest {
    /// The model name to echo back in the answer.
    pub model: String,
    /// How the answer is to be sent.
    pub delivery: Delivery,
    /// The conversation to answer.
    pub prompt: ChatPrompt,
}

/// How an answer is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// One `chat.completion` document (`stream: false`).
    Whole,
    /// Server-sent `chat.completion.chunk` events (`stream: true`).
    Stream {
        /// A last chunk reports the usage (`stream_options.include_usage`).
        include_usage: bool,
    },
}

impl ChatCompletionRequest {
    /// The request in the domain's terms: the model named (or [`DEFAULT_MODEL`]), how the
    /// answer is sent, and the prompt (a `conversation_id` that is no conversation id is
    /// ignored).
    ///
    /// # Errors
    /// A 400 when `messages` is empty.
    pub fn into_prompt(self) -> Result<PromptRequest, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid_request("`messages` must hold at least one message").with_param("messages"));
        }
        let messages = self.messages.into_iter().map(ChatMessageDto::into_message).collect();
        let conversation = self
            .conversation_id
            .as_ref()
            .and_then(|id| ConversationId::parse(&id.0));
        let model = self
            .model
            .map(|m| m.0)
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        let delivery = if self.stream {
            Delivery::Stream {
                include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            }
        } else {
            Delivery::Whole
        };
        Ok(PromptRequest {
            model,
            delivery,
            prompt: ChatPrompt {
                conversation,
                ..ChatPrompt::new(messages)
            },
        })
    }
}

impl ChatMessageDto {
    /// The message in the domain's terms: its role, and its content as parts.
    fn into_message(self) -> ChatMessage {
        ChatMessage {
            role: self.role.0,
            parts: match self.content {
                None => Vec::new(),
                Some(MessageContent::Text(text)) => vec![ContentPart::Text(text.0)],
                Some(MessageContent::Parts(parts)) => parts.into_iter().map(ContentPartDto::into_part).collect(),
            },
        }
    }
}

impl ContentPartDto {
    /// The part in the domain's terms.
    fn into_part(self) -> ContentPart {
        match self {
            ContentPartDto::Text(part) => ContentPart::Text(part.text.0),
            ContentPartDto::Image(part) => ContentPart::Image {
                url: part.image_url.url.0,
            },
            ContentPartDto::File(part) => ContentPart::File {
                url: part.file_url.url.0,
            },
        }
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

#[cfg(test)]
#[path = "dto_props.rs"]
mod props;
