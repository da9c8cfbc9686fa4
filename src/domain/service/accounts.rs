//! One answer per account: the [`AccountPool`] leases each account token to one request at a
//! time, and a request waits (bounded) for the first of its tokens to be free.

use std::collections::HashSet;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

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

/// The right to use one account until dropped; dropping it frees the account at once.
#[derive(Debug)]
pub struct AccountLease {
    pool: Arc<AccountPool>,
    token: AccountToken,
}

impl AccountLease {
    /// The leased account's token.
    pub fn token(&self) -> &AccountToken {
        &self.token
    }
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

    #[tokio::test]
    async fn waiting_gives_up_after_the_wait() {
        let pool = AccountPool::new();
        let one = tokens(&["a"]);
        let _held = pool.try_lease(&one);
        assert!(pool.lease(&one, Duration::from_millis(30)).await.is_none());
    }
}
