//! The audio codec adapter: symphonia decodes uploads and the upstream's MP3 (with
//! `opus-rs` for Opus, which symphonia demuxes but does not decode), rubato
//! resamples, `wsola` changes the speed, and LAME, hound and flacenc encode.
//!
//! Every decode keeps the bounds of [`bounds`] and the [`AudioLimits`] the codec is made with.
//!
//! LAME (via `mp3lame-encoder`) is LGPL-licensed and linked statically.

pub mod bounds;
pub mod decode;
pub mod encode;
pub mod opus;
pub mod resample;
pub mod stretch;
pub mod vorbis;

#[cfg(test)]
mod aac_fixtures;
#[cfg(test)]
mod opus_fixtures;
#[cfg(test)]
mod tests;

pub use decode::{AudioInfo, Block, DecodedAudio, decode, decode_stream, decode_within, hint_for, probe};
pub use encode::{Mp3Encoder, PCM_SAMPLE_RATE, encode_flac, encode_mp3, encode_pcm_s16le, encode_wav, mp3_bitrate_for};
pub use resample::{Conformer, StreamResampler, downmix_to_mono, remix, resample, to_stereo};
pub use stretch::{MAX_SPEED, MIN_SPEED, check_speed, stretch};

use crate::domain::audio::{AudioError, AudioLimits, PreparedAudio, SpeechFormat};
use crate::domain::ports::AudioCodec;

/// The sample rate of MP3 sent for transcription.
pub const TRANSCRIPTION_SAMPLE_RATE: u32 = 44_100;
/// The bitrate (kbit/s) of MP3 sent for transcription.
pub const TRANSCRIPTION_KBPS: u16 = 192;
/// The bitrate (kbit/s) of re-encoded speech, capped by what the sample rate allows.
pub const SPEECH_KBPS: u16 = 192;

/// [`AudioCodec`] over symphonia, rubato, `wsola`, LAME, hound and flacenc.
#[derive(Clone, Copy, Debug, Default)]
pub struct SymphoniaLameCodec {
    limits: AudioLimits,
}

impl SymphoniaLameCodec {
    /// The codec, decoding within `limits`.
    pub const fn new(limits: AudioLimits) -> Self {
        Self { limits }
    }
}

impl AudioCodec for SymphoniaLameCodec {
    fn prepare_for_transcription(&self, bytes: &[u8], file_name: Option<&str>) -> Result<PreparedAudio, AudioError> {
        let hint = hint_for(file_name);
        // Counting first (cheap: no resampling, no encoding) refuses audio past the limits
        // before the expensive work, and tells an MP3, which passes through, from the rest.
        let info = decode_stream(bytes, hint.as_deref(), &self.limits, None)?;
        if info.container == "mp3" {
            return Ok(PreparedAudio {
                mp3: bytes.to_vec(),
                duration: info.duration,
            });
        }
        // Decoded, remixed, resampled and encoded packet by packet: only the MP3 grows.
        let mut encoder = Mp3Encoder::new(TRANSCRIPTION_SAMPLE_RATE, 2, TRANSCRIPTION_KBPS)?;
        let mut conformer = Conformer::new(TRANSCRIPTION_SAMPLE_RATE, 2);
        let streamed = {
            let mut convert = |block: Block<'_>| {
                conformer.push(block.rate, block.channels, block.samples, &mut |pcm| encoder.push(pcm))
            };
            decode_stream(bytes, hint.as_deref(), &self.limits, Some(&mut convert))?
        };
        conformer.finish(&mut |pcm| encoder.push(pcm))?;
        Ok(PreparedAudio {
            mp3: encoder.finish()?,
            duration: streamed.duration,
        })
    }

    fn render_speech(&self, mp3: &[u8], format: SpeechFormat, speed: f32) -> Result<Vec<u8>, AudioError> {
        check_speed(speed)?;
        let unchanged = (speed - 1.0).abs() < f32::EPSILON;
        if format == SpeechFormat::Mp3 && unchanged {
            return Ok(mp3.to_vec());
        }
        let audio = decode_within(mp3, Some("mp3"), &self.limits)?;
        let (rate, channels) = (audio.sample_rate, audio.channels);
        let samples = stretch(&audio.samples, rate, channels, speed)?;
        match format {
            SpeechFormat::Mp3 => encode_mp3(&samples, rate, channels, mp3_bitrate_for(rate, SPEECH_KBPS)),
            SpeechFormat::Wav => encode_wav(&samples, rate, channels),
            SpeechFormat::Pcm => encode_pcm_s16le(&samples, rate, channels),
            SpeechFormat::Flac => encode_flac(&samples, rate, channels),
        }
    }
}
