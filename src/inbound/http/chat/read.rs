//! The reading of a chat request's JSON into the domain's prompt, as lenient as OpenAI's
//! (unknown fields are ignored, `null` is a field left out, `developer` is `system`) and exact
//! about the rest: every refusal is a 400 whose `param` names the place
//! (`messages[2].content[1].type`) and whose message quotes at most a short piece of the value,
//! and what the gateway cannot honour yet is refused as `unsupported_parameter`, never ignored.

use poem::http::StatusCode;
use serde_json::{Map, Value};

use crate::domain::chat::{ChatMessage, ChatPrompt, ContentPart, ConversationId};
use crate::inbound::http::error::{ApiError, ErrorCode, ErrorType};

use super::content::read_part;
use super::unsupported::{check_unused, refuse_unsupported};

/// The model name answered when the request names none.
pub const DEFAULT_MODEL: &str = "hailuo";

/// The roles a message may have.
const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool", "function"];
/// The most characters of a refused value an error message quotes.
const QUOTED_CHARS: usize = 40;

/// What a request may carry.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// The most bytes of audio one `input_audio` part may hold (`audio.max_upload_bytes`).
    pub max_audio_bytes: usize,
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

/// Reads a request body: the model named (or [`DEFAULT_MODEL`]), how the answer is sent, and
/// the prompt (a `conversation_id` that is no conversation id is ignored).
///
/// # Errors
/// A 400 naming the place for a body that is not an object, a field of the wrong type or out
/// of its range, a missing `messages` or one without messages, an unknown role or part type, a
/// part missing what its type needs, a file by `file_id`, audio that is not base64, and
/// what is not supported yet; a 413 for audio over `limits.max_audio_bytes`.
pub fn read_request(body: Value, limits: &ReadLimits) -> Result<PromptRequest, ApiError> {
    let Value::Object(mut body) = body else {
        return Err(ApiError::invalid_request(
            "the request body must be a JSON object: {\"model\": ..., \"messages\": [...]}",
        ));
    };
    refuse_unsupported(&body)?;
    check_unused(&body)?;
    let model = take_string(&mut body, "model")?
        .filter(|model| !model.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_MODEL.to_owned());
    let stream = get_bool(&body, "stream", "stream")?.unwrap_or(false);
    let include_usage = match body.get("stream_options").filter(|v| !v.is_null()) {
        None => false,
        Some(Value::Object(options)) => {
            get_bool(options, "include_usage", "stream_options.include_usage")?.unwrap_or(false)
        }
        Some(_) => return Err(wrong_type("stream_options", "an object")),
    };
    let conversation = take_string(&mut body, "conversation_id")?.and_then(|id| ConversationId::parse(&id));
    let messages = match take(&mut body, "messages") {
        None => return Err(missing("messages")),
        Some(Value::Array(messages)) if messages.is_empty() => {
            return Err(ApiError::invalid_request("`messages` must hold at least one message").with_param("messages"));
        }
        Some(Value::Array(messages)) => messages,
        Some(_) => return Err(wrong_type("messages", "an array of messages")),
    };
    let messages = messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| read_message(message, index, limits))
        .collect::<Result<Vec<_>, _>>()?;
    let delivery = if stream {
        Delivery::Stream { include_usage }
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

/// Reads `messages[index]`.
fn read_message(message: Value, index: usize, limits: &ReadLimits) -> Result<ChatMessage, ApiError> {
    let path = format!("messages[{index}]");
    let Value::Object(mut message) = message else {
        return Err(wrong_type(&path, "an object with a `role`"));
    };
    let role = one_of(message.get("role"), &format!("{path}.role"), ROLES)?;
    let role = if role == "developer" { "system" } else { role };
    get_string(&message, "name", &format!("{path}.name"))?;
    let content_path = format!("{path}.content");
    let parts = match take(&mut message, "content") {
        None => Vec::new(),
        Some(Value::String(text)) => vec![ContentPart::Text(text)],
        Some(Value::Array(parts)) if parts.is_empty() => {
            return Err(ApiError::invalid_request(format!(
                "`{content_path}` must hold at least one part, or be a string"
            ))
            .with_param(&content_path));
        }
        Some(Value::Array(parts)) => parts
            .into_iter()
            .enumerate()
            .map(|(part, value)| read_part(value, &format!("{content_path}[{part}]"), limits))
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(wrong_type(&content_path, "a string or an array of content parts")),
    };
    Ok(ChatMessage {
        role: role.to_owned(),
        parts,
    })
}

/// The value of a field that takes one of `allowed`.
pub(super) fn one_of(
    value: Option<&Value>,
    path: &str,
    allowed: &'static [&'static str],
) -> Result<&'static str, ApiError> {
    let listed = || allowed.join(", ");
    match value.filter(|value| !value.is_null()) {
        None => Err(ApiError::invalid_request(format!("`{path}` is required: one of {}", listed())).with_param(path)),
        Some(Value::String(value)) => match allowed.iter().find(|allowed| **allowed == value) {
            Some(known) => Ok(known),
            None => Err(invalid_value(path, value, allowed)),
        },
        Some(_) => Err(wrong_type(path, &format!("a string: one of {}", listed()))),
    }
}

