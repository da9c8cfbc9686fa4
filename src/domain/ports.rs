//! The ports: what the domain needs from the outside world, as traits that adapters
//! (the Hailuo HTTP client, the memory and SQLite stores) implement.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::audio::{AudioError, PreparedAudio, SpeechFormat, SpeechRequest};
use super::chat::{AccountToken, AnswerDelta, Attachment, AttachmentError, ChatPrompt, ClientId, ConversationId};

/// A device registered upstream for one account token (protocol §3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// The uuid we generated and registered (sent as `uuid`).
    pub user_id: String,
    /// The upstream's device id (sent as `device_id`).
    pub device_id: String,
    /// When it was registered, in Unix milliseconds.
    pub registered_at_ms: i64,
}

/// An account ready to talk to the upstream: its token and its registered device.
#[derive(Clone, Debug)]
pub struct Account {
    /// The account's token.
    pub token: AccountToken,
    /// The device registered for it.
    pub device: Device,
}

/// Why an upstream call failed, as the domain needs to tell failures apart.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProviderError {
    /// The upstream refused the account itself (expired, logged out, banned): try another token.
    #[error("the upstream refused the account: {message}")]
    AccountRejected {
        /// The upstream's reason.
        message: String,
    },
    /// The upstream says the account is still busy with another answer (protocol §12), before
    /// any content: the account is fine and will be free shortly, so wait and try again (on it
    /// or another idle account).
    #[error("the upstream says the account is busy: {message}")]
    AccountBusy {
        /// The upstream's reason.
        message: String,
    },
    /// The upstream refused this request (content filtered, a text too long, ...): do not
    /// retry elsewhere. `reason` says what the refusal is about when the adapter recognised it.
    #[error("the upstream refused the request: {message}")]
    Refused {
        /// The upstream's reason, as it gave it.
        message: String,
        /// What the refusal is about.
        reason: Refusal,
    },
    /// The upstream says the account sent too many requests (HTTP 429, or a message saying
    /// so): the account is fine but will not answer for a while, so try another one.
    #[error("the upstream limits the account's requests: {message}")]
    RateLimited {
        /// The upstream's reason.
        message: String,
    },
    /// A transient failure: connection refused or reset, a 5xx, a stream broken off.
    #[error("the upstream is unavailable: {message}")]
    Unavailable {
        /// What went wrong, without secrets.
        message: String,
    },
    /// The upstream sent nothing for longer than the configured timeout.
    #[error("the upstream did not answer in time")]
    Timeout,
    /// The upstream accepted the work but did not finish it in the time allowed (e.g. the
    /// spoken audio never became ready); trying again would only wait as long again.
    #[error("the upstream did not finish in time: {message}")]
    GaveUp {
        /// What did not finish.
        message: String,
    },
    /// The upstream no longer knows the account's device (it forgot the registration):
    /// register a new device and try again at once; the account itself is fine.
    #[error("the upstream no longer knows this account's device: {message}")]
    DeviceUnknown {
        /// The upstream's reason.
        message: String,
    },
    /// The conversation named does not exist upstream (never made, or deleted): to a client
    /// continuing it, an unknown conversation; to the sweeper, a deletion already done.
    #[error("the conversation does not exist upstream: {message}")]
    ConversationNotFound {
        /// The upstream's reason.
        message: String,
    },
    /// The upstream answered something that does not follow the protocol.
    #[error("the upstream answered something unexpected: {message}")]
    BadResponse {
        /// What was unexpected.
        message: String,
    },
    /// An attachment failed while it was being sent (its download broke off, or passed a
    /// limit): the client's fault, final.
    #[error("{0}")]
    Attachment(AttachmentError),
}

/// What an upstream refusal of a request is about, as far as the adapter recognised it (by
/// the upstream's code or text, protocol §10): the use case answers each as the client's
/// mistake it is, and an unrecognised one as the upstream refusing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Not recognised: the upstream refused, for the reason its message gives.
    Unrecognised,
    /// The upstream refused what the gateway sent rather than what the client asked (a
    /// signature or a parameter it does not take): the protocol drifted.
    Protocol,
    /// The content was filtered (the text, or what it asks for).
    ContentFiltered,
    /// The text is longer than the upstream takes.
    TextTooLong,
    /// The voice named is not one the upstream knows.
    UnknownVoice,
    /// The upstream does not take this type of file.
    UnsupportedFile,
    /// The file is larger than the upstream takes.
    FileTooLarge,
    /// The upstream cannot use the audio (not audio to it, empty, damaged).
    InvalidAudio,
    /// The audio lasts longer than the upstream takes.
    AudioTooLong,
}

impl ProviderError {
    /// A refusal of the request whose reason is not recognised.
    pub fn refused(message: impl Into<String>) -> Self {
        ProviderError::Refused {
            message: message.into(),
            reason: Refusal::Unrecognised,
        }
    }

