//! `hailuo-sim`: a simulated Hailuo upstream that enforces the web protocol the gateway's
//! adapter speaks (`docs/protocol.md`: every request, signing, devices, chat, the file uploads
//! with the OSS bucket served on the same listener, speech with its MP3s served there too, and
//! transcription) and records what it saw.
//!
//! Every integration test runs against one [`Simulator`]: it answers like the web app, notes
//! each protocol violation in [`Simulator::violations`] (and refuses the request with an error
//! envelope), and plays the faults a test [`inject`](Faults::inject)s. It shares no code with
//! the outbound adapter, so the adapter's mistakes cannot hide behind shared helpers.
//!
//! The modules form layers, each using only those below it: the records, faults, profile and
//! configuration at the bottom; the ledger that keeps the records; the shared state; the
//! protocol checks and audio; the HTTP handlers; and on top this crate root with its views.

mod audio;
mod config;
mod connections;
mod fault;
mod http;
mod ledger;
mod listener;
mod profile;
mod records;
mod refusal;
mod replies;
mod state;
mod verify;
mod views;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use std::sync::{Mutex, PoisonError};

use poem::Server;
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::connections::ResettableAcceptor;
use crate::http::SimEndpoint;
use crate::listener::NoDelayAcceptor;
use crate::state::SimState;

pub use crate::audio::{SPEECH_MIN_MS, SPEECH_MS_PER_CHAR};
pub use crate::config::SimConfig;
pub use crate::fault::{Fault, RESET_PAUSE};
pub use crate::profile::{Dialect, Profile};
pub use crate::records::{ChatRecord, FormFile, PhoneRecord, SimFile, TtsRecord};
pub use crate::refusal::{BUSY_CODE, BusyForm, BusyReply, Refusal};
pub use crate::views::{Accounts, Conversations, Faults, Oss, Speech, Transcription};

/// How long a shutdown waits for open connections (a hanging stream) before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A running simulated upstream; clones share it. It stops on [`shutdown`](Self::shutdown)
/// or when the last clone is dropped.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Running>,
}

struct Running {
    state: Arc<SimState>,
    addr: SocketAddr,
    server: Mutex<Serving>,
}

/// The server task now listening, and its stop signal.
struct Serving {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Serves `state` on `acceptor` until `stop` says so (or its sender is dropped).
fn serve(state: &Arc<SimState>, acceptor: poem::listener::TcpAcceptor) -> Serving {
    let (stop, mut stopped) = watch::channel(false);
    let endpoint = SimEndpoint {
        state: Arc::clone(state),
    };
    let acceptor = ResettableAcceptor {
        inner: NoDelayAcceptor::new(acceptor),
        connections: Arc::clone(&state.connections),
    };
    let task = tokio::spawn(async move {
        // A dropped sender (every handle gone) also stops the server.
        let signal = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        // Benchmarks multiplex thousands of streams on one HTTP/2 connection (hyper's
        // default allows 200).
        let served = Server::new_with_acceptor(acceptor)
            .http2_max_concurrent_streams(1_000_000)
            .run_with_graceful_shutdown(endpoint, signal, Some(SHUTDOWN_GRACE))
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "hailuo-sim: server failed");
        }
    });
    Serving { stop, task }
}

