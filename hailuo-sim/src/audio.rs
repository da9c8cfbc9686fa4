//! The simulator's own audio work, independent of `outbound/audio`: speech tones encoded to MP3
//! with LAME (`msg_tts`), and voice uploads decoded with symphonia (`phone_msg`).

use std::f64::consts::TAU;
use std::io::Cursor;
use std::num::NonZeroU32;
use std::time::Duration;

use mp3lame_encoder::{Bitrate, Builder, FlushGap, Mode, MonoPcm, Quality, max_required_buffer_size};
use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::codecs::audio::well_known::CODEC_ID_MP3;
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// Milliseconds of speech per character of the spoken text.
pub const SPEECH_MS_PER_CHAR: u64 = 80;
/// The shortest speech, whatever the text.
pub const SPEECH_MIN_MS: u64 = 300;
/// The sample rate of the speech the simulator serves (mono).
pub(crate) const SPEECH_SAMPLE_RATE: u32 = 24_000;
/// Peak amplitude of the speech tone (of full scale).
const TONE_AMPLITUDE: f32 = 0.3;
/// LAME needs this much room to flush its last frames.
const FLUSH_RESERVE: usize = 7200;

/// How long the speech of `text` lasts: [`SPEECH_MS_PER_CHAR`] per character, at least
/// [`SPEECH_MIN_MS`].
pub(crate) fn speech_duration_for(text: &str) -> Duration {
    let chars = u64::try_from(text.chars().count()).unwrap_or(u64::MAX);
    Duration::from_millis(chars.saturating_mul(SPEECH_MS_PER_CHAR).max(SPEECH_MIN_MS))
}

/// The tone frequency of a voice: deterministic, between 200 and 590 Hz.
pub(crate) fn voice_frequency(voice: &str) -> f32 {
    let spread = voice
        .bytes()
        .fold(0_u32, |acc, b| acc.wrapping_mul(31).wrapping_add(u32::from(b)))
        % 40;
    200.0 + 10.0 * spread as f32
}

/// A mono sine tone of `duration` at `frequency`, as 16-bit samples at `sample_rate`.
pub(crate) fn sine_tone(duration: Duration, frequency: f32, sample_rate: u32) -> Vec<i16> {
    let frames = (duration.as_secs_f64() * f64::from(sample_rate)).round() as usize;
    let step = TAU * f64::from(frequency) / f64::from(sample_rate);
    let peak = f64::from(TONE_AMPLITUDE) * f64::from(i16::MAX);
    (0..frames).map(|i| ((step * i as f64).sin() * peak) as i16).collect()
}

/// Encodes mono 16-bit samples to a CBR MP3 whose LAME tag declares the encoder delay and
/// padding, so a gapless decoder gets exactly `samples.len()` frames back.
///
/// # Errors
/// When LAME refuses the settings or the input.
pub(crate) fn encode_mp3(samples: &[i16], sample_rate: u32) -> Result<Vec<u8>, String> {
    let mut builder = Builder::new().ok_or("LAME could not allocate an encoder")?;
    let lame = |err: mp3lame_encoder::BuildError| format!("LAME settings refused: {err}");
    builder.set_num_channels(1).map_err(lame)?;
    builder.set_sample_rate(sample_rate).map_err(lame)?;
    builder
        .set_output_sample_rate(NonZeroU32::new(sample_rate))
        .map_err(lame)?;
    builder.set_mode(Mode::Mono).map_err(lame)?;
    builder.set_brate(Bitrate::Kbps64).map_err(lame)?;
    builder.set_quality(Quality::Good).map_err(lame)?;
    let mut encoder = builder.build().map_err(lame)?;
    // LAME writes through raw pointers into the spare capacity: reserve before each call.
    let mut mp3 = Vec::with_capacity(max_required_buffer_size(samples.len()) + FLUSH_RESERVE);
    encoder
        .encode_to_vec(MonoPcm(samples), &mut mp3)
        .map_err(|err| format!("LAME encoding failed: {err}"))?;
    mp3.reserve(FLUSH_RESERVE);
    encoder
        .flush_to_vec::<FlushGap>(&mut mp3)
        .map_err(|err| format!("LAME flush failed: {err}"))?;
    // The first frame is a placeholder for the LAME tag, which is only known now.
    let mut tag = Vec::with_capacity(encoder.lame_tag_size());
    if encoder.lame_tag_encode_to_vec(&mut tag).is_some() && tag.len() <= mp3.len() {
        mp3[..tag.len()].copy_from_slice(&tag);
    }
    Ok(mp3)
}

