//! The project's own audio model: what to speak, in which voice and format, and audio
//! prepared for transcription.

use std::collections::BTreeMap;
use std::time::Duration;

/// Text to speak in an upstream voice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeechRequest {
    /// The text, as the client gave it.
    pub text: String,
    /// The upstream voice id (already mapped from OpenAI names).
    pub voice: String,
}

/// The OpenAI speech models, each with its own voice table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpeechModel {
    /// `tts-1` (and any unknown model name).
    Tts1,
    /// `tts-1-hd`.
    Tts1Hd,
}

impl SpeechModel {
    /// `tts-1-hd` selects the HD table; every other name the standard one.
    pub fn from_name(name: &str) -> Self {
        if name.trim().eq_ignore_ascii_case("tts-1-hd") {
            SpeechModel::Tts1Hd
        } else {
            SpeechModel::Tts1
        }
    }
}

/// OpenAI voice names mapped to upstream voice ids, per model.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VoiceTable {
    /// For `tts-1`.
    pub standard: BTreeMap<String, String>,
    /// For `tts-1-hd`.
    pub hd: BTreeMap<String, String>,
}

impl VoiceTable {
    /// The upstream voice for `voice` on `model`: an OpenAI name maps through the model's
    /// table (case-insensitively); any other value is an upstream voice id as given.
    pub fn resolve(&self, model: SpeechModel, voice: &str) -> String {
        let table = match model {
            SpeechModel::Tts1 => &self.standard,
            SpeechModel::Tts1Hd => &self.hd,
        };
        let voice = voice.trim();
        table
            .get(&voice.to_ascii_lowercase())
            .cloned()
            .unwrap_or_else(|| voice.to_owned())
    }
}

/// The audio formats `/v1/audio/speech` can answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpeechFormat {
    /// The upstream's MP3 as it is (re-encoded only when the speed changes).
    Mp3,
    /// 16-bit PCM WAV at the decoded sample rate.
    Wav,
    /// Raw 16-bit little-endian mono PCM at 24 kHz.
    Pcm,
    /// FLAC.
    Flac,
}

impl SpeechFormat {
    /// The MIME type of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            SpeechFormat::Mp3 => "audio/mpeg",
            SpeechFormat::Wav => "audio/wav",
            SpeechFormat::Pcm => "audio/pcm",
            SpeechFormat::Flac => "audio/flac",
        }
    }
}

/// An upload ready for the upstream's speech recognition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedAudio {
    /// MP3 (the upload itself when it was MP3, else re-encoded).
    pub mp3: Vec<u8>,
    /// How long the audio lasts.
    pub duration: Duration,
}

/// A transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transcript {
    /// The recognised text; empty when no speech was heard.
    pub text: String,
    /// How long the audio lasts.
    pub duration: Duration,
}

/// How much audio one decode may produce. A small file can hold hours of audio (constant
/// FLAC frames compress to almost nothing), so the decoder counts what it produces and
/// stops at the first bound passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioLimits {
    /// The longest audio decoded.
    pub max_duration: Duration,
    /// The most PCM decoded, counted as 4-byte (`f32`) samples over all channels: a bound on
    /// the work a decode does, whatever the rate and channel count.
    pub max_decoded_bytes: u64,
}

impl AudioLimits {
    /// 30 minutes, and 1 GiB of samples (30 minutes of 48 kHz stereo is 691 MB).
    pub const DEFAULT: Self = Self {
        max_duration: Duration::from_secs(1800),
        max_decoded_bytes: 1 << 30,
    };
}

impl Default for AudioLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why audio could not be decoded or encoded.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AudioError {
    /// The bytes are not audio we can decode (the client's fault).
    #[error("the file is not decodable audio: {0}")]
    Undecodable(String),
    /// The audio is longer (or decodes to more samples) than [`AudioLimits`] allow; the
    /// message names the limit.
    #[error("{0}")]
    TooLong(String),
    /// A request we cannot honour (e.g. a speed out of range).
    #[error("{0}")]
    Unsupported(String),
    /// Encoding failed (our fault).
    #[error("audio encoding failed: {0}")]
    Encoding(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_names_map_per_model_and_other_voices_pass_through() {
        let table = VoiceTable {
            standard: BTreeMap::from([("alloy".to_owned(), "male-botong".to_owned())]),
            hd: BTreeMap::from([("alloy".to_owned(), "xiaomo_sft".to_owned())]),
        };
        assert_eq!(table.resolve(SpeechModel::from_name("tts-1"), "alloy"), "male-botong");
        assert_eq!(table.resolve(SpeechModel::from_name("TTS-1-HD"), "Alloy"), "xiaomo_sft");
        assert_eq!(
            table.resolve(SpeechModel::from_name("anything"), "alloy"),
            "male-botong"
        );
        assert_eq!(table.resolve(SpeechModel::Tts1, "Guodegang_hailuo"), "Guodegang_hailuo");
        assert_eq!(table.resolve(SpeechModel::Tts1Hd, "puv_12345"), "puv_12345");
    }
}
