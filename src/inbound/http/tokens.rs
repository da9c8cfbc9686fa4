//! `POST /token/check`: whether a Hailuo token is still alive, and when it expires.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{Object, OpenApi};

use crate::domain::chat::AccountToken;
use crate::domain::service::{DeviceError, DeviceRegistry, RunnerError};
use crate::domain::token_expiry;

use super::ApiTags;
use super::error::{ApiError, docs};
use super::openapi::{Answer, Failures};
use super::text::Text;

/// A token to check.
#[derive(Debug, Object)]
#[oai(example)]
pub struct TokenCheckRequest {
    /// The Hailuo `_token` value (not blank).
    #[oai(validator(
        min_length = 1,
        pattern = r"[^\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    ))]
    pub token: Text,
}

impl Example for TokenCheckRequest {
    fn example() -> Self {
        Self {
            token: Text::from("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9..."),
        }
    }
}

/// The verdict.
#[derive(Debug, Object)]
#[oai(example)]
pub struct TokenCheckResult {
    /// `true` when the upstream accepts the token.
    pub live: bool,
    /// When the token expires, in Unix seconds: its JWT `exp` claim, read without verifying
    /// the token. Absent when the token is not a JWT or names no expiry.
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<i64>,
}

/// The error statuses of `POST /token/check`.
pub struct CheckErrors;

impl Failures for CheckErrors {
    const ERRORS: &'static [docs::ErrorDoc] = docs::TOKEN_CHECK;
}

/// The answer to a token check: the verdict (a dead or unknown token is `live: false`, not an
/// error), or an error.
type TokenCheckResponse = Answer<Json<TokenCheckResult>, CheckErrors>;

impl Example for TokenCheckResult {
    fn example() -> Self {
        Self {
            live: true,
            expires_at: Some(1_767_225_600),
        }
    }
}

/// The tokens resource.
pub struct TokenApi {
    devices: Arc<DeviceRegistry>,
}

impl TokenApi {
    /// The resource over the device registry.
    pub fn new(devices: Arc<DeviceRegistry>) -> Self {
        Self { devices }
    }
}

#[OpenApi(tag = "ApiTags::Tokens")]
impl TokenApi {
    /// Check a token
    ///
    /// Asks the upstream whether the token in the body is logged in, and says when the token
    /// expires when it is a JWT naming an expiry (`expires_at`). Checking a token more
    /// often than every 10 minutes is discouraged by the upstream's users. Open without
    /// server API keys; when the server has them (`auth.api_keys`), send one as
    /// `Authorization: Bearer sk-...` (else 401).
    #[oai(path = "/token/check", method = "post", operation_id = "checkToken")]
    async fn check(&self, request: Json<TokenCheckRequest>) -> TokenCheckResponse {
        let token = request.0.token.0.trim().to_owned();
        if token.is_empty() {
            return TokenCheckResponse::error(
                ApiError::invalid_request("`token` must not be empty").with_param("token"),
            );
        }
        let token = AccountToken::new(token);
        let expires_at = token_expiry::observe(&token);
        match self.devices.is_alive(&token).await {
            Ok(live) => TokenCheckResponse::ok(Json(TokenCheckResult { live, expires_at })),
            Err(DeviceError::Provider(error)) => TokenCheckResponse::error(upstream_failure(error.into())),
            Err(DeviceError::Store(error)) => {
                tracing::error!(%error, "token store failed");
                TokenCheckResponse::error(ApiError::internal())
            }
        }
    }
}

/// What a failed check of the upstream is answered with: 504 when it did not answer in time,
/// else 502, whatever the failure (the token checked is no credential of the caller's, so a
/// refusal of it is no 401).
fn upstream_failure(error: RunnerError) -> ApiError {
    let error = ApiError::from(error);
    if error.status == poem::http::StatusCode::GATEWAY_TIMEOUT {
        error
    } else {
        ApiError {
            status: poem::http::StatusCode::BAD_GATEWAY,
            ..error
        }
    }
}
