//! The audio codec adapter: symphonia decodes uploads and the upstream's MP3 (with
//! `opus-rs` for Opus, which symphonia demuxes but does not decode), rubato
//! resamples, `wsola` changes the speed, and LAME, hound and flacenc encode.
//!
//! LAME (via `mp3lame-encoder`) is LGPL-licensed and linked statically.

pub mod decode;
pub mod encode;
pub mod opus;
pub mod resample;
pub mod stretch;

#[cfg(test)]
mod aac_fixtures;
#[cfg(test)]
mod opus_fixtures;
#[cfg(test)]
mod tests;

pub use decode::{AudioInfo, DecodedAudio, decode, hint_for, probe};
pub use encode::{PCM_SAMPLE_RATE, encode_flac, encode_mp3, encode_pcm_s16le, encode_wav, mp3_bitrate_for};
pub use resample::{downmix_to_mono, remix, resample, to_stereo};
pub use stretch::{MAX_SPEED, MIN_SPEED, check_speed, stretch};

use crate::domain::audio::{AudioError, PreparedAudio, SpeechFormat};
use crate::domain::ports::AudioCodec;

/// The sample rate of MP3 sent for transcription.
pub const TRANSCRIPTION_SAMPLE_RATE: u32 = 44_100;
/// The bitrate (kbit/s) of MP3 sent for transcription.
pub const TRANSCRIPTION_KBPS: u16 = 192;
/// The bitrate (kbit/s) of re-encoded speech, capped by what the sample rate allows.
pub const SPEECH_KBPS: u16 = 192;

/// [`AudioCodec`] over symphonia, rubato, `wsola`, LAME, hound and flacenc.
#[derive(Clone, Copy, Debug, Default)]
pub struct SymphoniaLameCodec;

impl SymphoniaLameCodec {
    /// The codec.
    pub fn new() -> Self {
        Self
    }
}

impl AudioCodec for SymphoniaLameCodec {
    fn prepare_for_transcription(&self, bytes: &[u8], file_name: Option<&str>) -> Result<PreparedAudio, AudioError> {
        let hint = hint_for(file_name);
        let info = probe(bytes, hint.as_deref())?;
        if info.container == "mp3" {
            return Ok(PreparedAudio {
                mp3: bytes.to_vec(),
                duration: info.duration,
            });
        }
        let audio = decode(bytes, hint.as_deref())?;
        let stereo = to_stereo(&audio.samples, audio.channels);
        let resampled = resample(&stereo, 2, audio.sample_rate, TRANSCRIPTION_SAMPLE_RATE)?;
        let mp3 = encode_mp3(&resampled, TRANSCRIPTION_SAMPLE_RATE, 2, TRANSCRIPTION_KBPS)?;
        Ok(PreparedAudio {
            mp3,
            duration: audio.duration,
        })
    }

    fn render_speech(&self, mp3: &[u8], format: SpeechFormat, speed: f32) -> Result<Vec<u8>, AudioError> {
        check_speed(speed)?;
        let unchanged = (speed - 1.0).abs() < f32::EPSILON;
        if format == SpeechFormat::Mp3 && unchanged {
            return Ok(mp3.to_vec());
        }
        let audio = decode(mp3, Some("mp3"))?;
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
