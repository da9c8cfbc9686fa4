//! One answer per account: the [`AccountPool`] leases each account token to one request at a
//! time, and a request waits (bounded) for the first of its tokens to be free. The
//! [`AccountHealth`] rests a token the upstream keeps refusing, as one-api and LiteLLM do
//! with keys.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;
use tokio::sync::Notify;

use super::admission::AdmissionPermit;
use crate::domain::chat::AccountToken;
use crate::domain::metrics::instruments;

/// The accounts currently answering a request, shared by every request.
///
/// Only busy tokens are held, so the pool's size is bounded by the number of requests in flight.
#[derive(Debug, Default)]
pub struct AccountPool {
    busy: Mutex<HashSet<AccountToken>>,
    freed: Notify,
}

impl AccountPool {
    /// An empty pool.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn busy(&self) -> MutexGuard<'_, HashSet<AccountToken>> {
        // A poisoned lock only means another thread panicked mid-insert; the set is still usable.
        self.busy.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Leases the first idle token of `candidates` (in the order given), if any is idle now.
    pub fn try_lease(self: &Arc<Self>, candidates: &[AccountToken]) -> Option<AccountLease> {
        let mut busy = self.busy();
        let token = candidates.iter().find(|token| !busy.contains(*token))?.clone();
        busy.insert(token.clone());
        instruments().accounts_busy.record(busy.len() as u64, &[]);
        Some(AccountLease {
            pool: Arc::clone(self),
            token,
            _admission: None,
        })
    }

    /// Leases the first of `candidates` to be idle, waiting at most `wait`; `None` when all
    /// stayed busy that long.
    pub async fn lease(self: &Arc<Self>, candidates: &[AccountToken], wait: Duration) -> Option<AccountLease> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register for the wake-up before looking, so a release in between is not missed.
            let mut freed = pin!(self.freed.notified());
            freed.as_mut().enable();
            if let Some(lease) = self.try_lease(candidates) {
                return Some(lease);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
        }
    }

    /// How many accounts are answering right now.
    pub fn busy_count(&self) -> usize {
        self.busy().len()
    }

    /// Whether `token` is answering right now.
    pub fn is_busy(&self, token: &AccountToken) -> bool {
        self.busy().contains(token)
    }

    fn release(&self, token: &AccountToken) {
        let mut busy = self.busy();
        busy.remove(token);
        instruments().accounts_busy.record(busy.len() as u64, &[]);
        drop(busy);
        self.freed.notify_waiters();
    }
}

/// The right to use one account until dropped; dropping it frees the account at once (and
/// the request's admission slot, when it holds one).
#[derive(Debug)]
pub struct AccountLease {
    pool: Arc<AccountPool>,
    token: AccountToken,
    _admission: Option<AdmissionPermit>,
}

impl AccountLease {
    /// The leased account's token.
    pub fn token(&self) -> &AccountToken {
        &self.token
    }

    /// Keeps the request's admission slot for as long as this lease (a stream included).
    pub(crate) fn hold(mut self, permit: AdmissionPermit) -> Self {
        self._admission = Some(permit);
        self
    }

