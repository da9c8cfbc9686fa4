//! The bounds every decode keeps. A header's values are checked before a decoder or a
//! resampler is sized from them (a WAV header may claim 4,294,967,295 Hz, and an FFT sized
//! from that takes gigabytes), and what is decoded is counted against the
//! [`AudioLimits`] packet by packet, so a small file that unpacks to hours stops at the
//! bound instead of after the last sample.

use std::ops::RangeInclusive;
use std::time::Duration;

use symphonia::core::codecs::audio::AudioCodecParameters;
use symphonia::core::codecs::audio::well_known::CODEC_ID_VORBIS;

use crate::domain::audio::{AudioError, AudioLimits};

/// The sample rates decoded: no speech codec records below 8 kHz, no recorder above 384 kHz.
pub const SAMPLE_RATES: RangeInclusive<u32> = 8_000..=384_000;
/// The most channels decoded (7.1 surround).
pub const MAX_CHANNELS: usize = 8;
/// The widest sample a codec may announce (64-bit float PCM).
pub const MAX_BITS_PER_SAMPLE: u32 = 64;
/// The most frames a container may announce per packet: decoders size their buffers from it
/// (FLAC's largest block is 65,535 frames, ADPCM's about 131,000).
pub const MAX_FRAMES_PER_PACKET: u64 = 1 << 18;

/// The bytes one decoded sample is counted as (`f32`).
const SAMPLE_BYTES: u64 = 4;

/// Checks what a container announces of its audio, before a decoder is made from it,
/// including the codebooks a Vorbis setup header declares (see [`super::vorbis`]).
///
/// # Errors
/// [`AudioError::Undecodable`] naming the value out of bounds.
pub fn check_params(params: &AudioCodecParameters, container: &str) -> Result<(), AudioError> {
    if let Some(rate) = params.sample_rate {
        check_rate(rate, container)?;
    }
    if let Some(channels) = &params.channels {
        check_channels(channels.count(), container)?;
    }
    for bits in [params.bits_per_sample, params.bits_per_coded_sample]
        .into_iter()
        .flatten()
    {
        if bits == 0 || bits > MAX_BITS_PER_SAMPLE {
            return Err(AudioError::Undecodable(format!(
                "the {container} header claims {bits} bits per sample; 1 to {MAX_BITS_PER_SAMPLE} are accepted"
            )));
        }
    }
    if let Some(frames) = params.max_frames_per_packet
        && frames > MAX_FRAMES_PER_PACKET
    {
        return Err(AudioError::Undecodable(format!(
            "the {container} header claims {frames} frames per packet; at most {MAX_FRAMES_PER_PACKET} are accepted"
        )));
    }
    if params.codec == CODEC_ID_VORBIS
        && let Some(extra_data) = &params.extra_data
    {
        super::vorbis::check_setup(extra_data)?;
    }
    Ok(())
}

/// Checks the format of one decoded buffer (a stream may change format part-way: MP3 files
/// joined together, a chained Ogg stream).
///
/// # Errors
/// [`AudioError::Undecodable`] naming the value out of bounds.
pub fn check_format(rate: u32, channels: usize, container: &str) -> Result<(), AudioError> {
    check_rate(rate, container)?;
    check_channels(channels, container)
}

fn check_rate(rate: u32, container: &str) -> Result<(), AudioError> {
    if SAMPLE_RATES.contains(&rate) {
        return Ok(());
    }
    Err(AudioError::Undecodable(format!(
        "the {container} audio claims a sample rate of {rate} Hz; {} to {} Hz are accepted",
        SAMPLE_RATES.start(),
        SAMPLE_RATES.end()
    )))
}

fn check_channels(channels: usize, container: &str) -> Result<(), AudioError> {
    if (1..=MAX_CHANNELS).contains(&channels) {
        return Ok(());
    }
    Err(AudioError::Undecodable(format!(
        "the {container} audio claims {channels} channels; 1 to {MAX_CHANNELS} are accepted"
    )))
}

/// The duration of `frames` frames at `sample_rate`.
pub fn frames_duration(frames: u64, sample_rate: u32) -> Duration {
    if sample_rate == 0 {
        return Duration::ZERO;
    }
    let rate = u64::from(sample_rate);
    Duration::from_secs(frames / rate) + Duration::from_nanos((frames % rate) * 1_000_000_000 / rate)
}

/// What a decode has produced so far, against its limits.
#[derive(Debug)]
pub struct Tally {
    limits: AudioLimits,
    /// The duration of the runs at other rates before the current one.
    earlier: Duration,
    rate: u32,
    frames: u64,
    decoded_bytes: u64,
}

impl Tally {
    /// Nothing decoded yet.
    pub fn new(limits: AudioLimits) -> Self {
        Self {
            limits,
            earlier: Duration::ZERO,
            rate: 0,
            frames: 0,
            decoded_bytes: 0,
        }
    }

