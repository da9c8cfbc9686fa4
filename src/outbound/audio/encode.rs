//! Encoding interleaved `f32` PCM as MP3 (LAME), WAV (hound), raw 16-bit PCM and FLAC
//! (flacenc).

use std::io::Cursor;

use flacenc::component::BitRepr;
use flacenc::error::Verify;
use mp3lame_encoder::{Bitrate, Builder, FlushGap, InterleavedPcm, MonoPcm, max_required_buffer_size};

use super::resample::{downmix_to_mono, remix, resample};
use crate::domain::audio::AudioError;

/// Frames handed to LAME per call; the output buffer is sized for this many.
const LAME_CHUNK_FRAMES: usize = 1152 * 16;
/// What LAME may write when flushing (one maximal frame and its reservoir).
const LAME_FLUSH_BYTES: usize = 7200;
/// The rate of OpenAI's `pcm` format.
pub const PCM_SAMPLE_RATE: u32 = 24_000;

/// The highest CBR bitrate (kbit/s) up to `preferred` that MPEG audio allows at `sample_rate`:
/// MPEG-1 rates (32–48 kHz) go to 320, MPEG-2 (16–24 kHz) to 160, MPEG-2.5 (8–12 kHz) to 64.
pub fn mp3_bitrate_for(sample_rate: u32, preferred: u16) -> u16 {
    let ceiling = match sample_rate {
        32_000.. => 320,
        16_000..32_000 => 160,
        _ => 64,
    };
    preferred.min(ceiling)
}

fn lame_bitrate(kbps: u16) -> Result<Bitrate, AudioError> {
    Ok(match kbps {
        8 => Bitrate::Kbps8,
        16 => Bitrate::Kbps16,
        24 => Bitrate::Kbps24,
        32 => Bitrate::Kbps32,
        40 => Bitrate::Kbps40,
        48 => Bitrate::Kbps48,
        64 => Bitrate::Kbps64,
        80 => Bitrate::Kbps80,
        96 => Bitrate::Kbps96,
        112 => Bitrate::Kbps112,
        128 => Bitrate::Kbps128,
        160 => Bitrate::Kbps160,
        192 => Bitrate::Kbps192,
        224 => Bitrate::Kbps224,
        256 => Bitrate::Kbps256,
        320 => Bitrate::Kbps320,
        other => return Err(AudioError::Encoding(format!("{other} kbit/s is not an MP3 bitrate"))),
    })
}

fn lame_error(what: &str) -> impl Fn(mp3lame_encoder::BuildError) -> AudioError + '_ {
    move |e| AudioError::Encoding(format!("LAME {what}: {e}"))
}

/// Encodes interleaved audio as constant-bitrate MP3 with LAME, at the same sample rate
/// (which must be one MPEG audio allows: 8–48 kHz in the usual steps) and channel count
/// (more than two channels are reduced to stereo). The first frame carries a LAME tag, so
/// decoders can trim the encoder delay and padding.
///
/// # Errors
/// [`AudioError::Encoding`] when LAME refuses the rate or bitrate, or fails.
pub fn encode_mp3(samples: &[f32], sample_rate: u32, channels: u16, kbps: u16) -> Result<Vec<u8>, AudioError> {
    let stereo_or_mono;
    let (samples, channels) = if channels > 2 {
        stereo_or_mono = remix(samples, channels, 2);
        (stereo_or_mono.as_slice(), 2u16)
    } else {
        (samples, channels.max(1))
    };
    let mut encoder = Mp3Encoder::new(sample_rate, channels, kbps)?;
    encoder.push(samples)?;
    encoder.finish()
}

/// A LAME encoder fed any number of samples at a time: it holds the MP3 made so far and
/// one chunk of samples, never the whole PCM.
pub struct Mp3Encoder {
    encoder: mp3lame_encoder::Encoder,
    channels: usize,
    /// One chunk of clamped samples, reused.
    clean: Vec<f32>,
    mp3: Vec<u8>,
}

impl Mp3Encoder {
    /// A constant-bitrate encoder for mono or stereo (`channels` 1 or 2) at `sample_rate`.
    ///
    /// # Errors
    /// [`AudioError::Encoding`] when LAME refuses the rate, channel count or bitrate.
    pub fn new(sample_rate: u32, channels: u16, kbps: u16) -> Result<Self, AudioError> {
        if !(1..=2).contains(&channels) {
            return Err(AudioError::Encoding(format!(
                "LAME encodes 1 or 2 channels, not {channels}"
            )));
        }
        let mut builder = Builder::new().ok_or_else(|| AudioError::Encoding("LAME could not allocate".to_owned()))?;
        builder
            .set_num_channels(channels as u8)
            .map_err(lame_error("channels"))?;
        builder
            .set_sample_rate(sample_rate)
            .map_err(lame_error("sample rate"))?;
        builder
            .set_output_sample_rate(std::num::NonZeroU32::new(sample_rate))
            .map_err(lame_error("output sample rate"))?;
        builder.set_brate(lame_bitrate(kbps)?).map_err(lame_error("bitrate"))?;
        builder
            .set_quality(mp3lame_encoder::Quality::Good)
            .map_err(lame_error("quality"))?;
        Ok(Self {
            encoder: builder.build().map_err(lame_error("parameters"))?,
            channels: usize::from(channels),
            clean: Vec::new(),
            mp3: Vec::new(),
        })
    }