impl Simulator {
    /// Starts a simulator on `127.0.0.1` with a free port.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn start(config: SimConfig) -> io::Result<Simulator> {
        Self::start_on(config, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Starts a simulator on `addr` (port 0 picks a free one).
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start_on(config: SimConfig, addr: SocketAddr) -> io::Result<Simulator> {
        let acceptor = TcpListener::bind(addr).into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .iter()
            .find_map(|local| local.as_socket_addr().copied())
            .ok_or_else(|| io::Error::other("the listener has no socket address"))?;
        let state = Arc::new(SimState::new(config, addr));
        let server = Mutex::new(serve(&state, acceptor));
        Ok(Simulator {
            inner: Arc::new(Running { state, addr, server }),
        })
    }

    /// Restarts the simulated upstream on the same address, as a redeployed upstream does:
    /// every open connection breaks (streams are reset at their next write, silent ones are
    /// dropped after a short grace), nothing is served for a moment, then a new server answers.
    /// What the upstream stores survives: accounts and their devices, conversations, files,
    /// queued faults and the ledger tests read.
    ///
    /// # Errors
    /// When the address cannot be bound again.
    pub async fn restart(&self) -> io::Result<()> {
        let old = {
            let server = self.inner.server.lock().unwrap_or_else(PoisonError::into_inner);
            server.stop.send_replace(true);
            server.task.abort_handle()
        };
        self.state().connections.reset_all();
        // The old server ends within its grace period; wait for it to release the port.
        while !old.is_finished() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mut last_error = None;
        for _ in 0..50 {
            match TcpListener::bind(self.inner.addr).into_acceptor().await {
                Ok(acceptor) => {
                    let serving = serve(&self.inner.state, acceptor);
                    *self.inner.server.lock().unwrap_or_else(PoisonError::into_inner) = serving;
                    return Ok(());
                }
                Err(err) => last_error = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(last_error.unwrap_or_else(|| io::Error::other("the address could not be bound again")))
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The base URL to point the adapter at, e.g. `http://127.0.0.1:40123`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    /// The deterministic answer to a prompt.
    pub fn answer_for(msg_content: &str) -> String {
        replies::answer_for(msg_content)
    }

    /// How long the speech of `text` lasts in the MP3s `msg_tts` hands out:
    /// [`SPEECH_MS_PER_CHAR`] per character (Unicode scalar value), at least [`SPEECH_MIN_MS`].
    /// `text` is the assistant message's whole content, i.e. [`answer_for`](Self::answer_for)
    /// of the chat's `msgContent`; when it is spoken in two files (more than 20 characters),
    /// their durations add up to this.
    pub fn speech_duration_for(text: &str) -> Duration {
        audio::speech_duration_for(text)
    }

    /// The transcript `phone_msg` hears in decodable, non-silent audio of `duration`:
    /// `（<seconds with one decimal> 秒的语音）`.
    pub fn transcript_for(duration: Duration) -> String {
        replies::transcript_for(duration)
    }

    fn state(&self) -> &SimState {
        &self.inner.state
    }

    /// Every protocol violation seen, human-readable; empty means the client was clean.
    pub fn violations(&self) -> Vec<String> {
        self.state().ledger().violations.clone()
    }

    /// The accounts: devices, logins and open streams per token.
    pub fn accounts(&self) -> Accounts<'_> {
        Accounts::new(self.state())
    }

    /// The conversations and the chat requests accepted on them.
    pub fn conversations(&self) -> Conversations<'_> {
        Conversations::new(self.state())
    }

    /// The OSS bucket and the files confirmed in it.
    pub fn oss(&self) -> Oss<'_> {
        Oss::new(self.state())
    }

    /// Speech: the voices selected and the `msg_tts` polls.
    pub fn speech(&self) -> Speech<'_> {
        Speech::new(self.state())
    }

    /// Transcription: the voice messages `phone_msg` heard.
    pub fn transcription(&self) -> Transcription<'_> {
        Transcription::new(self.state())
    }

    /// The fault plan: faults to play on chat requests, failing DELETEs and uploads, and the
    /// faults played.
    pub fn faults(&self) -> Faults<'_> {
        Faults::new(self.state())
    }

    /// Drops the history a long run would pile up: the records the views read (chats,
    /// created and deleted conversations, speech polls, voice messages heard), the Sentry
    /// trace ids seen (so a reuse across this point goes unnoticed), the answered messages of
    /// deleted conversations with their speech jobs, and whatever is older than an hour.
    /// What a later call may still name stays: devices, live conversations and their
    /// messages, speech being polled and its MP3s, files, violations. Safe to call at any
    /// time, as the `hailuo-sim` binary does every second.
    pub fn forget_history(&self) {
        self.state().ledger().forget_history(std::time::Instant::now());
    }

    /// Stops serving (open connections get a short grace period).
    pub fn shutdown(&self) {
        self.inner
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop
            .send_replace(true);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_without_a_token_is_refused_and_recorded_as_a_violation() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let response = reqwest::Client::new()
            .get(format!("{}/v1/api/user/info", sim.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_ne!(body["statusInfo"]["code"], 0);
        assert_eq!(sim.violations().len(), 1, "{:?}", sim.violations());
        assert!(sim.violations()[0].contains("Token"));
        sim.shutdown();
    }

    #[tokio::test]
    async fn an_unknown_path_is_not_found() {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let response = reqwest::get(format!("{}/v1/api/nothing", sim.base_url()))
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
}

#[cfg(test)]
mod agent_tests;
#[cfg(test)]
mod audio_tests;
#[cfg(test)]
mod files_tests;
#[cfg(test)]
mod protocol_tests;