    /// Counts a decoded buffer of `decoded` frames of `channels` channels at `rate` Hz, of
    /// which `kept` are audio (the rest is encoder delay or padding).
    ///
    /// # Errors
    /// [`AudioError::TooLong`] once the audio passes either limit.
    pub fn add(&mut self, rate: u32, channels: usize, decoded: usize, kept: usize) -> Result<(), AudioError> {
        if rate != self.rate {
            self.earlier += frames_duration(self.frames, self.rate);
            self.rate = rate;
            self.frames = 0;
        }
        self.frames += kept as u64;
        self.decoded_bytes = self
            .decoded_bytes
            .saturating_add((decoded as u64).saturating_mul(channels as u64 * SAMPLE_BYTES));
        let max = self.limits.max_duration;
        if self.duration() > max {
            return Err(AudioError::TooLong(format!(
                "the audio lasts longer than this server's limit of {} seconds (`audio.max_duration_secs`)",
                max.as_secs_f64()
            )));
        }
        if self.decoded_bytes > self.limits.max_decoded_bytes {
            return Err(AudioError::TooLong(format!(
                "the audio decodes to more than this server's limit of {} bytes of samples \
                 (`audio.max_decoded_bytes`, 4 bytes a sample)",
                self.limits.max_decoded_bytes
            )));
        }
        Ok(())
    }

    /// How long the audio counted so far lasts.
    pub fn duration(&self) -> Duration {
        self.earlier + frames_duration(self.frames, self.rate)
    }
}

#[cfg(test)]
mod tests {
    use symphonia::core::audio::Channels;
    use symphonia::core::audio::layouts;

    use super::*;

    fn params(rate: Option<u32>, channels: Option<usize>) -> AudioCodecParameters {
        let mut params = AudioCodecParameters::new();
        if let Some(rate) = rate {
            params.with_sample_rate(rate);
        }
        if let Some(count) = channels {
            params.with_channels(Channels::Discrete(count as u16));
        }
        params
    }

    #[test]
    fn rates_from_8_to_384_khz_pass_and_others_are_undecodable() {
        for rate in [8_000, 16_000, 44_100, 48_000, 96_000, 384_000] {
            check_params(&params(Some(rate), Some(2)), "wave").unwrap();
            check_format(rate, 2, "wave").unwrap();
        }
        for rate in [0, 1, 7_999, 384_001, 50_000_017, u32::MAX] {
            let error = check_params(&params(Some(rate), Some(2)), "wave").unwrap_err();
            assert!(
                matches!(&error, AudioError::Undecodable(m) if m.contains(&format!("{rate} Hz"))),
                "{error:?}"
            );
            assert!(matches!(check_format(rate, 2, "mp3"), Err(AudioError::Undecodable(_))));
        }
    }

    #[test]
    fn one_to_eight_channels_pass_and_others_are_undecodable() {
        for channels in 1..=8 {
            check_params(&params(Some(48_000), Some(channels)), "wave").unwrap();
        }
        check_params(
            &{
                let mut p = params(None, None);
                p.with_channels(layouts::CHANNEL_LAYOUT_STEREO);
                p
            },
            "ogg",
        )
        .unwrap();
        for channels in [0, 9, 26, 200] {
            let error = check_params(&params(Some(48_000), Some(channels)), "wave").unwrap_err();
            assert!(
                matches!(&error, AudioError::Undecodable(m) if m.contains(&format!("{channels} channels"))),
                "{error:?}"
            );
            assert!(check_format(48_000, channels, "wave").is_err());
        }
    }

    #[test]
    fn absent_values_are_left_to_the_decoded_buffers() {
        check_params(&params(None, None), "matroska").unwrap();
    }

    #[test]
    fn bits_and_frames_per_packet_out_of_bounds_are_undecodable() {
        let mut wide = params(Some(48_000), Some(1));
        wide.with_bits_per_sample(65);
        assert!(matches!(check_params(&wide, "isomp4"), Err(AudioError::Undecodable(_))));
        let mut none = params(Some(48_000), Some(1));
        none.with_bits_per_coded_sample(0);
        assert!(check_params(&none, "wave").is_err());
        let mut huge = params(Some(48_000), Some(1));
        huge.with_max_frames_per_packet(u64::from(u32::MAX));
        assert!(
            matches!(check_params(&huge, "isomp4"), Err(AudioError::Undecodable(m)) if m.contains("frames per packet"))
        );
        let mut flac = params(Some(48_000), Some(2));
        flac.with_bits_per_sample(24).with_max_frames_per_packet(65_535);
        check_params(&flac, "flac").unwrap();
    }

    #[test]
    fn the_tally_stops_at_the_duration_limit_over_runs_of_different_rates() {
        let limits = AudioLimits {
            max_duration: Duration::from_secs(2),
            max_decoded_bytes: u64::MAX,
        };
        let mut tally = Tally::new(limits);
        tally.add(48_000, 2, 48_000, 48_000).unwrap();
        tally.add(16_000, 1, 16_000, 16_000).unwrap();
        assert_eq!(tally.duration(), Duration::from_secs(2));
        let error = tally.add(16_000, 1, 1, 1).unwrap_err();
        assert!(
            matches!(&error, AudioError::TooLong(m) if m.contains("2 seconds") && m.contains("audio.max_duration_secs")),
            "{error:?}"
        );
    }

    #[test]
    fn the_tally_stops_at_the_decoded_bytes_limit_counting_trimmed_frames_too() {
        let limits = AudioLimits {
            max_duration: Duration::from_secs(3600),
            max_decoded_bytes: 8 * 1_000,
        };
        let mut tally = Tally::new(limits);
        // 1,000 stereo frames are 8,000 bytes, even when none of them is kept.
        tally.add(44_100, 2, 1_000, 0).unwrap();
        let error = tally.add(44_100, 2, 1, 1).unwrap_err();
        assert!(
            matches!(&error, AudioError::TooLong(m) if m.contains("8000 bytes") && m.contains("audio.max_decoded_bytes")),
            "{error:?}"
        );
    }
}
