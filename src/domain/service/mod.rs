//! Use cases: account scheduling, device registration, chat with retries, and the cleanup
//! of the conversations the proxy creates upstream.

pub mod accounts;
pub mod admission;
pub mod audio;
pub mod chat;
pub mod conversations;
pub mod devices;
pub mod runner;

pub use accounts::{AccountHealth, AccountLease, AccountPool, CooldownPolicy};
pub use admission::{Admission, AdmissionPermit, Overloaded};
pub use audio::{CodecSlots, SpeechOrder, SpeechService, TranscriptionService};
pub use chat::{Answer, ChatService};
pub use conversations::{ConversationSweeper, ConversationTracker, LateConversationRecorder};
pub use devices::{DeviceError, DeviceRegistry};
pub use runner::{AccountRunner, GatewayError, RunPolicy};

/// The current time in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
