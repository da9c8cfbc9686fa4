//! Property tests of the reading of chat requests: any JSON is a request or a 4xx that names
//! no more than a short piece of the input, never a panic; a well-formed request keeps every
//! message's role (`developer` as `system`) and text, in order; an unknown role or part type
//! is refused at its place; what cannot be honoured is refused, naming its field.

use poem::http::StatusCode;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::domain::chat::ConversationId;
use crate::inbound::http::chat::read::{DEFAULT_MODEL, PromptRequest, ReadLimits, read_request};
use crate::inbound::http::error::ApiError;

const LIMITS: ReadLimits = ReadLimits {
    max_audio_bytes: 1 << 20,
};

/// The longest error message any input gets: long values are never echoed.
const MAX_MESSAGE_CHARS: usize = 400;

fn read(value: Value) -> Result<PromptRequest, ApiError> {
    read_request(value, &LIMITS)
}

/// Any JSON value, with the request's field names likely.
fn any_json() -> impl Strategy<Value = Value> {
    crate::json_props::any_json(crate::json_props::JsonShape {
        keys: &[
            "model",
            "messages",
            "role",
            "content",
            "type",
            "text",
            "image_url",
            "file_url",
            "file",
            "file_data",
            "file_id",
            "filename",
            "input_audio",
            "data",
            "format",
            "url",
            "stream",
            "stream_options",
            "include_usage",
            "conversation_id",
            "n",
            "tools",
            "response_format",
            "x",
        ],
        leaves: [
            "text",
            "image_url",
            "input_audio",
            "file",
            "user",
            "developer",
            "wav",
            "data:,x",
            "UklGRg==",
        ]
        .map(Value::from)
        .to_vec(),
        depth: 5,
        size: 48,
    })
}

/// A role as a client may send it, and the role the prompt keeps.
fn role() -> impl Strategy<Value = (String, String)> {
    prop_oneof![
        Just(("system", "system")),
        Just(("developer", "system")),
        Just(("user", "user")),
        Just(("assistant", "assistant")),
        Just(("tool", "tool")),
    ]
    .prop_map(|(sent, kept)| (sent.to_owned(), kept.to_owned()))
}

/// A message as a client may send it: text, or parts; and the texts it carries.
fn message() -> impl Strategy<Value = (Value, String, Vec<String>)> {
    let url = "(https://example\\.com/|data:image/png;base64,)[a-z]{1,8}";
    let part = prop_oneof![
        any::<String>().prop_map(|text| (json!({"type": "text", "text": text}), Some(text))),
        any::<String>().prop_map(|text| (json!({"type": "refusal", "refusal": text, "x": 1}), Some(text))),
        url.prop_map(|url| (json!({"type": "image_url", "image_url": {"url": url, "detail": "low"}}), None)),
        url.prop_map(|url| (json!({"type": "image_url", "image_url": url}), None)),
        url.prop_map(|url| (json!({"type": "file", "file_url": {"url": url}}), None)),
        "[A-Za-z0-9+/]{4,16}".prop_map(|data| (
            json!({"type": "file", "file": {"file_data": format!("data:application/pdf;base64,{data}"), "filename": "a.pdf"}}),
            None
        )),
    ];
    let content = prop_oneof![
        any::<String>().prop_map(|text| (json!(text), vec![text])),
        proptest::collection::vec(part, 1..4).prop_map(|parts| {
            let texts = parts.iter().filter_map(|(_, text)| text.clone()).collect();
            (Value::Array(parts.into_iter().map(|(part, _)| part).collect()), texts)
        }),
        Just((Value::Null, Vec::new())),
    ];
    (role(), content).prop_map(|((sent, kept), (content, texts))| {
        (json!({"role": sent, "content": content, "name": "x"}), kept, texts)
    })
}

/// A value none of `known`: short or long, any characters.
fn unknown(known: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "\\PC{100,300}"].prop_filter("unknown", move |value| !known.contains(&value.as_str()))
}

