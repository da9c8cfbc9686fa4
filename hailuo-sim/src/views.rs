//! Views of a running simulator, one per part of the upstream: what a test reads of it and
//! the levers it pulls (`sim.accounts().kill_token(..)`, `sim.faults().inject(..)`, ...).

use std::collections::BTreeMap;

use crate::fault::Fault;
use crate::records::{ChatRecord, PhoneRecord, SimFile, TtsRecord};
use crate::refusal::Refusal;
use crate::state::SimState;

/// The accounts: devices, logins and open streams per token.
#[derive(Clone, Copy)]
pub struct Accounts<'a> {
    state: &'a SimState,
}

impl<'a> Accounts<'a> {
    pub(crate) fn new(state: &'a SimState) -> Self {
        Self { state }
    }

    /// How many devices `token` registered.
    pub fn registrations(&self, token: &str) -> usize {
        let ledger = self.state.ledger();
        ledger.accounts.registrations.get(token).copied().unwrap_or(0)
    }

    /// How many times `token` called `user/info`.
    pub fn user_info_calls(&self, token: &str) -> usize {
        let ledger = self.state.ledger();
        ledger.accounts.user_info_calls.get(token).copied().unwrap_or(0)
    }

    /// The highest number of chat streams open at once on `token` (a refused second stream
    /// counts too).
    pub fn max_concurrent_streams(&self, token: &str) -> usize {
        let ledger = self.state.ledger();
        ledger.accounts.max_streams.get(token).copied().unwrap_or(0)
    }

    /// How many chat and voice messages were refused with code 1200009 `上一条回复还未结束`
    /// because their account was busy: another stream open on it, or one that ended (or was
    /// hung up on) within `busy_after_end` (`busy_after_hangup`).
    pub fn busy_refusals(&self) -> usize {
        self.state.ledger().accounts.busy_refusals
    }

    /// Whether any account is busy now (a stream open, or within the busy window of one).
    pub fn any_busy(&self) -> bool {
        let ledger = self.state.ledger();
        let now = std::time::Instant::now();
        let accounts = &ledger.accounts;
        accounts
            .active_streams
            .keys()
            .chain(accounts.busy_until.keys())
            .any(|token| accounts.is_busy(token, now))
    }

    /// Whether `token` is busy now (a stream open, or within the busy window of one).
    pub fn is_busy(&self, token: &str) -> bool {
        self.state.ledger().accounts.is_busy(token, std::time::Instant::now())
    }

    /// Chat streams open now, over all tokens.
    pub fn active_streams(&self) -> usize {
        self.state.ledger().accounts.active_streams.values().sum()
    }

    /// Logs `token` out: every endpoint answers code 1004 `登录已失效，请重新登录`.
    pub fn kill_token(&self, token: &str) {
        self.state.ledger().accounts.kill(token);
    }

    /// Logs `token` back in (in the closed mode, lets it in at all).
    pub fn revive_token(&self, token: &str) {
        self.state.ledger().accounts.revive(token);
    }

    /// Forgets every device registered for `token`, as the upstream does when it drops a
    /// registration: requests on them are answered `设备未注册` (code 1003) until the token
    /// registers a new device.
    pub fn forget_devices(&self, token: &str) {
        self.state.ledger().accounts.forget_devices(token);
    }
}

/// The conversations and the chat requests accepted on them.
#[derive(Clone, Copy)]
pub struct Conversations<'a> {
    state: &'a SimState,
}

impl<'a> Conversations<'a> {
    pub(crate) fn new(state: &'a SimState) -> Self {
        Self { state }
    }

    /// Every accepted chat request, in order.
    pub fn chats(&self) -> Vec<ChatRecord> {
        self.state.ledger().conversations.chats.clone()
    }

    /// The conversations of `token` created and not deleted, oldest first.
    pub fn live(&self, token: &str) -> Vec<String> {
        let ledger = self.state.ledger();
        ledger
            .conversations
            .live
            .iter()
            .filter(|(_, owner)| owner == token)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Every conversation created and not deleted, over all tokens: `(id, owning token)`,
    /// oldest first.
    pub fn all_live(&self) -> Vec<(String, String)> {
        self.state.ledger().conversations.live.clone()
    }

    /// Every conversation ever created: `(id, owning token)`, in creation order.
    pub fn created(&self) -> Vec<(String, String)> {
        self.state.ledger().conversations.created.clone()
    }

    /// Every deleted conversation, in deletion order.
    pub fn deleted(&self) -> Vec<String> {
        self.state.ledger().conversations.deleted.clone()
    }

    /// How many DELETEs of a conversation passed the protocol checks (answered or not).
    pub fn delete_requests(&self) -> usize {
        self.state.ledger().conversations.delete_requests
    }

    /// How many `get_chat_detail` polls passed the protocol checks (`minimax-agent`).
    pub fn detail_polls(&self) -> usize {
        self.state.ledger().conversations.detail_polls
    }

    /// How many `delete_chat` calls were refused with `chat is running` (`minimax-agent`).
    pub fn running_deletes(&self) -> usize {
        self.state.ledger().conversations.running_deletes
    }

    /// Deletes conversation `chat_id` as its user would in the web app: from then on the
    /// upstream answers `对话不存在` for it, to a DELETE too.
    pub fn delete_in_web_app(&self, chat_id: &str) {
        self.state.ledger().conversations.remove(chat_id);
    }
}

/// The OSS bucket and the files confirmed in it.
#[derive(Clone, Copy)]
pub struct Oss<'a> {
    state: &'a SimState,
}

