//! The codec work both audio use cases share (decoding, resampling, encoding): CPU-bound,
//! so it runs on blocking threads, at most [`CodecSlots`] of it at once.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::domain::audio::AudioError;

/// How much codec work (decoding, resampling, encoding) runs at once, shared by speech and
/// transcription: each takes a core for as long as it runs, so about one per core keeps the
/// rest of the server (and `/ping`) answering; the others wait their turn.
pub struct CodecSlots {
    slots: Arc<Semaphore>,
}

/// The codec work could not run to its end (its task stopped); logged where it happened.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("the audio work stopped")]
pub struct CodecStopped;

impl CodecSlots {
    /// At most `slots` at once (at least one).
    pub fn new(slots: usize) -> Arc<Self> {
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(slots.clamp(1, Semaphore::MAX_PERMITS))),
        })
    }

    /// Runs CPU-bound codec work on a blocking thread once a slot is free; the work holds the
    /// slot until it ends, even when the request is dropped meanwhile. An encoding failure
    /// (ours, not the client's) is logged; every audio error is left to the caller to read.
    ///
    /// # Errors
    /// [`CodecStopped`] when the work's task stopped (logged).
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        work: impl FnOnce() -> Result<T, AudioError> + Send + 'static,
    ) -> Result<Result<T, AudioError>, CodecStopped> {
        let slot = Arc::clone(&self.slots).acquire_owned().await.map_err(|error| {
            tracing::error!(%error, what, "the codec slots are closed");
            CodecStopped
        })?;
        let held = move || {
            let result = work();
            drop(slot);
            result
        };
        let result = tokio::task::spawn_blocking(held).await.map_err(|error| {
            tracing::error!(%error, what, "audio work stopped");
            CodecStopped
        })?;
        if let Err(AudioError::Encoding(message)) = &result {
            tracing::error!(%message, what, "audio encoding failed");
        }
        Ok(result)
    }
}
