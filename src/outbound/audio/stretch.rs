//! Changing the tempo of speech without changing its pitch (WSOLA, via the `wsola` crate).

use std::num::{NonZeroU16, NonZeroU32};

use crate::domain::audio::AudioError;

/// The slowest speed OpenAI accepts (and `wsola` honours).
pub const MIN_SPEED: f32 = 0.25;
/// The fastest speed OpenAI accepts (and `wsola` honours).
pub const MAX_SPEED: f32 = 4.0;

/// Checks that `speed` is within [`MIN_SPEED`]`..=`[`MAX_SPEED`].
///
/// # Errors
/// [`AudioError::Unsupported`] naming the range otherwise (and for NaN).
pub fn check_speed(speed: f32) -> Result<(), AudioError> {
    if (MIN_SPEED..=MAX_SPEED).contains(&speed) {
        Ok(())
    } else {
        Err(AudioError::Unsupported(format!(
            "speed must be between {MIN_SPEED} and {MAX_SPEED}, not {speed}"
        )))
    }
}

/// Plays interleaved audio `speed` times faster (`2.0` halves its duration, `0.5` doubles
/// it), keeping the pitch. Speed `1.0` returns the samples unchanged.
///
/// # Errors
/// [`AudioError::Unsupported`] for a speed out of range, [`AudioError::Encoding`] for a zero
/// rate or channel count.
pub fn stretch(samples: &[f32], sample_rate: u32, channels: u16, speed: f32) -> Result<Vec<f32>, AudioError> {
    check_speed(speed)?;
    if (speed - 1.0).abs() < f32::EPSILON || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let rate = NonZeroU32::new(sample_rate).ok_or_else(|| AudioError::Encoding("a sample rate of 0".to_owned()))?;
    let ch = NonZeroU16::new(channels).ok_or_else(|| AudioError::Encoding("no channels".to_owned()))?;
    let whole = samples.len() - samples.len() % usize::from(channels);
    wsola::stretch(&samples[..whole], rate, ch, speed).map_err(|e| AudioError::Encoding(format!("time-stretch: {e}")))
}
