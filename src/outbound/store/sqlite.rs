//! SQLite stores (`store.url = "sqlite://PATH"`): devices and pending conversations survive a
//! restart, or a crash, so the conversations created before it are still deleted after it.
//!
//! # Account tokens are secrets
//!
//! The database never holds an account token in clear. Everything rests on one 32-byte
//! server key: `store.secret` (any string, stretched with SHA-256; environment
//! `HAILUO_STORE__SECRET`) or, when that is unset, a random key generated at first start into
//! a key file next to the database (`<db>.key`, hex, mode 0600 on unix) and reused afterwards.
//! Two keys are derived from it (HMAC-SHA256 with fixed labels), one per use:
//!
//! - **Devices** are looked up by a keyed hash of the token, HMAC-SHA256(hash key, token);
//!   the token itself is not stored for them. Without the key the hash cannot be linked to a
//!   token, not even by trying candidate tokens.
//! - **Sessions** (conversations awaiting deletion) need the token back to delete the
//!   conversation later, so it is sealed with AES-256-GCM under the sealing key, with a random
//!   96-bit nonce per row and the conversation id as associated data (a sealed token moved to
//!   another row does not open). The keyed hash sits next to it for lookups.
//! - A check value, HMAC-SHA256 of a fixed label, is kept in the `store_key` table: opening the
//!   database with another secret (or without the key file) fails at start with a clear error
//!   instead of failing row by row.
//!
//! Without the key, the rows cannot be read: keep the key file (or the secret) with the
//! database, and protect both as you would the tokens. Losing the key loses the pending
//! conversations (they stay in the accounts' histories) and the devices (registered again).
//! Errors name what failed, never a token.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

use crate::domain::chat::{AccountToken, ClientId, ConversationId};
use crate::domain::ports::{Device, Session, SessionStore, StoreError, TokenStore};

const HASH_LABEL: &[u8] = b"hailuo-free-api/store/token-hash/v1";
const SEAL_LABEL: &[u8] = b"hailuo-free-api/store/token-seal/v1";
const CHECK_LABEL: &[u8] = b"hailuo-free-api/store/key-check/v1";

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = match <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Where the server key comes from.
#[derive(Clone)]
pub enum KeySource {
    /// `store.secret`: any string, stretched with SHA-256.
    Secret(String),
    /// A random key in this file, created (mode 0600) when missing.
    KeyFile(PathBuf),
}

impl std::fmt::Debug for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySource::Secret(_) => f.write_str("Secret(..)"),
            KeySource::KeyFile(path) => f.debug_tuple("KeyFile").field(path).finish(),
        }
    }
}

impl KeySource {
    /// The key file of a database: `<db>.key` next to it.
    pub fn key_file_for(database: &Path) -> PathBuf {
        let mut name = database.as_os_str().to_owned();
        name.push(".key");
        PathBuf::from(name)
    }

    /// Reads, or creates, the 32-byte server key.
    ///
    /// # Errors
    /// [`StoreError`] when the key file cannot be read or created, or does not hold a key.
    pub fn load(&self) -> Result<[u8; 32], StoreError> {
        self.load_for(false)
    }

    /// As [`Self::load`], but a missing key file is created only for a new database: the key
    /// of an existing one is never replaced by a new, wrong one.
    fn load_for(&self, database_exists: bool) -> Result<[u8; 32], StoreError> {
        match self {
            KeySource::Secret(secret) => Ok(Sha256::digest(secret.as_bytes()).into()),
            KeySource::KeyFile(path) => {
                if database_exists && !path.exists() {
                    return Err(StoreError::Key(format!(
                        "the database exists but its key file {} is missing: restore the key file, or set \
                         store.secret to the secret the database was created with; without its key the \
                         rows cannot be read (no new key was written)",
                        path.display()
                    )));
                }
                load_or_create_key_file(path)
            }
        }
    }
}

/// Warns when `path` can be read by others than its owner (unix): it holds secrets.
fn warn_if_shared(path: &Path, what: &str) {
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
                "the {what} can be read by other users; restrict it with chmod 600");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
}

