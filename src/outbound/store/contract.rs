//! The contract every store adapter keeps: the same tests run against each of them.

use crate::domain::chat::{AccountToken, ConversationId};
use crate::domain::ports::{Device, SessionStore, StoreError, TokenStore};

fn conversation(n: u64) -> ConversationId {
    ConversationId::from_upstream(format!("{:018}", 243_600_000_000_000_000 + n))
}

/// A device is kept per token, replaced, and forgotten.
pub async fn token_store_keeps_devices(store: &dyn TokenStore) -> Result<(), StoreError> {
    let token = AccountToken::new("contract-token");
    let other = AccountToken::new("contract-other");
    assert_eq!(store.device(&token).await?, None);
    let first = Device {
        user_id: "u-1".into(),
        device_id: "111".into(),
        registered_at_ms: 1_000,
    };
    store.save_device(&token, &first).await?;
    assert_eq!(store.device(&token).await?, Some(first));
    assert_eq!(store.device(&other).await?, None);
    let second = Device {
        user_id: "u-2".into(),
        device_id: "222".into(),
        registered_at_ms: 2_000,
    };
    store.save_device(&token, &second).await?;
    assert_eq!(store.device(&token).await?, Some(second));
    store.forget_device(&token).await?;
    assert_eq!(store.device(&token).await?, None);
    store.forget_device(&token).await?;
    Ok(())
}

/// Sessions are recorded, refreshed, found due in order, deferred and removed.
pub async fn session_store_tracks_conversations(store: &dyn SessionStore) -> Result<(), StoreError> {
    let token = AccountToken::new("contract-token");
    let (a, b, c) = (conversation(1), conversation(2), conversation(3));
    store.record(&a, &token, 1_000).await?;
    store.record(&b, &token, 2_000).await?;
    store.record(&c, &token, 3_000).await?;
    assert_eq!(store.pending().await?, 3);

    let found = store.find(&b).await?.map(|s| (s.token, s.last_used_ms, s.failures));
    assert_eq!(found, Some((token.clone(), 2_000, 0)));
    assert_eq!(store.find(&conversation(99)).await?, None);

    let due: Vec<_> = store
        .due(2_000, 10_000, 10)
        .await?
        .into_iter()
        .map(|s| s.conversation)
        .collect();
    assert_eq!(due, vec![a.clone(), b.clone()], "oldest first, idle ones only");
    let limited = store.due(10_000, 10_000, 1).await?;
    assert_eq!(limited.len(), 1);

    // A failed deletion waits for its retry time.
    store.defer(&a, 5_000).await?;
    let due: Vec<_> = store
        .due(2_000, 4_999, 10)
        .await?
        .into_iter()
        .map(|s| s.conversation)
        .collect();
    assert_eq!(due, vec![b.clone()]);
    let retried = store.due(2_000, 5_000, 10).await?;
    assert_eq!(
        retried.first().map(|s| (s.conversation.clone(), s.failures)),
        Some((a.clone(), 1))
    );

    // Using a conversation again refreshes it and clears its retry state.
    store.record(&a, &token, 9_000).await?;
    let refreshed = store
        .find(&a)
        .await?
        .map(|s| (s.last_used_ms, s.retry_at_ms, s.failures));
    assert_eq!(refreshed, Some((9_000, 0, 0)));
    let due: Vec<_> = store
        .due(2_000, 10_000, 10)
        .await?
        .into_iter()
        .map(|s| s.conversation)
        .collect();
    assert_eq!(due, vec![b.clone()]);

    store.remove(&b).await?;
    store.remove(&b).await?;
    assert_eq!(store.find(&b).await?, None);
    assert_eq!(store.pending().await?, 2);
    Ok(())
}

mod memory {
    use super::*;
    use crate::outbound::store::{MemorySessionStore, MemoryTokenStore};

    #[tokio::test]
    async fn memory_token_store_keeps_the_contract() -> Result<(), StoreError> {
        token_store_keeps_devices(&MemoryTokenStore::default()).await
    }

    #[tokio::test]
    async fn memory_session_store_keeps_the_contract() -> Result<(), StoreError> {
        session_store_tracks_conversations(&MemorySessionStore::default()).await
    }
}
