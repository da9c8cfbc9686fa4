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
use std::time::{Duration, Instant};

pub(crate) use accounts::AccountBook;
pub(crate) use bucket::{Bucket, OSS_BUCKET, OssObject, StsCredential};
pub(crate) use conversations::{AssistantMessage, ConversationBook};
pub(crate) use faults::FaultPlan;
pub(crate) use speech::{AudioFile, SpeechDesk};
pub(crate) use turns::{AgentTurn, PollFault};
pub(crate) use voice::VoiceInbox;

/// How long the simulator keeps what a later call may still name (an answered message, its
/// speech job, an MP3) at most, even on a conversation that is never deleted: far longer than
/// any client waits between an answer and its speech.
pub(crate) const KEPT_AT_MOST: Duration = Duration::from_secs(60 * 60);

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

    /// Drops the history a long run piles up at `now`: the records tests read (chats, created
    /// and deleted conversation lists, speech polls, voice messages heard, trace ids seen) and
    /// what is finished (the messages of deleted conversations and their speech jobs, busy
    /// marks that ran out), and anything older than [`KEPT_AT_MOST`]. What a later call may
    /// still name stays: devices, live conversations and their messages, pending speech,
    /// files, violations.
    pub fn forget_history(&mut self, now: Instant) {
        let stale_before = now.checked_sub(KEPT_AT_MOST).unwrap_or(now);
        self.conversations.forget_history(stale_before);
        let messages = &self.conversations.messages;
        self.speech
            .forget_history(stale_before, |msg_id| messages.contains_key(msg_id));
        self.accounts.busy_until.retain(|_, until| now < *until);
        self.voice.uploads = Vec::new();
        self.trace_ids = HashSet::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(chat_id: &str, answered: Instant) -> AssistantMessage {
        AssistantMessage {
            token: "t".to_owned(),
            chat_id: chat_id.to_owned(),
            content: "海螺收到：hi".to_owned(),
            answered,
        }
    }

    #[test]
    fn what_a_live_conversation_can_still_name_is_kept_until_it_is_old() {
        let mut ledger = Ledger::new(FaultPlan::new(0.0, None));
        let now = Instant::now();
        ledger.conversations.open("1", "t");
        ledger.conversations.messages.insert("11".to_owned(), message("1", now));
        ledger.speech.jobs.insert("11".to_owned(), speech::TtsJob::default());
        let file = AudioFile {
            made: now,
            bytes: vec![0xFF],
        };
        ledger.speech.audio_files.insert("a".to_owned(), file);

        ledger.forget_history(now + Duration::from_secs(60));
        assert!(ledger.conversations.messages.contains_key("11"));
        assert!(ledger.speech.jobs.contains_key("11"));
        assert!(ledger.speech.audio_files.contains_key("a"));

        ledger.forget_history(now + KEPT_AT_MOST + Duration::from_secs(1));
        assert!(ledger.conversations.messages.is_empty());
        assert!(ledger.speech.jobs.is_empty());
        assert!(ledger.speech.audio_files.is_empty());
        assert_eq!(ledger.conversations.owner("1"), Some("t"), "the conversation stays");
    }
}
