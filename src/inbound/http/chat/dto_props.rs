//! Property tests of the chat request DTOs: any JSON parses into a request or a parse
//! error, never a panic; a well-formed request keeps every message's role and text, in order.

use poem::http::StatusCode;
use poem_openapi::types::ParseFromJSON;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

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
            "url",
            "stream",
            "stream_options",
            "include_usage",
            "conversation_id",
            "x",
        ],
        leaves: ["text", "image_url", "file", "user", "data:,x"]
            .map(Value::from)
            .to_vec(),
        depth: 5,
        size: 48,
    })
}

/// A message as a client may send it: text, or parts; and the texts it carries.
fn message() -> impl Strategy<Value = (Value, String, Vec<String>)> {
    let part = prop_oneof![
        any::<String>().prop_map(|text| (json!({"type": "text", "text": text}), Some(text))),
        any::<String>().prop_map(|url| (json!({"type": "image_url", "image_url": {"url": url}}), None)),
        any::<String>().prop_map(|url| (json!({"type": "file", "file_url": {"url": url}}), None)),
    ];
    let content = prop_oneof![
        any::<String>().prop_map(|text| (json!(text), vec![text])),
        proptest::collection::vec(part, 0..4).prop_map(|parts| {
            let texts = parts.iter().filter_map(|(_, text)| text.clone()).collect();
            (Value::Array(parts.into_iter().map(|(part, _)| part).collect()), texts)
        }),
        Just((Value::Null, Vec::new())),
    ];
    (any::<String>(), content)
        .prop_map(|(role, (content, texts))| (json!({"role": role, "content": content}), role, texts))
}

proptest! {

    #[test]
    fn any_json_is_a_request_or_a_parse_error(value in any_json()) {
        if let Ok(request) = ChatCompletionRequest::parse_from_json(Some(value)) {
            let count = request.messages.len();
            match request.into_prompt() {
                Ok(request) => prop_assert_eq!(request.prompt.messages.len(), count),
                Err(error) => prop_assert_eq!(error.status, StatusCode::BAD_REQUEST),
            }
        }
    }

    #[test]
    fn anything_but_an_object_is_a_parse_error(
        value in any_json().prop_filter("not an object", |v| !v.is_object()),
    ) {
        prop_assert!(ChatCompletionRequest::parse_from_json(Some(value)).is_err());
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
        let request = ChatCompletionRequest::parse_from_json(Some(body))
            .map_err(|e| TestCaseError::fail(e.into_message()))?;
        let PromptRequest { model: name, prompt, .. } =
            request.into_prompt().map_err(|e| TestCaseError::fail(e.body.error.message))?;
        for ((_, role, texts), message) in messages.iter().zip(&prompt.messages) {
            prop_assert_eq!(&message.role, role);
            prop_assert_eq!(message.texts().collect::<Vec<_>>(), texts.iter().map(String::as_str).collect::<Vec<_>>());
        }
        let expected_model = model.filter(|m| !m.trim().is_empty()).unwrap_or_else(|| DEFAULT_MODEL.to_owned());
        prop_assert_eq!(name, expected_model);
        let expected_conversation = conversation_id.as_deref().and_then(ConversationId::parse);
        prop_assert_eq!(prompt.conversation, expected_conversation);
    }
}
