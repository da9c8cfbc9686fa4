//! Every error a client sees is OpenAI-shaped: `{"error":{"message","type","param","code"}}`
//! with the real HTTP status. The mapping from the use cases' errors (each its own enum,
//! wrapping the runner's shared failures) to status, `type` and `code` lives here, one
//! exhaustive `match` per enum; `type` and `code` are [`ErrorType`] and [`ErrorCode`].

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::Object;
use poem_openapi::types::Example;
use serde::Serialize;

use crate::domain::chat::PartPosition;
use crate::domain::service::{ChatError, RunnerError, SpeechError, TranscriptionError};

mod codes;
pub mod docs;

pub use codes::{ErrorCode, ErrorType};

/// An OpenAI-style error response body.
#[derive(Debug, Clone, Object, Serialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The details of an error, as OpenAI's API gives them.
#[derive(Debug, Clone, Object, Serialize)]
#[oai(example)]
pub struct ErrorDetail {
    /// A human-readable explanation, including the upstream's reason when there is one.
    pub message: String,
    /// The error class.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: ErrorType,
    /// The request parameter at fault, when one is; else `null`.
    #[oai(nullable)]
    pub param: Option<String>,
    /// What went wrong, for programs.
    pub code: ErrorCode,
}

impl Example for ErrorDetail {
    fn example() -> Self {
        Self {
            message: "the conversation given as `conversation_id` was not found for this caller: start \
                      a new one by leaving `conversation_id` out"
                .into(),
            kind: ErrorType::InvalidRequestError,
            param: Some("conversation_id".into()),
            code: ErrorCode::ConversationNotFound,
        }
    }
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
    pub fn new(status: StatusCode, kind: ErrorType, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorResponse {
                error: ErrorDetail {
                    message: message.into(),
                    kind,
                    param: None,
                    code,
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
            ErrorType::InvalidRequestError,
            ErrorCode::InvalidRequest,
            message,
        )
    }

    /// A 401 for missing or unusable credentials.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::AuthenticationError,
            ErrorCode::InvalidApiKey,
            message,
        )
    }

    /// A 500 for a failure of the server's own; what failed is logged, never shown.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ServerError,
            ErrorCode::InternalError,
            "internal error",
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
                ErrorType::InvalidRequestError,
                ErrorCode::NotFound,
                "unknown route: see /docs for the API",
            ),
            StatusCode::METHOD_NOT_ALLOWED => Self::new(
                status,
                ErrorType::InvalidRequestError,
                ErrorCode::MethodNotAllowed,
                "method not allowed on this route",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => Self::new(
                status,
                ErrorType::InvalidRequestError,
                ErrorCode::RequestTooLarge,
                "the request body is too large",
            ),
            StatusCode::UNAUTHORIZED => match error.downcast_ref::<super::auth::InvalidApiKey>() {
                Some(invalid) => Self::unauthorized(invalid.to_string()),
                None => Self::unauthorized(
                    "no usable Authorization: send `Authorization: Bearer` with your API key, or with \
                     your Hailuo token(s) `TOKEN[,TOKEN...]` when the server has no API keys",
                ),
            },
            status if status.is_client_error() => Self::new(
                status,
                ErrorType::InvalidRequestError,
                ErrorCode::InvalidRequest,
                clip(&message),
            ),
            status => {
                tracing::error!(%status, %message, "request failed");
                Self::new(
                    status,
                    ErrorType::ServerError,
                    ErrorCode::InternalError,
                    "internal error",
                )
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
                ErrorType::InvalidRequestError,
                ErrorCode::TooManyTokens,
                too_many.to_string(),
            ),
        }
    }
}

/// The failures every use case shares: the accounts, the admission gate, the upstream.
impl From<RunnerError> for ApiError {
    fn from(error: RunnerError) -> Self {
        let message = error.to_string();
        match error {
            RunnerError::NoAccounts => Self::unauthorized(message),
            RunnerError::AccountsRejected { .. } => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::AuthenticationError,
                ErrorCode::AccountRejected,
                message,
            ),
            RunnerError::Overloaded => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorType::ServerError,
                ErrorCode::ServerOverloaded,
                message,
            )
            .with_retry_after(OVERLOADED_RETRY_AFTER_SECS),
            RunnerError::AccountsBusy => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorType::RateLimitError,
                ErrorCode::AccountsBusy,
                message,
            )
            .with_retry_after(BUSY_RETRY_AFTER_SECS),
            RunnerError::AccountsRateLimited { .. } => Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorType::RateLimitError,
                ErrorCode::AccountRateLimited,
                message,
            )
            .with_retry_after(RATE_LIMITED_RETRY_AFTER_SECS),
            RunnerError::Refused { .. } | RunnerError::ProtocolRefused { .. } => {
                bad_gateway(ErrorCode::UpstreamRefused, message)
            }
            RunnerError::Unavailable { .. } => bad_gateway(ErrorCode::UpstreamUnavailable, message),
            RunnerError::Timeout => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                ErrorType::TimeoutError,
                ErrorCode::UpstreamTimeout,
                message,
            ),
            RunnerError::TokenStore => Self::internal(),
        }
    }
}

