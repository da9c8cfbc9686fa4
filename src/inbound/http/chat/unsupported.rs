//! The request fields read only to be checked: those the gateway cannot honour yet, refused
//! as `unsupported_parameter` unless they ask for nothing (`n: 1`, `tools: []`,
//! `tool_choice: "none"`, `response_format: {"type": "text"}`, ...), and those it accepts
//! without using them (`temperature`, `stop`, ...), held to their documented types and ranges.

use poem::http::StatusCode;
use serde_json::{Map, Value};

use crate::inbound::http::error::{ApiError, ErrorCode, ErrorType};

use super::read::{get_bool, get_string, invalid_value, one_of, wrong_type};

/// The answer forms `response_format.type` names (only `text` is honoured).
const RESPONSE_FORMATS: &[&str] = &["text", "json_object", "json_schema"];
/// What `tool_choice` and `function_call` may say without tools.
const NO_TOOL_CHOICES: &[&str] = &["none", "auto"];
/// What an answer may be made of (only `text` is honoured).
const MODALITIES: &[&str] = &["text", "audio"];

/// Refuses what the request asks for that the gateway cannot honour yet.
///
/// # Errors
/// A 400 `unsupported_parameter` naming the field, or a 400 for a field of the wrong type.
pub(super) fn refuse_unsupported(body: &Map<String, Value>) -> Result<(), ApiError> {
    let field = |key: &str| body.get(key).filter(|value| !value.is_null());
    if let Some(n) = field("n") {
        refuse_several_choices(n)?;
    }
    for key in ["tools", "functions"] {
        if let Some(tools) = field(key) {
            refuse_tools(key, tools)?;
        }
    }
    for key in ["tool_choice", "function_call"] {
        if let Some(choice) = field(key) {
            refuse_tool_choice(key, choice)?;
        }
    }
    if let Some(format) = field("response_format") {
        refuse_json_answers(format)?;
    }
    if get_bool(body, "logprobs", "logprobs")? == Some(true) {
        return Err(unsupported(
            "logprobs",
            "`logprobs: true`: log probabilities are not supported by this gateway yet",
        ));
    }
    if field("top_logprobs").is_some() {
        return Err(unsupported(
            "top_logprobs",
            "`top_logprobs`: log probabilities are not supported by this gateway yet; leave it out",
        ));
    }
    if field("audio").is_some() {
        return Err(unsupported(
            "audio",
            "`audio`: spoken answers are not supported by this gateway yet; leave it out (use /v1/audio/speech)",
        ));
    }
    match field("modalities") {
        Some(modalities) => refuse_spoken_answers(modalities),
        None => Ok(()),
    }
}

/// `n`: 1 is honoured.
fn refuse_several_choices(n: &Value) -> Result<(), ApiError> {
    match n.as_i64() {
        Some(1) => Ok(()),
        Some(more) if more > 1 => Err(unsupported(
            "n",
            &format!("`n: {more}`: several choices are not supported by this gateway yet; send `n: 1` or leave it out"),
        )),
        _ if n.is_number() => Err(out_of_range("n", "an integer, at least 1")),
        _ => Err(wrong_type("n", "an integer")),
    }
}

/// `tools` or `functions`: an empty list asks for nothing.
fn refuse_tools(key: &str, tools: &Value) -> Result<(), ApiError> {
    match tools {
        Value::Array(tools) if tools.is_empty() => Ok(()),
        Value::Array(_) => Err(unsupported(
            key,
            &format!("`{key}`: tool calls are not supported by this gateway yet; leave `{key}` out"),
        )),
        _ => Err(wrong_type(key, "an array")),
    }
}

