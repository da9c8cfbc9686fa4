//! The contract every store adapter keeps: the same tests run against each of them.

use crate::domain::chat::{AccountToken, ClientId, ConversationId};
use crate::domain::ports::{Device, SessionStore, StoreError, TokenStore};

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

/// The conversations `due()` gives, in its order.
async fn due_ids(
    store: &dyn SessionStore,
    idle_before_ms: i64,
    now_ms: i64,
    limit: usize,
) -> Result<Vec<ConversationId>, StoreError> {
    let due = store.due(idle_before_ms, now_ms, limit).await?;
    Ok(due.into_iter().map(|s| s.conversation).collect())
}

/// Sessions are recorded, refreshed, found due in order, deferred and removed.
pub async fn session_store_tracks_conversations(store: &dyn SessionStore) -> Result<(), StoreError> {
    let token = AccountToken::new("contract-token");
    let (a, b, c) = (ConversationId::nth(1), ConversationId::nth(2), ConversationId::nth(3));
    store.record(&a, &token, None, 1_000).await?;
    store.record(&b, &token, None, 2_000).await?;
    store.record(&c, &token, None, 3_000).await?;
    assert_eq!(store.pending().await?, 3);

    let found = store.find(&b).await?.map(|s| (s.token, s.last_used_ms, s.failures));
    assert_eq!(found, Some((token.clone(), 2_000, 0)));
    assert_eq!(store.find(&ConversationId::nth(99)).await?, None);

    let due = due_ids(store, 2_000, 10_000, 10).await?;
    assert_eq!(due, vec![a.clone(), b.clone()], "oldest first, idle ones only");
    let limited = store.due(10_000, 10_000, 1).await?;
    assert_eq!(limited.len(), 1);

    // A failed deletion waits for its retry time.
    store.defer(&a, 5_000).await?;
    let due = due_ids(store, 2_000, 4_999, 10).await?;
    assert_eq!(due, vec![b.clone()]);
    let retried = store.due(2_000, 5_000, 10).await?;
    assert_eq!(
        retried.first().map(|s| (s.conversation.clone(), s.failures)),
        Some((a.clone(), 1))
    );

    // Using a conversation again refreshes it and clears its retry state.
    store.record(&a, &token, None, 9_000).await?;
    let refreshed = store
        .find(&a)
        .await?
        .map(|s| (s.last_used_ms, s.retry_at_ms, s.failures));
    assert_eq!(refreshed, Some((9_000, 0, 0)));
    let due = due_ids(store, 2_000, 10_000, 10).await?;
    assert_eq!(due, vec![b.clone()]);
    let all = due_ids(store, 10_000, 10_000, 10).await?;
    assert_eq!(
        all,
        vec![b.clone(), c.clone(), a.clone()],
        "each once, by its latest use"
    );

    // The client that made a conversation is kept with it, and follows its refreshes.
    let owner = ClientId::new("client-1");
    let d = ConversationId::nth(4);
    store.record(&d, &token, Some(&owner), 1_500).await?;
    assert_eq!(store.find(&d).await?.and_then(|s| s.owner), Some(owner.clone()));
    store.record(&d, &token, Some(&owner), 9_500).await?;
    assert_eq!(
        store.find(&d).await?.map(|s| (s.owner, s.last_used_ms)),
        Some((Some(owner), 9_500))
    );
    assert_eq!(store.find(&a).await?.and_then(|s| s.owner), None);
    store.remove(&d).await?;

    store.remove(&b).await?;
    store.remove(&b).await?;
    assert_eq!(store.find(&b).await?, None);
    assert_eq!(store.pending().await?, 2);
    let left = due_ids(store, 10_000, 10_000, 10).await?;
    assert_eq!(left, vec![c.clone(), a.clone()]);
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

mod sqlite {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::*;
    use crate::outbound::store::{KeySource, SqliteStores};

    async fn open(path: &Path, key: &KeySource) -> Result<SqliteStores, StoreError> {
        SqliteStores::open(path, key, Duration::from_secs(5)).await
    }

    fn database_in(dir: &tempfile::TempDir) -> PathBuf {
        // A folder that does not exist yet: it is created.
        dir.path().join("nested").join("hailuo.db")
    }

    fn key_file(path: &Path) -> KeySource {
        KeySource::KeyFile(KeySource::key_file_for(path))
    }

    #[tokio::test]
    async fn sqlite_token_store_keeps_the_contract() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = database_in(&dir);
        let stores = open(&path, &key_file(&path)).await?;
        token_store_keeps_devices(&stores.tokens).await
    }

    #[tokio::test]
    async fn sqlite_session_store_keeps_the_contract() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = database_in(&dir);
        let stores = open(&path, &key_file(&path)).await?;
        session_store_tracks_conversations(&stores.sessions).await
    }

    #[tokio::test]
    async fn devices_and_sessions_survive_reopening_the_file() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = database_in(&dir);
        let token = AccountToken::new("survivor-token");
        let device = Device {
            user_id: "u-1".into(),
            device_id: "111".into(),
            registered_at_ms: 1_000,
        };
        {
            let stores = open(&path, &key_file(&path)).await?;
            stores.tokens.save_device(&token, &device).await?;
            stores
                .sessions
                .record(&ConversationId::nth(1), &token, None, 2_000)
                .await?;
            stores.sessions.defer(&ConversationId::nth(1), 3_000).await?;
            stores.close().await;
        }
        let stores = open(&path, &key_file(&path)).await?;
        assert_eq!(stores.tokens.device(&token).await?, Some(device));
        let session = stores.sessions.find(&ConversationId::nth(1)).await?.unwrap();
        assert_eq!(
            (
                session.token,
                session.last_used_ms,
                session.retry_at_ms,
                session.failures
            ),
            (token, 2_000, 3_000, 1)
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_secret_round_trips_and_another_secret_is_refused_cleanly() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = database_in(&dir);
        let token = AccountToken::new("secret-guarded-token");
        let right = KeySource::Secret("the right secret".into());
        {
            let stores = open(&path, &right).await?;
            stores
                .sessions
                .record(&ConversationId::nth(1), &token, None, 1_000)
                .await?;
            stores.close().await;
        }
        let stores = open(&path, &right).await?;
        assert_eq!(
            stores.sessions.find(&ConversationId::nth(1)).await?.map(|s| s.token),
            Some(token)
        );
        stores.close().await;

        let Err(error) = open(&path, &KeySource::Secret("a wrong secret".into())).await else {
            panic!("a wrong key must be refused");
        };
        assert!(matches!(&error, StoreError::Key(_)), "{error:?}");
        assert!(error.to_string().contains("another store key"), "{error}");
        assert!(!error.to_string().contains("secret-guarded-token"), "{error}");
        // Without the secret, no key file is made up for a database that exists.
        let Err(error) = open(&path, &key_file(&path)).await else {
            panic!("a missing key must be refused");
        };
        assert!(error.to_string().contains("is missing"), "{error}");
        assert!(!KeySource::key_file_for(&path).exists(), "a wrong key file was written");
        Ok(())
    }

    #[tokio::test]
    async fn the_key_file_is_created_private_and_reused() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = database_in(&dir);
        let key_path = KeySource::key_file_for(&path);
        open(&path, &key_file(&path)).await?.close().await;
        let first = std::fs::read_to_string(&key_path).unwrap();
        assert_eq!(first.len(), 64, "32 bytes in hex");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        open(&path, &key_file(&path)).await?.close().await;
        assert_eq!(std::fs::read_to_string(&key_path).unwrap(), first);
        Ok(())
    }

    #[tokio::test]
    async fn no_token_appears_in_the_database_files() -> Result<(), StoreError> {
        let dir = tempfile::tempdir().unwrap();
        let path = database_in(&dir);
        let token = "plain-token-that-must-not-leak-0123456789";
        let stores = open(&path, &key_file(&path)).await?;
        let account = AccountToken::new(token);
        let device = Device {
            user_id: "u-1".into(),
            device_id: "111".into(),
            registered_at_ms: 1_000,
        };
        stores.tokens.save_device(&account, &device).await?;
        stores
            .sessions
            .record(&ConversationId::nth(1), &account, None, 1_000)
            .await?;
        assert_eq!(stores.tokens.device(&account).await?, Some(device));
        // Look in the database, its WAL and anything else SQLite wrote, open and after closing.
        let leaks = || {
            std::fs::read_dir(path.parent().unwrap())
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|file| {
                    std::fs::read(file)
                        .unwrap()
                        .windows(token.len())
                        .any(|w| w == token.as_bytes())
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(leaks(), Vec::<PathBuf>::new());
        stores.close().await;
        assert!(path.exists());
        assert_eq!(leaks(), Vec::<PathBuf>::new());
        Ok(())
    }
}
