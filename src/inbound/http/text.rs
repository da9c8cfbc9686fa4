//! [`Text`]: a JSON string that is only a string. poem-openapi's `String` also accepts numbers
//! and booleans (turning `42` into `"42"`); OpenAI's API refuses them, and so do we.

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::Value;

/// The characters `str::trim` takes for white space (Unicode's `White_Space`), as the body of
/// a regex class that Rust's, Python's and ECMAScript's engines read alike, so that a checker
/// of the OpenAPI document and the server agree on what is blank. A field that must not be
/// blank spells the class out in its `pattern` validator, `[^` this `]` (a test holds them
/// equal).
macro_rules! white_space {
    () => {
        r"\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000"
    };
}
pub(crate) use white_space;

/// A string field that refuses every other JSON type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Text(pub String);

impl Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(text)) => Ok(Text(text)),
            Some(other) => Err(ParseError::expected_type(other)),
            None => Err(ParseError::expected_input()),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(text.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_strings_are_text() {
        assert_eq!(Text::parse_from_json(Some(json!("hi"))).ok(), Some(Text::from("hi")));
        assert!(Text::parse_from_json(Some(json!(42))).is_err());
        assert!(Text::parse_from_json(Some(json!(true))).is_err());
        assert!(Text::parse_from_json(Some(json!(null))).is_err());
        assert!(Text::parse_from_json(None).is_err());
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = Value> {
        crate::json_props::any_json(crate::json_props::JsonShape {
            keys: &[],
            leaves: Vec::new(),
            depth: 3,
            size: 16,
        })
    }

    proptest::proptest! {
        #[test]
        fn text_is_exactly_the_json_strings(value in any_json()) {
            let parsed = Text::parse_from_json(Some(value.clone())).ok().map(|text| text.0);
            proptest::prop_assert_eq!(parsed, value.as_str().map(str::to_owned));
        }
    }
}
