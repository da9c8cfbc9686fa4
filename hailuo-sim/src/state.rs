//! What the simulator remembers: devices, conversations, open streams, upload credentials,
//! stored objects and files, faults to play and everything tests inspect afterwards.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::connections::Connections;
use super::{ChatRecord, Fault, PhoneRecord, SimConfig, SimFile, TtsRecord};

/// The bucket the simulated OSS serves (it must not clash with `/v1/...` and `/v4/...`).
pub(crate) const OSS_BUCKET: &str = "hailuo-sim";

/// Temporary STS credentials handed out by `request_policy`.
#[derive(Clone, Debug)]
pub(crate) struct StsCredential {
    /// The Hailuo `Token` that asked for them.
    pub token: String,
    /// `accessKeySecret`, the HMAC key of the OSS signature.
    pub secret: String,
    /// `securityToken`, which each OSS request must carry in `x-oss-security-token`.
    pub security_token: String,
    /// `dir`: every object key must start with it and a `/`.
    pub dir: String,
    /// When they stop working.
    pub expires: Instant,
}

/// An object stored by an OSS `PUT`.
#[derive(Clone, Debug)]
pub(crate) struct OssObject {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The `Content-Type` it was uploaded with.
    pub content_type: String,
    /// The Hailuo `Token` whose credentials uploaded it.
    pub token: String,
}

/// The simulator's shared state, behind one lock (every critical section is short).
pub(crate) struct SimState {
    /// The configuration it was started with.
    pub config: SimConfig,
    /// The OSS `endpoint` handed out by `request_policy`: this simulator's own address.
    pub oss_endpoint: String,
    /// The open connections, which a fault may reset.
    pub connections: Arc<Connections>,
    ledger: Mutex<Ledger>,
    next_id: AtomicU64,
}

/// Everything mutable.
#[derive(Default)]
pub(crate) struct Ledger {
    /// Protocol violations, in the order seen.
    pub violations: Vec<String>,
    /// Device registrations per token.
    pub registrations: HashMap<String, usize>,
    /// Registered devices per token: `(uuid, device_id)`.
    pub devices: HashMap<String, HashSet<(String, String)>>,
    /// Devices the upstream forgot (see `Simulator::forget_devices`), per token: a request
    /// on one is answered `设备未注册` as the real upstream would, not recorded as a violation.
    pub forgotten_devices: HashMap<String, HashSet<(String, String)>>,
    /// `user/info` calls per token.
    pub user_info_calls: HashMap<String, usize>,
    /// Accepted chat requests, in order.
    pub chats: Vec<ChatRecord>,
    /// Live conversations: id → owning token, in creation order.
    pub conversations: Vec<(String, String)>,
    /// Every conversation created: id → owning token, in creation order.
    pub created: Vec<(String, String)>,
    /// Deleted conversations, in deletion order.
    pub deleted: Vec<String>,
    /// Open chat streams per token.
    pub active_streams: HashMap<String, usize>,
    /// Highest number of simultaneous streams per token.
    pub max_streams: HashMap<String, usize>,
    /// Killed tokens.
    pub dead_tokens: HashSet<String>,
    /// Tokens explicitly allowed (revived), for the closed mode.
    pub allowed_tokens: HashSet<String>,
    /// Faults for the next chat requests.
    pub faults: VecDeque<Fault>,
    /// The fraction of other chat requests that suffer a fault drawn from [`Fault::MIX`].
    pub fault_rate: f64,
    /// The draws of `fault_rate` (set by [`SimState::new`]).
    pub fault_rng: Option<StdRng>,
    /// Faults played, by kind.
    pub faults_played: BTreeMap<String, usize>,
    /// DELETEs still to fail with HTTP 500.
    pub failing_deletes: usize,
    /// DELETEs of a conversation that passed the protocol checks, answered or not.
    pub delete_requests: usize,
    /// Sentry trace ids seen, which must be fresh per request.
    pub trace_ids: HashSet<String>,
    /// `request_policy` calls per token.
    pub policy_requests: HashMap<String, usize>,
    /// Upload credentials by `accessKeyId`.
    pub credentials: HashMap<String, StsCredential>,
    /// The upload directory of each token (`dir`).
    pub upload_dirs: HashMap<String, String>,
    /// Stored objects by `(bucket, key)`.
    pub objects: HashMap<(String, String), OssObject>,
    /// Files confirmed by `policy_callback`, in confirmation order.
    pub files: Vec<SimFile>,
    /// OSS PUTs still to fail with HTTP 500.
    pub failing_uploads: usize,
    /// Assistant messages answered, by `msgID`, for `msg_tts`.
    pub messages: HashMap<String, AssistantMessage>,
    /// The voice each token selected last (`update_robot_custom_config`).
    pub voices: HashMap<String, String>,
    /// Speech jobs by `msgID`.
    pub tts_jobs: HashMap<String, TtsJob>,
    /// The first `msg_tts` poll of each `msgID`, in order.
    pub tts_requests: Vec<TtsRecord>,
    /// Voice mismatches (`timbre` other than the token's selected voice), in order.
    pub voice_mismatches: Vec<String>,
    /// Polls answered "pending" before the audio is ready (`None`: the default).
    pub tts_pending_polls: Option<usize>,
    /// Every poll stays pending.
    pub tts_never_ready: bool,
    /// Speech audio served under `/__audio/<id>.mp3`, by id.
    pub audio_files: HashMap<String, Vec<u8>>,
    /// Decodable `phone_msg` uploads, in order.
    pub phone_uploads: Vec<PhoneRecord>,
    /// `phone_msg` streams whose client left before the last `audio_chunk`.
    pub phone_abandoned: usize,
}

