//! The OpenAPI description of responses poem-openapi cannot derive: an operation whose
//! success is written by hand (a chat answer that may stream, audio bytes, a transcript in
//! several formats) documents its `200` with [`Success`], followed by every error status.

use poem_openapi::ApiResponse;
use poem_openapi::registry::{MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef};
use poem_openapi::types::Type;

use super::error::ApiError;

/// The `200` of an operation: what it means, each media type it comes in, its headers.
pub struct Success {
    description: &'static str,
    content: Vec<MetaMediaType>,
    headers: Vec<MetaHeader>,
}

impl Success {
    /// A success described for the reader of the documentation.
    pub fn new(description: &'static str) -> Self {
        Self {
            description,
            content: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// The success also comes as `content_type`, shaped by `schema`.
    pub fn media(mut self, content_type: &'static str, schema: MetaSchemaRef) -> Self {
        self.content.push(MetaMediaType { content_type, schema });
        self
    }

    /// The success may carry the string header `name`, meaning `description`.
    pub fn header(mut self, name: &str, description: &str) -> Self {
        self.headers.push(MetaHeader {
            name: name.into(),
            description: Some(description.into()),
            required: false,
            deprecated: false,
            schema: String::schema_ref(),
        });
        self
    }

    /// The operation's responses: this success, then every error status [`ApiError`]
    /// documents.
    pub fn and_errors(self) -> MetaResponses {
        let ok = MetaResponse {
            description: self.description,
            status: Some(200),
            status_range: None,
            content: self.content,
            headers: self.headers,
        };
        let mut responses = vec![ok];
        responses.extend(ApiError::meta().responses);
        MetaResponses { responses }
    }
}

/// The schema of raw bytes (`string`, format `binary`).
pub fn binary() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        format: Some("binary"),
        ..MetaSchema::new("string")
    }))
}
