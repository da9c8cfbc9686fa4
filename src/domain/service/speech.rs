//! The speech use case: the upstream speaks an assistant message aloud on one of the
//! client's accounts (one at a time per account, refused accounts skipped, transient failures
//! retried), and the audio is rendered in the format asked for.

use std::sync::Arc;

use crate::domain::audio::{AudioError, SpeechFormat, SpeechModel, SpeechRequest, VoiceTable};
use crate::domain::chat::AccountToken;
use crate::domain::ports::{AudioCodec, ProviderError, Refusal, SessionStore, SpeechProvider};

use super::codec::{CodecSlots, CodecStopped};
use super::conversations::ConversationTracker;
use super::runner::{AccountRunner, RunnerError};

/// The longest text `/v1/audio/speech` speaks, in characters (OpenAI's limit).
pub const MAX_SPEECH_CHARS: usize = 4096;
/// The slowest and fastest speeds.
pub const SPEED_RANGE: std::ops::RangeInclusive<f32> = 0.25..=4.0;

/// What a client asks to hear.
#[derive(Clone, Debug, PartialEq)]
pub struct SpeechOrder {
    /// Which voice table applies.
    pub model: SpeechModel,
    /// The text to speak.
    pub input: String,
    /// An OpenAI voice name or an upstream voice id.
    pub voice: String,
    /// The answer's format.
    pub format: SpeechFormat,
    /// 0.25–4.0.
    pub speed: f32,
}

/// Why speaking failed, as a client needs to know it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SpeechError {
    /// The run on the client's accounts failed.
    #[error(transparent)]
    Run(#[from] RunnerError),
    /// The order itself is unusable (no text, too much text, a speed out of range).
    #[error("{0}")]
    InvalidRequest(String),
    /// The upstream filtered the text to speak (its reason given).
    #[error("the upstream refused the content of `input`: {0}")]
    ContentFiltered(String),
    /// The text is longer than the upstream speaks (its reason given).
    #[error("`input` is longer than the upstream takes: {0}")]
    InputTooLong(String),
    /// The upstream does not know the voice.
    #[error("the upstream does not know the voice `{voice}`: {message}")]
    UnknownVoice {
        /// The upstream voice id asked for.
        voice: String,
        /// The upstream's reason.
        message: String,
    },
    /// The upstream's audio could not be rendered: it does not decode, or it is too long.
    #[error("the upstream is unavailable: {message}")]
    UnrenderableAudio {
        /// What is wrong with the audio.
        message: String,
    },
    /// The codec work stopped or could not encode; details are logged, not shown.
    #[error("internal error")]
    Codec,
}

/// An upstream failure as speech reads it: the refusals about the text and the voice are the
/// client's to hear about (the voice's id is filled in by [`SpeechService::speak`], which knows
/// it), every other failure is the runner's shared meaning.
impl From<ProviderError> for SpeechError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::Refused {
                message,
                reason: Refusal::ContentFiltered,
            } => SpeechError::ContentFiltered(message),
            ProviderError::Refused {
                message,
                reason: Refusal::TextTooLong,
            } => SpeechError::InputTooLong(message),
            ProviderError::Refused {
                message,
                reason: Refusal::UnknownVoice,
            } => SpeechError::UnknownVoice {
                voice: String::new(),
                message,
            },
            error => RunnerError::from(error).into(),
        }
    }
}

impl From<CodecStopped> for SpeechError {
    fn from(_: CodecStopped) -> Self {
        SpeechError::Codec
    }
}

/// Text to speech.
pub struct SpeechService {
    provider: Arc<dyn SpeechProvider>,
    codec: Arc<dyn AudioCodec>,
    slots: Arc<CodecSlots>,
    runner: Arc<AccountRunner>,
    sessions: Arc<dyn SessionStore>,
    tracker: Arc<ConversationTracker>,
    voices: VoiceTable,
    /// Why this upstream cannot speak at all, when it cannot.
    unavailable: Option<String>,
}

