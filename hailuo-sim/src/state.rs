//! The simulator's shared state: its configuration, the ledger behind one lock, the open
//! connections a fault may reset, and the source of fresh ids.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::config::SimConfig;
use crate::connections::Connections;
use crate::ledger::{FaultPlan, Ledger};
use crate::profile::Profile;
use crate::refusal::BusyReply;

/// The simulator's shared state, behind one lock (every critical section is short).
pub(crate) struct SimState {
    /// The configuration it was started with.
    pub config: SimConfig,
    /// The profile requests must carry (the configuration's, or its dialect's).
    pub profile: Profile,
    /// The OSS `endpoint` handed out by `request_policy`: this simulator's own address.
    pub oss_endpoint: String,
    /// The open connections, which a fault may reset.
    pub connections: Arc<Connections>,
    ledger: Mutex<Ledger>,
    next_id: AtomicU64,
}

impl SimState {
    /// Fresh state for a simulator listening on `addr`; ids start at a random 18-digit base so
    /// two simulators never share one.
    pub fn new(config: SimConfig, addr: SocketAddr) -> Self {
        let base = 243_600_000_000_000_000 + rand::random_range(0..50_000_000_000_000_u64) * 1000;
        let ledger = Ledger::new(FaultPlan::new(config.fault_rate, config.fault_seed));
        Self {
            profile: config.expected_profile(),
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
        let accounts = &ledger.accounts;
        accounts.dead_tokens.contains(token) || (!self.config.open && !accounts.allowed_tokens.contains(token))
    }

    /// How a busy account's request is refused on the streamed dialects (the configured
    /// reply, or an error event `1200009 上一条回复还未结束`).
    pub fn busy_reply(&self) -> BusyReply {
        self.config.busy_reply.clone().unwrap_or_default()
    }

    /// Opens a stream (chat, voice) on `token`: counts it (and the concurrency high mark)
    /// until the returned guard drops, and says whether the account was busy (another stream
    /// open, or one ended within its busy window). A busy account's request is counted as a
    /// busy refusal; its guard leaves no busy window behind.
    pub fn open_stream(self: &Arc<Self>, token: &str) -> (StreamGuard, bool) {
        let mut ledger = self.ledger();
        let busy = ledger.accounts.is_busy(token, Instant::now());
        ledger.accounts.open_stream(token);
        if busy {
            ledger.accounts.busy_refusals += 1;
        }
        drop(ledger);
        let guard = StreamGuard {
            state: Arc::clone(self),
            token: token.to_owned(),
            refusal: busy,
            window: None,
        };
        (guard, busy)
    }
}

/// One open stream; dropping it closes it in the ledger. A response body holding it (see
/// [`EventWriter::channel`](crate::http::sse::EventWriter::channel)) marks how it ended, and
/// the account then stays busy for `busy_after_end` or `busy_after_hangup`.
pub(crate) struct StreamGuard {
    state: Arc<SimState>,
    token: String,
    /// A refused request's stream: it leaves no busy window.
    refusal: bool,
    /// How long the account stays busy once this stream is closed.
    window: Option<Duration>,
}

impl StreamGuard {
    /// The stream's body has been sent to its end.
    pub fn ended(&mut self) {
        self.window = Some(self.state.config.busy_after_end);
    }

    /// The client hung up on the stream, and the simulator has noticed.
    pub fn hung_up(&mut self) {
        self.window = Some(self.state.config.busy_after_hangup);
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        let mut ledger = self.state.ledger();
        ledger.accounts.close_stream(&self.token);
        if let (Some(window), false) = (self.window, self.refusal) {
            ledger.accounts.busy_until(&self.token, Instant::now() + window);
        }
    }
}