    /// Whether trying again (after a pause, maybe on another account) may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::Unavailable { .. } | ProviderError::Timeout | ProviderError::BadResponse { .. }
        )
    }
}

/// The answer to a chat prompt, piece by piece, as the upstream produces it.
///
/// The stream ends when the upstream's response has ended, not at the final delta: polled on
/// after the delta with `finished` set, it reads the rest of the response (its end marker)
/// and then yields `None`, so that whoever holds the account knows when the upstream frees
/// it (protocol §12). Dropping it earlier hangs up on the response, which the upstream only
/// notices at its next write.
pub type AnswerStream = BoxStream<'static, Result<AnswerDelta, ProviderError>>;

/// The upstream chat service (Hailuo's web chat), account by account.
#[async_trait]
pub trait ChatProvider: Send + Sync {
    /// Registers a fresh device for `token` (protocol §3).
    ///
    /// # Errors
    /// [`ProviderError::AccountRejected`] when the upstream refuses the token; transient errors otherwise.
    async fn register_device(&self, token: &AccountToken) -> Result<Device, ProviderError>;

    /// Whether the account is alive (protocol §4).
    ///
    /// # Errors
    /// Only transient failures; a refused account is `Ok(false)`.
    async fn is_alive(&self, account: &Account) -> Result<bool, ProviderError>;

    /// Sends a prompt, with the files its last message attaches (their contents read as they
    /// are uploaded), and returns the answer as a stream of deltas. Resolves once the
    /// upstream has accepted the request; errors inside the stream are about the request.
    ///
    /// # Errors
    /// [`ProviderError::AccountRejected`] when the account is refused before any event,
    /// [`ProviderError::AccountBusy`] (before any content, in the stream or instead of it)
    /// when the upstream says the account is still busy with another answer, transient errors when the upstream cannot be reached or answers 5xx,
    /// [`ProviderError::Attachment`] when an attachment's content fails on its way.
    async fn send(
        &self,
        account: &Account,
        prompt: &ChatPrompt,
        attachments: Vec<Attachment>,
    ) -> Result<AnswerStream, ProviderError>;

    /// Deletes a conversation from the account's history (protocol §5.3).
    ///
    /// # Errors
    /// Any failure; the caller retries later.
    async fn delete_conversation(&self, account: &Account, conversation: &ConversationId) -> Result<(), ProviderError>;
}

/// Where the files clients attach by URL come from: `http(s)` URLs fetched from the web
/// (guarded against reaching private networks) and `data:` URLs decoded.
#[async_trait]
pub trait AttachmentSource: Send + Sync {
    /// Opens the attachments of one message, concurrently, in the order given: each named
    /// `<uuid>.<ext>` with its MIME type, its content still to be read. They share one
    /// request's budget: a count of files (checked before anything is downloaded) and a
    /// total of bytes, which their contents keep counting as they are read.
    ///
    /// # Errors
    /// [`AttachmentError::Invalid`] for more files than a message may carry, or a bad or
    /// unreachable URL; [`AttachmentError::TooLarge`] past a file's limit or the request's
    /// total. The first failure ends the other openings at once.
    async fn open(&self, urls: &[&str]) -> Result<Vec<Attachment>, AttachmentError>;
}

/// What a speech attempt produced: the conversation it created upstream (to be deleted,
/// whether or not the audio came), and the MP3 audio or the failure.
#[derive(Debug)]
pub struct SpeechOutcome {
    /// The conversation the upstream created to speak from, once known.
    pub conversation: Option<ConversationId>,
    /// The MP3 bytes (every part, in order), or why there are none.
    pub audio: Result<Vec<u8>, ProviderError>,
}

/// Text to speech (protocol §8).
#[async_trait]
pub trait SpeechProvider: Send + Sync {
    /// Speaks `request.text` with `request.voice` on `account` (which the caller holds
    /// exclusively: the voice is an account-wide setting) and returns the MP3 audio.
    /// The conversation is left to the caller to delete.
    async fn speak(&self, account: &Account, request: &SpeechRequest) -> SpeechOutcome;
}

/// Speech to text (protocol §9).
#[async_trait]
pub trait TranscriptionProvider: Send + Sync {
    /// Transcribes MP3 audio; an empty string when no speech was heard. Returns as soon as the
    /// transcript has arrived, hanging up on the rest of the upstream's answer (the app's
    /// spoken reply), which keeps the account busy upstream until the upstream notices.
    ///
    /// # Errors
    /// Upstream failures, as for chat.
    async fn transcribe(&self, account: &Account, mp3: &[u8]) -> Result<String, ProviderError>;
}

