//! Every error a client sees is OpenAI-shaped: `{"error":{"message","type","param","code"}}`
//! with the real HTTP status. The mapping from the use cases' errors lives in one `match`.

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::{ApiResponse, Object};
use serde::Serialize;

use crate::domain::service::GatewayError;

/// An OpenAI-style error response body.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The details of an error, as OpenAI's API gives them.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ErrorDetail {
    /// A human-readable explanation, including the upstream's reason when there is one.
    pub message: String,
    /// The error class: `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `upstream_error`, `timeout_error`, `server_error`.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// The request parameter at fault, when one is.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: Option<String>,
}

/// An error response: a status and an OpenAI-shaped body.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body.
    pub body: ErrorResponse,
    /// Seconds for a `Retry-After` header, when the client should come back later.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with the given status, class, code and message.
    pub fn new(status: StatusCode, kind: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorResponse {
                error: ErrorDetail {
                    message: message.into(),
                    kind: kind.to_owned(),
                    param: None,
                    code: Some(code.to_owned()),
                },
            },
            retry_after: None,
        }
    }

    /// Asks the client to retry after `seconds` (a `Retry-After` header).
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// Names the parameter at fault.
    pub fn with_param(mut self, param: &str) -> Self {
        self.body.error.param = Some(param.to_owned());
        self
    }

    /// A 400 for an unusable request.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "invalid_request",
            message,
        )
    }

    /// A 401 for missing or unusable credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            message,
        )
    }

    /// Turns any framework error (unknown route, bad JSON, body too large, ...) into the
    /// OpenAI shape, keeping its status.
    pub fn from_framework(error: &poem::Error) -> Self {
        if let Some(refused) = error.downcast_ref::<super::auth::AccountsRefused>() {
            return Self::from(*refused);
        }
        let status = error.status();
        let message = error.to_string();
        match status {
            StatusCode::NOT_FOUND => Self::new(
                status,
                "invalid_request_error",
                "not_found",
                "unknown route: see /docs for the API",
            ),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                "invalid_request_error",
                "method_not_allowed",
                "method not allowed on this route",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                "invalid_request_error",
                "request_too_large",
                "the request body is too large",
            ),
            StatusCode::UNAUTHORIZED => match error.downcast_ref::<super::auth::InvalidApiKey>() {
                Some(invalid) => Self::unauthorized(invalid.to_string()),
                None => Self::unauthorized(
                    "no usable Authorization: send `Authorization: Bearer` with your API key, or with \
                     your Hailuo token(s) `TOKEN[,TOKEN...]` when the server has no API keys",
                ),
            },
            status if status.is_client_error() => {
                Self::new(status, "invalid_request_error", "invalid_request", clip(&message))
            }
            _ => {
                tracing::error!(%status, %message, "request failed");
                Self::new(status, "server_error", "internal_error", "internal error")
            }
        }
    }

    /// A 400 for a request the framework could not parse (bad JSON, wrong types).
    pub fn from_parse_error(error: &poem::Error) -> Self {
        if error.is::<super::auth::AccountsRefused>() {
            return Self::from_framework(error);
        }
        match error.status() {
            StatusCode::UNAUTHORIZED | StatusCode::PAYLOAD_TOO_LARGE => Self::from_framework(error),
            _ => Self::invalid_request(format!("invalid request: {}", clip(&error.to_string()))),
        }
    }

    /// The statuses documented for every operation.
    fn documented() -> &'static [(u16, &'static str)] {
        &[
            (
                400,
                "The request is malformed: bad JSON, wrong types, missing or empty fields, or more \
                 tokens in `Authorization` than `accounts.max_tokens_per_request` (`too_many_tokens`).",
            ),
            (
                401,
                "No usable `Authorization: Bearer` value (a wrong API key, or a raw Hailuo token where the \
                 server requires API keys), or the upstream refused every token given (or they all rest \
                 for `accounts.cooldown_secs` after repeated refusals).",
            ),
            (
                404,
                "`conversation_id` names no conversation of this caller (none by that id, or one \
                 another key or token created).",
            ),
            (
                408,
                "The request body did not arrive within `server.body_timeout_secs`, or arrived slower \
                 than `server.min_body_bytes_per_sec`; the connection is closed.",
            ),
            (
                413,
                "The request body is larger than `server.max_body_bytes`, an attachment is larger than \
                 `files.max_bytes`, or the attachments of the request are larger than \
                 `files.max_total_bytes` together; or an audio file lasts longer than \
                 `audio.max_duration_secs` (or decodes to more than `audio.max_decoded_bytes`); or a \
                 body was sent to an operation that takes none (`body_not_allowed`).",
            ),
            (429, "Every account token given is busy past `accounts.busy_wait_secs`."),
            (
                502,
                "The upstream refused the request (its reason is in the message) or failed.",
            ),
            (
                503,
                "The server is overloaded: `server.max_in_flight` upstream requests run and \
                 `server.max_queued` wait; retry after the `Retry-After` seconds.",
            ),
            (
                504,
                "The upstream's answer did not begin within `upstream.first_byte_timeout_secs`, or it \
                 went silent for `upstream.idle_timeout_secs`, after the retries.",
            ),
        ]
    }
}

