//! The transcription use case: an upload in any supported audio format is prepared as MP3
//! (codec work the admission gate counts), then the upstream recognises it on one of the
//! client's accounts, as chat runs: one at a time per account, refused accounts skipped,
//! transient failures retried.

use std::sync::Arc;

use crate::domain::audio::{AudioError, PreparedAudio, Transcript};
use crate::domain::chat::AccountToken;
use crate::domain::ports::{AudioCodec, ProviderError, Refusal, TranscriptionProvider};

use super::codec::{CodecSlots, CodecStopped};
use super::runner::{AccountRunner, RunnerError};

/// Why a transcription failed, as a client needs to know it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TranscriptionError {
    /// The run on the client's accounts failed.
    #[error(transparent)]
    Run(#[from] RunnerError),
    /// The upload is not audio we can decode (or is empty).
    #[error("{0}")]
    InvalidAudio(String),
    /// The upload holds more audio than the server decodes (the message names the limit).
    #[error("{0}")]
    AudioTooLong(String),
    /// The codec work stopped or could not encode; details are logged, not shown.
    #[error("internal error")]
    Codec,
    /// The upstream has no transcription (the message says why).
    #[error("{0}")]
    Unavailable(String),
}

/// An upstream failure as transcription reads it: the refusals about the audio are the
/// client's to hear about, every other failure is the runner's shared meaning.
impl From<ProviderError> for TranscriptionError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::Refused {
                message,
                reason: Refusal::InvalidAudio,
            } => TranscriptionError::InvalidAudio(format!("the upstream cannot use the audio: {message}")),
            ProviderError::Refused {
                message,
                reason: Refusal::AudioTooLong,
            } => TranscriptionError::AudioTooLong(format!("the audio is longer than the upstream takes: {message}")),
            error => RunnerError::from(error).into(),
        }
    }
}

impl From<CodecStopped> for TranscriptionError {
    fn from(_: CodecStopped) -> Self {
        TranscriptionError::Codec
    }
}

/// Speech to text.
pub struct TranscriptionService {
    provider: Arc<dyn TranscriptionProvider>,
    codec: Arc<dyn AudioCodec>,
    slots: Arc<CodecSlots>,
    runner: Arc<AccountRunner>,
    /// Why this upstream cannot transcribe at all, when it cannot.
    unavailable: Option<String>,
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
            unavailable: None,
        }
    }

    /// The use case over an upstream that has no transcription: every upload is refused with
    /// `reason`.
    #[must_use]
    pub fn unavailable(mut self, reason: impl Into<String>) -> Self {
        self.unavailable = Some(reason.into());
        self
    }

    /// Transcribes an upload (any supported audio format) on one of `tokens`. The upload is
    /// prepared once the admission gate lets the request in (decoding is work the gate
    /// counts), then runs on an account.
    ///
    /// # Errors
    /// [`TranscriptionError::Unavailable`] on an upstream without transcription;
    /// [`TranscriptionError::InvalidAudio`] for bytes that are not decodable audio;
    /// [`TranscriptionError::AudioTooLong`] for audio past the codec's limits; the account
    /// errors of [`AccountRunner::run`]; [`RunnerError::Refused`] with the upstream's reason.
    pub async fn transcribe(
        &self,
        tokens: &[AccountToken],
        audio: Vec<u8>,
        file_name: Option<String>,
    ) -> Result<Transcript, TranscriptionError> {
        if let Some(reason) = &self.unavailable {
            return Err(TranscriptionError::Unavailable(reason.clone()));
        }
        if tokens.is_empty() {
            return Err(RunnerError::NoAccounts.into());
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
                    TranscriptionError::InvalidAudio(error.to_string())
                }
                AudioError::TooLong(message) => TranscriptionError::AudioTooLong(message),
                AudioError::Encoding(_) => TranscriptionError::Codec,
            })?;
        let (provider, mp3) = (&self.provider, prepared.mp3.as_slice());
        let (text, lease) = self
            .runner
            .run_admitted::<TranscriptionError, _, _, _>(admitted, tokens, |account| async move {
                provider.transcribe(&account, mp3).await
            })
            .await?;
        // The provider hung up on the rest of the upstream's answer after the transcript.
        lease.release_after(self.runner.policy().hangup_rest);
        Ok(Transcript {
            text,
            duration: prepared.duration,
        })
    }
}
