//! What the simulated upstream knows of its accounts: the devices each token registered (and
//! those it forgot), the tokens logged out or let in, and the chat streams open on each.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

/// A registered device: `(uuid, device_id)`.
pub(crate) type Device = (String, String);

/// The accounts, by token.
#[derive(Default)]
pub(crate) struct AccountBook {
    /// Device registrations per token.
    pub registrations: HashMap<String, usize>,
    /// Registered devices per token.
    pub devices: HashMap<String, HashSet<Device>>,
    /// Devices the upstream forgot, per token: a request on one is answered `设备未注册` as
    /// the real upstream would, not recorded as a violation.
    pub forgotten_devices: HashMap<String, HashSet<Device>>,
    /// `user/info` calls per token.
    pub user_info_calls: HashMap<String, usize>,
    /// Killed tokens.
    pub dead_tokens: HashSet<String>,
    /// Tokens explicitly allowed (revived), for the closed mode.
    pub allowed_tokens: HashSet<String>,
    /// Open chat streams per token.
    pub active_streams: HashMap<String, usize>,
    /// Highest number of simultaneous streams per token.
    pub max_streams: HashMap<String, usize>,
    /// Until when each token stays busy after its last stream ended or was hung up on.
    pub busy_until: HashMap<String, Instant>,
    /// Chat and voice messages refused because their account was busy.
    pub busy_refusals: usize,
}

impl AccountBook {
    /// Notes a new device of `token`.
    pub fn register(&mut self, token: String, device: Device) {
        *self.registrations.entry(token.clone()).or_default() += 1;
        self.devices.entry(token).or_default().insert(device);
    }

    /// Whether `token` registered `device` (and the upstream still knows it).
    pub fn knows(&self, token: &str, device: &Device) -> bool {
        self.devices.get(token).is_some_and(|devices| devices.contains(device))
    }

    /// Whether the upstream forgot `device` of `token`.
    pub fn forgot(&self, token: &str, device: &Device) -> bool {
        self.forgotten_devices
            .get(token)
            .is_some_and(|devices| devices.contains(device))
    }

    /// Forgets every device of `token`.
    pub fn forget_devices(&mut self, token: &str) {
        let devices = self.devices.remove(token).unwrap_or_default();
        self.forgotten_devices
            .entry(token.to_owned())
            .or_default()
            .extend(devices);
    }

    /// Logs `token` out.
    pub fn kill(&mut self, token: &str) {
        self.allowed_tokens.remove(token);
        self.dead_tokens.insert(token.to_owned());
    }

    /// Logs `token` back in.
    pub fn revive(&mut self, token: &str) {
        self.dead_tokens.remove(token);
        self.allowed_tokens.insert(token.to_owned());
    }

    /// Whether `token` is busy now: a stream of it is open, or one ended too short a while ago.
    pub fn is_busy(&self, token: &str, now: Instant) -> bool {
        self.active_streams.get(token).is_some_and(|open| *open > 0)
            || self.busy_until.get(token).is_some_and(|until| now < *until)
    }

    /// Keeps `token` busy until `until` (or later, if it already was).
    pub fn busy_until(&mut self, token: &str, until: Instant) {
        let entry = self.busy_until.entry(token.to_owned()).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Counts a stream opened on `token` (and the high mark); how many were open before it.
    pub fn open_stream(&mut self, token: &str) -> usize {
        let active = self.active_streams.entry(token.to_owned()).or_default();
        let before = *active;
        *active += 1;
        let now = *active;
        let max = self.max_streams.entry(token.to_owned()).or_default();
        *max = (*max).max(now);
        before
    }

    /// Counts a stream of `token` closed.
    pub fn close_stream(&mut self, token: &str) {
        if let Some(active) = self.active_streams.get_mut(token) {
            *active = active.saturating_sub(1);
        }
    }
}
