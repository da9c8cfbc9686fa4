//! Store adapters for the [`TokenStore`](crate::domain::ports::TokenStore) and
//! [`SessionStore`](crate::domain::ports::SessionStore) ports, and the choice between them.

pub mod memory;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

pub use memory::{MemorySessionStore, MemoryTokenStore};
pub use sqlite::{KeySource, SqliteSessionStore, SqliteStores, SqliteTokenStore};

use crate::config::StoreSettings;
use crate::domain::ports::{SessionStore, StoreError, TokenStore};

/// The two stores the server runs with.
pub type Stores = (Arc<dyn TokenStore>, Arc<dyn SessionStore>);

/// Builds the stores `settings.url` names: `memory`, or `sqlite://PATH`.
///
/// # Errors
/// [`StoreError`] for an unknown URL, or when the SQLite database cannot be opened.
pub async fn connect(settings: &StoreSettings) -> Result<Stores, StoreError> {
    if settings.url == "memory" {
        return Ok((
            Arc::new(MemoryTokenStore::default()),
            Arc::new(MemorySessionStore::default()),
        ));
    }
    let path = sqlite::database_path(&settings.url).ok_or_else(|| {
        StoreError(format!(
            "store.url must be \"memory\" or \"sqlite://PATH\", not {:?}",
            settings.url
        ))
    })?;
    let key = match settings.secret.as_deref().filter(|s| !s.is_empty()) {
        Some(secret) => KeySource::Secret(secret.to_owned()),
        None => KeySource::KeyFile(KeySource::key_file_for(&path)),
    };
    let stores = SqliteStores::open(&path, &key, Duration::from_millis(settings.busy_timeout_ms)).await?;
    tracing::info!(path = %path.display(), "stores kept in SQLite");
    Ok((Arc::new(stores.tokens), Arc::new(stores.sessions)))
}

#[cfg(test)]
mod contract;
