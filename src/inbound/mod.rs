//! Inbound adapters: how clients reach the domain.

pub mod cli;
pub mod http;
pub mod server;
