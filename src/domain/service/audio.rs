//! The audio use cases: speech (the upstream speaks an assistant message aloud, we render it
//! in the asked format) and transcription (the upstream recognises an MP3 we prepare). Both
//! run on an account like chat does: one at a time per account, refused accounts skipped,
//! transient failures retried. Codec work is CPU-bound: it runs on blocking threads, at most
//! [`CodecSlots`] of it at once.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::domain::audio::{
    AudioError, PreparedAudio, SpeechFormat, SpeechModel, SpeechRequest, Transcript, VoiceTable,
};
use crate::domain::chat::AccountToken;
use crate::domain::ports::{AudioCodec, SessionStore, SpeechProvider, TranscriptionProvider};

use super::conversations::ConversationTracker;
use super::runner::{AccountRunner, GatewayError};

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

/// How much codec work (decoding, resampling, encoding) runs at once, shared by speech and
/// transcription: each takes a core for as long as it runs, so about one per core keeps the
/// rest of the server (and `/ping`) answering; the others wait their turn.
pub struct CodecSlots {
    slots: Arc<Semaphore>,
}

impl CodecSlots {
    /// At most `slots` at once (at least one).
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(slots.clamp(1, Semaphore::MAX_PERMITS))),
        })
    }

    /// Runs CPU-bound codec work on a blocking thread once a slot is free; the work holds the
    /// slot until it ends, even when the request is dropped meanwhile. A task that
    /// stopped, or an encoding failure (both ours, not the client's), is logged and becomes
    /// [`GatewayError::Internal`] once mapped; other audio errors are left to the caller.
    async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce() -> Result<T, AudioError> + Send + 'static,
    ) -> Result<Result<T, AudioError>, GatewayError> {
        let slot = Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .map_err(|_| GatewayError::Internal)?;
        let held = move || {
            let result = work();
            drop(slot);
            result
        };
        let result = tokio::task::spawn_blocking(held).await.map_err(|error| {
            tracing::error!(%error, what, "audio work stopped");
            GatewayError::Internal
        })?;
        if let Err(AudioError::Encoding(message)) = &result {
            tracing::error!(%message, what, "audio encoding failed");
        }
        Ok(result)
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
        }
    }

    /// Speaks `order.input` on one of `tokens` and returns the audio in `order.format`.
    ///
    /// # Errors
    /// [`GatewayError::InvalidRequest`] for an empty or too long input or a speed out of
    /// range; the account errors of [`AccountRunner::run`]; [`GatewayError::Timeout`] when
    /// the audio is not ready in time.
    pub async fn speak(&self, tokens: &[AccountToken], order: SpeechOrder) -> Result<Vec<u8>, GatewayError> {
        let length = order.input.chars().count();
        if order.input.trim().is_empty() || length > MAX_SPEECH_CHARS {
            return Err(GatewayError::InvalidRequest(format!(
                "`input` must hold 1 to {MAX_SPEECH_CHARS} characters (it holds {length})"
            )));
        }
        if !SPEED_RANGE.contains(&order.speed) {
            return Err(GatewayError::InvalidRequest(format!(
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
        let (mp3, lease) = self
            .runner
            .run(tokens, |account| async move {
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
            .await?;
        drop(lease);
        let codec = Arc::clone(&self.codec);
        let (format, speed) = (order.format, order.speed);
        self.slots
            .run("rendering speech", move || codec.render_speech(&mp3, format, speed))
            .await?
            .map_err(|error| match error {
                AudioError::Unsupported(message) => GatewayError::InvalidRequest(message),
                AudioError::Undecodable(message) => GatewayError::Unavailable {
                    message: format!("the upstream's audio does not decode: {message}"),
                },
                AudioError::TooLong(message) => GatewayError::Unavailable {
                    message: format!("the upstream's audio is too long: {message}"),
                },
                AudioError::Encoding(_) => GatewayError::Internal,
            })
    }
}

/// Speech to text.
pub struct TranscriptionService {
    provider: Arc<dyn TranscriptionProvider>,
    codec: Arc<dyn AudioCodec>,
    slots: Arc<CodecSlots>,
    runner: Arc<AccountRunner>,
}

impl TranscriptionService {
    /// The use case over its ports; preparing an upload takes one of `slots`.
    pub fn new(
        provider: Arc<dyn TranscriptionProvider>,
        codec: Arc<dyn AudioCodec>,
        slots: Arc<CodecSlots>,
        runner: Arc<AccountRunner>,
    ) -> Self {
        Self {
            provider,
            codec,
            slots,
            runner,
        }
    }

    /// Transcribes an upload (any supported audio format) on one of `tokens`. The upload is
    /// prepared once the admission gate lets the request in (decoding is work the gate
    /// counts), then runs on an account.
    ///
    /// # Errors
    /// [`GatewayError::InvalidAudio`] for bytes that are not decodable audio;
    /// [`GatewayError::AudioTooLong`] for audio past the codec's limits; the account errors
    /// of [`AccountRunner::run`]; [`GatewayError::Refused`] with the upstream's reason.
    pub async fn transcribe(
        &self,
        tokens: &[AccountToken],
        audio: Vec<u8>,
        file_name: Option<String>,
    ) -> Result<Transcript, GatewayError> {
        if tokens.is_empty() {
            return Err(GatewayError::NoAccounts);
        }
        let admitted = self.runner.admit().await?;
        let codec = Arc::clone(&self.codec);
        let prepared: PreparedAudio = self
            .slots
            .run("preparing an upload", move || {
                codec.prepare_for_transcription(&audio, file_name.as_deref())
            })
            .await?
            .map_err(|error| match error {
                AudioError::Undecodable(_) | AudioError::Unsupported(_) => {
                    GatewayError::InvalidAudio(error.to_string())
                }
                AudioError::TooLong(message) => GatewayError::AudioTooLong(message),
                AudioError::Encoding(_) => GatewayError::Internal,
            })?;
        let (provider, mp3) = (&self.provider, prepared.mp3.as_slice());
        let (text, _lease) = self
            .runner
            .run_admitted(admitted, tokens, |account| async move {
                provider.transcribe(&account, mp3).await
            })
            .await?;
        Ok(Transcript {
            text,
            duration: prepared.duration,
        })
    }
}
