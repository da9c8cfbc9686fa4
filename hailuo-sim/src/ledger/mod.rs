//! What the simulator remembers, grouped by what it keeps: accounts and their devices,
//! conversations and chats, the OSS bucket and files, speech, voice messages and the fault
//! plan, beside the protocol violations seen and the trace ids that must stay fresh.

mod accounts;
mod bucket;
mod conversations;
mod faults;
mod speech;
mod turns;
mod voice;

use std::collections::HashSet;

pub(crate) use accounts::AccountBook;
pub(crate) use bucket::{Bucket, OSS_BUCKET, OssObject, StsCredential};
pub(crate) use conversations::{AssistantMessage, ConversationBook};
pub(crate) use faults::FaultPlan;
pub(crate) use speech::SpeechDesk;
pub(crate) use turns::{AgentTurn, PollFault};
pub(crate) use voice::VoiceInbox;

/// Everything mutable, one record per part of the upstream.
pub(crate) struct Ledger {
    /// Protocol violations, in the order seen.
    pub violations: Vec<String>,
    /// Sentry trace ids seen, which must be fresh per request.
    pub trace_ids: HashSet<String>,
    /// Devices, logins and open streams per token.
    pub accounts: AccountBook,
    /// Conversations, chats and answered messages.
    pub conversations: ConversationBook,
    /// The OSS bucket, its credentials and the confirmed files.
    pub bucket: Bucket,
    /// Voices, speech jobs and their audio.
    pub speech: SpeechDesk,
    /// Voice messages heard.
    pub voice: VoiceInbox,
    /// Faults to play and played.
    pub faults: FaultPlan,
}

impl Ledger {
    /// An empty ledger with this fault plan.
    pub fn new(faults: FaultPlan) -> Self {
        Self {
            violations: Vec::new(),
            trace_ids: HashSet::new(),
            accounts: AccountBook::default(),
            conversations: ConversationBook::default(),
            bucket: Bucket::default(),
            speech: SpeechDesk::default(),
            voice: VoiceInbox::default(),
            faults,
        }
    }

    /// Drops the history a long run piles up (chat records, created and deleted conversation
    /// lists, answered messages and speech jobs, trace ids seen), keeping what the upstream
    /// must remember to answer (devices, live conversations, files, violations).
    pub fn forget_history(&mut self) {
        self.conversations.forget_history();
        let now = std::time::Instant::now();
        self.accounts.busy_until.retain(|_, until| now < *until);
        self.speech.forget_history();
        self.trace_ids = HashSet::new();
    }
}