/// Creates an empty database file readable by its owner only (unix), unless one exists:
/// SQLite gives its WAL and shared-memory files the database's mode.
fn create_private(path: &Path) -> Result<(), StoreError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::File {
            doing: format!("creating the database {}", path.display()),
            source,
        }),
    }
}

fn load_or_create_key_file(path: &Path) -> Result<[u8; 32], StoreError> {
    use std::io::Write;

    warn_if_shared(path, "store key file");
    let shown = path.display();
    let key: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(hex::encode(key).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|source| StoreError::File {
                    doing: format!("writing the store key file {shown}"),
                    source,
                })?;
            tracing::info!(path = %shown, "generated a new store key; keep it with the database");
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|source| StoreError::File {
                doing: format!("reading the store key file {shown}"),
                source,
            })?;
            let bytes = hex::decode(text.trim())
                .map_err(|_| StoreError::Key(format!("the store key file {shown} does not hold a hex key")))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| StoreError::Key(format!("the store key file {shown} does not hold a 32-byte key")))
        }
        Err(source) => Err(StoreError::File {
            doing: format!("creating the store key file {shown}"),
            source,
        }),
    }
}

/// The keys derived from the server key.
struct StoreKeys {
    hash_key: [u8; 32],
    cipher: Aes256Gcm,
    check: [u8; 32],
}

impl StoreKeys {
    fn derive(server_key: &[u8; 32]) -> Self {
        let seal_key = hmac_sha256(server_key, SEAL_LABEL);
        Self {
            hash_key: hmac_sha256(server_key, HASH_LABEL),
            cipher: Aes256Gcm::new(&Key::<Aes256Gcm>::from(seal_key)),
            check: hmac_sha256(server_key, CHECK_LABEL),
        }
    }

    fn token_hash(&self, token: &AccountToken) -> Vec<u8> {
        hmac_sha256(&self.hash_key, token.expose().as_bytes()).to_vec()
    }

    /// The token sealed for `conversation`'s row: (nonce, ciphertext with tag).
    fn seal(&self, token: &AccountToken, conversation: &ConversationId) -> Result<(Vec<u8>, Vec<u8>), StoreError> {
        let nonce = Nonce::generate();
        let payload = Payload {
            msg: token.expose().as_bytes(),
            aad: conversation.as_str().as_bytes(),
        };
        let sealed = self
            .cipher
            .encrypt(&nonce, payload)
            .map_err(|_| StoreError::Key(format!("sealing the account token of conversation {conversation}")))?;
        Ok((nonce.to_vec(), sealed))
    }

    fn open(&self, conversation: &str, nonce: &[u8], sealed: &[u8]) -> Result<AccountToken, StoreError> {
        let unreadable = || {
            StoreError::Unreadable(format!(
                "cannot decrypt the account token of conversation {conversation}: the row is damaged or \
                 was written with another store key (store.secret or the <db>.key file)"
            ))
        };
        let nonce = Nonce::try_from(nonce).map_err(|_| unreadable())?;
        let payload = Payload {
            msg: sealed,
            aad: conversation.as_bytes(),
        };
        let token = self.cipher.decrypt(&nonce, payload).map_err(|_| unreadable())?;
        String::from_utf8(token)
            .map(AccountToken::new)
            .map_err(|_| unreadable())
    }
}

/// An sqlx error as a [`StoreError`] saying what we were doing (sqlx never shows bound values).
fn failed(doing: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |error| StoreError::database(doing, error)
}

/// One SQLite database behind both stores.
#[derive(Clone)]
struct Database {
    pool: SqlitePool,
    keys: Arc<StoreKeys>,
}

/// The two SQLite stores, sharing one connection pool and one key.
pub struct SqliteStores {
    /// Devices per token.
    pub tokens: SqliteTokenStore,
    /// Conversations awaiting deletion.
    pub sessions: SqliteSessionStore,
}

