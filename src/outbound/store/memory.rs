//! In-memory stores: fast, and forgotten at exit (the default `store.url = "memory"`).

use std::collections::HashMap;
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

/// Conversations awaiting deletion, in memory.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: Mutex<HashMap<ConversationId, Session>>,
}

#[async_trait]
impl SessionStore for MemorySessionStore {
    async fn record(&self, conversation: &ConversationId, token: &AccountToken, now_ms: i64) -> Result<(), StoreError> {
        lock(&self.sessions).insert(
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
        Ok(lock(&self.sessions).get(conversation).cloned())
    }

    async fn due(&self, idle_before_ms: i64, now_ms: i64, limit: usize) -> Result<Vec<Session>, StoreError> {
        let mut due: Vec<Session> = lock(&self.sessions)
            .values()
            .filter(|s| s.last_used_ms <= idle_before_ms && s.retry_at_ms <= now_ms)
            .cloned()
            .collect();
        due.sort_by_key(|s| s.last_used_ms);
        due.truncate(limit);
        Ok(due)
    }

    async fn defer(&self, conversation: &ConversationId, retry_at_ms: i64) -> Result<(), StoreError> {
        if let Some(session) = lock(&self.sessions).get_mut(conversation) {
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
        Ok(lock(&self.sessions).len() as u64)
    }
}