/// An assistant message the simulator answered: what `msg_tts` may speak.
#[derive(Clone, Debug)]
pub(crate) struct AssistantMessage {
    /// The token whose chat produced it.
    pub token: String,
    /// Its conversation.
    pub chat_id: String,
    /// Its complete content (the answer).
    pub content: String,
}

/// The speech of one assistant message, polled through `msg_tts`.
#[derive(Clone, Debug, Default)]
pub(crate) struct TtsJob {
    /// Polls so far.
    pub polls: usize,
    /// When it was last polled.
    pub last_poll: Option<Instant>,
    /// The audio URLs, once made.
    pub urls: Option<Vec<String>>,
}

impl Ledger {
    /// The fault the next chat request suffers: the first queued one, else one drawn at the
    /// fault rate; counted by kind.
    pub fn next_fault(&mut self) -> Option<Fault> {
        let fault = self.faults.pop_front().or_else(|| {
            let rate = self.fault_rate;
            let rng = self.fault_rng.as_mut()?;
            if rate <= 0.0 || !rng.random_bool(rate.min(1.0)) {
                return None;
            }
            Fault::MIX.get(rng.random_range(0..Fault::MIX.len())).cloned()
        })?;
        *self.faults_played.entry(fault.kind().to_owned()).or_default() += 1;
        Some(fault)
    }

    /// The owner of a live conversation.
    pub fn conversation_owner(&self, chat_id: &str) -> Option<&str> {
        self.conversations
            .iter()
            .find(|(id, _)| id == chat_id)
            .map(|(_, token)| token.as_str())
    }
}

impl SimState {
    /// Fresh state for a simulator listening on `addr`; ids start at a random 18-digit base so
    /// two simulators never share one.
    pub fn new(config: SimConfig, addr: SocketAddr) -> Self {
        let base = 243_600_000_000_000_000 + rand::random_range(0..50_000_000_000_000_u64) * 1000;
        let fault_rng = match config.fault_seed {
            Some(seed) => StdRng::seed_from_u64(seed),
            None => StdRng::from_rng(&mut rand::rng()),
        };
        let ledger = Ledger {
            fault_rate: config.fault_rate.clamp(0.0, 1.0),
            fault_rng: Some(fault_rng),
            ..Ledger::default()
        };
        Self {
            config,
            oss_endpoint: format!("http://{addr}"),
            connections: Arc::new(Connections::default()),
            ledger: Mutex::new(ledger),
            next_id: AtomicU64::new(base),
        }
    }

    /// The ledger, even after a panic elsewhere poisoned the lock.
    pub fn ledger(&self) -> MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh, unique 18-digit id (devices, conversations, messages).
    pub fn new_id(&self) -> String {
        self.next_id.fetch_add(1, Ordering::Relaxed).to_string()
    }

    /// Records a protocol violation.
    pub fn violation(&self, what: String) {
        tracing::warn!(violation = %what, "hailuo-sim: protocol violation");
        self.ledger().violations.push(what);
    }

    /// Whether this token is refused as logged out.
    pub fn is_dead(&self, token: &str) -> bool {
        let ledger = self.ledger();
        ledger.dead_tokens.contains(token) || (!self.config.open && !ledger.allowed_tokens.contains(token))
    }

    /// Opens a chat stream on `token`: counts it (and the concurrency high mark) until the
    /// returned guard drops, and says how many streams were open on the token before it.
    pub fn open_stream(self: &Arc<Self>, token: &str) -> (StreamGuard, usize) {
        let mut ledger = self.ledger();
        let active = ledger.active_streams.entry(token.to_owned()).or_default();
        let before = *active;
        *active += 1;
        let now = *active;
        let max = ledger.max_streams.entry(token.to_owned()).or_default();
        *max = (*max).max(now);
        (
            StreamGuard {
                state: Arc::clone(self),
                token: token.to_owned(),
            },
            before,
        )
    }
}

/// One open chat stream; dropping it (stream ended, client gone) closes it in the ledger.
pub(crate) struct StreamGuard {
    state: Arc<SimState>,
    token: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut ledger = self.state.ledger();
        if let Some(active) = ledger.active_streams.get_mut(&self.token) {
            *active = active.saturating_sub(1);
        }
    }
}
