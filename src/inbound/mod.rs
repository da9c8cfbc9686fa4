//! Inbound adapters: how clients reach the domain.

pub mod http;
pub mod server;
