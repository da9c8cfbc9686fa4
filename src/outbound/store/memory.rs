//! In-memory stores: fast, and forgotten at exit (the default `store.url = "memory"`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::domain::chat::{AccountToken, ClientId, ConversationId};
use crate::domain::ports::{Device, Session, SessionStore, StoreError, TokenStore};

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Devices per token, in memory.
#[derive(Debug, Default)]
pub struct MemoryTokenStore {
    devices: Mutex<HashMap<AccountToken, Device>>,
}

#[async_trait]
impl TokenStore for MemoryTokenStore {
    async fn device(&self, token: &AccountToken) -> Result<Option<Device>, StoreError> {
        Ok(lock(&self.devices).get(token).cloned())
    }

    async fn save_device(&self, token: &AccountToken, device: &Device) -> Result<(), StoreError> {
        lock(&self.devices).insert(token.clone(), device.clone());
        Ok(())
    }

    async fn forget_device(&self, token: &AccountToken) -> Result<(), StoreError> {
        lock(&self.devices).remove(token);
        Ok(())
    }
}

/// Conversations awaiting deletion, in memory, with an index by last use: the sweeper asks
/// for the idle ones several times a second, and a scan of every conversation kept (up to
/// `session.idle_ttl_secs` of traffic: 600,000 at 1,000 answers a second) would cost more
/// than the answers. The conversations of one account share one copy of its token.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: Mutex<Sessions>,
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<ConversationId, Entry>,
    /// `(last_used_ms, conversation)` of every entry of `by_id`, oldest first (the SQLite
    /// store's `sessions_by_last_use` index).
    by_last_use: BTreeSet<(i64, ConversationId)>,
    /// The tokens of the entries, one copy each.
    tokens: HashSet<Arc<AccountToken>>,
}

#[derive(Debug)]
struct Entry {
    token: Arc<AccountToken>,
    owner: Option<ClientId>,
    last_used_ms: i64,
    retry_at_ms: i64,
    failures: u32,
}

impl Entry {
    fn session(&self, conversation: &ConversationId) -> Session {
        Session {
            conversation: conversation.clone(),
            token: AccountToken::clone(&self.token),
            owner: self.owner.clone(),
            last_used_ms: self.last_used_ms,
            retry_at_ms: self.retry_at_ms,
            failures: self.failures,
        }
    }
}

impl Sessions {
    fn insert(&mut self, conversation: &ConversationId, token: &AccountToken, owner: Option<&ClientId>, now_ms: i64) {
        self.remove(conversation);
        let token = match self.tokens.get(token) {
            Some(shared) => Arc::clone(shared),
            None => {
                let shared = Arc::new(token.clone());
                self.tokens.insert(Arc::clone(&shared));
                shared
            }
        };
        self.by_last_use.insert((now_ms, conversation.clone()));
        self.by_id.insert(
            conversation.clone(),
            Entry {
                token,
                owner: owner.cloned(),
                last_used_ms: now_ms,
                retry_at_ms: 0,
                failures: 0,
            },
        );
    }

    fn remove(&mut self, conversation: &ConversationId) {
        let Some((conversation, entry)) = self.by_id.remove_entry(conversation) else {
            return;
        };
        // The set's copy and this entry's: the token's last conversation is gone.
        if Arc::strong_count(&entry.token) == 2 {
            self.tokens.remove(&entry.token);
        }
        self.by_last_use.remove(&(entry.last_used_ms, conversation));
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn record(
        &self,
        conversation: &ConversationId,
        token: &AccountToken,
        owner: Option<&ClientId>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        lock(&self.sessions).insert(conversation, token, owner, now_ms);
        Ok(())
    }

    async fn find(&self, conversation: &ConversationId) -> Result<Option<Session>, StoreError> {
        Ok(lock(&self.sessions)
            .by_id
            .get(conversation)
            .map(|entry| entry.session(conversation)))
    }

    async fn due(&self, idle_before_ms: i64, now_ms: i64, limit: usize) -> Result<Vec<Session>, StoreError> {
        let sessions = lock(&self.sessions);
        // Oldest first, up to the idle bound: what is not idle yet is never looked at.
        Ok(sessions
            .by_last_use
            .iter()
            .take_while(|(last_used_ms, _)| *last_used_ms <= idle_before_ms)
            .filter_map(|(_, conversation)| {
                let entry = sessions.by_id.get(conversation)?;
                (entry.retry_at_ms <= now_ms).then(|| entry.session(conversation))
            })
            .take(limit)
            .collect())
    }

    async fn defer(&self, conversation: &ConversationId, retry_at_ms: i64) -> Result<(), StoreError> {
        if let Some(entry) = lock(&self.sessions).by_id.get_mut(conversation) {
            entry.failures = entry.failures.saturating_add(1);
            entry.retry_at_ms = retry_at_ms;
        }
        Ok(())
    }

    async fn remove(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        lock(&self.sessions).remove(conversation);
        Ok(())
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(lock(&self.sessions).by_id.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_conversations_of_an_account_share_one_copy_of_its_token() {
        let store = MemorySessionStore::default();
        let (a, b) = (AccountToken::new("account-a"), AccountToken::new("account-b"));
        for n in 0..1_000 {
            let token = if n % 2 == 0 { &a } else { &b };
            store
                .record(&ConversationId::nth(n), token, None, 1_000 + i64::try_from(n).unwrap())
                .await
                .unwrap();
        }
        // Used again: still one entry and one token each.
        store.record(&ConversationId::nth(0), &a, None, 5_000).await.unwrap();
        {
            let sessions = lock(&store.sessions);
            assert_eq!(sessions.by_id.len(), 1_000);
            assert_eq!(sessions.by_last_use.len(), 1_000);
            assert_eq!(sessions.tokens.len(), 2);
            assert!(sessions.tokens.iter().all(|token| Arc::strong_count(token) == 501));
        }
        assert_eq!(
            store.find(&ConversationId::nth(1)).await.unwrap().map(|s| s.token),
            Some(b.clone())
        );

        for n in (1..1_000).step_by(2) {
            store.remove(&ConversationId::nth(n)).await.unwrap();
        }
        assert_eq!(lock(&store.sessions).tokens.len(), 1, "b's last conversation is gone");
        for n in (0..1_000).step_by(2) {
            store.remove(&ConversationId::nth(n)).await.unwrap();
        }
        let sessions = lock(&store.sessions);
        assert!(sessions.by_id.is_empty() && sessions.by_last_use.is_empty() && sessions.tokens.is_empty());
    }
}
