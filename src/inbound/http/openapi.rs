//! The OpenAPI description of responses poem-openapi cannot derive: an operation whose
//! success is written by hand (a chat answer that may stream, audio bytes, a transcript in
//! several formats) documents its `200` with [`Success`], followed by the error statuses it
//! sends ([`docs`](super::error::docs)); an operation whose success poem-openapi describes
//! answers with an [`Answer`], which adds those statuses.

use std::marker::PhantomData;

use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::registry::{
    MetaHeader, MetaMediaType, MetaResponse, MetaResponses, MetaSchema, MetaSchemaRef, Registry,
};
use poem_openapi::types::Type;

use super::error::docs::ErrorDoc;
use super::error::{ApiError, ErrorResponse};

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

    /// The operation's responses: this success, then the error statuses `errors`.
    pub fn and_errors(self, errors: &[ErrorDoc]) -> MetaResponses {
        let ok = MetaResponse {
            description: self.description,
            status: Some(200),
            status_range: None,
            content: self.content,
            headers: self.headers,
        };
        let mut responses = vec![ok];
        responses.extend(error_responses(errors));
        MetaResponses { responses }
    }
}

/// The error statuses `errors`, each with the OpenAI-shaped body.
fn error_responses(errors: &[ErrorDoc]) -> impl Iterator<Item = MetaResponse> + '_ {
    errors.iter().map(|(status, description)| MetaResponse {
        description,
        status: Some(*status),
        status_range: None,
        content: vec![MetaMediaType {
            content_type: "application/json; charset=utf-8",
            schema: ErrorResponse::schema_ref(),
        }],
        headers: if matches!(*status, 429 | 503) {
            vec![MetaHeader {
                name: "Retry-After".into(),
                description: Some("Seconds to wait before retrying.".into()),
                required: false,
                deprecated: false,
                schema: u64::schema_ref(),
            }]
        } else {
            Vec::new()
        },
    })
}

/// The error statuses an operation documents: [`docs`](super::error::docs)' list for it.
pub trait Failures: Send + Sync + 'static {
    /// The statuses and what they mean.
    const ERRORS: &'static [ErrorDoc];
}

/// The answer of an operation whose success poem-openapi describes (`T`: `Json<...>`,
/// `PlainText<...>`): that success, or an OpenAI-shaped error; documented with the error
/// statuses of `F`.
pub struct Answer<T, F> {
    result: Result<T, ApiError>,
    failures: PhantomData<F>,
}

impl<T, F> Answer<T, F> {
    /// The success.
    pub fn ok(success: T) -> Self {
        Self {
            result: Ok(success),
            failures: PhantomData,
        }
    }

    /// A failure.
    pub fn error(error: ApiError) -> Self {
        Self {
            result: Err(error),
            failures: PhantomData,
        }
    }
}

impl<T: IntoResponse, F: Send> IntoResponse for Answer<T, F> {
    fn into_response(self) -> Response {
        match self.result {
            Ok(success) => success.into_response(),
            Err(error) => error.into_response(),
        }
    }
}

impl<T: ApiResponse + IntoResponse, F: Failures> ApiResponse for Answer<T, F> {
    const BAD_REQUEST_HANDLER: bool = true;

    fn meta() -> MetaResponses {
        let mut meta = T::meta();
        meta.responses.extend(error_responses(F::ERRORS));
        meta
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
        ErrorResponse::register(registry);
    }

    fn from_parse_request_error(error: poem::Error) -> Self {
        Self::error(ApiError::from_parse_error(&error))
    }
}

/// The schema of raw bytes (`string`, format `binary`).
pub fn binary() -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        format: Some("binary"),
        ..MetaSchema::new("string")
    }))
}
