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
mod connections;
mod files;
mod listener;
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

use std::sync::{Mutex, PoisonError};

use poem::Server;
use poem::listener::{Acceptor, Listener, TcpListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{Profile, Settings};
use connections::ResettableAcceptor;
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
    /// Pause between the two writes of a torn event (every other answer event is torn, so
    /// that clients meet events split across reads); 1 ms by default. Zero only yields between
    /// the writes: the benchmark's setting, since a tokio timer fires on a millisecond tick and
    /// would round whatever the client added before it to whole milliseconds
    /// (`bench/RESULTS.md`, section 6, session 7).
    pub tear_pause: Duration,
    /// Accept any non-empty token except killed ones; when `false`, only tokens passed to
    /// [`Simulator::revive_token`] are logged in.
    pub open: bool,
    /// The fraction (0 to 1) of chat requests without a queued fault that suffer one drawn
    /// from [`Fault::MIX`] (see [`Simulator::set_fault_rate`]); 0 by default.
    pub fault_rate: f64,
    /// Seeds the draws of `fault_rate`, for a reproducible run; random when `None`.
    pub fault_seed: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            profile: default_profile(),
            chunk_chars: 3,
            chunk_delay: Duration::from_millis(1),
            tear_pause: Duration::from_millis(1),
            open: true,
            fault_rate: 0.0,
            fault_seed: None,
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
    /// The connection breaks after this many answer events, without an end event (a clean
    /// close, [`RESET_PAUSE`] after the last bytes so that they reach the client).
    CutStream {
        /// Answer events sent before the cut.
        after_events: usize,
    },
    /// A `data:` line that is not JSON, then the normal stream.
    MalformedEvent,
    /// The TCP connection is reset (an RST, no response byte at all) once the request has been
    /// read and checked, before any conversation is made.
    ResetBeforeResponse,
    /// The TCP connection is reset (an RST) after this many answer events. Unlike
    /// [`CutStream`](Self::CutStream), a clean close (FIN) of a body shorter than its
    /// `Content-Length`, the client's next read fails with "connection reset". The reset comes
    /// [`RESET_PAUSE`] after the last event, since an RST makes the peer's kernel drop
    /// what its reader has not taken yet.
    ResetStream {
        /// Answer events sent before the reset.
        after_events: usize,
    },
    /// An upstream that hangs, then answers: nothing for this long after the request was
    /// read (no head, no conversation), then the conversation is made and answered as usual.
    LateAnswer(Duration),
    /// HTTP 200 `application/json` whose body is an envelope cut short (`{"statusInfo":`),
    /// instead of a stream; no conversation is made.
    MalformedEnvelope,
}

/// How long a [`Fault::ResetStream`] waits after its last event before resetting.
pub const RESET_PAUSE: Duration = Duration::from_millis(100);

impl Fault {
    /// The variant's name, e.g. `CutStream`.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::ContentFiltered { .. } => "ContentFiltered",
            Fault::ServerError => "ServerError",
            Fault::AccountRefused => "AccountRefused",
            Fault::Hang => "Hang",
            Fault::SlowChunks(_) => "SlowChunks",
            Fault::CutStream { .. } => "CutStream",
            Fault::MalformedEvent => "MalformedEvent",
            Fault::ResetBeforeResponse => "ResetBeforeResponse",
            Fault::ResetStream { .. } => "ResetStream",
            Fault::MalformedEnvelope => "MalformedEnvelope",
            Fault::LateAnswer(_) => "LateAnswer",
        }
    }

    /// The faults [`Simulator::set_fault_rate`] draws from, equally likely: every fault that
    /// ends on its own ([`Fault::Hang`] is left out: a silent stream holds the account
    /// upstream until the client's timeout, which a rate would turn into a test of patience).
    pub const MIX: [Fault; 10] = [
        Fault::ServerError,
        Fault::AccountRefused,
        Fault::ContentFiltered { after_events: 0 },
        Fault::ContentFiltered { after_events: 2 },
        Fault::CutStream { after_events: 0 },
        Fault::CutStream { after_events: 2 },
        Fault::MalformedEvent,
        Fault::ResetBeforeResponse,
        Fault::ResetStream { after_events: 2 },
        Fault::MalformedEnvelope,
    ];
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
        inner: listener::NoDelayAcceptor::new(acceptor),
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

    /// Every conversation created and not deleted, over all tokens: `(id, owning token)`,
    /// oldest first.
    pub fn all_live_conversations(&self) -> Vec<(String, String)> {
        self.state().ledger().conversations.clone()
    }

    /// Every conversation ever created: `(id, owning token)`, in creation order.
    pub fn created_conversations(&self) -> Vec<(String, String)> {
        self.state().ledger().created.clone()
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

    /// Forgets every device registered for `token`, as the upstream does when it drops a
    /// registration: requests on them are answered `设备未注册` (code 1003) until the token
    /// registers a new device.
    pub fn forget_devices(&self, token: &str) {
        let mut ledger = self.state().ledger();
        let devices = ledger.devices.remove(token).unwrap_or_default();
        ledger
            .forgotten_devices
            .entry(token.to_owned())
            .or_default()
            .extend(devices);
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

    /// Makes a fraction `rate` (0 to 1) of the chat requests that have no queued fault suffer
    /// one drawn from [`Fault::MIX`] (seeded by [`SimConfig::fault_seed`]).
    pub fn set_fault_rate(&self, rate: f64) {
        self.state().ledger().fault_rate = rate.clamp(0.0, 1.0);
    }

    /// How many chat requests suffered a fault (queued or drawn), by kind (the variant's name).
    pub fn faults_played(&self) -> std::collections::BTreeMap<String, usize> {
        self.state().ledger().faults_played.clone()
    }

    /// Drops the history a long run would pile up: the chat records, created and deleted
    /// conversation lists, answered messages and speech jobs, and the Sentry trace ids seen
    /// (so a reuse across this point goes unnoticed). What the upstream must remember to
    /// answer (devices, live conversations, files, violations) stays.
    pub fn forget_history(&self) {
        let mut ledger = self.state().ledger();
        ledger.chats = Vec::new();
        ledger.created = Vec::new();
        ledger.deleted = Vec::new();
        ledger.trace_ids = std::collections::HashSet::new();
        ledger.messages = std::collections::HashMap::new();
        ledger.tts_jobs = std::collections::HashMap::new();
        ledger.tts_requests = Vec::new();
    }

    /// Deletes conversation `chat_id` as its user would in the web app: from then on the
    /// upstream answers `对话不存在` for it, to a DELETE too.
    pub fn delete_in_web_app(&self, chat_id: &str) {
        self.state().ledger().conversations.retain(|(id, _)| id != chat_id);
    }

    /// How many DELETEs of a conversation passed the protocol checks (answered or not).
    pub fn delete_requests(&self) -> usize {
        self.state().ledger().delete_requests
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
mod audio_tests;
#[cfg(test)]
mod files_tests;
#[cfg(test)]
mod protocol_tests;
