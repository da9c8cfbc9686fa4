//! Hostile input against the real server binary: each case sends a small crafted request
//! and checks the answer's status, a bound on the server's peak resident memory (read from
//! `/proc`), and that `/ping` keeps answering. One binary (modules below) so it links once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audio;
// The WAV, FLAC and MP3 makers of the API suite; only some serve these cases.
#[allow(dead_code)]
#[path = "../api/audio_fixtures.rs"]
mod audio_fixtures;
mod disk;
mod edge;
mod files;
// The harness serves every case module; no one case uses all of it.
#[allow(dead_code)]
mod server;
