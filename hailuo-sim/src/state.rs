//! The simulator's shared state: its configuration, the ledger behind one lock, the open
//! connections a fault may reset, and the source of fresh ids.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::config::SimConfig;
use crate::connections::Connections;
use crate::ledger::{FaultPlan, Ledger};
use crate::profile::Profile;

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

    /// Opens a chat stream on `token`: counts it (and the concurrency high mark) until the
    /// returned guard drops, and says how many streams were open on the token before it.
    pub fn open_stream(self: &Arc<Self>, token: &str) -> (StreamGuard, usize) {
        let before = self.ledger().accounts.open_stream(token);
        let guard = StreamGuard {
            state: Arc::clone(self),
            token: token.to_owned(),
        };
        (guard, before)
    }
}

/// One open chat stream; dropping it (stream ended, client gone) closes it in the ledger.
pub(crate) struct StreamGuard {
    state: Arc<SimState>,
    token: String,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.state.ledger().accounts.close_stream(&self.token);
    }
}