/// `tool_choice` or `function_call`: `none` and `auto` ask for nothing without tools.
fn refuse_tool_choice(key: &str, choice: &Value) -> Result<(), ApiError> {
    match choice {
        Value::String(choice) if NO_TOOL_CHOICES.contains(&choice.as_str()) => Ok(()),
        Value::String(choice) if choice != "required" => Err(invalid_value(key, choice, NO_TOOL_CHOICES)),
        Value::String(_) | Value::Object(_) => Err(unsupported(
            key,
            &format!("`{key}`: tool calls are not supported by this gateway yet; leave it out or send \"none\""),
        )),
        _ => Err(wrong_type(key, "a string or an object")),
    }
}

/// `response_format`: `{"type": "text"}` is honoured.
fn refuse_json_answers(format: &Value) -> Result<(), ApiError> {
    let Value::Object(format) = format else {
        return Err(wrong_type("response_format", "an object"));
    };
    match one_of(format.get("type"), "response_format.type", RESPONSE_FORMATS)? {
        "text" => Ok(()),
        kind => Err(unsupported(
            "response_format",
            &format!(
                "`response_format` {kind}: JSON answers are not supported by this gateway yet; leave it out or \
                 send {{\"type\": \"text\"}}"
            ),
        )),
    }
}

/// `modalities`: `["text"]` is honoured.
fn refuse_spoken_answers(modalities: &Value) -> Result<(), ApiError> {
    let Value::Array(modalities) = modalities else {
        return Err(wrong_type("modalities", "an array"));
    };
    for (index, modality) in modalities.iter().enumerate() {
        if one_of(Some(modality), &format!("modalities[{index}]"), MODALITIES)? == "audio" {
            return Err(unsupported(
                "modalities",
                "`modalities` with \"audio\": spoken answers are not supported by this gateway yet; send \
                 [\"text\"] or leave it out (use /v1/audio/speech)",
            ));
        }
    }
    Ok(())
}

/// Checks the fields accepted and not used against their documented types and ranges.
///
/// # Errors
/// A 400 naming the field.
pub(super) fn check_unused(body: &Map<String, Value>) -> Result<(), ApiError> {
    for (key, min, max) in [
        ("temperature", 0.0, 2.0),
        ("top_p", 0.0, 1.0),
        ("presence_penalty", -2.0, 2.0),
        ("frequency_penalty", -2.0, 2.0),
    ] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(number)) => {
                if number.as_f64().is_none_or(|value| !(min..=max).contains(&value)) {
                    return Err(out_of_range(key, &format!("a number from {min} to {max}")));
                }
            }
            Some(_) => return Err(wrong_type(key, "a number")),
        }
    }
    for (key, min) in [("seed", i64::MIN), ("max_tokens", 1), ("max_completion_tokens", 1)] {
        match body.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Number(number)) => {
                if number.as_i64().is_none_or(|value| value < min) {
                    let what = if min == 1 {
                        "an integer, at least 1"
                    } else {
                        "a 64-bit integer"
                    };
                    return Err(out_of_range(key, what));
                }
            }
            Some(_) => return Err(wrong_type(key, "an integer")),
        }
    }
    get_string(body, "user", "user")?;
    get_bool(body, "store", "store")?;
    match body.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(metadata)) if metadata.values().all(Value::is_string) => {}
        Some(_) => return Err(wrong_type("metadata", "an object of strings")),
    }
    match body.get("stop") {
        None | Some(Value::Null | Value::String(_)) => Ok(()),
        Some(Value::Array(stops)) => match stops.iter().position(|stop| !stop.is_string()) {
            Some(index) => Err(wrong_type(&format!("stop[{index}]"), "a string")),
            None => Ok(()),
        },
        Some(_) => Err(wrong_type("stop", "a string or an array of strings")),
    }
}

/// A 400 `unsupported_parameter` for `param`.
fn unsupported(param: &str, message: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorType::InvalidRequestError,
        ErrorCode::UnsupportedParameter,
        message,
    )
    .with_param(param)
}

/// A 400: `param` is out of its range.
fn out_of_range(param: &str, expected: &str) -> ApiError {
    ApiError::invalid_request(format!("`{param}` must be {expected}")).with_param(param)
}
