//! How a simulator behaves: the dialect and profile it enforces, the pace of its answers and the rate of
//! the faults it plays unasked.

use std::time::Duration;

use crate::profile::{Dialect, Profile, dialect_profile};
use crate::refusal::BusyReply;

/// How the simulator behaves.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The front door it plays: the profile it holds requests to, unless `profile` says
    /// otherwise, and the shape of its answers (`hailuo-intl`'s `send_result` also names the
    /// conversation's title; `minimax-agent` answers on its matrix endpoints, by polling).
    pub dialect: Dialect,
    /// The profile values requests must carry; `None`: the dialect's embedded profile.
    pub profile: Option<Profile>,
    /// Characters added to the answer per cumulative event.
    pub chunk_chars: usize,
    /// Pause between answer events.
    pub chunk_delay: Duration,
    /// Pause between the two writes of a torn event (every other answer event is torn, so
    /// that clients meet events split across reads); 1 ms by default. Zero only yields between
    /// the writes: the benchmark's setting, since a tokio timer fires on a millisecond tick and
    /// would round whatever the client added before it up to whole milliseconds.
    pub tear_pause: Duration,
    /// Accept any non-empty token except killed ones; when `false`, only tokens passed to
    /// [`Accounts::revive_token`](crate::Accounts::revive_token) are logged in.
    pub open: bool,
    /// The fraction (0 to 1) of chat requests without a queued fault that suffer one drawn
    /// from [`Fault::MIX`](crate::Fault::MIX) (see [`Faults::set_rate`](crate::Faults::set_rate));
    /// 0 by default.
    pub fault_rate: f64,
    /// Seeds the draws of `fault_rate`, for a reproducible run; random when `None`.
    pub fault_seed: Option<u64>,
    /// The pause between an answer's final event (`isEnd: 0`) and its end marker (`type` 8),
    /// during which the response, and with it the account, is still busy; 0 by default.
    pub end_marker_delay: Duration,
    /// How long an account stays busy after one of its streams (chat, voice) has ended, as
    /// the upstream frees an account only some moments after: a chat or voice message sent in
    /// that window is refused with code 1200009 `上一条回复还未结束`. 5 ms by default.
    pub busy_after_end: Duration,
    /// How long an account stays busy after the simulator noticed (at its next write) that a
    /// client hung up on one of its streams. 20 ms by default.
    pub busy_after_hangup: Duration,
    /// How a busy account's request is refused; `None` (the default): as the dialect does, an
    /// error event `1200009 上一条回复还未结束` (on `minimax-agent`, `send_msg`'s `base_resp`
    /// `1200009 chat is running`).
    pub busy_reply: Option<BusyReply>,
    /// On `minimax-agent`: the field of the assistant's message that says whether its answer
    /// is complete (`true` once generated); `None` (the default): no such field, as no public
    /// client knows one.
    pub agent_end_marker: Option<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            dialect: Dialect::default(),
            profile: None,
            chunk_chars: 3,
            chunk_delay: Duration::from_millis(1),
            tear_pause: Duration::from_millis(1),
            open: true,
            fault_rate: 0.0,
            fault_seed: None,
            end_marker_delay: Duration::ZERO,
            busy_after_end: Duration::from_millis(5),
            busy_after_hangup: Duration::from_millis(20),
            busy_reply: None,
            agent_end_marker: None,
        }
    }
}

impl SimConfig {
    /// The default simulator playing `dialect`.
    pub fn on(dialect: Dialect) -> Self {
        Self {
            dialect,
            ..Self::default()
        }
    }

    /// The profile requests must carry: `profile`, or the dialect's embedded one.
    pub fn expected_profile(&self) -> Profile {
        self.profile.clone().unwrap_or_else(|| dialect_profile(self.dialect))
    }
}
