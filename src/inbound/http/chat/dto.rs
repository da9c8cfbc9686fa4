//! The request of `POST /v1/chat/completions` in OpenAI's wire format, documented field by
//! field (its messages' content parts in [`super::parts`]): these types give the OpenAPI
//! document its schema (what poem-openapi's derives cannot say is written by hand in
//! [`super::schema`]), while the body itself arrives as a [`ChatCompletionRequest`] and is read
//! by [`super::read`], leniently, as OpenAI reads it.

use std::collections::BTreeMap;

use poem_openapi::types::{Example, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{Enum, Object};
use serde_json::{Value, json};

use super::schema::{LogprobsDoc, MessageContentDoc, StopDoc};

/// The body of a chat completion request, as it arrived: read by [`super::read`], documented
/// as [`RequestDoc`].
#[derive(Debug, Clone)]
pub struct ChatCompletionRequest(pub Value);

impl Type for ChatCompletionRequest {
    const IS_REQUIRED: bool = true;
    type RawValueType = Value;
    type RawElementValueType = Value;

    fn name() -> std::borrow::Cow<'static, str> {
        RequestDoc::name()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        RequestDoc::schema_ref()
    }

    fn register(registry: &mut poem_openapi::registry::Registry) {
        RequestDoc::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Value> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Value> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromJSON for ChatCompletionRequest {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Ok(Self(value.unwrap_or_default()))
    }
}

/// A chat completion request (OpenAI's format). Unknown fields are accepted and ignored, and
/// `null` is the same as leaving a field out. What the gateway cannot honour yet is refused
/// with a 400 `unsupported_parameter` naming the field, never ignored: `n` above 1, a non-empty
/// `tools` or `functions`, a `tool_choice` or `function_call` that asks for a tool,
/// `response_format` other than `{"type":"text"}`, `logprobs: true`, `top_logprobs`, `audio`,
/// and `modalities` with `audio`.
#[derive(Debug, Object)]
#[oai(rename = "ChatCompletionRequest", example, skip_serializing_if_is_none)]
pub struct RequestDoc {
    /// Any model name; it is echoed back (`hailuo`, `MiniMax-Text-01`, ...). Default `hailuo`.
    #[oai(nullable)]
    pub model: Option<String>,
    /// The conversation so far, oldest first.
    #[oai(validator(min_items = 1))]
    pub messages: Vec<MessageDoc>,
    /// `true` streams the answer as server-sent events (`chat.completion.chunk`), ending with
    /// `data: [DONE]`. Default `false`.
    #[oai(nullable)]
    pub stream: Option<bool>,
    /// Streaming options.
    #[oai(nullable)]
    pub stream_options: Option<StreamOptionsDoc>,
    /// Extension: continue an upstream conversation by its id (the `id` of an earlier answer,
    /// 18 or more digits). Only the new messages need to be sent; other values are ignored.
    #[oai(nullable)]
    pub conversation_id: Option<String>,
    /// How many choices to answer: only 1 (several are not supported yet).
    #[oai(nullable, validator(minimum(value = "1"), maximum(value = "1")))]
    pub n: Option<i64>,
    /// Tools the model may call: not supported yet, so only an empty list.
    #[oai(nullable, validator(max_items = 0))]
    pub tools: Option<Vec<Value>>,
    /// The deprecated form of `tools`: only an empty list.
    #[oai(nullable, deprecated, validator(max_items = 0))]
    pub functions: Option<Vec<Value>>,
    /// `none` or `auto` (there are no tools to call); asking for a tool is not supported yet.
    #[oai(nullable)]
    pub tool_choice: Option<ToolChoiceDoc>,
    /// The deprecated form of `tool_choice`: `none` or `auto`.
    #[oai(nullable, deprecated)]
    pub function_call: Option<ToolChoiceDoc>,
    /// Only `{"type": "text"}`: JSON modes are not supported yet.
    #[oai(nullable)]
    pub response_format: Option<ResponseFormatDoc>,
    /// Only `false`: log probabilities are not supported yet.
    #[oai(nullable)]
    pub logprobs: Option<LogprobsDoc>,
    /// Only `["text"]`: audio answers are not supported yet.
    #[oai(nullable)]
    pub modalities: Option<Vec<ModalityDoc>>,
    /// Accepted and not used (0 to 2).
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "2")))]
    pub temperature: Option<f64>,
    /// Accepted and not used (0 to 1).
    #[oai(nullable, validator(minimum(value = "0"), maximum(value = "1")))]
    pub top_p: Option<f64>,
    /// Accepted and not used (-2 to 2).
    #[oai(nullable, validator(minimum(value = "-2"), maximum(value = "2")))]
    pub presence_penalty: Option<f64>,
    /// Accepted and not used (-2 to 2).
    #[oai(nullable, validator(minimum(value = "-2"), maximum(value = "2")))]
    pub frequency_penalty: Option<f64>,
    /// Accepted and not used.
    #[oai(nullable)]
    pub seed: Option<i64>,
    /// Accepted and not used.
    #[oai(nullable)]
    pub user: Option<String>,
    /// Accepted and not used: string values.
    #[oai(nullable)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Accepted and not used.
    #[oai(nullable)]
    pub store: Option<bool>,
    /// Accepted and not used: a string or a list of strings.
    #[oai(nullable)]
    pub stop: Option<StopDoc>,
    /// Accepted and not used (at least 1).
    #[oai(nullable, validator(minimum(value = "1")))]
    pub max_tokens: Option<i64>,
    /// Accepted and not used (at least 1).
    #[oai(nullable, validator(minimum(value = "1")))]
    pub max_completion_tokens: Option<i64>,
}

