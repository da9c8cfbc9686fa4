//! The values an error body's `type` and `code` take: one enum each, written with
//! `as_str()`, so that no string is spelt twice. Each is also an OpenAPI enum (its values
//! derived from the variants' names, which a test holds equal to `as_str()`).

use poem_openapi::Enum;
use serde::{Serialize, Serializer};

/// OpenAI's error classes: the `type` of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ErrorType {
    /// The request is at fault (malformed, too large, naming what does not exist).
    InvalidRequestError,
    /// The credentials are missing, wrong, or refused by the upstream.
    AuthenticationError,
    /// Every account token given is busy, or the upstream limits their requests.
    RateLimitError,
    /// The upstream refused the request or failed.
    UpstreamError,
    /// The upstream did not answer in time.
    TimeoutError,
    /// The server itself failed or is overloaded.
    ServerError,
}

impl ErrorType {
    /// The value written as `type`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequestError => "invalid_request_error",
            ErrorType::AuthenticationError => "authentication_error",
            ErrorType::RateLimitError => "rate_limit_error",
            ErrorType::UpstreamError => "upstream_error",
            ErrorType::TimeoutError => "timeout_error",
            ErrorType::ServerError => "server_error",
        }
    }
}

/// The machine-readable `code` of an error body: one per thing that can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request is unusable (bad JSON, wrong types, missing or empty fields).
    InvalidRequest,
    /// A field holds a value outside the ones it takes (an unknown role or part type).
    InvalidValue,
    /// A parameter the gateway cannot honour yet (`n` > 1, `tools`, `response_format`, ...).
    UnsupportedParameter,
    /// A file part names an uploaded file by id: there is no Files API to have uploaded it.
    UnsupportedFileId,
    /// The HTTP request itself could not be parsed.
    MalformedRequest,
    /// No route at that path.
    NotFound,
    /// The route does not take that method.
    MethodNotAllowed,
    /// The request body is larger than allowed.
    RequestTooLarge,
    /// A body was sent to a route that takes none.
    BodyNotAllowed,
    /// The request body arrived too late or too slowly.
    RequestTimeout,
    /// The request URI is too long.
    UriTooLong,
    /// The request head is too large.
    HeadersTooLarge,
    /// No usable credentials.
    InvalidApiKey,
    /// More tokens in `Authorization` than a request may carry.
    TooManyTokens,
    /// The upstream refused every account token given.
    AccountRejected,
    /// Every account token given is busy.
    AccountsBusy,
    /// The upstream limits the requests of every account token given.
    AccountRateLimited,
    /// The server is overloaded.
    ServerOverloaded,
    /// `conversation_id` names no conversation of the caller.
    ConversationNotFound,
    /// The model named is not one of the gateway's.
    ModelNotFound,
    /// A browser page's origin is not in `server.cors_origins` (its preflight is refused).
    OriginNotAllowed,
    /// An attachment could not be fetched, or too many were given.
    InvalidAttachment,
    /// An attachment (or all of them together) is too large.
    AttachmentTooLarge,
    /// An uploaded audio file is larger than allowed.
    FileTooLarge,
    /// An uploaded file is not audio we decode.
    InvalidAudio,
    /// An uploaded file holds more audio than allowed (here or upstream).
    AudioTooLong,
    /// The upstream does not take the type of an attached file.
    UnsupportedFileType,
    /// The upstream filtered the content (a prompt, a text to speak).
    ContentFiltered,
    /// The prompt is longer than the upstream takes (OpenAI's code for it).
    ContextLengthExceeded,
    /// The text to speak is longer than the upstream takes.
    InputTooLong,
    /// The upstream does not know the voice.
    UnknownVoice,
    /// The upstream refused the request.
    UpstreamRefused,
    /// The upstream could not be reached or failed.
    UpstreamUnavailable,
    /// The upstream did not answer in time.
    UpstreamTimeout,
    /// The server itself failed.
    InternalError,
}

impl ErrorCode {
    /// The value written as `code`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidValue => "invalid_value",
            ErrorCode::UnsupportedParameter => "unsupported_parameter",
            ErrorCode::UnsupportedFileId => "unsupported_file_id",
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTooLarge => "request_too_large",
            ErrorCode::BodyNotAllowed => "body_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::UriTooLong => "uri_too_long",
            ErrorCode::HeadersTooLarge => "headers_too_large",
            ErrorCode::InvalidApiKey => "invalid_api_key",
            ErrorCode::TooManyTokens => "too_many_tokens",
            ErrorCode::AccountRejected => "account_rejected",
            ErrorCode::AccountsBusy => "accounts_busy",
            ErrorCode::AccountRateLimited => "account_rate_limited",
            ErrorCode::ServerOverloaded => "server_overloaded",
            ErrorCode::ConversationNotFound => "conversation_not_found",
            ErrorCode::ModelNotFound => "model_not_found",
            ErrorCode::OriginNotAllowed => "origin_not_allowed",
            ErrorCode::InvalidAttachment => "invalid_attachment",
            ErrorCode::AttachmentTooLarge => "attachment_too_large",
            ErrorCode::FileTooLarge => "file_too_large",
            ErrorCode::InvalidAudio => "invalid_audio",
            ErrorCode::AudioTooLong => "audio_too_long",
            ErrorCode::UnsupportedFileType => "unsupported_file_type",
            ErrorCode::ContentFiltered => "content_filtered",
            ErrorCode::ContextLengthExceeded => "context_length_exceeded",
            ErrorCode::InputTooLong => "input_too_long",
            ErrorCode::UnknownVoice => "unknown_voice",
            ErrorCode::UpstreamRefused => "upstream_refused",
            ErrorCode::UpstreamUnavailable => "upstream_unavailable",
            ErrorCode::UpstreamTimeout => "upstream_timeout",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

impl Serialize for ErrorType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::registry::Registry;
    use poem_openapi::types::{ParseFromJSON, Type};
    use serde_json::Value;

    use super::*;

    /// Every value the OpenAPI enum `T` lists, parsed back into its variant.
    fn variants<T: Type + ParseFromJSON>() -> Vec<(String, T)> {
        let mut registry = Registry::new();
        T::register(&mut registry);
        let schema = &registry.schemas[&*T::name()];
        assert!(!schema.enum_items.is_empty());
        schema
            .enum_items
            .iter()
            .map(|item| {
                let name = item.as_str().expect("a string").to_owned();
                let variant = T::parse_from_json(Some(Value::String(name.clone())))
                    .ok()
                    .expect("its variant");
                (name, variant)
            })
            .collect()
    }

    #[test]
    fn the_documented_values_are_the_ones_written() {
        for (name, kind) in variants::<ErrorType>() {
            assert_eq!(name, kind.as_str());
            assert_eq!(serde_json::to_value(kind).ok(), Some(Value::String(name)));
        }
        let codes = variants::<ErrorCode>();
        assert!(codes.len() > 20);
        for (name, code) in codes {
            assert_eq!(name, code.as_str());
            assert_eq!(serde_json::to_value(code).ok(), Some(Value::String(name)));
        }
    }
}
