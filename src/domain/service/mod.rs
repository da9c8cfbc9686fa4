//! Use cases: account scheduling, device registration, chat, speech and transcription run
//! on the client's accounts, and the cleanup of the conversations the proxy creates upstream.
//! Each use case fails with its own error, wrapping the runner's shared [`RunnerError`].

pub mod accounts;
pub mod admission;
pub mod chat;
pub mod codec;
pub mod conversations;
pub mod devices;
pub mod runner;
pub mod speech;
pub mod transcription;

pub use accounts::{AccountHealth, AccountLease, AccountPool, CooldownPolicy};
pub use admission::{Admission, AdmissionPermit, Overloaded};
pub use chat::{Answer, ChatError, ChatService};
pub use codec::CodecSlots;
pub use conversations::{ConversationSweeper, ConversationTracker, LateConversationRecorder};
pub use devices::{DeviceError, DeviceRegistry};
pub use runner::{AccountRunner, RunPolicy, RunnerError};
pub use speech::{SpeechError, SpeechOrder, SpeechService};
pub use transcription::{TranscriptionError, TranscriptionService};

/// The current time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