impl SqliteStores {
    /// Opens (creating it and its parent folders when missing) the database at `path` in WAL
    /// mode, applies the migrations and checks the key.
    ///
    /// # Errors
    /// [`StoreError`] when the folder, file or key cannot be created or read, a migration
    /// fails, or the key is not the one the database was written with.
    pub async fn open(path: &Path, key: &KeySource, busy_timeout: Duration) -> Result<Self, StoreError> {
        let shown = path.display();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::File {
                doing: format!("creating the folder of the database {shown}"),
                source,
            })?;
        }
        let size = std::fs::metadata(path).map(|metadata| metadata.len()).ok();
        if size == Some(0)
            && let KeySource::KeyFile(key_file) = key
            && key_file.exists()
        {
            return Err(StoreError::Key(format!(
                "the database {shown} is empty (0 bytes) but its key file {} exists: the database was \
                 emptied or truncated, and starting afresh would lose the conversations it had to delete. \
                 Restore the database, or remove the key file too to start with a new one",
                key_file.display()
            )));
        }
        let keys = Arc::new(StoreKeys::derive(&key.load_for(size.is_some_and(|size| size > 0))?));
        create_private(path)?;
        warn_if_shared(path, "database");
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|error| StoreError::database(format!("opening the database {shown}"), error))?;
        sqlx::migrate!()
            .run(&pool)
            .await
            .map_err(|error| StoreError::database(format!("migrating the database {shown}"), error))?;
        check_key(&pool, &keys, path).await?;
        let database = Database { pool, keys };
        Ok(Self {
            tokens: SqliteTokenStore(database.clone()),
            sessions: SqliteSessionStore(database),
        })
    }

    /// Closes the connections (waiting for those in use).
    pub async fn close(&self) {
        self.tokens.0.pool.close().await;
    }
}

/// Stores the key's check value on first use, and refuses a database written with another key.
async fn check_key(pool: &SqlitePool, keys: &StoreKeys, path: &Path) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO store_key (id, key_check) VALUES (1, ?) ON CONFLICT (id) DO NOTHING")
        .bind(keys.check.to_vec())
        .execute(pool)
        .await
        .map_err(failed("recording the store key check"))?;
    let (stored,): (Vec<u8>,) = sqlx::query_as("SELECT key_check FROM store_key WHERE id = 1")
        .fetch_one(pool)
        .await
        .map_err(failed("reading the store key check"))?;
    if stored != keys.check {
        return Err(StoreError::Key(format!(
            "the database {} was written with another store key: set store.secret to the secret it \
             was created with, or restore its key file {}; without that key its rows cannot be read",
            path.display(),
            KeySource::key_file_for(path).display()
        )));
    }
    Ok(())
}

/// Devices per token in SQLite, keyed by the token's keyed hash.
#[derive(Clone)]
pub struct SqliteTokenStore(Database);

#[async_trait]
impl TokenStore for SqliteTokenStore {
    async fn device(&self, token: &AccountToken) -> Result<Option<Device>, StoreError> {
        let row: Option<(String, String, i64)> =
            sqlx::query_as("SELECT user_id, device_id, registered_at_ms FROM devices WHERE token_hash = ?")
                .bind(self.0.keys.token_hash(token))
                .fetch_optional(&self.0.pool)
                .await
                .map_err(failed("reading a device"))?;
        Ok(row.map(|(user_id, device_id, registered_at_ms)| Device {
            user_id,
            device_id,
            registered_at_ms,
        }))
    }

    async fn save_device(&self, token: &AccountToken, device: &Device) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO devices (token_hash, user_id, device_id, registered_at_ms) VALUES (?, ?, ?, ?) \
             ON CONFLICT (token_hash) DO UPDATE SET user_id = excluded.user_id, \
             device_id = excluded.device_id, registered_at_ms = excluded.registered_at_ms",
        )
        .bind(self.0.keys.token_hash(token))
        .bind(&device.user_id)
        .bind(&device.device_id)
        .bind(device.registered_at_ms)
        .execute(&self.0.pool)
        .await
        .map_err(failed("saving a device"))?;
        Ok(())
    }

    async fn forget_device(&self, token: &AccountToken) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM devices WHERE token_hash = ?")
            .bind(self.0.keys.token_hash(token))
            .execute(&self.0.pool)
            .await
            .map_err(failed("forgetting a device"))?;
        Ok(())
    }
}

