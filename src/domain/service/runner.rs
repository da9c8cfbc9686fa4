//! Running work on an upstream account: the [`AccountRunner`] picks an idle account among the
//! client's tokens (one at a time per account), makes sure it has a device, runs the attempt,
//! skips accounts the upstream refuses and retries transient failures, on another idle
//! account when there is one. Chat, speech and transcription all run through it. Each run
//! first passes the [`Admission`] gate, and skips the tokens [`AccountHealth`] rests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use crate::domain::chat::AccountToken;
use crate::domain::metrics::instruments;
use crate::domain::ports::{Account, ProviderError};

use super::accounts::{AccountHealth, AccountLease, AccountPool, CooldownPolicy};
use super::admission::{Admission, AdmissionPermit};
use super::devices::{DeviceError, DeviceRegistry};

/// Why a run on the client's accounts failed, whatever the use case: the failures of the
/// [`AccountRunner`] and of the upstream that every use case shares. Chat, speech and
/// transcription each wrap it in their own error.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum RunnerError {
    /// No account token was given.
    #[error("no Hailuo account token was given: send `Authorization: Bearer TOKEN[,TOKEN...]`")]
    NoAccounts,
    /// The server runs as much upstream work as it may and its queue is full (or a slot
    /// did not free up within the wait).
    #[error("the server is overloaded: too many requests are running or waiting; retry shortly")]
    Overloaded,
    /// Every account stayed busy for the whole wait.
    #[error("every account token given is busy answering another request; try again later or pass more tokens")]
    AccountsBusy,
    /// The upstream refused every account token given (or they all rest after repeated
    /// refusals).
    #[error("the upstream refused every account token given (expired or logged out?): {message}")]
    AccountsRejected {
        /// The upstream's last reason.
        message: String,
    },
    /// The upstream refused the request (content filtered, rate limited, ...).
    #[error("the upstream refused the request: {message}")]
    Refused {
        /// The upstream's reason.
        message: String,
    },
    /// The upstream could not be reached or failed, also after retrying.
    #[error("the upstream is unavailable: {message}")]
    Unavailable {
        /// What went wrong.
        message: String,
    },
    /// The upstream sent nothing for longer than the timeout, also after retrying.
    #[error("the upstream did not answer in time")]
    Timeout,
    /// The token store failed; details are logged, not shown.
    #[error("internal error")]
    TokenStore,
}

/// The shared meaning of an upstream failure. A use case that sends what the upstream may
/// refuse on its own terms (a conversation to continue, attachments) reads those refusals
/// itself before falling back on this; to any other use case they are the upstream failing.
impl From<ProviderError> for RunnerError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::AccountRejected { message } => RunnerError::AccountsRejected { message },
            ProviderError::Refused { message } => RunnerError::Refused { message },
            ProviderError::Unavailable { message }
            | ProviderError::BadResponse { message }
            | ProviderError::ConversationNotFound { message } => RunnerError::Unavailable { message },
            ProviderError::Timeout | ProviderError::GaveUp { .. } => RunnerError::Timeout,
            // Reached only when registering again did not help.
            ProviderError::DeviceUnknown { message } => RunnerError::Unavailable { message },
            ProviderError::Attachment(error) => RunnerError::Unavailable {
                message: error.to_string(),
            },
        }
    }
}

tokio::task_local! {
    /// The attempt (1-based) running on this task, for the upstream calls' spans.
    static ATTEMPT: u32;
}

/// The attempt (1-based) of [`AccountRunner::run`] the current task is making, if any.
pub fn current_attempt() -> Option<u32> {
    ATTEMPT.try_with(|attempt| *attempt).ok()
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct RunPolicy {
    /// Retries after a transient failure.
    pub retries: u32,
    /// Pause before each retry.
    pub retry_delay: Duration,
    /// How long to wait for an idle account (and for an admission slot).
    pub busy_wait: Duration,
    /// When a refused token rests.
    pub cooldown: CooldownPolicy,
}

/// How one attempt on one account failed.
enum AttemptError {
    /// The account is refused: skip it.
    Rejected(String),
    /// Worth retrying.
    Transient(ProviderError),
    /// The upstream forgot the account's device: register again and retry at once.
    DeviceUnknown(Account, ProviderError),
    /// Final: hand it to the use case.
    Final(ProviderError),
    /// The token store failed (logged where it happened).
    TokenStore,
}

impl From<DeviceError> for AttemptError {
    fn from(error: DeviceError) -> Self {
        match error {
            DeviceError::Provider(error) => AttemptError::from(error),
            DeviceError::Store(error) => {
                tracing::error!(%error, "token store failed");
                AttemptError::TokenStore
            }
        }
    }
}

impl From<ProviderError> for AttemptError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::AccountRejected { message } => AttemptError::Rejected(message),
            error if error.is_transient() => AttemptError::Transient(error),
            error => AttemptError::Final(error),
        }
    }
}