impl SpeechService {
    /// The use case over its ports, with the configured voice tables; rendering takes one of
    /// `slots`.
    pub fn new(
        provider: Arc<dyn SpeechProvider>,
        codec: Arc<dyn AudioCodec>,
        slots: Arc<CodecSlots>,
        runner: Arc<AccountRunner>,
        sessions: Arc<dyn SessionStore>,
        tracker: Arc<ConversationTracker>,
        voices: VoiceTable,
    ) -> Self {
        Self {
            provider,
            codec,
            slots,
            runner,
            sessions,
            tracker,
            voices,
            unavailable: None,
        }
    }

    /// The use case over an upstream that has no speech: every order is refused with `reason`.
    #[must_use]
    pub fn unavailable(mut self, reason: impl Into<String>) -> Self {
        self.unavailable = Some(reason.into());
        self
    }

    /// Speaks `order.input` on one of `tokens` and returns the audio in `order.format`.
    ///
    /// # Errors
    /// [`SpeechError::InvalidRequest`] for an empty or too long input or a speed out of
    /// range, or an upstream without speech; the account errors of [`AccountRunner::run`]; [`RunnerError::Timeout`] when
    /// the audio is not ready in time; [`SpeechError::UnrenderableAudio`] when the upstream's
    /// audio does not render.
    pub async fn speak(&self, tokens: &[AccountToken], order: SpeechOrder) -> Result<Vec<u8>, SpeechError> {
        if let Some(reason) = &self.unavailable {
            return Err(SpeechError::InvalidRequest(reason.clone()));
        }
        let length = order.input.chars().count();
        if order.input.trim().is_empty() || length > MAX_SPEECH_CHARS {
            return Err(SpeechError::InvalidRequest(format!(
                "`input` must hold 1 to {MAX_SPEECH_CHARS} characters (it holds {length})"
            )));
        }
        if !SPEED_RANGE.contains(&order.speed) {
            return Err(SpeechError::InvalidRequest(format!(
                "`speed` must be between 0.25 and 4.0 (it is {})",
                order.speed
            )));
        }
        let request = SpeechRequest {
            text: order.input,
            voice: self.voices.resolve(order.model, &order.voice),
        };
        let (provider, sessions, tracker, request) = (&self.provider, &self.sessions, &self.tracker, &request);
        // The lease keeps the account to this request: the voice is an account-wide setting,
        // so no other speech (or chat) may run on it between choosing the voice and the audio.
        let ran = self
            .runner
            .run::<SpeechError, _, _, _>(tokens, |account| async move {
                let outcome = provider.speak(&account, request).await;
                if let Some(conversation) = &outcome.conversation {
                    // Due at once: nobody continues a speech conversation.
                    if let Err(error) = sessions.record(conversation, &account.token, None, 0).await {
                        tracing::error!(%error, %conversation, "could not record a conversation; it may stay upstream");
                    }
                    tracker.wake();
                }
                outcome.audio
            })
            .await;
        let (mp3, lease) = ran.map_err(|error| match error {
            SpeechError::UnknownVoice { message, .. } => SpeechError::UnknownVoice {
                voice: request.voice.clone(),
                message,
            },
            error => error,
        })?;
        drop(lease);
        let codec = Arc::clone(&self.codec);
        let (format, speed) = (order.format, order.speed);
        self.slots
            .run("rendering speech", move || codec.render_speech(&mp3, format, speed))
            .await?
            .map_err(|error| match error {
                AudioError::Unsupported(message) => SpeechError::InvalidRequest(message),
                AudioError::Undecodable(message) => SpeechError::UnrenderableAudio {
                    message: format!("the upstream's audio does not decode: {message}"),
                },
                AudioError::TooLong(message) => SpeechError::UnrenderableAudio {
                    message: format!("the upstream's audio is too long: {message}"),
                },
                AudioError::Encoding(_) => SpeechError::Codec,
            })
    }
}