/// Why a row cannot be used, as kept in `sessions_unreadable.reason`.
fn unreadable_reason(error: StoreError) -> String {
    match error {
        StoreError::Unreadable(reason) | StoreError::Key(reason) => reason,
        other => other.to_string(),
    }
}

/// Conversations awaiting deletion in SQLite, with their tokens sealed.
#[derive(Clone)]
pub struct SqliteSessionStore(Database);

/// The columns a session is read from (a macro, so queries stay `&'static str` literals).
macro_rules! session_columns {
    () => {
        "conversation, token_nonce, token_sealed, last_used_ms, retry_at_ms, failures, owner"
    };
}

impl SqliteSessionStore {
    /// A row as a session; `Err` holds the row's conversation id (when even that cannot be
    /// read, `None`) and why the row cannot be used.
    fn session(&self, row: &SqliteRow) -> Result<Session, (Option<String>, String)> {
        let conversation: String = row
            .try_get("conversation")
            .map_err(|error| (None, format!("the conversation id does not read: {error}")))?;
        let unreadable = |error: sqlx::Error| (Some(conversation.clone()), format!("a column does not read: {error}"));
        let nonce: Vec<u8> = row.try_get("token_nonce").map_err(unreadable)?;
        let sealed: Vec<u8> = row.try_get("token_sealed").map_err(unreadable)?;
        let last_used_ms: i64 = row.try_get("last_used_ms").map_err(unreadable)?;
        let retry_at_ms: i64 = row.try_get("retry_at_ms").map_err(unreadable)?;
        let failures: i64 = row.try_get("failures").map_err(unreadable)?;
        let owner: Option<String> = row.try_get("owner").map_err(unreadable)?;
        let token = self
            .0
            .keys
            .open(&conversation, &nonce, &sealed)
            .map_err(|error| (Some(conversation.clone()), unreadable_reason(error)))?;
        Ok(Session {
            conversation: ConversationId::from_upstream(conversation),
            token,
            owner: owner.map(ClientId::new),
            last_used_ms,
            retry_at_ms,
            failures: u32::try_from(failures).unwrap_or(u32::MAX),
        })
    }

    /// The sessions of `rows`; a row that cannot be read is set aside (moved to
    /// `sessions_unreadable`, logged and counted once), so that one damaged row never stops
    /// the others from being found and deleted.
    async fn readable(&self, rows: Vec<SqliteRow>) -> Result<Vec<Session>, StoreError> {
        let mut sessions = Vec::with_capacity(rows.len());
        for row in &rows {
            match self.session(row) {
                Ok(session) => sessions.push(session),
                Err((conversation, reason)) => self.set_aside(conversation.as_deref(), &reason).await?,
            }
        }
        Ok(sessions)
    }

    async fn set_aside(&self, conversation: Option<&str>, reason: &str) -> Result<(), StoreError> {
        let Some(conversation) = conversation else {
            // Without its id the row cannot be addressed; its key column is the id, so a row
            // whose id does not read as text cannot come out of a query by id either.
            tracing::error!(%reason, "a stored conversation cannot be read, nor addressed");
            return Ok(());
        };
        let mut transaction = self
            .0
            .pool
            .begin()
            .await
            .map_err(failed("setting aside a conversation"))?;
        sqlx::query(
            "INSERT OR REPLACE INTO sessions_unreadable (conversation, token_hash, token_nonce, token_sealed, \
             last_used_ms, owner, set_aside_at_ms, reason) SELECT conversation, token_hash, token_nonce, \
             token_sealed, last_used_ms, owner, ?, ? FROM sessions WHERE conversation = ?",
        )
        .bind(crate::domain::service::now_ms())
        .bind(reason)
        .bind(conversation)
        .execute(&mut *transaction)
        .await
        .map_err(failed("setting aside a conversation"))?;
        sqlx::query("DELETE FROM sessions WHERE conversation = ?")
            .bind(conversation)
            .execute(&mut *transaction)
            .await
            .map_err(failed("setting aside a conversation"))?;
        transaction
            .commit()
            .await
            .map_err(failed("setting aside a conversation"))?;
        crate::domain::metrics::instruments().sessions_unreadable.add(1, &[]);
        tracing::error!(%conversation, %reason,
            "set aside a stored conversation that cannot be read (table sessions_unreadable); it stays upstream");
        Ok(())
    }
}

