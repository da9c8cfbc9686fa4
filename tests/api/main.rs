//! Integration tests: the real server on port 0 against its own `hailuo-sim`, over HTTP.
//! One binary (modules below) so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod accounts;
mod agent;
mod audio;
mod audio_fixtures;
mod auth;
mod busy;
mod chat;
mod cors;
mod dialects;
mod errors;
mod faults;
mod file_server;
mod files;
mod helpers;
mod malformed;
mod observability;
mod parts;
mod refusals;
mod sessions;
mod shutdown;
mod surface;
mod tokens;
