//! Store adapters for the [`TokenStore`](crate::domain::ports::TokenStore) and
//! [`SessionStore`](crate::domain::ports::SessionStore) ports.

pub mod memory;

pub use memory::{MemorySessionStore, MemoryTokenStore};

#[cfg(test)]
mod contract;