impl<'a> Oss<'a> {
    pub(crate) fn new(state: &'a SimState) -> Self {
        Self { state }
    }

    /// Every file confirmed by `policy_callback`, in confirmation order.
    pub fn uploaded_files(&self) -> Vec<SimFile> {
        self.state.ledger().bucket.files.clone()
    }

    /// How many times `token` called `request_policy` (each call issues fresh credentials).
    pub fn policy_requests(&self, token: &str) -> usize {
        let ledger = self.state.ledger();
        ledger.bucket.policy_requests.get(token).copied().unwrap_or(0)
    }
}

/// Speech: the voices selected and the `msg_tts` polls.
#[derive(Clone, Copy)]
pub struct Speech<'a> {
    state: &'a SimState,
}

impl<'a> Speech<'a> {
    pub(crate) fn new(state: &'a SimState) -> Self {
        Self { state }
    }

    /// The voice `token` selected last with `update_robot_custom_config`.
    pub fn current_voice(&self, token: &str) -> Option<String> {
        self.state.ledger().speech.voices.get(token).cloned()
    }

    /// Every `msg_tts` poll whose `timbre` was not the account's selected voice, described
    /// (each one is also a violation).
    pub fn voice_mismatches(&self) -> Vec<String> {
        self.state.ledger().speech.voice_mismatches.clone()
    }

    /// How many times `msg_tts` was polled for `msg_id` (accepted polls only).
    pub fn polls(&self, msg_id: &str) -> usize {
        self.state.ledger().speech.jobs.get(msg_id).map_or(0, |job| job.polls)
    }

    /// One record per assistant message whose speech was asked for, in first-poll order.
    pub fn requests(&self) -> Vec<TtsRecord> {
        self.state.ledger().speech.requests.clone()
    }

    /// Makes `msg_tts` answer "pending" (`requestStatus` 1) for the first `n` polls of each
    /// message (default 2), then the URLs.
    pub fn set_pending_polls(&self, n: usize) {
        self.state.ledger().speech.pending_polls = Some(n);
    }

    /// Makes every `msg_tts` poll from now on stay pending, so clients must give up.
    pub fn never_ready(&self) {
        self.state.ledger().speech.never_ready = true;
    }
}

/// Transcription: the voice messages `phone_msg` heard.
#[derive(Clone, Copy)]
pub struct Transcription<'a> {
    state: &'a SimState,
}

impl<'a> Transcription<'a> {
    pub(crate) fn new(state: &'a SimState) -> Self {
        Self { state }
    }

    /// Every `phone_msg` upload that decoded as MP3, in order.
    pub fn uploads(&self) -> Vec<PhoneRecord> {
        self.state.ledger().voice.uploads.clone()
    }

    /// `phone_msg` streams whose client went away before the last `audio_chunk` (noticed when
    /// a write or pause fails, so up to a chunk late).
    pub fn streams_abandoned(&self) -> usize {
        self.state.ledger().voice.abandoned
    }
}

/// The fault plan: what is to go wrong, and what went wrong.
#[derive(Clone, Copy)]
pub struct Faults<'a> {
    state: &'a SimState,
}

impl<'a> Faults<'a> {
    pub(crate) fn new(state: &'a SimState) -> Self {
        Self { state }
    }

    /// Queues a fault; each one is consumed by the next accepted chat request, first in first out.
    pub fn inject(&self, fault: Fault) {
        self.state.ledger().faults.queued.push_back(fault);
    }

    /// Makes a fraction `rate` (0 to 1) of the chat requests that have no queued fault suffer
    /// one drawn from [`Fault::MIX`] (seeded by
    /// [`SimConfig::fault_seed`](crate::SimConfig::fault_seed)).
    pub fn set_rate(&self, rate: f64) {
        self.state.ledger().faults.rate = rate.clamp(0.0, 1.0);
    }

    /// How many chat requests suffered a fault (queued or drawn), by kind (the variant's name).
    pub fn played(&self) -> BTreeMap<String, usize> {
        self.state.ledger().faults.played.clone()
    }

    /// Queues a refusal: the next request of the call it is about (any token), once it has
    /// passed the protocol checks, is refused with it instead of being answered. Refusals of
    /// different calls wait for their own; of one call, first in first out.
    pub fn refuse_next(&self, refusal: Refusal) {
        self.state.ledger().faults.refusals.push_back(refusal);
    }

    /// Makes the next `n` accepted DELETEs answer HTTP 500.
    pub fn fail_deletes(&self, n: usize) {
        self.state.ledger().faults.failing_deletes = n;
    }

    /// Makes the next `n` OSS PUTs (whatever their signature) answer HTTP 500 `InternalError`
    /// and store nothing; the client then must not confirm the file nor send the chat.
    pub fn fail_uploads(&self, n: usize) {
        self.state.ledger().faults.failing_uploads = n;
    }
}
