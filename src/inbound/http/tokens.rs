//! `POST /token/check`: whether a Hailuo token is still alive, and when it expires.

use std::sync::Arc;

use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};

use crate::domain::chat::AccountToken;
use crate::domain::service::{DeviceError, DeviceRegistry, RunnerError};
use crate::domain::token_expiry;

use super::ApiTags;
use super::error::ApiError;
use super::text::Text;

/// A token to check.
#[derive(Debug, Object)]
#[oai(example)]
pub struct TokenCheckRequest {
    /// The Hailuo `_token` value.
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
pub struct TokenCheckResult {
    /// `true` when the upstream accepts the token.
    pub live: bool,
    /// When the token expires, in Unix seconds: its JWT `exp` claim, read without verifying
    /// the token. Absent when the token is not a JWT or names no expiry.
    #[oai(skip_serializing_if_is_none)]
    pub expires_at: Option<i64>,
}

/// The answer to a token check.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum TokenCheckResponse {
    /// The verdict (a dead or unknown token is `live: false`, not an error).
    #[oai(status = 200)]
    Ok(Json<TokenCheckResult>),
    /// The request is malformed.
    #[oai(status = 400)]
    BadRequest(Json<super::error::ErrorResponse>),
    /// The server requires an API key (`auth.api_keys`) and none valid was given.
    #[oai(status = 401)]
    Unauthorized(Json<super::error::ErrorResponse>),
    /// The upstream could not be asked.
    #[oai(status = 502)]
    BadGateway(Json<super::error::ErrorResponse>),
    /// The upstream did not answer in time.
    #[oai(status = 504)]
    Timeout(Json<super::error::ErrorResponse>),
    /// Our store failed.
    #[oai(status = 500)]
    Internal(Json<super::error::ErrorResponse>),
}

fn bad_request(error: poem::Error) -> TokenCheckResponse {
    TokenCheckResponse::BadRequest(Json(ApiError::from_parse_error(&error).body))
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
    #[oai(path = "/token/check", method = "post")]
    async fn check(&self, request: Json<TokenCheckRequest>) -> TokenCheckResponse {
        let token = request.0.token.0.trim().to_owned();
        if token.is_empty() {
            return TokenCheckResponse::BadRequest(Json(
                ApiError::invalid_request("`token` must not be empty")
                    .with_param("token")
                    .body,
            ));
        }
        let token = AccountToken::new(token);
        let expires_at = token_expiry::observe(&token);
        match self.devices.is_alive(&token).await {
            Ok(live) => TokenCheckResponse::Ok(Json(TokenCheckResult { live, expires_at })),
            Err(DeviceError::Provider(error)) => {
                let error = ApiError::from(RunnerError::from(error));
                if error.status == poem::http::StatusCode::GATEWAY_TIMEOUT {
                    TokenCheckResponse::Timeout(Json(error.body))
                } else {
                    TokenCheckResponse::BadGateway(Json(error.body))
                }
            }
            Err(DeviceError::Store(error)) => {
                tracing::error!(%error, "token store failed");
                TokenCheckResponse::Internal(Json(ApiError::internal().body))
            }
        }
    }
}
