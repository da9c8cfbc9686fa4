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
use crate::domain::ports::{Account, ProviderError, Refusal};

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
    /// The upstream limits the requests of every account token given (or those it does not
    /// limit it refused): none answers for a while.
    #[error(
        "the upstream limits the requests of every account token given; try again later or pass more tokens: {message}"
    )]
    AccountsRateLimited {
        /// The upstream's last reason.
        message: String,
    },
    /// The upstream refused the request for a reason the use case has no answer of its own for.
    #[error("the upstream refused the request: {message}")]
    Refused {
        /// The upstream's reason.
        message: String,
    },
    /// The upstream refused what the gateway sent (a signature or parameter it does not take):
    /// the web app has changed and the profile needs updating.
    #[error(
        "the upstream refused what the gateway sent, not what was asked: its protocol has changed \
         (see `[upstream.profile]` in docs/configuration.md): {message}"
    )]
    ProtocolRefused {
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
            ProviderError::AccountBusy { .. } => RunnerError::AccountsBusy,
            ProviderError::RateLimited { message } => RunnerError::AccountsRateLimited { message },
            ProviderError::Refused {
                message,
                reason: Refusal::Protocol,
            } => RunnerError::ProtocolRefused { message },
            ProviderError::Refused { message, .. } => RunnerError::Refused { message },
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
    /// How long to wait for an idle account (and for an admission slot), counted from when
    /// the run first meets a busy one (in the pool or upstream).
    pub busy_wait: Duration,
    /// How long an account stays held after an answer's final event while the upstream's
    /// response ends.
    pub release_wait: Duration,
    /// How long an account stays out of use after the gateway hung up on one of its streams.
    pub hangup_rest: Duration,
    /// When a refused token rests.
    pub cooldown: CooldownPolicy,
}