/// Decoding and encoding audio (CPU-bound: callers run it off the async threads).
pub trait AudioCodec: Send + Sync {
    /// Makes an upload ready for the upstream: MP3 passes through, anything else (wav, m4a,
    /// ogg, flac; not Opus in WebM) is decoded and encoded as MP3 (44.1 kHz stereo, 192 kbit/s); with
    /// the audio's duration. `file_name` is a hint to the container type. Memory stays
    /// about the MP3's size, whatever the upload unpacks to.
    ///
    /// # Errors
    /// [`AudioError::Undecodable`] for bytes that are not audio we can decode (or whose
    /// header announces a format out of bounds); [`AudioError::TooLong`] for audio past the
    /// codec's [`AudioLimits`](crate::domain::audio::AudioLimits).
    fn prepare_for_transcription(&self, bytes: &[u8], file_name: Option<&str>) -> Result<PreparedAudio, AudioError>;

    /// Renders the upstream's MP3 as `format` at `speed` (0.25–4.0, pitch kept).
    ///
    /// # Errors
    /// [`AudioError::Unsupported`] for a speed out of range, [`AudioError::Undecodable`] when
    /// the MP3 does not decode, [`AudioError::TooLong`] past the codec's limits,
    /// [`AudioError::Encoding`] when encoding fails.
    fn render_speech(&self, mp3: &[u8], format: SpeechFormat, speed: f32) -> Result<Vec<u8>, AudioError>;
}

/// A store failed; what it says (its cause included) carries no secrets.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("store failure: {doing}: {source}")]
    Database {
        /// What the store was doing, e.g. "saving a device".
        doing: String,
        /// The database's own error (it never shows bound values).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file of the store (the database, its folder, its key file) could not be used.
    #[error("store failure: {doing}: {source}")]
    File {
        /// What the store was doing, naming the file.
        doing: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The store's key does not open the store: another secret, a missing or damaged key
    /// file, or an emptied database next to its key file.
    #[error("store failure: {0}")]
    Key(String),
    /// A stored row cannot be read back (damaged, or sealed under another key).
    #[error("store failure: {0}")]
    Unreadable(String),
}

impl StoreError {
    /// A database failure while `doing` something.
    pub fn database(doing: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Database {
            doing: doing.into(),
            source: Box::new(source),
        }
    }
}

/// Where an adapter reports a conversation it learnt of only after giving up on the request
/// that made it (an upstream that hung, then answered), so that it is deleted like the others.
pub trait LateConversations: Send + Sync {
    /// `conversation` was made upstream in `token`'s account by a request already given up.
    fn made(&self, token: &AccountToken, conversation: &ConversationId);
}

/// Where each account token's registered device is kept (reused for hours, across restarts
/// with a persistent adapter).
#[async_trait]
pub trait TokenStore: Send + Sync {
    /// The device registered for `token`, if any.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    async fn device(&self, token: &AccountToken) -> Result<Option<Device>, StoreError>;

    /// Keeps `device` for `token`, replacing any earlier one.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be written.
    async fn save_device(&self, token: &AccountToken, device: &Device) -> Result<(), StoreError>;

    /// Forgets the device of `token` (the account was refused).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be written.
    async fn forget_device(&self, token: &AccountToken) -> Result<(), StoreError>;
}

/// An upstream conversation the proxy created and has not yet deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// The upstream conversation.
    pub conversation: ConversationId,
    /// The account it lives in (needed to delete it).
    pub token: AccountToken,
    /// The client that created it, when API keys are on: only it may continue it.
    pub owner: Option<ClientId>,
    /// When it was last used, in Unix milliseconds.
    pub last_used_ms: i64,
    /// Not to be tried for deletion before this time (after a failed delete), Unix ms.
    pub retry_at_ms: i64,
    /// How many deletions failed so far.
    pub failures: u32,
}

/// Where the conversations awaiting deletion are kept.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Records a conversation of `token`, created by `owner` (with API keys on), as used now:
    /// inserts it, or refreshes its last use and clears its retry state.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be written.
    async fn record(
        &self,
        conversation: &ConversationId,
        token: &AccountToken,
        owner: Option<&ClientId>,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The session of `conversation`, if the proxy created it and has not deleted it.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    async fn find(&self, conversation: &ConversationId) -> Result<Option<Session>, StoreError>;

    /// Sessions last used at or before `idle_before_ms` whose retry time has come by `now_ms`,
    /// oldest first, at most `limit`.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    async fn due(&self, idle_before_ms: i64, now_ms: i64, limit: usize) -> Result<Vec<Session>, StoreError>;

    /// Notes a failed deletion: counts it and sets the next retry time.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be written.
    async fn defer(&self, conversation: &ConversationId, retry_at_ms: i64) -> Result<(), StoreError>;

    /// Forgets a conversation (deleted upstream, or given up).
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be written.
    async fn remove(&self, conversation: &ConversationId) -> Result<(), StoreError>;

    /// How many conversations await deletion.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read.
    async fn pending(&self) -> Result<u64, StoreError>;
}