proptest! {

    #[test]
    fn any_json_is_a_request_or_a_short_4xx(value in any_json()) {
        match read(value.clone()) {
            Ok(request) => {
                let count = value["messages"].as_array().map_or(0, Vec::len);
                prop_assert_eq!(request.prompt.messages.len(), count);
            }
            Err(error) => {
                prop_assert!(
                    error.status == StatusCode::BAD_REQUEST || error.status == StatusCode::PAYLOAD_TOO_LARGE,
                    "{:?}", error
                );
                prop_assert!(error.body.error.message.chars().count() <= MAX_MESSAGE_CHARS, "{}", error.body.error.message);
            }
        }
    }

    #[test]
    fn anything_but_an_object_is_refused(
        value in any_json().prop_filter("not an object", |v| !v.is_object()),
    ) {
        prop_assert!(read(value).is_err());
    }

    #[test]
    fn every_message_keeps_its_role_and_texts_in_order(
        messages in proptest::collection::vec(message(), 1..5),
        model in proptest::option::of(any::<String>()),
        conversation_id in proptest::option::of("[0-9]{18,20}|\\PC{0,20}"),
    ) {
        let mut body = json!({"messages": messages.iter().map(|(m, _, _)| m.clone()).collect::<Vec<_>>()});
        if let Some(model) = &model {
            body["model"] = json!(model);
        }
        if let Some(id) = &conversation_id {
            body["conversation_id"] = json!(id);
        }
        let PromptRequest { model: name, prompt, .. } =
            read(body).map_err(|e| TestCaseError::fail(e.body.error.message))?;
        prop_assert_eq!(prompt.messages.len(), messages.len());
        for ((_, role, texts), message) in messages.iter().zip(&prompt.messages) {
            prop_assert_eq!(&message.role, role);
            prop_assert_eq!(message.texts().collect::<Vec<_>>(), texts.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let expected_model = model.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        prop_assert_eq!(name, expected_model);
        let expected_conversation = conversation_id.as_deref().and_then(ConversationId::parse);
        prop_assert_eq!(prompt.conversation, expected_conversation);
    }

    #[test]
    fn an_unknown_role_is_refused_at_its_place_without_being_echoed(
        before in 0usize..3,
        role in unknown(&["system", "developer", "user", "assistant", "tool", "function"]),
    ) {
        let mut messages = vec![json!({"role": "user", "content": "hi"}); before];
        messages.push(json!({"role": role, "content": "hi"}));
        let error = read(json!({"messages": messages})).err().ok_or_else(|| TestCaseError::fail("accepted"))?;
        let detail = error.body.error;
        prop_assert_eq!(detail.param, Some(format!("messages[{before}].role")));
        prop_assert_eq!(detail.code.as_str(), "invalid_value");
        prop_assert!(detail.message.chars().count() <= 200, "{}", detail.message);
    }

    #[test]
    fn an_unknown_part_type_is_refused_at_its_place_without_being_echoed(
        message in 0usize..3,
        part in 0usize..3,
        kind in unknown(&["text", "image_url", "input_audio", "file", "refusal"]),
    ) {
        let mut parts = vec![json!({"type": "text", "text": "hi"}); part];
        parts.push(json!({"type": kind, "text": "hi"}));
        let mut messages = vec![json!({"role": "user", "content": "hi"}); message];
        messages.push(json!({"role": "user", "content": parts}));
        let error = read(json!({"messages": messages})).err().ok_or_else(|| TestCaseError::fail("accepted"))?;
        let detail = error.body.error;
        prop_assert_eq!(detail.param, Some(format!("messages[{message}].content[{part}].type")));
        prop_assert_eq!(detail.code.as_str(), "invalid_value");
        prop_assert!(detail.message.chars().count() <= 200, "{}", detail.message);
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_naming_its_field(
        (field, value) in prop_oneof![
            (2i64..1000).prop_map(|n| ("n", json!(n))),
            Just(("tools", json!([{"type": "function", "function": {"name": "f"}}]))),
            Just(("functions", json!([{"name": "f"}]))),
            Just(("tool_choice", json!("required"))),
            Just(("tool_choice", json!({"type": "function", "function": {"name": "f"}}))),
            Just(("function_call", json!({"name": "f"}))),
            Just(("response_format", json!({"type": "json_object"}))),
            Just(("response_format", json!({"type": "json_schema", "json_schema": {"name": "x"}}))),
            Just(("logprobs", json!(true))),
            Just(("top_logprobs", json!(3))),
            Just(("audio", json!({"voice": "alloy", "format": "wav"}))),
            Just(("modalities", json!(["text", "audio"]))),
        ],
    ) {
        let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
        body[field] = value;
        let error = read(body).err().ok_or_else(|| TestCaseError::fail("accepted"))?;
        prop_assert_eq!(error.body.error.param.as_deref(), Some(field));
        prop_assert_eq!(error.body.error.code.as_str(), "unsupported_parameter");
    }
}

#[test]
fn what_asks_for_nothing_unsupported_is_accepted() {
    let body = json!({
        "messages": [{"role": "user", "content": "hi"}],
        "n": 1, "tools": [], "functions": null, "tool_choice": "none", "function_call": "auto",
        "response_format": {"type": "text"}, "logprobs": false, "top_logprobs": null, "audio": null,
        "modalities": ["text"], "temperature": 0.7, "top_p": 1, "seed": 42, "user": "u-1",
        "metadata": {"k": "v"}, "store": false, "presence_penalty": -0.5, "frequency_penalty": 2,
        "stop": ["\n\n"], "max_tokens": 256, "max_completion_tokens": 512, "stream": null,
        "stream_options": null, "model": null, "parallel_tool_calls": true
    });
    let request = read(body).map_err(|e| e.body.error.message).unwrap();
    assert_eq!(request.model, DEFAULT_MODEL);
}