    /// Frees the request's admission slot now and the account once `ended` has resolved (the
    /// upstream frees an account only when its response has ended). Past `within`, `ended` is
    /// dropped (the response hung up on) and the account rests `rest_after_hangup` more.
    /// Outside a runtime the account is freed at once.
    pub(crate) fn release_when(
        mut self,
        ended: impl Future<Output = ()> + Send + 'static,
        within: Duration,
        rest_after_hangup: Duration,
    ) {
        drop(self._admission.take());
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            if tokio::time::timeout(within, ended).await.is_err() {
                tokio::time::sleep(rest_after_hangup).await;
            }
            drop(self);
        });
    }

    /// Frees the request's admission slot now and the account after `rest`: after a hang-up,
    /// the upstream frees the account only once it has noticed.
    pub(crate) fn release_after(mut self, rest: Duration) {
        drop(self._admission.take());
        let (false, Ok(runtime)) = (rest.is_zero(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        runtime.spawn(async move {
            tokio::time::sleep(rest).await;
            drop(self);
        });
    }
}

/// When a refused token rests.
#[derive(Debug, Clone, Copy)]
pub struct CooldownPolicy {
    /// Refusals in a row after which the token rests; 0 never rests it.
    pub after: u32,
    /// How long it rests.
    pub rest: Duration,
}

/// Refused tokens tracked before those not resting are dropped.
const MAX_TRACKED: usize = 4096;

/// What is known of one token the upstream refused.
#[derive(Debug)]
struct Record {
    /// Refusals since its last success.
    refusals: u32,
    /// Resting until then; `None` once the rest is over (the next refusal rests it again).
    resting_until: Option<Instant>,
}

/// The tokens the upstream refused lately, shared by every request: a token refused
/// `after` times in a row is skipped for `rest`, then tried again; one success clears it.
///
/// Only refused tokens are held, each forgotten at its next success; past 4,096 of them,
/// those not resting are dropped, so clients sending bad tokens cannot grow it without end. The gauge
/// `hailuo.accounts.cooldown{account=<fingerprint>}` is 1 while a token rests, 0 after.
#[derive(Debug)]
pub struct AccountHealth {
    policy: CooldownPolicy,
    records: Mutex<HashMap<AccountToken, Record>>,
}

impl AccountHealth {
    /// No token refused yet.
    pub fn new(policy: CooldownPolicy) -> Self {
        Self {
            policy,
            records: Mutex::new(HashMap::new()),
        }
    }

    fn records(&self) -> MutexGuard<'_, HashMap<AccountToken, Record>> {
        // A poisoned lock only means another thread panicked mid-update; the map is usable.
        self.records.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `candidates` without the resting ones, in the same order. A token whose rest is
    /// over is usable again (its gauge drops to 0).
    pub fn usable(&self, candidates: &[AccountToken]) -> Vec<AccountToken> {
        let now = Instant::now();
        let mut records = self.records();
        candidates
            .iter()
            .filter(|token| {
                let Some(record) = records.get_mut(*token) else {
                    return true;
                };
                match record.resting_until {
                    Some(until) if now < until => false,
                    Some(_) => {
                        record.resting_until = None;
                        set_gauge(token, false);
                        true
                    }
                    None => true,
                }
            })
            .cloned()
            .collect()
    }

    /// Whether `token` rests now.
    pub fn is_resting(&self, token: &AccountToken) -> bool {
        self.usable(std::slice::from_ref(token)).is_empty()
    }

    /// Counts a refusal of `token`; returns whether it now rests.
    pub fn refused(&self, token: &AccountToken) -> bool {
        let mut records = self.records();
        if records.len() >= MAX_TRACKED && !records.contains_key(token) {
            // Clients may send any number of bad tokens: keep only those resting now.
            let now = Instant::now();
            records.retain(|_, record| record.resting_until.is_some_and(|until| now < until));
        }
        let record = records.entry(token.clone()).or_insert(Record {
            refusals: 0,
            resting_until: None,
        });
        record.refusals = record.refusals.saturating_add(1);
        if self.policy.after == 0 || record.refusals < self.policy.after {
            return false;
        }
        record.resting_until = Some(Instant::now() + self.policy.rest);
        set_gauge(token, true);
        true
    }

    /// A success of `token`: its record is forgotten.
    pub fn succeeded(&self, token: &AccountToken) {
        if self.records().remove(token).is_some() {
            set_gauge(token, false);
        }
    }

    /// How many tokens have a record (refused since their last success).
    pub fn tracked(&self) -> usize {
        self.records().len()
    }
}

fn set_gauge(token: &AccountToken, resting: bool) {
    instruments()
        .account_cooldown
        .record(u64::from(resting), &[KeyValue::new("account", token.fingerprint())]);
}

impl Drop for AccountLease {
    fn drop(&mut self) {
        self.pool.release(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(names: &[&str]) -> Vec<AccountToken> {
        names.iter().map(|name| AccountToken::new(*name)).collect()
    }

    #[test]
    fn a_busy_token_is_not_leased_twice() {
        let pool = AccountPool::new();
        let one = tokens(&["a"]);
        let lease = pool.try_lease(&one);
        assert!(lease.is_some());
        assert!(pool.try_lease(&one).is_none());
        drop(lease);
        assert!(pool.try_lease(&one).is_some());
    }

    #[test]
    fn the_first_idle_token_in_order_is_taken() {
        let pool = AccountPool::new();
        let both = tokens(&["a", "b"]);
        let first = pool.try_lease(&both).map(|lease| lease.token().clone());
        let second = pool.try_lease(&both).map(|lease| lease.token().clone());
        assert_eq!(first, Some(AccountToken::new("a")));
        // The first lease was dropped at once, so "a" is idle again.
        assert_eq!(second, Some(AccountToken::new("a")));
        let held = pool.try_lease(&both);
        assert_eq!(
            pool.try_lease(&both).map(|l| l.token().clone()),
            Some(AccountToken::new("b"))
        );
        assert_eq!(pool.busy_count(), 1);
        drop(held);
        assert_eq!(pool.busy_count(), 0);
    }

    #[tokio::test]
    async fn a_waiter_gets_the_token_as_soon_as_it_is_freed() {
        let pool = AccountPool::new();
        let one = tokens(&["a"]);
        let held = pool.try_lease(&one);
        let waiter = {
            let pool = Arc::clone(&pool);
            let one = one.clone();
            tokio::spawn(async move { pool.lease(&one, Duration::from_secs(30)).await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(held);
        assert!(matches!(waiter.await, Ok(true)));
    }

    fn health(after: u32, rest: Duration) -> AccountHealth {
        AccountHealth::new(CooldownPolicy { after, rest })
    }

    #[test]
    fn a_token_rests_after_the_threshold_of_refusals_in_a_row() {
        let health = health(2, Duration::from_secs(300));
        let both = tokens(&["a", "b"]);
        assert!(!health.refused(&both[0]), "one refusal is not enough");
        assert_eq!(health.usable(&both), both);
        assert!(health.refused(&both[0]), "the second one rests it");
        assert_eq!(health.usable(&both), tokens(&["b"]));
        assert!(health.is_resting(&both[0]));
        assert!(!health.is_resting(&both[1]));
    }

    #[test]
    fn a_success_clears_the_count() {
        let health = health(2, Duration::from_secs(300));
        let a = AccountToken::new("a");
        health.refused(&a);
        health.succeeded(&a);
        assert_eq!(health.tracked(), 0, "a success forgets the token");
        assert!(!health.refused(&a), "the count starts again");
        assert!(!health.is_resting(&a));
    }

    #[test]
    fn a_rested_token_is_tried_again_and_one_more_refusal_rests_it_again() {
        let health = health(2, Duration::from_millis(30));
        let a = AccountToken::new("a");
        health.refused(&a);
        health.refused(&a);
        assert!(health.is_resting(&a));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!health.is_resting(&a), "the rest is over");
        assert!(health.refused(&a), "still refused on trial: it rests again at once");
        assert!(health.is_resting(&a));
    }

    #[test]
    fn past_the_limit_only_resting_tokens_are_kept() {
        let health = health(2, Duration::from_secs(300));
        let resting = AccountToken::new("resting");
        health.refused(&resting);
        health.refused(&resting);
        for i in 0..MAX_TRACKED {
            health.refused(&AccountToken::new(format!("bad-{i}")));
        }
        assert!(health.tracked() <= MAX_TRACKED);
        assert!(health.is_resting(&resting), "a resting token is kept");
    }

    #[test]
    fn a_zero_threshold_never_rests_a_token() {
        let health = health(0, Duration::from_secs(300));
        let a = AccountToken::new("a");
        for _ in 0..5 {
            assert!(!health.refused(&a));
        }
        assert!(!health.is_resting(&a));
    }

    #[tokio::test]
    async fn a_lease_released_after_a_rest_keeps_the_account_until_then() {
        let pool = AccountPool::new();
        let one = tokens(&["a"]);
        let lease = pool.try_lease(&one).unwrap();
        lease.release_after(Duration::from_millis(50));
        assert!(pool.is_busy(&one[0]), "resting after a hang-up");
        assert!(pool.lease(&one, Duration::from_secs(5)).await.is_some());
    }

    #[tokio::test]
    async fn a_lease_released_when_the_response_ends_waits_for_it_but_no_longer_than_the_bound() {
        let pool = AccountPool::new();
        let one = tokens(&["a"]);
        let (ended, end) = tokio::sync::oneshot::channel::<()>();
        pool.try_lease(&one).unwrap().release_when(
            async move {
                let _ = end.await;
            },
            Duration::from_secs(30),
            Duration::ZERO,
        );
        tokio::task::yield_now().await;
        assert!(pool.is_busy(&one[0]), "the response has not ended");
        drop(ended);
        assert!(pool.lease(&one, Duration::from_secs(5)).await.is_some());

        let cut_off = std::time::Instant::now();
        pool.try_lease(&one).unwrap().release_when(
            std::future::pending(),
            Duration::from_millis(30),
            Duration::from_millis(30),
        );
        assert!(pool.lease(&one, Duration::from_secs(5)).await.is_some(), "bounded");
        assert!(
            cut_off.elapsed() >= Duration::from_millis(60),
            "a response hung up on rests the account as well"
        );
    }

    #[tokio::test]
    async fn waiting_gives_up_after_the_wait() {
        let pool = AccountPool::new();
        let one = tokens(&["a"]);
        let _held = pool.try_lease(&one);
        assert!(pool.lease(&one, Duration::from_millis(30)).await.is_none());
    }
}