/// Runs attempts on the accounts of a request.
pub struct AccountRunner {
    devices: Arc<DeviceRegistry>,
    pool: Arc<AccountPool>,
    admission: Arc<Admission>,
    health: AccountHealth,
    policy: RunPolicy,
}

impl AccountRunner {
    /// A runner over the shared device registry, account pool and admission gate.
    pub fn new(
        devices: Arc<DeviceRegistry>,
        pool: Arc<AccountPool>,
        admission: Arc<Admission>,
        policy: RunPolicy,
    ) -> Self {
        Self {
            devices,
            pool,
            admission,
            health: AccountHealth::new(policy.cooldown),
            policy,
        }
    }

    /// The tokens resting after repeated refusals.
    pub fn health(&self) -> &AccountHealth {
        &self.health
    }

    /// How hard it tries.
    pub fn policy(&self) -> &RunPolicy {
        &self.policy
    }

    /// The device registry.
    pub fn devices(&self) -> &Arc<DeviceRegistry> {
        &self.devices
    }

    /// The account pool (for gauges).
    pub fn pool(&self) -> &Arc<AccountPool> {
        &self.pool
    }

    /// Runs `attempt` on an idle account among `tokens` (in a random order, to spread the
    /// load as the reference does; resting tokens left out) and returns its result with the
    /// account's lease, which keeps the account and the admission slot to the caller until
    /// dropped.
    ///
    /// The failure comes back as the use case's own error `E`: the runner's failures wrapped
    /// ([`RunnerError`]), the upstream's final one as that use case reads it.
    ///
    /// # Errors
    /// [`RunnerError::NoAccounts`] without tokens, [`RunnerError::Overloaded`] when the
    /// admission gate turns the request away, [`RunnerError::AccountsBusy`] when all stay
    /// busy past the wait, [`RunnerError::AccountsRejected`] when the upstream refuses them
    /// all (or all rest), [`RunnerError::TokenStore`] when the token store fails, the
    /// transient failure once the retries are spent, or the attempt's own final error.
    pub async fn run<E, T, F, Fut>(&self, tokens: &[AccountToken], attempt: F) -> Result<(T, AccountLease), E>
    where
        E: From<RunnerError> + From<ProviderError>,
        F: FnMut(Account) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        if tokens.is_empty() {
            return Err(RunnerError::NoAccounts.into());
        }
        let admitted = self.admit().await?;
        self.run_admitted(admitted, tokens, attempt).await
    }

    /// Takes a slot of the [`Admission`] gate, waiting at most the busy wait. For work that
    /// must be counted by the gate before it runs on an account (downloads, decoding); hand
    /// the permit to [`Self::run_admitted`] afterwards.
    ///
    /// # Errors
    /// [`RunnerError::Overloaded`] when the gate turns the request away.
    pub async fn admit(&self) -> Result<AdmissionPermit, RunnerError> {
        self.admission.admit(self.policy.busy_wait).await.map_err(|overloaded| {
            tracing::warn!(%overloaded, "request turned away");
            RunnerError::Overloaded
        })
    }

    /// As [`Self::run`], on a request already admitted (see [`Self::admit`]).
    ///
    /// # Errors
    /// As [`Self::run`], but for [`RunnerError::Overloaded`].
    pub async fn run_admitted<E, T, F, Fut>(
        &self,
        admitted: AdmissionPermit,
        tokens: &[AccountToken],
        mut attempt: F,
    ) -> Result<(T, AccountLease), E>
    where
        E: From<RunnerError> + From<ProviderError>,
        F: FnMut(Account) -> Fut,
        Fut: Future<Output = Result<T, ProviderError>>,
    {
        if tokens.is_empty() {
            return Err(RunnerError::NoAccounts.into());
        }
        let mut candidates = self.health.usable(tokens);
        if candidates.is_empty() {
            return Err(all_resting().into());
        }
        let offset = rand::rng().random_range(0..candidates.len());
        candidates.rotate_left(offset);

        let mut failures = 0;
        let mut reregistered = 0;
        let mut attempts = 0;
        let mut last_failed: Option<AccountToken> = None;
        let mut last_rejection: Option<String> = None;
        loop {
            // Another request may have rested one of them meanwhile.
            candidates = self.health.usable(&candidates);
            if candidates.is_empty() {
                return Err(match last_rejection {
                    Some(message) => RunnerError::AccountsRejected { message },
                    None => all_resting(),
                }
                .into());
            }
            let ordered = prefer_others(&candidates, last_failed.as_ref());
            let waiting = std::time::Instant::now();
            let lease = self.pool.lease(&ordered, self.policy.busy_wait).await;
            instruments().account_wait.record(waiting.elapsed().as_secs_f64(), &[]);
            let lease = lease.ok_or(RunnerError::AccountsBusy)?;
            let token = lease.token().clone();
            attempts += 1;
            let outcome = ATTEMPT
                .scope(attempts, async {
                    match self.devices.account(&token).await {
                        Ok(account) => attempt(account.clone()).await.map_err(|error| match error {
                            error @ ProviderError::DeviceUnknown { .. } => AttemptError::DeviceUnknown(account, error),
                            error => AttemptError::from(error),
                        }),
                        Err(error) => Err(AttemptError::from(error)),
                    }
                })
                .await;
            let error = match outcome {
                Ok(value) => {
                    self.health.succeeded(&token);
                    return Ok((value, lease.hold(admitted)));
                }
                Err(error) => error,
            };
            drop(lease);
            match error {
                AttemptError::Rejected(message) => {
                    tracing::warn!(account = %token, %message, "the upstream refused an account; trying the next");
                    instruments()
                        .token_failures
                        .add(1, &[opentelemetry::KeyValue::new("account", token.fingerprint())]);
                    if self.health.refused(&token) {
                        tracing::warn!(account = %token, rest = ?self.policy.cooldown.rest, "an account refused repeatedly rests");
                    }
                    if let Err(error) = self.devices.forget(&token).await {
                        tracing::warn!(%error, "could not forget a device");
                    }
                    candidates.retain(|candidate| candidate != &token);
                    last_rejection = Some(message);
                }
                AttemptError::DeviceUnknown(account, error) => {
                    reregistered += 1;
                    if reregistered > MAX_REREGISTRATIONS {
                        return Err(error.into());
                    }
                    if let Err(error) = self.devices.forget_stale(&account).await {
                        tracing::error!(%error, "token store failed");
                        return Err(RunnerError::TokenStore.into());
                    }
                }
                AttemptError::Transient(error) => {
                    failures += 1;
                    if failures > self.policy.retries {
                        return Err(error.into());
                    }
                    tracing::warn!(account = %token, %error, attempt = failures, "transient upstream failure; retrying");
                    instruments().retries.add(1, &[]);
                    last_failed = Some(token);
                    tokio::time::sleep(self.policy.retry_delay).await;
                }
                AttemptError::Final(error) => return Err(error.into()),
                AttemptError::TokenStore => return Err(RunnerError::TokenStore.into()),
            }
        }
    }
}

/// How many times one run registers a new device for an account the upstream forgot.
const MAX_REREGISTRATIONS: u32 = 2;

/// The answer when every token given rests after repeated refusals.
fn all_resting() -> RunnerError {
    RunnerError::AccountsRejected {
        message: "every token given was refused repeatedly and rests for `accounts.cooldown_secs` \
                  before it is tried again"
            .into(),
    }
}

/// `candidates` with `avoid` moved to the end.
fn prefer_others(candidates: &[AccountToken], avoid: Option<&AccountToken>) -> Vec<AccountToken> {
    let (mut others, avoided): (Vec<_>, Vec<_>) = candidates.iter().cloned().partition(|token| Some(token) != avoid);
    others.extend(avoided);
    others
}