impl Example for RequestDoc {
    fn example() -> Self {
        Self {
            model: Some("hailuo".into()),
            messages: vec![
                MessageDoc {
                    role: RoleDoc::System,
                    content: Some(MessageContentDoc(json!("You are a concise assistant."))),
                    name: None,
                },
                MessageDoc::example(),
            ],
            stream: Some(false),
            stream_options: None,
            conversation_id: None,
            n: None,
            tools: None,
            functions: None,
            tool_choice: None,
            function_call: None,
            response_format: None,
            logprobs: None,
            modalities: None,
            temperature: None,
            top_p: None,
            presence_penalty: None,
            frequency_penalty: None,
            seed: None,
            user: None,
            metadata: None,
            store: None,
            stop: None,
            max_tokens: None,
            max_completion_tokens: None,
        }
    }
}

/// Options of a streamed answer.
#[derive(Debug, Object)]
#[oai(rename = "StreamOptions", example, skip_serializing_if_is_none)]
pub struct StreamOptionsDoc {
    /// `true` adds a last chunk with `choices: []` and the `usage` of the whole request.
    /// Default `false`.
    #[oai(nullable)]
    pub include_usage: Option<bool>,
}

impl Example for StreamOptionsDoc {
    fn example() -> Self {
        Self {
            include_usage: Some(true),
        }
    }
}

/// One message.
#[derive(Debug, Object)]
#[oai(rename = "ChatMessage", example, skip_serializing_if_is_none)]
pub struct MessageDoc {
    /// Who speaks: `developer` is read as `system`.
    pub role: RoleDoc,
    /// The text, or a list of parts. A message may have none (an assistant's that only called
    /// tools), but the request as a whole must hold some text or a file.
    #[oai(nullable)]
    pub content: Option<MessageContentDoc>,
    /// Accepted and not used.
    #[oai(nullable)]
    pub name: Option<String>,
}

impl Example for MessageDoc {
    fn example() -> Self {
        Self {
            role: RoleDoc::User,
            content: Some(MessageContentDoc(json!("What is the capital of France?"))),
            name: None,
        }
    }
}

/// Who speaks a message.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename = "ChatRole", rename_all = "lowercase")]
pub enum RoleDoc {
    /// Instructions.
    System,
    /// Instructions, read as `system`.
    Developer,
    /// The user.
    User,
    /// The model's earlier answers.
    Assistant,
    /// A tool's result, read as text.
    Tool,
    /// A function's result (deprecated), read as text.
    Function,
}

/// What the model may do about tools: there are none to call.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename = "ToolChoice", rename_all = "lowercase")]
pub enum ToolChoiceDoc {
    /// Call no tool.
    None,
    /// Call a tool if it wants to (there are none).
    Auto,
}

/// The form of the answer.
#[derive(Debug, Object)]
#[oai(rename = "ResponseFormat", example)]
pub struct ResponseFormatDoc {
    /// Only `text`.
    #[oai(rename = "type")]
    pub kind: ResponseFormatTypeDoc,
}

impl Example for ResponseFormatDoc {
    fn example() -> Self {
        Self {
            kind: ResponseFormatTypeDoc::Text,
        }
    }
}

/// The form of the answer: text.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename = "ResponseFormatType", rename_all = "lowercase")]
pub enum ResponseFormatTypeDoc {
    /// Text.
    Text,
}

/// What the answer is made of: text.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename = "Modality", rename_all = "lowercase")]
pub enum ModalityDoc {
    /// Text.
    Text,
}

/// The JSON of a documented value, for the examples of [`super::schema`].
pub(super) fn example_json<T: Example + ToJSON>() -> Value {
    T::example().to_json().unwrap_or_default()
}

#[cfg(test)]
#[path = "dto_props.rs"]
mod props;
