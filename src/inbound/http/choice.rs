//! [`Choice`] and [`MaybeChoice`]: a string field that takes one of a closed set of names,
//! documented as an OpenAPI enum and refused otherwise with the names it takes. The names are
//! matched exactly, as OpenAI's API matches them.

use std::borrow::Cow;

use poem::web::Field;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseFromMultipartField, ParseResult, ToJSON, Type};
use serde_json::Value;

/// A closed set of names, each standing for a value.
pub trait Choices: Copy + PartialEq + Send + Sync + 'static {
    /// The names and what each stands for.
    const NAMES: &'static [(&'static str, Self)];
    /// Said after the list of names when another is given (`opus` is not supported, ...).
    const REFUSAL: &'static str;

    /// The name of `self`: its entry in [`Choices::NAMES`], which lists every value.
    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, value)| *value == self)
            .map_or("", |(name, _)| *name)
    }
}

/// The value `name` stands for, or the error naming the names taken.
fn choose<C: Choices>(name: &str) -> Result<C, String> {
    C::NAMES
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, value)| *value)
        .ok_or_else(|| {
            let names: Vec<&str> = C::NAMES.iter().map(|(known, _)| *known).collect();
            let shown: String = name.chars().take(40).collect();
            format!("{shown:?} is not one of {}{}", names.join(", "), C::REFUSAL)
        })
}

/// The names as JSON strings.
fn names<C: Choices>() -> Vec<Value> {
    C::NAMES
        .iter()
        .map(|(name, _)| Value::String((*name).to_owned()))
        .collect()
}

/// A required field naming one of `C`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice<C>(pub C);

impl<C: Choices> Type for Choice<C> {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            enum_items: names::<C>(),
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl<C: Choices> ParseFromJSON for Choice<C> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(name)) => choose(&name).map(Choice).map_err(ParseError::custom),
            Some(other) => Err(ParseError::expected_type(other)),
            None => Err(ParseError::expected_input()),
        }
    }
}

impl<C: Choices> ToJSON for Choice<C> {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.name().to_owned()))
    }
}

impl<C: Choices> ParseFromMultipartField for Choice<C> {
    async fn parse_from_multipart(field: Option<Field>) -> ParseResult<Self> {
        match field {
            Some(field) => {
                let name = field.text().await.map_err(ParseError::custom)?;
                choose(&name).map(Choice).map_err(ParseError::custom)
            }
            None => Err(ParseError::expected_input()),
        }
    }
}

/// An optional JSON field naming one of `C`: absent or `null` is `None` (the default), and
/// the document says so (`nullable`, `null` among the names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaybeChoice<C>(pub Option<C>);

impl<C: Choices> Type for MaybeChoice<C> {
    const IS_REQUIRED: bool = false;
    type RawValueType = C;
    type RawElementValueType = C;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut names = names::<C>();
        names.push(Value::Null);
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            enum_items: names,
            nullable: true,
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        self.0.as_ref()
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.0.iter())
    }
}

impl<C: Choices> ParseFromJSON for MaybeChoice<C> {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            None | Some(Value::Null) => Ok(Self(None)),
            Some(Value::String(name)) => choose(&name).map(|value| Self(Some(value))).map_err(ParseError::custom),
            Some(other) => Err(ParseError::expected_type(other)),
        }
    }
}

impl<C: Choices> ToJSON for MaybeChoice<C> {
    fn to_json(&self) -> Option<Value> {
        Some(
            self.0
                .map_or(Value::Null, |value| Value::String(value.name().to_owned())),
        )
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Fruit {
        Apple,
        Pear,
    }

    impl Choices for Fruit {
        const NAMES: &'static [(&'static str, Self)] = &[("apple", Fruit::Apple), ("pear", Fruit::Pear)];
        const REFUSAL: &'static str = " (plums are out of season)";
    }

    #[test]
    fn only_the_names_themselves_are_taken() {
        let parse = |value: Value| Choice::<Fruit>::parse_from_json(Some(value)).map(|choice| choice.0);
        assert_eq!(parse(json!("pear")).ok(), Some(Fruit::Pear));
        for refused in [json!("Pear"), json!(" pear"), json!(""), json!(1), json!(null)] {
            assert!(parse(refused.clone()).is_err(), "{refused}");
        }
        let message = parse(json!("plum"))
            .err()
            .map(|error| error.into_message())
            .unwrap_or_default();
        assert!(
            message.ends_with(r#""plum" is not one of apple, pear (plums are out of season)"#),
            "{message}"
        );
    }

    #[test]
    fn a_maybe_choice_takes_absence_and_null_as_none_and_says_so() {
        let parse = |value| MaybeChoice::<Fruit>::parse_from_json(value).map(|choice| choice.0);
        assert_eq!(parse(None).ok(), Some(None));
        assert_eq!(parse(Some(json!(null))).ok(), Some(None));
        assert_eq!(parse(Some(json!("apple"))).ok(), Some(Some(Fruit::Apple)));
        assert!(parse(Some(json!("plum"))).is_err());
        let schema = MaybeChoice::<Fruit>::schema_ref();
        let schema = schema.unwrap_inline();
        assert!(schema.nullable);
        assert_eq!(schema.enum_items, [json!("apple"), json!("pear"), json!(null)]);
    }
}
