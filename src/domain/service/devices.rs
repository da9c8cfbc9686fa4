//! The [`DeviceRegistry`]: every account needs a registered device before any other call
//! (protocol §3); it is kept in the [`TokenStore`], reused for hours, and registered once
//! even when many requests for the same token arrive together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::domain::chat::AccountToken;
use crate::domain::ports::{Account, ChatProvider, Device, ProviderError, StoreError, TokenStore};
use crate::domain::token_expiry;

use super::now_ms;

/// Why an account could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The upstream failed or refused the registration.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The token store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Registers devices on demand and remembers them.
pub struct DeviceRegistry {
    store: Arc<dyn TokenStore>,
    provider: Arc<dyn ChatProvider>,
    ttl: Duration,
    registering: Mutex<HashMap<AccountToken, Arc<tokio::sync::Mutex<()>>>>,
}

impl DeviceRegistry {
    /// A registry keeping devices in `store` and reusing each for `ttl`.
    pub fn new(store: Arc<dyn TokenStore>, provider: Arc<dyn ChatProvider>, ttl: Duration) -> Self {
        Self {
            store,
            provider,
            ttl,
            registering: Mutex::new(HashMap::new()),
        }
    }

    fn is_fresh(&self, device: &Device, now: i64) -> bool {
        let ttl_ms = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        now.saturating_sub(device.registered_at_ms) < ttl_ms
    }

    /// The account of `token` with a fresh device, registering one when needed. Concurrent
    /// callers for the same token share one registration. Every account a request runs on
    /// comes through here, so this is where the token's expiry gauge is kept current.
    ///
    /// # Errors
    /// [`DeviceError::Provider`] when the registration fails (an account refused is
    /// [`ProviderError::AccountRejected`]), [`DeviceError::Store`] when the store fails.
    pub async fn account(&self, token: &AccountToken) -> Result<Account, DeviceError> {
        token_expiry::observe(token);
        if let Some(device) = self.store.device(token).await? {
            if self.is_fresh(&device, now_ms()) {
                return Ok(Account {
                    token: token.clone(),
                    device,
                });
            }
        }
        let flight = {
            let mut registering = self.registering.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(registering.entry(token.clone()).or_default())
        };
        let result = {
            let _single = flight.lock().await;
            self.register_unless_done(token).await
        };
        {
            let mut registering = self.registering.lock().unwrap_or_else(|p| p.into_inner());
            // Two holders left (the map and us) means nobody else is waiting: forget the entry.
            if Arc::strong_count(&flight) == 2 {
                registering.remove(token);
            }
        }
        result
    }

    async fn register_unless_done(&self, token: &AccountToken) -> Result<Account, DeviceError> {
        // Another caller may have registered while we waited for the flight.
        if let Some(device) = self.store.device(token).await? {
            if self.is_fresh(&device, now_ms()) {
                return Ok(Account {
                    token: token.clone(),
                    device,
                });
            }
        }
        let device = self.provider.register_device(token).await?;
        self.store.save_device(token, &device).await?;
        tracing::info!(account = %token, "registered a device");
        Ok(Account {
            token: token.clone(),
            device,
        })
    }

    /// Drops the device of a token the upstream refused.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn forget(&self, token: &AccountToken) -> Result<(), StoreError> {
        self.store.forget_device(token).await
    }

    /// Drops `account`'s device when the upstream says it no longer knows it, unless another
    /// request has already replaced it: concurrent requests that all met the forgotten device
    /// then share the one new registration.
    ///
    /// # Errors
    /// [`StoreError`] when the store fails.
    pub async fn forget_stale(&self, account: &Account) -> Result<(), StoreError> {
        match self.store.device(&account.token).await? {
            Some(stored) if stored == account.device => {
                tracing::info!(account = %account.token, "the upstream forgot a device; registering a new one");
                self.store.forget_device(&account.token).await
            }
            _ => Ok(()),
        }
    }

    /// Runs `call` on the account of `token`, registering a new device and calling once
    /// more when the upstream no longer knows the device.
    ///
    /// # Errors
    /// As [`Self::account`], and `call`'s own error.
    pub async fn with_account<T, F, Fut>(&self, token: &AccountToken, mut call: F) -> Result<T, DeviceError>
    where
        F: FnMut(Account) -> Fut,
        Fut: std::future::Future<Output = Result<T, ProviderError>>,
    {
        let account = self.account(token).await?;
        match call(account.clone()).await {
            Err(ProviderError::DeviceUnknown { .. }) => {
                self.forget_stale(&account).await?;
                let account = self.account(token).await?;
                Ok(call(account).await?)
            }
            other => Ok(other?),
        }
    }

    /// Whether the account of `token` is alive (protocol §4); a refused account is `false`
    /// and its device is forgotten.
    ///
    /// # Errors
    /// Transient upstream failures and store failures.
    pub async fn is_alive(&self, token: &AccountToken) -> Result<bool, DeviceError> {
        let provider = &self.provider;
        let alive = match self
            .with_account(token, |account| async move { provider.is_alive(&account).await })
            .await
        {
            Ok(alive) => alive,
            Err(DeviceError::Provider(ProviderError::AccountRejected { .. })) => return Ok(false),
            Err(other) => return Err(other),
        };
        if !alive {
            self.forget(token).await?;
        }
        Ok(alive)
    }
}
