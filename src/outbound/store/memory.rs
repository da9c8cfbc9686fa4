//! In-memory stores: fast, and forgotten at exit (the default `store.url = "memory"`).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;

use crate::domain::chat::{AccountToken, ConversationId};
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
/// than the answers.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: Mutex<Sessions>,
}

#[derive(Debug, Default)]
struct Sessions {
    by_id: HashMap<ConversationId, Session>,
    /// `(last_used_ms, conversation)` of every entry of `by_id`, oldest first (the SQLite
    /// store's `sessions_by_last_use` index).
    by_last_use: BTreeSet<(i64, ConversationId)>,
}

impl Sessions {
    fn remove(&mut self, conversation: &ConversationId) -> Option<Session> {
        let session = self.by_id.remove(conversation)?;
        self.by_last_use
            .remove(&(session.last_used_ms, session.conversation.clone()));
        Some(session)
    }
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn record(&self, conversation: &ConversationId, token: &AccountToken, now_ms: i64) -> Result<(), StoreError> {
        let mut sessions = lock(&self.sessions);
        sessions.remove(conversation);
        sessions.by_last_use.insert((now_ms, conversation.clone()));
        sessions.by_id.insert(
            conversation.clone(),
            Session {
                conversation: conversation.clone(),
                token: token.clone(),
                last_used_ms: now_ms,
                retry_at_ms: 0,
                failures: 0,
            },
        );
        Ok(())
    }

    async fn find(&self, conversation: &ConversationId) -> Result<Option<Session>, StoreError> {
        Ok(lock(&self.sessions).by_id.get(conversation).cloned())
    }

    async fn due(&self, idle_before_ms: i64, now_ms: i64, limit: usize) -> Result<Vec<Session>, StoreError> {
        let sessions = lock(&self.sessions);
        // Oldest first, up to the idle bound: what is not idle yet is never looked at.
        Ok(sessions
            .by_last_use
            .iter()
            .take_while(|(last_used_ms, _)| *last_used_ms <= idle_before_ms)
            .filter_map(|(_, conversation)| sessions.by_id.get(conversation))
            .filter(|session| session.retry_at_ms <= now_ms)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn defer(&self, conversation: &ConversationId, retry_at_ms: i64) -> Result<(), StoreError> {
        if let Some(session) = lock(&self.sessions).by_id.get_mut(conversation) {
            session.failures = session.failures.saturating_add(1);
            session.retry_at_ms = retry_at_ms;
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
