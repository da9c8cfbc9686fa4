//! The domain: the project's own models, its ports and its use cases. Nothing here knows
//! HTTP frameworks, HTTP clients or databases.

pub mod audio;
pub mod chat;
pub mod metrics;
pub mod ports;
pub mod service;
pub mod token_expiry;
