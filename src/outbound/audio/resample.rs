//! Sample-rate conversion (rubato's FFT resampler) and channel layout changes (downmix to
//! mono, up- or downmix to stereo) over interleaved `f32` PCM.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::domain::audio::AudioError;

/// Frames per FFT chunk: large enough to be efficient, small enough to keep the delay short.
const CHUNK_FRAMES: usize = 1024;

/// Resamples interleaved audio from `from_rate` to `to_rate` Hz; the output has
/// `frames * to_rate / from_rate` frames (rounded up), without the resampler's delay.
///
/// # Errors
/// [`AudioError::Encoding`] for a zero rate or channel count, or when rubato fails.
pub fn resample(samples: &[f32], channels: u16, from_rate: u32, to_rate: u32) -> Result<Vec<f32>, AudioError> {
    if from_rate == to_rate {
        return Ok(samples.to_vec());
    }
    if from_rate == 0 || to_rate == 0 || channels == 0 {
        return Err(AudioError::Encoding(format!(
            "cannot resample {channels} channels from {from_rate} Hz to {to_rate} Hz"
        )));
    }
    let ch = usize::from(channels);
    let frames = samples.len() / ch;
    if frames == 0 {
        return Ok(Vec::new());
    }
    let to_u = |rate: u32| usize::try_from(rate).unwrap_or(usize::MAX);
    let mut resampler = Fft::<f32>::new(to_u(from_rate), to_u(to_rate), CHUNK_FRAMES, ch, FixedSync::Input)
        .map_err(|e| AudioError::Encoding(format!("resampler: {e}")))?;
    let input = InterleavedSlice::new(&samples[..frames * ch], ch, frames)
        .map_err(|e| AudioError::Encoding(format!("resampler input: {e}")))?;
    let output = resampler
        .process_all(&input, frames, None)
        .map_err(|e| AudioError::Encoding(format!("resampling: {e}")))?;
    Ok(output.take_data())
}

/// Converts interleaved audio from `from` channels to `to` channels: the same layout is
/// copied, one channel is duplicated, several are averaged to mono, and for stereo output
/// from more channels the first two are kept.
pub fn remix(samples: &[f32], from: u16, to: u16) -> Vec<f32> {
    let (from_ch, to_ch) = (usize::from(from.max(1)), usize::from(to.max(1)));
    if from_ch == to_ch {
        return samples.to_vec();
    }
    let frames = samples.chunks_exact(from_ch);
    let mut out = Vec::with_capacity(frames.len() * to_ch);
    for frame in frames {
        if to_ch == 1 {
            out.push(frame.iter().sum::<f32>() / from_ch as f32);
        } else if from_ch == 1 {
            out.extend(std::iter::repeat_n(frame[0], to_ch));
        } else {
            out.extend((0..to_ch).map(|c| frame.get(c).copied().unwrap_or(0.0)));
        }
    }
    out
}

/// Averages the channels of interleaved audio into one.
pub fn downmix_to_mono(samples: &[f32], channels: u16) -> Vec<f32> {
    remix(samples, channels, 1)
}

/// Makes interleaved audio stereo (mono is duplicated, more channels keep the first two).
pub fn to_stereo(samples: &[f32], channels: u16) -> Vec<f32> {
    remix(samples, channels, 2)
}