/// What decoding an MP3 found.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mp3Summary {
    /// Decoded length (encoder delay and padding trimmed when a LAME tag declares them).
    pub duration: Duration,
    /// Sample rate of the decoded audio.
    pub sample_rate: u32,
    /// Channel count of the decoded audio.
    pub channels: u16,
    /// Root mean square of every decoded sample, full scale 1.0.
    pub rms: f32,
}

/// Decodes `bytes` as MP3 and measures them.
///
/// # Errors
/// When the bytes are not an MP3 stream (another format, or nothing decodable).
pub(crate) fn analyse_mp3(bytes: Vec<u8>) -> Result<Mp3Summary, String> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &Hint::new(),
            source,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|err| format!("not a known audio format: {err}"))?;
    let track = format.default_track(TrackType::Audio).ok_or("no audio track")?;
    let track_id = track.id;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|params| params.audio())
        .ok_or("no audio codec parameters")?
        .clone();
    if params.codec != CODEC_ID_MP3 {
        return Err(format!("codec {} is not MP3", params.codec));
    }
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|err| format!("no MP3 decoder: {err}"))?;
    let (mut frames, mut sample_rate, mut channels) = (0_u64, 0_u32, 0_u16);
    let (mut squares, mut samples_seen) = (0.0_f64, 0_u64);
    let mut samples: Vec<f32> = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // A torn tail ends the stream; what was decoded counts.
            Err(SymphoniaError::IoError(_)) if frames > 0 => break,
            Err(err) => return Err(format!("unreadable MP3 stream: {err}")),
        };
        if packet.track_id != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(err) => return Err(format!("MP3 decoding failed: {err}")),
        };
        sample_rate = decoded.spec().rate();
        channels = u16::try_from(decoded.spec().channels().count()).unwrap_or(u16::MAX);
        frames += decoded.frames() as u64;
        decoded.copy_to_vec_interleaved(&mut samples);
        squares += samples.iter().map(|s| f64::from(*s) * f64::from(*s)).sum::<f64>();
        samples_seen += samples.len() as u64;
    }
    if frames == 0 || sample_rate == 0 {
        return Err("no MP3 frame decoded".to_owned());
    }
    Ok(Mp3Summary {
        duration: Duration::from_secs_f64(frames as f64 / f64::from(sample_rate)),
        sample_rate,
        channels,
        rms: (squares / samples_seen.max(1) as f64).sqrt() as f32,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn speech_lasts_eighty_milliseconds_a_character_and_at_least_three_hundred() {
        assert_eq!(speech_duration_for("你好"), Duration::from_millis(300));
        assert_eq!(speech_duration_for("海螺收到：你好"), Duration::from_millis(560));
        assert_eq!(speech_duration_for(""), Duration::from_millis(300));
    }

    #[test]
    fn an_encoded_tone_decodes_to_its_exact_length_and_level() {
        let tone = sine_tone(Duration::from_millis(1000), 440.0, SPEECH_SAMPLE_RATE);
        assert_eq!(tone.len(), 24_000);
        let mp3 = encode_mp3(&tone, SPEECH_SAMPLE_RATE).unwrap();
        let summary = analyse_mp3(mp3).unwrap();
        assert_eq!(summary.sample_rate, SPEECH_SAMPLE_RATE);
        assert_eq!(summary.channels, 1);
        let error = summary.duration.as_secs_f64() - 1.0;
        assert!(error.abs() < 0.005, "{summary:?}");
        // A sine of peak 0.3 has an RMS of 0.3 / sqrt(2).
        assert!((summary.rms - 0.212).abs() < 0.02, "{summary:?}");
    }

    #[test]
    fn long_and_tiny_inputs_encode_without_overrunning_the_buffer() {
        let long = sine_tone(Duration::from_secs(20), 300.0, SPEECH_SAMPLE_RATE);
        assert!(analyse_mp3(encode_mp3(&long, SPEECH_SAMPLE_RATE).unwrap()).is_ok());
        let tiny = encode_mp3(&[0; 10], SPEECH_SAMPLE_RATE).unwrap();
        assert!(!tiny.is_empty());
    }

    #[test]
    fn text_and_noise_are_not_mp3() {
        assert!(analyse_mp3(b"RIFF....WAVEfmt not really".to_vec()).is_err());
        assert!(analyse_mp3(vec![0x55; 4096]).is_err());
    }

    #[test]
    fn voices_get_distinct_stable_frequencies() {
        assert_eq!(voice_frequency("male-botong"), voice_frequency("male-botong"));
        assert_ne!(voice_frequency("male-botong"), voice_frequency("female-shaonv"));
    }
}