    /// Encodes interleaved samples (a trailing partial frame is dropped; values outside
    /// `-1.0..=1.0` are clamped, NaN is silence).
    ///
    /// # Errors
    /// [`AudioError::Encoding`] when LAME fails.
    pub fn push(&mut self, samples: &[f32]) -> Result<(), AudioError> {
        let ch = self.channels;
        let whole = &samples[..samples.len() - samples.len() % ch];
        for chunk in whole.chunks(LAME_CHUNK_FRAMES * ch) {
            self.clean.clear();
            self.clean.extend(
                chunk
                    .iter()
                    .map(|s| if s.is_finite() { s.clamp(-1.0, 1.0) } else { 0.0 }),
            );
            // LAME writes as much as it likes when told the buffer is empty: always give it room.
            self.mp3.reserve(max_required_buffer_size(chunk.len() / ch));
            let written = if ch == 2 {
                self.encoder.encode_to_vec(InterleavedPcm(&self.clean), &mut self.mp3)
            } else {
                self.encoder.encode_to_vec(MonoPcm(&self.clean), &mut self.mp3)
            };
            written.map_err(|e| AudioError::Encoding(format!("LAME encoding: {e}")))?;
        }
        Ok(())
    }

    /// Flushes the encoder and returns the MP3, its first frame replaced by the final LAME
    /// tag (frame count, delay, padding).
    ///
    /// # Errors
    /// [`AudioError::Encoding`] when LAME fails.
    pub fn finish(mut self) -> Result<Vec<u8>, AudioError> {
        let mut out = std::mem::take(&mut self.mp3);
        out.reserve(LAME_FLUSH_BYTES);
        self.encoder
            .flush_to_vec::<FlushGap>(&mut out)
            .map_err(|e| AudioError::Encoding(format!("LAME flush: {e}")))?;
        let mut tag = Vec::with_capacity(self.encoder.lame_tag_size());
        if let Some(len) = self.encoder.lame_tag_encode_to_vec(&mut tag)
            && let Some(first) = out.get_mut(..len.get())
        {
            first.copy_from_slice(&tag[..len.get()]);
        }
        Ok(out)
    }
}

fn to_i16(sample: f32) -> i16 {
    if sample.is_finite() {
        // The clamp keeps the product within i16, so the cast cannot wrap.
        (sample.clamp(-1.0, 1.0) * f32::from(i16::MAX)).round() as i16
    } else {
        0
    }
}

/// Encodes interleaved audio as a 16-bit PCM WAV file at its rate and channel count.
///
/// # Errors
/// [`AudioError::Encoding`] when hound fails (a zero rate or channel count).
pub fn encode_wav(samples: &[f32], sample_rate: u32, channels: u16) -> Result<Vec<u8>, AudioError> {
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let wav_error = |e: hound::Error| AudioError::Encoding(format!("WAV: {e}"));
    let mut cursor = Cursor::new(Vec::with_capacity(44 + samples.len() * 2));
    {
        let mut writer = hound::WavWriter::new(&mut cursor, spec).map_err(wav_error)?;
        let ch = usize::from(channels.max(1));
        for &sample in &samples[..samples.len() - samples.len() % ch] {
            writer.write_sample(to_i16(sample)).map_err(wav_error)?;
        }
        writer.finalize().map_err(wav_error)?;
    }
    Ok(cursor.into_inner())
}

/// Encodes interleaved audio as OpenAI's `pcm` format: raw 16-bit little-endian mono at
/// 24 kHz, downmixed and resampled as needed.
///
/// # Errors
/// [`AudioError::Encoding`] when resampling fails.
pub fn encode_pcm_s16le(samples: &[f32], sample_rate: u32, channels: u16) -> Result<Vec<u8>, AudioError> {
    let mono = downmix_to_mono(samples, channels);
    let mono = resample(&mono, 1, sample_rate, PCM_SAMPLE_RATE)?;
    Ok(mono.iter().flat_map(|&s| to_i16(s).to_le_bytes()).collect())
}

/// Encodes interleaved audio as 16-bit FLAC at its rate and channel count (1–8 channels).
///
/// # Errors
/// [`AudioError::Encoding`] when flacenc refuses the format or fails.
pub fn encode_flac(samples: &[f32], sample_rate: u32, channels: u16) -> Result<Vec<u8>, AudioError> {
    let ch = usize::from(channels.max(1));
    let pcm: Vec<i32> = samples[..samples.len() - samples.len() % ch]
        .iter()
        .map(|&s| i32::from(to_i16(s)))
        .collect();
    let mut config = flacenc::config::Encoder::default();
    // The caller already runs on a blocking thread; no worker pool of its own.
    config.multithread = false;
    let config = config
        .into_verified()
        .map_err(|(_, e)| AudioError::Encoding(format!("FLAC configuration: {e}")))?;
    let rate = usize::try_from(sample_rate).unwrap_or(usize::MAX);
    let source = flacenc::source::MemSource::from_samples(&pcm, ch, 16, rate);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, config.block_size)
        .map_err(|e| AudioError::Encoding(format!("FLAC: {e}")))?;
    let mut sink = flacenc::bitsink::ByteSink::new();
    stream
        .write(&mut sink)
        .map_err(|e| AudioError::Encoding(format!("FLAC output: {e}")))?;
    let mut flac = sink.into_inner();
    fix_min_block_size(&mut flac);
    Ok(flac)
}

/// flacenc counts the (shorter) last block in STREAMINFO's minimum block size, which the
/// format excludes; decoders (symphonia among them) then take the fixed-blocksize stream
/// for a variable one and find no frame. Every block but the last has the maximum size.
fn fix_min_block_size(flac: &mut [u8]) {
    // "fLaC", then the first metadata block's header; type 0 is STREAMINFO.
    let is_stream_info = flac.get(..4) == Some(b"fLaC") && flac.get(4).is_some_and(|b| b & 0x7f == 0);
    if is_stream_info && let Some(sizes) = flac.get_mut(8..12) {
        let (min, max) = sizes.split_at_mut(2);
        min.copy_from_slice(max);
    }
}
