//! `hailuo-sim`: a simulated Hailuo upstream that enforces the protocol
//! (`/work/shared/hailuo-protocol.md`, sections 1–5, the file uploads of 7 with the OSS bucket
//! served on the same listener, speech (8) with its MP3s served there too, and transcription
//! (9)) and records what it saw.
//!
//! Every integration test runs against one [`Simulator`]: it answers like the web app, notes
//! each protocol violation in [`Simulator::violations`] (and refuses the request with an error
//! envelope), and plays the faults a test [`inject`](Simulator::inject)s. It shares no code with
//! the outbound adapter, so the adapter's mistakes cannot hide behind shared helpers.

mod audio;
mod chat;
mod files;
mod oss;
mod routes;
mod speech;
mod state;
mod transcription;
mod verify;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use poem::Server;
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::watch;

use crate::config::{Profile, Settings};
use routes::SimEndpoint;
use state::SimState;

pub use audio::{SPEECH_MIN_MS, SPEECH_MS_PER_CHAR};

/// How long a shutdown waits for open connections (a hanging stream) before dropping them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The profile values requests must carry (default: the embedded configuration's).
    pub profile: Profile,
    /// Characters added to the answer per cumulative event.
    pub chunk_chars: usize,
    /// Pause between answer events.
    pub chunk_delay: Duration,
    /// Accept any non-empty token except killed ones; when `false`, only tokens passed to
    /// [`Simulator::revive_token`] are logged in.
    pub open: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            profile: default_profile(),
            chunk_chars: 3,
            chunk_delay: Duration::from_millis(1),
            open: true,
        }
    }
}

/// The embedded configuration's profile (it is compiled in and covered by a config test; an
/// empty profile stands in should it ever fail, and then every request reports violations).
fn default_profile() -> Profile {
    match Settings::defaults() {
        Ok(settings) => settings.upstream.profile,
        Err(err) => {
            tracing::error!(error = %err, "hailuo-sim: the embedded default profile does not parse");
            Profile::default()
        }
    }
}

/// One chat request that passed the protocol checks.
#[derive(Clone, Debug)]
pub struct ChatRecord {
    /// The `Token` it came with.
    pub token: String,
    /// The conversation id answered with (the requested one when no conversation was made).
    pub chat_id: String,
    /// The `chatID` field sent: `"0"` or the id of the conversation continued.
    pub requested_chat_id: String,
    /// The `msgContent` field, as sent.
    pub msg_content: String,
    /// The `form` field, when sent.
    pub form: Option<String>,
    /// The files the `form` attached, in form order (empty without a form).
    pub files: Vec<FormFile>,
    /// The `Referer` header.
    pub referer: String,
}

/// A file attached by a chat `form` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormFile {
    /// `formType`: 2 for an image, 6 for another file.
    pub form_type: u8,
    /// `fileID`, as `policy_callback` gave it.
    pub file_id: String,
    /// `content`: the file's name.
    pub file_name: String,
}

/// A file confirmed by `policy_callback`: uploaded to the simulated OSS, then given a `fileID`.
#[derive(Clone, Debug)]
pub struct SimFile {
    /// The `Token` that uploaded and confirmed it.
    pub token: String,
    /// Its `fileID`.
    pub file_id: String,
    /// `fileName`: the object's name inside the upload `dir`.
    pub file_name: String,
    /// `mimeType`, the same as the upload's `Content-Type`.
    pub mime: String,
    /// The bytes uploaded.
    pub bytes: Vec<u8>,
}

/// The first `msg_tts` poll of an assistant message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtsRecord {
    /// The `Token` that asked.
    pub token: String,
    /// `msgID`.
    pub msg_id: String,
    /// `timbre`: the voice asked for.
    pub timbre: String,
    /// The text spoken: the assistant message's whole content
    /// ([`Simulator::answer_for`] of the chat's `msgContent`).
    pub text: String,
}

/// A `phone_msg` upload that decoded as MP3.
#[derive(Clone, Debug)]
pub struct PhoneRecord {
    /// The `Token` that sent it.
    pub token: String,
    /// Size of `voiceBytes`.
    pub bytes_len: usize,
    /// Decoded length (without the encoder delay and padding when a LAME tag declares them).
    pub duration: Duration,
    /// Sample rate of the decoded audio.
    pub sample_rate: u32,
    /// Channel count of the decoded audio.
    pub channels: u16,
}

/// A misbehaviour for the next chat request (any token) to suffer.
#[derive(Clone, Debug)]
pub enum Fault {
    /// After this many answer events, an error event with code 1500001
    /// (`内容涉及敏感信息，请修改后重试`); then the stream ends.
    ContentFiltered {
        /// Answer events sent before the error.
        after_events: usize,
    },
    /// HTTP 500 with a non-JSON body, before any event.
    ServerError,
    /// An HTTP 200 JSON envelope with code 1004 (`登录已失效，请重新登录`) instead of a stream.
    AccountRefused,
    /// Headers, then not a byte for an hour (ends when the client disconnects).
    Hang,
    /// This request's events are spaced by this delay.
    SlowChunks(Duration),
    /// The connection breaks after this many answer events, without an end event.
    CutStream {
        /// Answer events sent before the cut.
        after_events: usize,
    },
    /// A `data:` line that is not JSON, then the normal stream.
    MalformedEvent,
}

/// A running simulated upstream; clones share it. It stops on [`shutdown`](Self::shutdown)
/// or when the last clone is dropped.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Running>,
}