impl From<ChatError> for ApiError {
    fn from(error: ChatError) -> Self {
        let message = error.to_string();
        match error {
            ChatError::Run(error) => error.into(),
            ChatError::InvalidRequest(_) => Self::invalid_request(message).with_param("messages"),
            ChatError::InvalidAttachment(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                ErrorCode::InvalidAttachment,
                message,
            )
            .with_param("messages"),
            ChatError::AttachmentTooLarge(_) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorType::InvalidRequestError,
                ErrorCode::AttachmentTooLarge,
                message,
            )
            .with_param("messages"),
            ChatError::UnsupportedAttachment(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                ErrorCode::UnsupportedFileType,
                message,
            )
            .with_param("messages"),
            ChatError::ContentFiltered(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                ErrorCode::ContentFiltered,
                message,
            )
            .with_param("messages"),
            ChatError::PromptTooLong(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                ErrorCode::ContextLengthExceeded,
                message,
            )
            .with_param("messages"),
            ChatError::ConversationNotFound => Self::new(
                StatusCode::NOT_FOUND,
                ErrorType::InvalidRequestError,
                ErrorCode::ConversationNotFound,
                message,
            )
            .with_param("conversation_id"),
            ChatError::SessionStore => Self::internal(),
            ChatError::Audio { at, error } => unheard_audio(at, error),
            ChatError::TooManyAudioParts { .. } => Self::invalid_request(message).with_param("messages"),
        }
    }
}

/// Why the audio part at `at` could not be heard, with the place named as `param`.
fn unheard_audio(at: PartPosition, error: TranscriptionError) -> ApiError {
    let param = format!("messages[{}].content[{}].input_audio", at.message, at.part);
    let message = format!("the audio of `{param}` cannot be transcribed: {error}");
    let (status, code) = match error {
        TranscriptionError::Run(error) => return error.into(),
        TranscriptionError::Codec => return ApiError::internal(),
        TranscriptionError::InvalidAudio(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidAudio),
        TranscriptionError::AudioTooLong(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::AudioTooLong),
        TranscriptionError::Unavailable(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
    };
    ApiError::new(status, ErrorType::InvalidRequestError, code, message).with_param(&param)
}

impl From<SpeechError> for ApiError {
    fn from(error: SpeechError) -> Self {
        let message = error.to_string();
        match error {
            SpeechError::Run(error) => error.into(),
            SpeechError::InvalidRequest(_) => Self::invalid_request(message),
            SpeechError::ContentFiltered(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                ErrorCode::ContentFiltered,
                message,
            )
            .with_param("input"),
            SpeechError::InputTooLong(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                ErrorCode::InputTooLong,
                message,
            )
            .with_param("input"),
            SpeechError::UnknownVoice { .. } => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                ErrorCode::UnknownVoice,
                message,
            )
            .with_param("voice"),
            SpeechError::UnrenderableAudio { .. } => bad_gateway(ErrorCode::UpstreamUnavailable, message),
            SpeechError::Codec => Self::internal(),
        }
    }
}

impl From<TranscriptionError> for ApiError {
    fn from(error: TranscriptionError) -> Self {
        let message = error.to_string();
        match error {
            TranscriptionError::Run(error) => error.into(),
            TranscriptionError::InvalidAudio(_) => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorType::InvalidRequestError,
                ErrorCode::InvalidAudio,
                message,
            )
            .with_param("file"),
            TranscriptionError::AudioTooLong(_) => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorType::InvalidRequestError,
                ErrorCode::AudioTooLong,
                message,
            )
            .with_param("file"),
            TranscriptionError::Codec => Self::internal(),
            TranscriptionError::Unavailable(_) => Self::invalid_request(message),
        }
    }
}

/// A 502: the upstream refused the request ([`ErrorCode::UpstreamRefused`]) or failed.
fn bad_gateway(code: ErrorCode, message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_GATEWAY, ErrorType::UpstreamError, code, message)
}

/// What an overloaded server asks clients to wait before retrying, in seconds.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;
/// What a client whose accounts all stayed busy is asked to wait before retrying, in seconds:
/// an account is free again once its answer has ended.
const BUSY_RETRY_AFTER_SECS: u64 = 1;
/// What a client whose accounts the upstream all limits is asked to wait, in seconds (how long
/// the upstream's limits last is not known).
const RATE_LIMITED_RETRY_AFTER_SECS: u64 = 30;

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

/// Converts every error that escapes an endpoint into the OpenAI shape.
pub async fn openai_error(error: poem::Error) -> Response {
    ApiError::from_framework(&error).into_response()
}

#[cfg(test)]
mod tests;
