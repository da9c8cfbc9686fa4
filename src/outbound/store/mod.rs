//! Store adapters for the [`TokenStore`](crate::domain::ports::TokenStore) and
//! [`SessionStore`](crate::domain::ports::SessionStore) ports: in memory, or in SQLite. The
//! composition root picks one from `store.url`.

pub mod memory;
pub mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use memory::{MemorySessionStore, MemoryTokenStore};
pub use sqlite::{KeySource, SqliteSessionStore, SqliteStores, SqliteTokenStore};

use crate::domain::ports::{SessionStore, StoreError, TokenStore};

/// The two stores the server runs with.
pub type Stores = (Arc<dyn TokenStore>, Arc<dyn SessionStore>);

/// Stores kept in the process, forgotten at exit.
pub fn in_memory() -> Stores {
    (
        Arc::new(MemoryTokenStore::default()),
        Arc::new(MemorySessionStore::default()),
    )
}

/// Stores in the SQLite database at `path`, their tokens protected by `secret` or, when it is
/// unset or empty, by the random key in `<path>.key`; a write waits up to `busy_timeout` for
/// another one.
///
/// # Errors
/// [`StoreError`] when the database or its key cannot be opened (a key other than the one
/// the database was written with included).
pub async fn open_sqlite(path: &Path, secret: Option<&str>, busy_timeout: Duration) -> Result<Stores, StoreError> {
    let key = match secret.filter(|secret| !secret.is_empty()) {
        Some(secret) => KeySource::Secret(secret.to_owned()),
        None => KeySource::KeyFile(KeySource::key_file_for(path)),
    };
    let stores = SqliteStores::open(path, &key, busy_timeout).await?;
    // At debug: the start's own line names the store.
    tracing::debug!(path = %path.display(), "stores kept in SQLite");
    Ok((Arc::new(stores.tokens), Arc::new(stores.sessions)))
}

#[cfg(test)]
mod contract;