#[async_trait]
impl SessionStore for SqliteSessionStore {
    async fn record(
        &self,
        conversation: &ConversationId,
        token: &AccountToken,
        owner: Option<&ClientId>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let (nonce, sealed) = self.0.keys.seal(token, conversation)?;
        sqlx::query(
            "INSERT INTO sessions (conversation, token_hash, token_nonce, token_sealed, last_used_ms, \
             retry_at_ms, failures, owner) VALUES (?, ?, ?, ?, ?, 0, 0, ?) \
             ON CONFLICT (conversation) DO UPDATE SET token_hash = excluded.token_hash, \
             token_nonce = excluded.token_nonce, token_sealed = excluded.token_sealed, \
             last_used_ms = excluded.last_used_ms, retry_at_ms = 0, failures = 0, owner = excluded.owner",
        )
        .bind(conversation.as_str())
        .bind(self.0.keys.token_hash(token))
        .bind(nonce)
        .bind(sealed)
        .bind(now_ms)
        .bind(owner.map(ClientId::as_str))
        .execute(&self.0.pool)
        .await
        .map_err(failed("recording a conversation"))?;
        Ok(())
    }

    async fn find(&self, conversation: &ConversationId) -> Result<Option<Session>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE conversation = ?"
        ))
        .bind(conversation.as_str())
        .fetch_all(&self.0.pool)
        .await
        .map_err(failed("finding a conversation"))?;
        Ok(self.readable(rows).await?.into_iter().next())
    }

    async fn due(&self, idle_before_ms: i64, now_ms: i64, limit: usize) -> Result<Vec<Session>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions WHERE last_used_ms <= ? AND retry_at_ms <= ? ORDER BY last_used_ms LIMIT ?"
        ))
        .bind(idle_before_ms)
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.0.pool)
        .await
        .map_err(failed("listing the conversations due for deletion"))?;
        self.readable(rows).await
    }

    async fn defer(&self, conversation: &ConversationId, retry_at_ms: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET failures = failures + 1, retry_at_ms = ? WHERE conversation = ?")
            .bind(retry_at_ms)
            .bind(conversation.as_str())
            .execute(&self.0.pool)
            .await
            .map_err(failed("deferring a conversation's deletion"))?;
        Ok(())
    }

    async fn remove(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE conversation = ?")
            .bind(conversation.as_str())
            .execute(&self.0.pool)
            .await
            .map_err(failed("removing a conversation"))?;
        Ok(())
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM sessions")
            .fetch_one(&self.0.pool)
            .await
            .map_err(failed("counting the pending conversations"))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_token_opens_only_with_its_key_and_its_row() {
        let keys = StoreKeys::derive(&[7; 32]);
        let token = AccountToken::new("sealed-token");
        let conversation = ConversationId::from_upstream("243600000000000001");
        let (nonce, sealed) = keys.seal(&token, &conversation).unwrap();
        assert_eq!(keys.open(conversation.as_str(), &nonce, &sealed).unwrap(), token);

        let other = StoreKeys::derive(&[8; 32]);
        let error = other.open(conversation.as_str(), &nonce, &sealed).unwrap_err();
        assert!(matches!(&error, StoreError::Unreadable(_)), "{error:?}");
        assert!(error.to_string().contains("another store key"), "{error}");
        assert!(!error.to_string().contains("sealed-token"));
        assert!(
            keys.open("243600000000000002", &nonce, &sealed).is_err(),
            "bound to its row"
        );

        let (again, _) = keys.seal(&token, &conversation).unwrap();
        assert_ne!(nonce, again, "a fresh nonce per row");
    }

    #[test]
    fn the_key_file_sits_next_to_the_database() {
        assert_eq!(
            KeySource::key_file_for(Path::new("data/hailuo.db")),
            PathBuf::from("data/hailuo.db.key")
        );
    }
}
