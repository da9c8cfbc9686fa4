//! Device registration (protocol §3), token liveness (§4) and conversation deletion (§5.3):
//! the JSON calls about an account.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{Value, json};

use super::HailuoClient;
use super::request::{CallFailure, Caller};
use crate::domain::chat::{AccountToken, ConversationId};
use crate::domain::ports::{Account, Device, ProviderError, Refusal};

/// Registers a device for a token.
pub const REGISTER_PATH: &str = "/v1/api/user/device/register";
/// Describes the account behind a token.
pub const USER_INFO_PATH: &str = "/v1/api/user/info";
/// Where a conversation is deleted (followed by `/<chatID>`).
pub const HISTORY_PATH: &str = "/v1/api/chat/history";

impl HailuoClient {
    /// Registers a fresh device (a new uuid v4) for `token`.
    ///
    /// # Errors
    /// [`ProviderError::AccountRejected`] for an error status below 500 or a non-zero code, but
    /// what the refusal's text says otherwise (a drifted protocol, a limited account, see
    /// [`HailuoClient::read_refusal`]); [`ProviderError::BadResponse`] when the payload has no
    /// `deviceIDStr`, transient errors otherwise.
    pub async fn register(&self, token: &AccountToken) -> Result<Device, ProviderError> {
        let user_id = uuid::Uuid::new_v4().to_string();
        let call = self.call(
            Method::POST,
            REGISTER_PATH,
            Caller::Registering { user_id: &user_id },
            token,
        );
        let payload = self
            .call_json(call, token, Some(&json!({ "uuid": user_id })))
            .await
            .map_err(|failure| self.read_refusal(failure.into_account_rejected()))?;
        let device_id = match payload.get("deviceIDStr") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => {
                return Err(ProviderError::BadResponse {
                    message: "the device registration answered no deviceIDStr".to_owned(),
                });
            }
        };
        tracing::debug!(account = %token, "registered an upstream device");
        Ok(Device {
            user_id,
            device_id,
            registered_at_ms: now_ms(),
        })
    }

    /// Whether the account is alive: the user info call succeeds with an object `userInfo`.
    ///
    /// # Errors
    /// Transient failures (unreachable, 5xx, a body that is not JSON), and the refusals that
    /// say nothing of the token (a drifted protocol, a limited account); a refused account is
    /// `Ok(false)`.
    pub async fn check_alive(&self, account: &Account) -> Result<bool, ProviderError> {
        let call = self.call(
            Method::GET,
            USER_INFO_PATH,
            Caller::Device(&account.device),
            &account.token,
        );
        match self.call_json(call, &account.token, None).await {
            Ok(payload) => Ok(payload.get("userInfo").is_some_and(Value::is_object)),
            Err(failure) => match self.read_refusal(failure.into_account_rejected()) {
                // A forgotten device says nothing about the account: register again and ask
                // again; nor does a refusal of what the gateway sent, or a limit.
                error @ (ProviderError::DeviceUnknown { .. }
                | ProviderError::RateLimited { .. }
                | ProviderError::AccountBusy { .. }
                | ProviderError::Refused {
                    reason: Refusal::Protocol,
                    ..
                }) => Err(error),
                ProviderError::AccountRejected { .. }
                | ProviderError::Refused { .. }
                | ProviderError::ConversationNotFound { .. } => Ok(false),
                error => Err(error),
            },
        }
    }

    /// Deletes `conversation` from the account's history.
    ///
    /// # Errors
    /// [`ProviderError::Refused`] for an error status below 500 or a non-zero code (but the
    /// known refusals: a logged-out account, a forgotten device, a conversation already gone),
    /// transient errors otherwise.
    pub async fn delete(&self, account: &Account, conversation: &ConversationId) -> Result<(), ProviderError> {
        let path = format!("{HISTORY_PATH}/{}", conversation.as_str());
        let call = self.call(Method::DELETE, &path, Caller::Device(&account.device), &account.token);
        self.call_json(call, &account.token, None)
            .await
            .map(drop)
            .map_err(CallFailure::into_refused)
    }
}

/// The current time in Unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
}