/// A 400 `invalid_value`: `value` is none of `allowed` (quoted only in part when long).
pub(super) fn invalid_value(path: &str, value: &str, allowed: &[&str]) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorType::InvalidRequestError,
        ErrorCode::InvalidValue,
        format!(
            "invalid value {} for `{path}`: supported values are {}",
            quoted(value),
            allowed.join(", ")
        ),
    )
    .with_param(path)
}

/// A value for an error message: at most [`QUOTED_CHARS`] characters of it, control
/// characters shown as `�`, between single quotes.
pub(super) fn quoted(value: &str) -> String {
    let shown: String = value
        .chars()
        .take(QUOTED_CHARS)
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect();
    let count = value.chars().count();
    if count > QUOTED_CHARS {
        format!("'{shown}…' ({count} characters)")
    } else {
        format!("'{shown}'")
    }
}

/// A 400: the field at `path` has the wrong type.
pub(super) fn wrong_type(path: &str, expected: &str) -> ApiError {
    ApiError::invalid_request(format!("`{path}` must be {expected}")).with_param(path)
}

pub(super) fn missing(path: &str) -> ApiError {
    ApiError::invalid_request(format!("`{path}` is required")).with_param(path)
}

pub(super) fn non_empty(text: String, path: &str) -> Result<String, ApiError> {
    if text.is_empty() {
        return Err(ApiError::invalid_request(format!("`{path}` must not be empty")).with_param(path));
    }
    Ok(text)
}

/// The field `key` taken out of `object`; `null` counts as absent.
pub(super) fn take(object: &mut Map<String, Value>, key: &str) -> Option<Value> {
    object.remove(key).filter(|value| !value.is_null())
}

/// The string field `key` of the request body.
fn take_string(object: &mut Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    take_string_at(object, key, key)
}

/// The string field `key`, found at `path`.
pub(super) fn take_string_at(
    object: &mut Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, ApiError> {
    match take(object, key) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(wrong_type(path, "a string")),
    }
}

/// The string field `key` that must be there, found at `path`.
pub(super) fn require_string(object: &mut Map<String, Value>, key: &str, path: &str) -> Result<String, ApiError> {
    take_string_at(object, key, path)?.ok_or_else(|| missing(path))
}

/// Checks that the field `key` is a string when present.
pub(super) fn get_string<'a>(
    object: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a str>, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(wrong_type(path, "a string")),
    }
}

/// The boolean field `key`, found at `path`.
pub(super) fn get_bool(object: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>, ApiError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(_) => Err(wrong_type(path, "a boolean")),
    }
}
