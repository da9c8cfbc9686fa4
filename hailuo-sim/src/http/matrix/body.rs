//! The bodies of the matrix endpoints: a `send_msg` body checked against §12.4 (its fixed
//! fields, its text, the conversation it continues and its attachments), and the `chat_id`
//! the others name.

use serde_json::{Value, json};

use crate::records::FormFile;
use crate::state::SimState;
use crate::verify::Rejection;

/// The keys of a `send_msg` body besides `chat_id`, sorted.
const SEND_KEYS: [&str; 7] = [
    "attachments",
    "backend_config",
    "chat_type",
    "msg_type",
    "selected_mcp_tools",
    "sub_agent_ids",
    "text",
];

/// The `chat_id` of a body: a number (or digits), as the conversation id's text.
pub(super) fn chat_id_of(body: &Value) -> Option<String> {
    match body.get("chat_id")? {
        Value::Number(id) => id.as_u64().map(|id| id.to_string()),
        Value::String(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => Some(id.clone()),
        _ => None,
    }
}

/// A JSON body's object.
pub(super) fn parse_body(body: &str) -> Result<Value, Rejection> {
    serde_json::from_str::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| Rejection::bad_parameter(format!("body {body:?} is not a JSON object")))
}

/// A checked `send_msg` body: its text, the conversation it continues and its files.
pub(super) struct SentMessage {
    /// The message's text.
    pub text: String,
    /// The conversation it continues.
    pub chat_id: Option<String>,
    /// Its attachments, as the confirmed files they name.
    pub files: Vec<FormFile>,
}

/// Checks a `send_msg` body against §12.4, and its attachments against the files `token`
/// confirmed.
pub(super) fn check_send_body(state: &SimState, token: &str, body: &Value) -> Result<SentMessage, Rejection> {
    let object = body.as_object().map_or_else(Default::default, Clone::clone);
    let mut keys: Vec<&str> = object
        .keys()
        .map(String::as_str)
        .filter(|key| *key != "chat_id")
        .collect();
    keys.sort_unstable();
    if keys != SEND_KEYS {
        return Err(Rejection::bad_parameter(format!(
            "send_msg keys {keys:?}, expected {SEND_KEYS:?} (and chat_id to continue)"
        )));
    }
    let fixed = [
        ("msg_type", json!(1)),
        ("chat_type", json!(1)),
        ("selected_mcp_tools", json!([])),
        ("backend_config", json!({})),
        ("sub_agent_ids", json!([])),
    ];
    for (key, wanted) in fixed {
        if body[key] != wanted {
            return Err(Rejection::bad_parameter(format!(
                "send_msg {key}={}, expected {wanted}",
                body[key]
            )));
        }
    }
    let text = match body.get("text").and_then(Value::as_str) {
        Some(text) if !text.trim().is_empty() => text.to_owned(),
        _ => return Err(Rejection::bad_parameter("send_msg text is empty or not a string")),
    };
    let chat_id =
        match body.get("chat_id") {
            None => None,
            Some(_) => Some(chat_id_of(body).ok_or_else(|| {
                Rejection::bad_parameter(format!("send_msg chat_id {} is not an id", body["chat_id"]))
            })?),
        };
    let attachments = body
        .get("attachments")
        .and_then(Value::as_array)
        .ok_or_else(|| Rejection::bad_parameter("send_msg attachments is not an array"))?;
    let ledger = state.ledger();
    let mut files = Vec::with_capacity(attachments.len());
    for (index, entry) in attachments.iter().enumerate() {
        let (Some(file_type), Some(file_id), Some(file_name), Some(3)) = (
            entry.get("file_type").and_then(Value::as_u64),
            entry.get("file_id").and_then(Value::as_str),
            entry.get("file_name").and_then(Value::as_str),
            entry.as_object().map(serde_json::Map::len),
        ) else {
            return Err(Rejection::bad_parameter(format!(
                "attachment #{index} {entry} is not {{\"file_type\": <number>, \"file_id\", \"file_name\"}}"
            )));
        };
        let file = ledger
            .bucket
            .files
            .iter()
            .find(|file| file.file_id == file_id && file.token == token)
            .ok_or_else(|| {
                Rejection::bad_parameter(format!("attachment #{index}: file_id {file_id} is not this token's"))
            })?;
        let expected_type = if file.mime.starts_with("image/") { 2 } else { 6 };
        if file_type != expected_type || file.file_name != file_name {
            return Err(Rejection::bad_parameter(format!(
                "attachment #{index}: file_type {file_type} / file_name {file_name:?}, the file is a {} named {:?}",
                file.mime, file.file_name
            )));
        }
        files.push(FormFile {
            form_type: u8::try_from(file_type).unwrap_or(u8::MAX),
            file_id: file_id.to_owned(),
            file_name: file_name.to_owned(),
        });
    }
    Ok(SentMessage { text, chat_id, files })
}
