//! Audio the tests make and measure, with the crates directly (independent of the server's
//! own codec): sine tones as WAV (hound), Ogg Vorbis (vorbis_rs), Opus in Ogg or WebM
//! (`opus-rs` and `ogg`, in [`opus`]) and AAC in M4A (`fdk-aac` and `mp4`, in [`aac`]),
//! durations by decoding (symphonia).

use std::io::Cursor;
use std::num::{NonZeroU8, NonZeroU32};
use std::time::Duration;

use symphonia::core::codecs::audio::AudioDecoderOptions;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

/// M4A (AAC-LC): the maker the unit tests use too.
#[path = "../../src/outbound/audio/aac_fixtures.rs"]
pub mod aac;

/// Opus in Ogg and WebM: the makers the unit tests use too.
#[path = "../../src/outbound/audio/opus_fixtures.rs"]
pub mod opus;

/// A sine tone, interleaved, `channels` copies of each sample.
pub fn sine(seconds: f32, rate: u32, channels: u16, frequency: f32, amplitude: f32) -> Vec<f32> {
    let frames = (seconds * rate as f32) as usize;
    (0..frames)
        .flat_map(|i| {
            let value = amplitude * (2.0 * std::f32::consts::PI * frequency * i as f32 / rate as f32).sin();
            std::iter::repeat_n(value, usize::from(channels))
        })
        .collect()
}

/// 16-bit PCM WAV.
pub fn wav(samples: &[f32], rate: u32, channels: u16) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = Cursor::new(Vec::new());
    {
        let mut writer = hound::WavWriter::new(&mut cursor, spec).expect("a WAV writer");
        for sample in samples {
            writer.write_sample((sample * 32_767.0) as i16).expect("a sample");
        }
        writer.finalize().expect("a WAV");
    }
    cursor.into_inner()
}

/// Ogg Vorbis.
pub fn ogg(samples: &[f32], rate: u32, channels: u16) -> Vec<u8> {
    let planar: Vec<Vec<f32>> = (0..usize::from(channels))
        .map(|c| samples.iter().skip(c).step_by(usize::from(channels)).copied().collect())
        .collect();
    let mut encoder = vorbis_rs::VorbisEncoderBuilder::new(
        NonZeroU32::new(rate).expect("a rate"),
        NonZeroU8::new(u8::try_from(channels).expect("few channels")).expect("channels"),
        Vec::new(),
    )
    .expect("an encoder builder")
    .build()
    .expect("an encoder");
    for block in 0..planar[0].len().div_ceil(4096) {
        let range = block * 4096..((block + 1) * 4096).min(planar[0].len());
        let chunk: Vec<&[f32]> = planar.iter().map(|channel| &channel[range.clone()]).collect();
        encoder.encode_audio_block(&chunk).expect("a block");
    }
    encoder.finish().expect("an Ogg stream")
}

/// How long the first audio track of `bytes` lasts, decoding every packet.
pub fn decoded_duration(bytes: &[u8], extension: &str) -> Duration {
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut hint = Hint::new();
    hint.with_extension(extension);
    let mut format = symphonia::default::get_probe()
        .probe(&hint, stream, FormatOptions::default(), MetadataOptions::default())
        .expect("a known format");
    let track = format.default_track(TrackType::Audio).expect("an audio track").clone();
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .expect("audio parameters")
        .clone();
    let mut decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .expect("a decoder");
    let (mut frames, mut rate) = (0_u64, 0_u32);
    while let Ok(Some(packet)) = format.next_packet() {
        if let Ok(buffer) = decoder.decode(&packet) {
            rate = buffer.spec().rate();
            frames += buffer.frames() as u64;
        }
    }
    Duration::from_secs_f64(frames as f64 / f64::from(rate.max(1)))
}

/// Whether two durations differ by at most `tolerance`.
pub fn close(a: Duration, b: Duration, tolerance: Duration) -> bool {
    a.abs_diff(b) <= tolerance
}

/// FLAC, with the server's encoder (only to make an input: the simulator measures it).
pub fn flac(samples: &[f32], rate: u32, channels: u16) -> Vec<u8> {
    hailuo_free_api::outbound::audio::encode_flac(samples, rate, channels).expect("FLAC")
}

/// MP3, with the server's encoder (only to make an input: the simulator measures it).
pub fn mp3(samples: &[f32], rate: u32, channels: u16) -> Vec<u8> {
    hailuo_free_api::outbound::audio::encode_mp3(samples, rate, channels, 128).expect("MP3")
}

/// A WAV file whose header claims `rate` Hz and `channels` channels of 16-bit PCM (any
/// values, absurd ones included), with `data_bytes` bytes of silence.
pub fn wav_claiming(rate: u32, channels: u16, data_bytes: u32) -> Vec<u8> {
    let block_align = channels.wrapping_mul(2);
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36 + data_bytes).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt \x10\0\0\0\x01\0");
    wav.extend_from_slice(&channels.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&rate.wrapping_mul(u32::from(block_align)).to_le_bytes());
    wav.extend_from_slice(&block_align.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_bytes.to_le_bytes());
    wav.resize(wav.len() + data_bytes as usize, 0);
    wav
}