/// The longest framework message passed on: parse errors quote the value they refused, and a
/// 5 MB value must not come back in the error.
const MAX_MESSAGE_CHARS: usize = 500;

/// `message`, cut to [`MAX_MESSAGE_CHARS`] characters.
fn clip(message: &str) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}… (cut)", &message[..end]),
        None => message.to_owned(),
    }
}

impl From<super::auth::AccountsRefused> for ApiError {
    fn from(refused: super::auth::AccountsRefused) -> Self {
        use super::auth::AccountsRefused;
        match refused {
            AccountsRefused::InvalidApiKey(invalid) => Self::unauthorized(invalid.to_string()),
            AccountsRefused::TooManyTokens(too_many) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "too_many_tokens",
                too_many.to_string(),
            ),
        }
    }
}

impl From<GatewayError> for ApiError {
    fn from(error: GatewayError) -> Self {
        let message = error.to_string();
        match error {
            GatewayError::InvalidRequest(_) => Self::invalid_request(message),
            GatewayError::InvalidAttachment(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_attachment",
                message,
            )
            .with_param("messages"),
            GatewayError::InvalidAudio(_) => Self::new(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_audio",
                message,
            )
            .with_param("file"),
            GatewayError::AudioTooLong(_) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "audio_too_long",
                message,
            )
            .with_param("file"),
            GatewayError::AttachmentTooLarge(_) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "attachment_too_large",
                message,
            )
            .with_param("messages"),
            GatewayError::NoAccounts => Self::unauthorized(message),
            GatewayError::AccountsRejected { .. } => Self::new(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "account_rejected",
                message,
            ),
            GatewayError::Overloaded => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "server_overloaded",
                message,
            )
            .with_retry_after(OVERLOADED_RETRY_AFTER_SECS),
            GatewayError::AccountsBusy => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "accounts_busy",
                message,
            ),
            GatewayError::ConversationNotFound => Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "conversation_not_found",
                message,
            )
            .with_param("conversation_id"),
            GatewayError::Refused { .. } => {
                Self::new(StatusCode::BAD_GATEWAY, "upstream_error", "upstream_refused", message)
            }
            GatewayError::Unavailable { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "upstream_error",
                "upstream_unavailable",
                message,
            ),
            GatewayError::Timeout => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                "upstream_timeout",
                message,
            ),
            GatewayError::Internal => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal_error",
                message,
            ),
        }
    }
}

/// What an overloaded server asks clients to wait before retrying, in seconds.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&self.body).unwrap_or_default();
        let mut response = Response::builder()
            .status(self.status)
            .content_type("application/json; charset=utf-8");
        if let Some(seconds) = self.retry_after {
            response = response.header(poem::http::header::RETRY_AFTER, seconds);
        }
        response.body(body)
    }
}

impl ApiResponse for ApiError {
    const BAD_REQUEST_HANDLER: bool = true;

    fn meta() -> MetaResponses {
        MetaResponses {
            responses: Self::documented()
                .iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(*status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: <ErrorResponse as poem_openapi::types::Type>::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <ErrorResponse as poem_openapi::types::Type>::register(registry);
    }

    fn from_parse_request_error(error: poem::Error) -> Self {
        Self::from_parse_error(&error)
    }
}

/// Converts every error that escapes an endpoint into the OpenAI shape.
pub async fn openai_error(error: poem::Error) -> Response {
    ApiError::from_framework(&error).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_quoting_a_huge_value_is_cut() {
        let huge = "x".repeat(5_000_000);
        let error = poem::Error::from_string(format!("found {huge}"), StatusCode::BAD_REQUEST);
        let message = ApiError::from_parse_error(&error).body.error.message;
        assert!(message.chars().count() < 600, "{} chars", message.chars().count());
        assert!(message.ends_with("… (cut)"));
        let framework = ApiError::from_framework(&error).body.error.message;
        assert!(framework.chars().count() < 600);
    }

    #[test]
    fn a_short_message_is_kept_whole_and_multibyte_text_is_cut_on_a_boundary() {
        assert_eq!(clip("bad JSON"), "bad JSON");
        let cut = clip(&"海".repeat(800));
        assert!(cut.starts_with(&"海".repeat(MAX_MESSAGE_CHARS)));
        assert!(cut.ends_with("… (cut)"));
    }
}