struct Running {
    state: Arc<SimState>,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
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
        let (stop, mut stopped) = watch::channel(false);
        let endpoint = SimEndpoint {
            state: Arc::clone(&state),
        };
        tokio::spawn(async move {
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
        Ok(Simulator {
            inner: Arc::new(Running { state, addr, stop }),
        })
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
        format!("海螺收到：{msg_content}")
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
        transcription::transcript_for(duration)
    }

    fn state(&self) -> &SimState {
        &self.inner.state
    }

    /// Every protocol violation seen, human-readable; empty means the client was clean.
    pub fn violations(&self) -> Vec<String> {
        self.state().ledger().violations.clone()
    }

    /// How many devices `token` registered.
    pub fn registrations(&self, token: &str) -> usize {
        self.state().ledger().registrations.get(token).copied().unwrap_or(0)
    }

    /// Every accepted chat request, in order.
    pub fn chats(&self) -> Vec<ChatRecord> {
        self.state().ledger().chats.clone()
    }

    /// The conversations of `token` created and not deleted, oldest first.
    pub fn live_conversations(&self, token: &str) -> Vec<String> {
        let ledger = self.state().ledger();
        ledger
            .conversations
            .iter()
            .filter(|(_, owner)| owner == token)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every deleted conversation, in deletion order.
    pub fn deleted_conversations(&self) -> Vec<String> {
        self.state().ledger().deleted.clone()
    }

    /// The highest number of chat streams open at once on `token` (a refused second stream
    /// counts too).
    pub fn max_concurrent_streams(&self, token: &str) -> usize {
        self.state().ledger().max_streams.get(token).copied().unwrap_or(0)
    }

    /// Chat streams open now, over all tokens.
    pub fn active_streams(&self) -> usize {
        self.state().ledger().active_streams.values().sum()
    }

    /// How many times `token` called `user/info`.
    pub fn user_info_calls(&self, token: &str) -> usize {
        self.state().ledger().user_info_calls.get(token).copied().unwrap_or(0)
    }

    /// Logs `token` out: every endpoint answers code 1004 `登录已失效，请重新登录`.
    pub fn kill_token(&self, token: &str) {
        let mut ledger = self.state().ledger();
        ledger.allowed_tokens.remove(token);
        ledger.dead_tokens.insert(token.to_owned());
    }

    /// Logs `token` back in (in the closed mode, lets it in at all).
    pub fn revive_token(&self, token: &str) {
        let mut ledger = self.state().ledger();
        ledger.dead_tokens.remove(token);
        ledger.allowed_tokens.insert(token.to_owned());
    }

    /// Queues a fault; each one is consumed by the next accepted chat request, first in first out.
    pub fn inject(&self, fault: Fault) {
        self.state().ledger().faults.push_back(fault);
    }

    /// Makes the next `n` accepted DELETEs answer HTTP 500.
    pub fn fail_deletes(&self, n: usize) {
        self.state().ledger().failing_deletes = n;
    }

    /// Every file confirmed by `policy_callback`, in confirmation order.
    pub fn uploaded_files(&self) -> Vec<SimFile> {
        self.state().ledger().files.clone()
    }

    /// How many times `token` called `request_policy` (each call issues fresh credentials).
    pub fn policy_requests(&self, token: &str) -> usize {
        self.state().ledger().policy_requests.get(token).copied().unwrap_or(0)
    }

    /// Makes the next `n` OSS PUTs (whatever their signature) answer HTTP 500 `InternalError`
    /// and store nothing; the client then must not confirm the file nor send the chat.
    pub fn fail_uploads(&self, n: usize) {
        self.state().ledger().failing_uploads = n;
    }

    /// The voice `token` selected last with `update_robot_custom_config`.
    pub fn current_voice(&self, token: &str) -> Option<String> {
        self.state().ledger().voices.get(token).cloned()
    }

    /// Every `msg_tts` poll whose `timbre` was not the account's selected voice, described
    /// (each one is also a violation).
    pub fn voice_mismatches(&self) -> Vec<String> {
        self.state().ledger().voice_mismatches.clone()
    }

    /// How many times `msg_tts` was polled for `msg_id` (accepted polls only).
    pub fn tts_polls(&self, msg_id: &str) -> usize {
        self.state().ledger().tts_jobs.get(msg_id).map_or(0, |job| job.polls)
    }

    /// One record per assistant message whose speech was asked for, in first-poll order.
    pub fn tts_requests(&self) -> Vec<TtsRecord> {
        self.state().ledger().tts_requests.clone()
    }

    /// Every `phone_msg` upload that decoded as MP3, in order.
    pub fn phone_uploads(&self) -> Vec<PhoneRecord> {
        self.state().ledger().phone_uploads.clone()
    }

    /// `phone_msg` streams whose client went away before the last `audio_chunk` (noticed when
    /// a write or pause fails, so up to a chunk late).
    pub fn phone_streams_abandoned(&self) -> usize {
        self.state().ledger().phone_abandoned
    }

    /// Makes `msg_tts` answer "pending" (`requestStatus` 1) for the first `n` polls of each
    /// message (default 2), then the URLs.
    pub fn set_tts_pending_polls(&self, n: usize) {
        self.state().ledger().tts_pending_polls = Some(n);
    }

    /// Makes every `msg_tts` poll from now on stay pending, so clients must give up.
    pub fn tts_never_ready(&self) {
        self.state().ledger().tts_never_ready = true;
    }

    /// Stops serving (open connections get a short grace period).
    pub fn shutdown(&self) {
        self.inner.stop.send_replace(true);
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
mod audio_tests;
#[cfg(test)]
mod files_tests;
#[cfg(test)]
mod protocol_tests;