/// How one attempt on one account failed.
enum AttemptError {
    /// The account is refused: skip it.
    Rejected(String),
    /// The upstream says the account is still busy: wait, and try it or another again.
    Busy(String),
    /// The upstream limits the account's requests: skip it for this run.
    RateLimited(String),
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
            ProviderError::AccountBusy { message } => AttemptError::Busy(message),
            ProviderError::RateLimited { message } => AttemptError::RateLimited(message),
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
    /// all (or all rest), [`RunnerError::AccountsRateLimited`] when it limits those it does
    /// not refuse, [`RunnerError::TokenStore`] when the token store fails, the
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
        let mut last_limit: Option<String> = None;
        let mut busy = BusyWait::new(self.policy.busy_wait);
        loop {
            // Another request may have rested one of them meanwhile.
            candidates = self.health.usable(&candidates);
            if candidates.is_empty() {
                // An account that is only limited will answer again: the more hopeful answer.
                return Err(match (last_limit, last_rejection) {
                    (Some(message), _) => RunnerError::AccountsRateLimited { message },
                    (None, Some(message)) => RunnerError::AccountsRejected { message },
                    (None, None) => all_resting(),
                }
                .into());
            }
            let ordered = prefer_others(&candidates, last_failed.as_ref(), &busy.met);
            let waiting = std::time::Instant::now();
            let lease = match self.pool.try_lease(&ordered) {
                Some(lease) => Some(lease),
                None => self.pool.lease(&ordered, busy.left()).await,
            };
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
                AttemptError::RateLimited(message) => {
                    tracing::warn!(account = %token, %message, "the upstream limits an account's requests; trying the next");
                    candidates.retain(|candidate| candidate != &token);
                    last_limit = Some(message);
                }
                AttemptError::Busy(message) => {
                    tracing::info!(account = %token, %message, "the upstream says the account is busy; waiting");
                    busy.met.push(token);
                    // An idle account not yet met busy is tried at once; otherwise pause.
                    let untried_idle = candidates
                        .iter()
                        .any(|candidate| !busy.met.contains(candidate) && !self.pool.is_busy(candidate));
                    if !untried_idle {
                        let pause = busy.next_pause().min(busy.left());
                        tokio::time::sleep(pause).await;
                    }
                    if busy.left().is_zero() {
                        return Err(RunnerError::AccountsBusy.into());
                    }
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

/// `candidates` with those met busy moved to the end, and `avoid` (the last to fail) after
/// the others.
fn prefer_others(
    candidates: &[AccountToken],
    avoid: Option<&AccountToken>,
    met_busy: &[AccountToken],
) -> Vec<AccountToken> {
    let (fresh, busy): (Vec<_>, Vec<_>) = candidates.iter().cloned().partition(|token| !met_busy.contains(token));
    let (mut others, avoided): (Vec<_>, Vec<_>) = fresh.into_iter().partition(|token| Some(token) != avoid);
    others.extend(avoided);
    others.extend(busy);
    others
}

/// The first pause after the upstream called every account tried busy.
const FIRST_BUSY_PAUSE: Duration = Duration::from_millis(50);
/// The longest pause between tries of busy accounts.
const MAX_BUSY_PAUSE: Duration = Duration::from_secs(1);

/// A run's wait for busy accounts: `accounts.busy_wait` counted from the first busy account
/// it met (in the pool or upstream), and the pause between rounds of accounts the upstream
/// called busy, growing from 50 ms to 1 s.
struct BusyWait {
    wait: Duration,
    since: Option<std::time::Instant>,
    pause: Duration,
    /// The accounts the upstream called busy since the last pause.
    met: Vec<AccountToken>,
}

impl BusyWait {
    fn new(wait: Duration) -> Self {
        Self {
            wait,
            since: None,
            pause: FIRST_BUSY_PAUSE,
            met: Vec::new(),
        }
    }

    /// The time left to wait; the clock starts at the first call.
    fn left(&mut self) -> Duration {
        let since = *self.since.get_or_insert_with(std::time::Instant::now);
        self.wait.saturating_sub(since.elapsed())
    }

    /// The pause before the next round (every account may be tried again after it).
    fn next_pause(&mut self) -> Duration {
        let pause = self.pause;
        self.pause = (self.pause * 2).min(MAX_BUSY_PAUSE);
        self.met.clear();
        pause
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::domain::chat::{Attachment, ChatPrompt, ConversationId};
    use crate::domain::ports::{AnswerStream, ChatProvider, Device, StoreError, TokenStore};

    /// Every token has a fresh device already: the provider is never asked to register one.
    struct RegisteredDevices;

    #[async_trait]
    impl TokenStore for RegisteredDevices {
        async fn device(&self, _: &AccountToken) -> Result<Option<Device>, StoreError> {
            Ok(Some(Device {
                user_id: "u".into(),
                device_id: "d".into(),
                registered_at_ms: super::super::now_ms(),
            }))
        }
        async fn save_device(&self, _: &AccountToken, _: &Device) -> Result<(), StoreError> {
            Ok(())
        }
        async fn forget_device(&self, _: &AccountToken) -> Result<(), StoreError> {
            Ok(())
        }
    }

    /// A provider no test reaches: the attempts are the runner's closures.
    struct Unreached;

    #[async_trait]
    impl ChatProvider for Unreached {
        async fn register_device(&self, _: &AccountToken) -> Result<Device, ProviderError> {
            Err(ProviderError::Timeout)
        }
        async fn is_alive(&self, _: &Account) -> Result<bool, ProviderError> {
            Err(ProviderError::Timeout)
        }
        async fn send(&self, _: &Account, _: &ChatPrompt, _: Vec<Attachment>) -> Result<AnswerStream, ProviderError> {
            Err(ProviderError::Timeout)
        }
        async fn delete_conversation(&self, _: &Account, _: &ConversationId) -> Result<(), ProviderError> {
            Err(ProviderError::Timeout)
        }
    }

    fn runner(busy_wait: Duration) -> AccountRunner {
        let devices = Arc::new(DeviceRegistry::new(
            Arc::new(RegisteredDevices),
            Arc::new(Unreached),
            Duration::from_secs(3600),
        ));
        AccountRunner::new(
            devices,
            AccountPool::new(),
            Admission::new(8, 8),
            RunPolicy {
                // No retries: a busy refusal counted as one would fail the run.
                retries: 0,
                retry_delay: Duration::ZERO,
                busy_wait,
                release_wait: Duration::from_secs(2),
                hangup_rest: Duration::ZERO,
                cooldown: CooldownPolicy {
                    after: 1,
                    rest: Duration::from_secs(300),
                },
            },
        )
    }

    fn busy() -> ProviderError {
        ProviderError::AccountBusy {
            message: "上一条回复还未结束".into(),
        }
    }

    #[tokio::test]
    async fn a_busy_account_is_waited_for_without_a_retry_or_a_rest() {
        let runner = runner(Duration::from_secs(10));
        let token = AccountToken::new("solo");
        let tries = AtomicU32::new(0);
        let result = runner
            .run::<RunnerError, _, _, _>(std::slice::from_ref(&token), |_| {
                let tries = &tries;
                async move {
                    if tries.fetch_add(1, Ordering::SeqCst) < 3 {
                        Err(busy())
                    } else {
                        Ok("answered")
                    }
                }
            })
            .await;
        let (value, _lease) = result.unwrap();
        assert_eq!(value, "answered");
        assert_eq!(tries.load(Ordering::SeqCst), 4, "three busy refusals, then the answer");
        assert!(!runner.health().is_resting(&token), "a busy account is not refused");
        assert_eq!(runner.health().tracked(), 0);
    }

    #[tokio::test]
    async fn another_idle_account_is_tried_at_once_after_a_busy_one() {
        let runner = runner(Duration::from_secs(10));
        let tokens = [AccountToken::new("busy"), AccountToken::new("idle")];
        let tried = Mutex::new(Vec::new());
        let (value, _lease) = runner
            .run::<RunnerError, _, _, _>(&tokens, |account| {
                let tried = &tried;
                async move {
                    tried.lock().unwrap().push(account.token.clone());
                    if account.token.expose() == "busy" {
                        Err(busy())
                    } else {
                        Ok(account.token)
                    }
                }
            })
            .await
            .unwrap();
        assert_eq!(value, AccountToken::new("idle"));
        let tried = tried.lock().unwrap().clone();
        // Started on either; the busy one is not tried again before the idle one.
        assert!(
            tried == [AccountToken::new("idle")] || tried == [AccountToken::new("busy"), AccountToken::new("idle")],
            "{tried:?}"
        );
    }

    #[tokio::test]
    async fn an_account_busy_past_the_whole_wait_is_a_429() {
        let runner = runner(Duration::from_millis(300));
        let tries = AtomicU32::new(0);
        let started = std::time::Instant::now();
        let result = runner
            .run::<RunnerError, (), _, _>(&[AccountToken::new("solo")], |_| {
                tries.fetch_add(1, Ordering::SeqCst);
                async { Err(busy()) }
            })
            .await;
        assert_eq!(result.err(), Some(RunnerError::AccountsBusy));
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "it waited the whole wait"
        );
        // Pauses of 50, 100, then 200 ms cut to what is left: a growing pause, not a busy loop.
        let tries = tries.load(Ordering::SeqCst);
        assert!((1..=4).contains(&tries), "{tries} tries");
    }

    #[tokio::test]
    async fn a_rate_limited_account_is_skipped_for_the_next_without_a_rest() {
        let runner = runner(Duration::from_secs(10));
        let tokens = [AccountToken::new("limited"), AccountToken::new("free")];
        let limited = || ProviderError::RateLimited {
            message: "请求过于频繁".into(),
        };
        let (value, lease) = runner
            .run::<RunnerError, _, _, _>(&tokens, |account| async move {
                if account.token.expose() == "limited" {
                    Err(limited())
                } else {
                    Ok(account.token)
                }
            })
            .await
            .unwrap();
        assert_eq!(value, AccountToken::new("free"));
        assert!(
            !runner.health().is_resting(&tokens[0]),
            "a limited account is not refused"
        );
        drop(lease);

        let tries = AtomicU32::new(0);
        let all = runner
            .run::<RunnerError, (), _, _>(&tokens, |_| {
                tries.fetch_add(1, Ordering::SeqCst);
                async move { Err(limited()) }
            })
            .await;
        assert_eq!(
            all.err(),
            Some(RunnerError::AccountsRateLimited {
                message: "请求过于频繁".into()
            })
        );
        assert_eq!(tries.load(Ordering::SeqCst), 2, "each account asked once");
    }

    #[test]
    fn the_accounts_met_busy_come_last_and_the_last_failed_after_the_others() {
        let [a, b, c] = [AccountToken::new("a"), AccountToken::new("b"), AccountToken::new("c")];
        let all = [a.clone(), b.clone(), c.clone()];
        assert_eq!(
            prefer_others(&all, Some(&a), std::slice::from_ref(&b)),
            vec![c.clone(), a.clone(), b.clone()]
        );
        assert_eq!(prefer_others(&all, None, &[]), all.to_vec());
    }
}
