//! The parts of the chat request's schema that poem-openapi's derives cannot say: a value
//! that is a string or an array (`content`, `stop`), a string or an object (`image_url`), one
//! object or another (a file part's `file` or `file_url`), and a boolean that may only be
//! `false`. Each is a JSON value documented by a schema written here; like the rest of the
//! request's types, it only documents: the body is read by [`super::read`].

use std::borrow::Cow;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{IsObjectType, ParseFromJSON, ParseResult, ToJSON, Type};
use serde_json::{Value, json};

use super::dto::example_json;
use super::parts::{EXAMPLE_PNG, FileDataDoc, FileUrlDoc, ImageUrlObjectDoc, PartDoc};

/// A JSON value documented by the component `$component`, whose schema `$schema` builds.
macro_rules! documented_json {
    ($(#[$meta:meta])* $name:ident, $component:literal, $schema:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Value);

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = Value;
            type RawElementValueType = Value;

            fn name() -> Cow<'static, str> {
                $component.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                MetaSchemaRef::Reference($component.to_owned())
            }

            fn register(registry: &mut Registry) {
                let schema: fn(&mut Registry) -> MetaSchema = $schema;
                registry.create_schema::<Self, _>($component.to_owned(), schema);
            }

            fn as_raw_value(&self) -> Option<&Value> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Value> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                Ok(Self(value.unwrap_or_default()))
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(self.0.clone())
            }
        }
    };
}

documented_json!(
    /// A message's content: text, or a list of parts.
    MessageContentDoc,
    "MessageContent",
    |registry| {
        PartDoc::register(registry);
        MetaSchema {
            description: Some("The text, or a list of parts (at least one)."),
            one_of: vec![
                inline(MetaSchema {
                    example: Some(json!("What is the capital of France?")),
                    ..MetaSchema::new("string")
                }),
                inline(MetaSchema {
                    items: Some(Box::new(PartDoc::schema_ref())),
                    min_items: Some(1),
                    example: Some(json!([
                        {"type": "text", "text": "What is in this picture?"},
                        {"type": "image_url", "image_url": {"url": EXAMPLE_PNG}}
                    ])),
                    ..MetaSchema::new("array")
                }),
            ],
            ..MetaSchema::ANY
        }
    }
);

documented_json!(
    /// Where an image is: its URL, or an object holding it.
    ImageUrlDoc,
    "ImageUrl",
    |registry| {
        ImageUrlObjectDoc::register(registry);
        MetaSchema {
            description: Some("An `http(s)` or `data:` URL, or `{\"url\": ..., \"detail\": ...}`."),
            one_of: vec![
                inline(MetaSchema {
                    min_length: Some(1),
                    example: Some(json!(EXAMPLE_PNG)),
                    ..MetaSchema::new("string")
                }),
                ImageUrlObjectDoc::schema_ref(),
            ],
            ..MetaSchema::ANY
        }
    }
);

documented_json!(
    /// A document: by data URL in `file`, or by URL in `file_url`.
    FilePartDoc,
    "FilePart",
    |registry| {
        FileDataDoc::register(registry);
        FileUrlDoc::register(registry);
        let holding = |field: &'static str, schema: MetaSchemaRef| {
            inline(MetaSchema {
                required: vec![field],
                properties: vec![(field, schema)],
                ..MetaSchema::new("object")
            })
        };
        MetaSchema {
            description: Some(
                "`{\"type\": \"file\", \"file\": {\"file_data\": \"data:...\", \"filename\": \"...\"}}`, or \
                 `{\"type\": \"file\", \"file_url\": {\"url\": \"https://...\"}}`: one of the two.",
            ),
            one_of: vec![
                holding("file", FileDataDoc::schema_ref()),
                holding("file_url", FileUrlDoc::schema_ref()),
            ],
            example: Some(json!({"file": example_json::<FileDataDoc>()})),
            ..MetaSchema::ANY
        }
    }
);

/// A variant of the discriminated [`PartDoc`]: always an object.
impl IsObjectType for FilePartDoc {}

documented_json!(
    /// Where the answer is to stop: a string or a list of strings (accepted and not used).
    StopDoc,
    "StopSequences",
    |_| MetaSchema {
        description: Some("A string, or a list of strings."),
        one_of: vec![
            inline(MetaSchema::new("string")),
            inline(MetaSchema {
                items: Some(Box::new(inline(MetaSchema::new("string")))),
                ..MetaSchema::new("array")
            }),
        ],
        example: Some(json!(["\n\n"])),
        ..MetaSchema::ANY
    }
);

documented_json!(
    /// `logprobs`: only `false` (or `null`).
    LogprobsDoc,
    "Logprobs",
    |_| MetaSchema {
        description: Some("Only `false`: log probabilities are not supported yet."),
        enum_items: vec![json!(false), Value::Null],
        nullable: true,
        example: Some(json!(false)),
        ..MetaSchema::new("boolean")
    }
);

fn inline(schema: MetaSchema) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(schema))
}
