//! Behaviour of the codec on audio synthesised here: sines of known length and pitch.

use std::time::Duration;

use proptest::prelude::*;

use super::*;

const A4: f32 = 440.0;

/// The codec within the default limits.
const CODEC: SymphoniaLameCodec = SymphoniaLameCodec::new(AudioLimits::DEFAULT);

/// A 440 Hz sine at half scale, the same in every channel.
fn sine(rate: u32, channels: u16, seconds: f32) -> Vec<f32> {
    let frames = (rate as f32 * seconds).round() as usize;
    (0..frames)
        .flat_map(|i| {
            let v = 0.5 * (2.0 * std::f32::consts::PI * A4 * i as f32 / rate as f32).sin();
            std::iter::repeat_n(v, usize::from(channels))
        })
        .collect()
}

fn wav(rate: u32, channels: u16, seconds: f32) -> Vec<u8> {
    encode_wav(&sine(rate, channels, seconds), rate, channels).unwrap()
}

fn mp3(rate: u32, channels: u16, seconds: f32) -> Vec<u8> {
    encode_mp3(
        &sine(rate, channels, seconds),
        rate,
        channels,
        mp3_bitrate_for(rate, 128),
    )
    .unwrap()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn assert_close(actual: f64, expected: f64, tolerance: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: {actual} is not within {tolerance} of {expected}"
    );
}

/// The frequency of a (mono) signal from its rising zero crossings, with some hysteresis so
/// that coding noise near zero does not count, ignoring the edges.
fn pitch(samples: &[f32], rate: u32) -> f64 {
    let margin = samples.len() / 10;
    let inner = &samples[margin..samples.len() - margin];
    let (mut below, mut rises) = (false, 0usize);
    for &s in inner {
        if s < -0.1 {
            below = true;
        } else if s > 0.1 && below {
            below = false;
            rises += 1;
        }
    }
    rises as f64 / (inner.len() as f64 / f64::from(rate))
}

fn prepared_is_good_mp3(source: &[u8], name: &str, expected_seconds: f64) {
    let prepared = CODEC.prepare_for_transcription(source, Some(name)).unwrap();
    assert_close(secs(prepared.duration), expected_seconds, 0.005, "reported duration");
    let decoded = decode(&prepared.mp3, Some("mp3")).unwrap();
    assert_eq!(decoded.container, "mp3");
    assert_eq!((decoded.sample_rate, decoded.channels), (44_100, 2));
    assert_close(secs(decoded.duration), expected_seconds, 0.05, "MP3 duration");
    let left: Vec<f32> = decoded.samples.iter().step_by(2).copied().collect();
    assert_close(pitch(&left, 44_100), f64::from(A4), 4.0, "pitch");
}

#[test]
fn a_mono_16k_wav_becomes_44k_stereo_mp3_of_the_same_length() {
    prepared_is_good_mp3(&wav(16_000, 1, 1.5), "voice.wav", 1.5);
}

#[test]
fn a_stereo_48k_wav_becomes_44k_stereo_mp3_of_the_same_length() {
    prepared_is_good_mp3(&wav(48_000, 2, 2.0), "voice.WAV", 2.0);
}

#[test]
fn a_flac_upload_becomes_mp3_of_the_same_length() {
    let flac = encode_flac(&sine(48_000, 2, 2.0), 48_000, 2).unwrap();
    assert_eq!(&flac[..4], b"fLaC");
    prepared_is_good_mp3(&flac, "voice.flac", 2.0);
}

#[test]
fn the_file_name_is_only_a_hint() {
    prepared_is_good_mp3(&wav(16_000, 1, 1.5), "voice.mp3", 1.5);
    prepared_is_good_mp3(&wav(16_000, 1, 1.5), "no-extension", 1.5);
}

#[test]
fn an_mp3_upload_passes_through_byte_identical() {
    let source = mp3(44_100, 2, 1.5);
    for name in [Some("a.mp3"), Some("a.mpga"), Some("a.mpeg"), None] {
        let prepared = CODEC.prepare_for_transcription(&source, name).unwrap();
        assert_eq!(prepared.mp3, source);
        assert_close(secs(prepared.duration), 1.5, 0.05, "MP3 duration");
    }
}

#[test]
fn an_mp3_we_encode_decodes_to_its_exact_length_thanks_to_the_lame_tag() {
    for (rate, channels) in [(44_100, 2), (32_000, 1), (24_000, 1), (16_000, 2)] {
        let decoded = decode(&mp3(rate, channels, 1.0), None).unwrap();
        assert_eq!((decoded.sample_rate, decoded.channels), (rate, channels));
        assert_close(secs(decoded.duration), 1.0, 0.03, "decoded MP3 duration");
    }
}

#[test]
fn joined_mp3_files_decode_to_the_sum_of_their_durations() {
    let mut joined = mp3(32_000, 1, 1.0);
    joined.extend(mp3(32_000, 1, 1.5));
    joined.extend(mp3(32_000, 1, 0.5));
    let decoded = decode(&joined, Some("mp3")).unwrap();
    assert_eq!((decoded.sample_rate, decoded.channels), (32_000, 1));
    assert_close(secs(decoded.duration), 3.0, 0.1, "joined duration");
    assert_close(
        secs(probe(&joined, None).unwrap().duration),
        3.0,
        0.1,
        "probed duration",
    );
}

#[test]
fn joined_mp3_files_of_different_formats_are_converted_to_the_first() {
    let mut joined = mp3(24_000, 1, 1.0);
    joined.extend(mp3(44_100, 2, 1.0));
    let decoded = decode(&joined, Some("mp3")).unwrap();
    assert_eq!((decoded.sample_rate, decoded.channels), (24_000, 1));
    assert_close(secs(decoded.duration), 2.0, 0.1, "joined duration");
    let tail = &decoded.samples[decoded.samples.len() / 2..];
    assert_close(pitch(tail, 24_000), f64::from(A4), 4.0, "pitch of the converted part");
}

/// The upstream's speech: MP3, mono, 32 kHz (two parts joined).
fn upstream_speech() -> Vec<u8> {
    let mut speech = mp3(32_000, 1, 1.2);
    speech.extend(mp3(32_000, 1, 0.8));
    speech
}

#[test]
fn mp3_at_normal_speed_is_returned_unchanged() {
    let speech = upstream_speech();
    assert_eq!(CODEC.render_speech(&speech, SpeechFormat::Mp3, 1.0).unwrap(), speech);
}

#[test]
fn wav_keeps_the_decoded_rate_channels_and_duration() {
    let wav = CODEC.render_speech(&upstream_speech(), SpeechFormat::Wav, 1.0).unwrap();
    let reader = hound::WavReader::new(std::io::Cursor::new(&wav)).unwrap();
    let spec = reader.spec();
    assert_eq!((spec.sample_rate, spec.channels, spec.bits_per_sample), (32_000, 1, 16));
    assert_close(f64::from(reader.duration()) / 32_000.0, 2.0, 0.1, "WAV duration");
}

#[test]
fn pcm_is_24k_mono_s16le_of_the_right_length() {
    let pcm = CODEC.render_speech(&upstream_speech(), SpeechFormat::Pcm, 1.0).unwrap();
    assert_eq!(pcm.len() % 2, 0);
    assert_close(pcm.len() as f64 / 2.0 / 24_000.0, 2.0, 0.1, "PCM duration");
    let samples: Vec<f32> = pcm
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0)
        .collect();
    assert_close(pitch(&samples[..24_000], 24_000), f64::from(A4), 4.0, "PCM pitch");
}

#[test]
fn flac_decodes_to_the_right_duration() {
    let flac = CODEC
        .render_speech(&upstream_speech(), SpeechFormat::Flac, 1.0)
        .unwrap();
    let decoded = decode(&flac, Some("flac")).unwrap();
    assert_eq!(decoded.container, "flac");
    assert_eq!((decoded.sample_rate, decoded.channels), (32_000, 1));
    assert_close(secs(decoded.duration), 2.0, 0.1, "FLAC duration");
}

#[test]
fn mp3_at_another_speed_is_reencoded_at_the_same_rate() {
    let out = CODEC.render_speech(&upstream_speech(), SpeechFormat::Mp3, 1.5).unwrap();
    let decoded = decode(&out, Some("mp3")).unwrap();
    assert_eq!((decoded.sample_rate, decoded.channels), (32_000, 1));
    assert_close(secs(decoded.duration), 2.0 / 1.5, 0.1, "MP3 duration at 1.5x");
}

#[test]
fn speed_changes_the_duration_but_not_the_pitch() {
    let speech = upstream_speech();
    let normal = decode(&speech, Some("mp3")).unwrap();
    for speed in [2.0f32, 0.5, 0.25, 4.0] {
        let wav = CODEC.render_speech(&speech, SpeechFormat::Wav, speed).unwrap();
        let stretched = decode(&wav, Some("wav")).unwrap();
        let expected = secs(normal.duration) / f64::from(speed);
        assert_close(
            secs(stretched.duration),
            expected,
            (expected * 0.03).max(0.03),
            "stretched duration",
        );
        // The first part only: each joined part starts with its encoder delay (~35 ms of silence).
        let first_part = (32_000.0 * 1.1 / speed) as usize;
        assert_close(
            pitch(&stretched.samples[..first_part], 32_000),
            f64::from(A4),
            f64::from(A4) * 0.03,
            "stretched pitch",
        );
    }
}

#[test]
fn speeds_out_of_range_are_unsupported() {
    let speech = upstream_speech();
    for speed in [5.0f32, 0.1, 0.0, -1.0, f32::NAN, f32::INFINITY] {
        let error = CODEC.render_speech(&speech, SpeechFormat::Wav, speed).unwrap_err();
        assert!(
            matches!(&error, AudioError::Unsupported(m) if m.contains("0.25") && m.contains('4')),
            "{error:?}"
        );
    }
}

#[test]
fn bytes_that_are_not_audio_are_undecodable() {
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89".to_vec();
    let mut truncated = wav(16_000, 1, 0.5);
    truncated.truncate(20);
    for (bytes, name) in [
        (Vec::new(), Some("a.wav")),
        (b"hello world".to_vec(), Some("a.txt")),
        (b"hello world".to_vec(), Some("a.mp3")),
        (png, Some("a.png")),
        (truncated, Some("a.wav")),
    ] {
        let error = CODEC.prepare_for_transcription(&bytes, name).unwrap_err();
        assert!(
            matches!(&error, AudioError::Undecodable(m) if !m.is_empty()),
            "{error:?}"
        );
        let error = CODEC.render_speech(&bytes, SpeechFormat::Wav, 1.0).unwrap_err();
        assert!(matches!(error, AudioError::Undecodable(_)), "{error:?}");
    }
}

#[test]
fn very_short_and_silent_audio_is_fine() {
    let silence = encode_wav(&[0.0; 160], 16_000, 1).unwrap();
    let prepared = CODEC.prepare_for_transcription(&silence, Some("a.wav")).unwrap();
    assert_close(secs(prepared.duration), 0.01, 0.001, "duration");
    decode(&prepared.mp3, Some("mp3")).unwrap();
    let empty = encode_wav(&[], 16_000, 1).unwrap();
    let prepared = CODEC.prepare_for_transcription(&empty, Some("a.wav")).unwrap();
    assert_eq!(prepared.duration, Duration::ZERO);
}

#[test]
fn lame_survives_long_tiny_and_empty_buffers() {
    let long = sine(44_100, 2, 30.0);
    let encoded = encode_mp3(&long, 44_100, 2, 192).unwrap();
    // 192 kbit/s for 30 s is 720 kB.
    assert_close(encoded.len() as f64, 720_000.0, 20_000.0, "MP3 size");
    for channels in [1u16, 2] {
        for frames in [0usize, 1, 2] {
            let samples = vec![0.25; frames * usize::from(channels)];
            encode_mp3(&samples, 24_000, channels, 64).unwrap();
        }
    }
    encode_mp3(&[0.1, 0.2, 0.3], 44_100, 2, 128).unwrap();
}

#[test]
fn other_encoders_accept_empty_input() {
    encode_wav(&[], 24_000, 1).unwrap();
    assert!(encode_pcm_s16le(&[], 32_000, 2).unwrap().is_empty());
    encode_flac(&[], 24_000, 1).unwrap();
    assert!(stretch(&[], 24_000, 1, 2.0).unwrap().is_empty());
}

#[test]
fn a_bare_webm_header_is_undecodable() {
    // Just the EBML header of a WebM file: no tracks, no audio.
    let error = CODEC
        .prepare_for_transcription(b"\x1a\x45\xdf\xa3", Some("a.webm"))
        .unwrap_err();
    assert!(matches!(error, AudioError::Undecodable(_)), "{error:?}");
}

fn frames_secs(frames: u64) -> f64 {
    frames as f64 / 48_000.0
}

#[test]
fn ogg_opus_decodes_at_48k_to_the_exact_input_length() {
    let opus = opus_fixtures::encode(&sine(48_000, 2, 1.5), 48_000, 2);
    let decoded = decode(&opus_fixtures::ogg_opus(&opus), Some("ogg")).unwrap();
    assert_eq!(decoded.container, "ogg");
    assert_eq!((decoded.sample_rate, decoded.channels), (48_000, 2));
    // The pre-skip and the padding past the last granule position are both dropped.
    assert_eq!(decoded.frames() as u64, opus.frames_48k);
    assert_close(secs(decoded.duration), 1.5, 0.001, "duration");
    let left: Vec<f32> = decoded.samples.iter().step_by(2).copied().collect();
    assert_close(pitch(&left, 48_000), f64::from(A4), 4.0, "pitch");
}

#[test]
fn mono_16k_ogg_opus_decodes_to_48k_mono() {
    let opus = opus_fixtures::encode(&sine(16_000, 1, 0.75), 16_000, 1);
    let info = probe(&opus_fixtures::ogg_opus(&opus), Some("opus")).unwrap();
    assert_eq!((info.container, info.sample_rate, info.channels), ("ogg", 48_000, 1));
    assert_close(secs(info.duration), 0.75, 0.001, "duration");
}

#[test]
fn webm_opus_as_browsers_record_it_decodes_after_the_pre_skip() {
    let opus = opus_fixtures::encode(&sine(48_000, 1, 2.0), 48_000, 1);
    let decoded = decode(&opus_fixtures::webm_opus(&opus), Some("webm")).unwrap();
    assert_eq!(decoded.container, "matroska");
    assert_eq!((decoded.sample_rate, decoded.channels), (48_000, 1));
    // WebM says nothing of the padding in the last packet: only the pre-skip goes.
    let expected = opus.decoded_frames() - u64::from(opus_fixtures::PRE_SKIP);
    assert_eq!(decoded.frames() as u64, expected);
    assert!(expected - opus.frames_48k < 960, "at most one packet of padding");
    assert_close(pitch(&decoded.samples, 48_000), f64::from(A4), 4.0, "pitch");
}

#[test]
fn ogg_and_webm_opus_become_44k_stereo_mp3_of_the_same_length() {
    let stereo = opus_fixtures::encode(&sine(48_000, 2, 1.2), 48_000, 2);
    prepared_is_good_mp3(&opus_fixtures::ogg_opus(&stereo), "memo.ogg", 1.2);
    let mono = opus_fixtures::encode(&sine(24_000, 1, 1.2), 24_000, 1);
    let webm_frames = mono.decoded_frames() - u64::from(opus_fixtures::PRE_SKIP);
    prepared_is_good_mp3(
        &opus_fixtures::webm_opus(&mono),
        "recording.webm",
        frames_secs(webm_frames),
    );
}

#[test]
fn m4a_aac_decodes_to_the_length_of_its_packets() {
    let m4a = aac_fixtures::m4a(&sine(44_100, 2, 1.0), 44_100, 2);
    let decoded = decode(&m4a.bytes, Some("m4a")).unwrap();
    assert_eq!(decoded.container, "isomp4");
    assert_eq!((decoded.sample_rate, decoded.channels), (44_100, 2));
    // Without an edit list, the encoder's priming and padding are part of the audio.
    assert_eq!(decoded.frames() as u64, m4a.frames);
    assert!(m4a.frames >= 44_100 && m4a.frames < 44_100 + 5 * aac_fixtures::AAC_FRAME);
    let left: Vec<f32> = decoded.samples.iter().step_by(2).copied().collect();
    assert_close(pitch(&left, 44_100), f64::from(A4), 4.0, "pitch");
}

#[test]
fn a_mono_m4a_becomes_44k_stereo_mp3_of_the_same_length() {
    let m4a = aac_fixtures::m4a(&sine(16_000, 1, 1.5), 16_000, 1);
    prepared_is_good_mp3(&m4a.bytes, "voice-memo.m4a", m4a.frames as f64 / f64::from(m4a.rate));
}

#[test]
fn the_opus_head_gives_channels_and_pre_skip() {
    let head = opus_fixtures::opus_head(2, 16_000);
    assert_eq!(
        opus::OpusHead::parse(&head),
        Some(opus::OpusHead {
            channels: 2,
            pre_skip: opus_fixtures::PRE_SKIP
        })
    );
    assert_eq!(opus::OpusHead::parse(b"OpusHead\x01"), None);
    assert_eq!(opus::OpusHead::parse(b"OpusTags\x01\x02\x38\x01"), None);
}

/// A WAV file whose header claims `rate` Hz and `channels` channels of 16-bit PCM, with
/// `data_bytes` bytes of silence.
fn wav_claiming(rate: u32, channels: u16, data_bytes: u32) -> Vec<u8> {
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

#[test]
fn the_crafted_header_is_a_wav_symphonia_reads() {
    let info = probe(&wav_claiming(16_000, 1, 3_200), Some("wav")).unwrap();
    assert_eq!((info.container, info.sample_rate, info.channels), ("wave", 16_000, 1));
    assert_close(secs(info.duration), 0.1, 0.001, "duration");
}

#[test]
fn wav_headers_claiming_absurd_rates_or_channels_are_undecodable() {
    for (rate, channels) in [
        (u32::MAX, 1),
        (50_000_017, 2),
        (0, 1),
        (7_999, 1),
        (384_001, 1),
        (16_000, 0),
        (16_000, 9),
        (16_000, 200),
    ] {
        let wav = wav_claiming(rate, channels, 3_200);
        let error = CODEC.prepare_for_transcription(&wav, Some("a.wav")).unwrap_err();
        assert!(
            matches!(&error, AudioError::Undecodable(_)),
            "{rate} Hz, {channels} ch: {error:?}"
        );
        assert!(
            matches!(decode(&wav, None), Err(AudioError::Undecodable(_))),
            "{rate} Hz, {channels} ch"
        );
    }
}

/// `seconds` of 8 kHz mono silence as FLAC: constant frames, a few bytes each.
fn silent_flac(seconds: usize) -> Vec<u8> {
    encode_flac(&vec![0.0; seconds * 8_000], 8_000, 1).unwrap()
}

fn codec_within(max_duration_secs: u64, max_decoded_bytes: u64) -> SymphoniaLameCodec {
    SymphoniaLameCodec::new(AudioLimits {
        max_duration: Duration::from_secs(max_duration_secs),
        max_decoded_bytes,
    })
}

#[test]
fn a_flac_bomb_is_refused_at_the_duration_cap() {
    let bomb = silent_flac(120);
    assert!(bomb.len() < 16_384, "{} bytes", bomb.len());
    let error = codec_within(10, u64::MAX)
        .prepare_for_transcription(&bomb, Some("a.flac"))
        .unwrap_err();
    assert!(
        matches!(&error, AudioError::TooLong(m) if m.contains("10 seconds")),
        "{error:?}"
    );
    // At the cap exactly the audio passes.
    let prepared = codec_within(120, u64::MAX)
        .prepare_for_transcription(&bomb, Some("a.flac"))
        .unwrap();
    assert_close(secs(prepared.duration), 120.0, 0.001, "duration");
}

#[test]
fn audio_decoding_to_more_bytes_than_the_cap_is_refused() {
    // One second of 48 kHz stereo is 384,000 bytes of f32 samples.
    let source = wav(48_000, 2, 1.0);
    let error = codec_within(60, 300_000)
        .prepare_for_transcription(&source, Some("a.wav"))
        .unwrap_err();
    assert!(
        matches!(&error, AudioError::TooLong(m) if m.contains("300000 bytes")),
        "{error:?}"
    );
    codec_within(60, 400_000)
        .prepare_for_transcription(&source, Some("a.wav"))
        .unwrap();
}

#[test]
fn an_mp3_upload_passes_through_only_within_the_cap() {
    let source = mp3(44_100, 2, 3.0);
    let error = codec_within(2, u64::MAX)
        .prepare_for_transcription(&source, Some("a.mp3"))
        .unwrap_err();
    assert!(matches!(error, AudioError::TooLong(_)), "{error:?}");
    let prepared = codec_within(4, u64::MAX)
        .prepare_for_transcription(&source, Some("a.mp3"))
        .unwrap();
    assert_eq!(prepared.mp3, source);
}

#[test]
fn speech_longer_than_the_cap_is_refused_before_it_is_rendered() {
    let error = codec_within(1, u64::MAX)
        .render_speech(&upstream_speech(), SpeechFormat::Wav, 1.5)
        .unwrap_err();
    assert!(matches!(error, AudioError::TooLong(_)), "{error:?}");
}

#[test]
fn a_stream_resampled_in_pieces_equals_the_whole_clip_resampled() {
    let source = sine(48_000, 2, 0.7);
    let whole = resample(&source, 2, 48_000, 44_100).unwrap();
    assert_eq!(whole.len(), (33_600usize * 44_100).div_ceil(48_000) * 2);
    let mut pieces = Vec::new();
    let mut resampler = StreamResampler::new(2, 48_000, 44_100).unwrap();
    let mut collect = |chunk: &[f32]| {
        pieces.extend_from_slice(chunk);
        Ok(())
    };
    for piece in source.chunks(2 * 577) {
        resampler.push(piece, &mut collect).unwrap();
    }
    resampler.finish(&mut collect).unwrap();
    assert_eq!(pieces, whole);
}

#[test]
fn mp3_encoded_in_pieces_equals_the_whole_clip_encoded() {
    let source = sine(44_100, 2, 1.3);
    let whole = encode_mp3(&source, 44_100, 2, 192).unwrap();
    let mut encoder = Mp3Encoder::new(44_100, 2, 192).unwrap();
    for piece in source.chunks(2 * 1_000) {
        encoder.push(piece).unwrap();
    }
    assert_eq!(encoder.finish().unwrap(), whole);
}

#[test]
fn joined_parts_are_conformed_each_with_its_own_resampler() {
    let mut out = Vec::new();
    let mut conformer = Conformer::new(44_100, 2);
    let mut collect = |chunk: &[f32]| {
        out.extend_from_slice(chunk);
        Ok(())
    };
    conformer.push(16_000, 1, &sine(16_000, 1, 1.0), &mut collect).unwrap();
    conformer.push(48_000, 2, &sine(48_000, 2, 0.5), &mut collect).unwrap();
    conformer.push(44_100, 6, &sine(44_100, 6, 0.25), &mut collect).unwrap();
    conformer.finish(&mut collect).unwrap();
    assert_eq!(out.len(), (44_100 + 22_050 + 11_025) * 2);
    let left: Vec<f32> = out.iter().step_by(2).copied().collect();
    assert_close(
        pitch(&left[..44_100], 44_100),
        f64::from(A4),
        4.0,
        "pitch of the first part",
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096), ext in "(mp3|wav|flac|ogg|m4a|webm|bin)") {
        let name = format!("upload.{ext}");
        match CODEC.prepare_for_transcription(&bytes, Some(&name)) {
            Ok(_) | Err(AudioError::Undecodable(_)) => {}
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn damaged_audio_never_panics(cut in 0usize..4000, flip in 0usize..4000, byte in any::<u8>()) {
        let opus = opus_fixtures::encode(&sine(8_000, 1, 0.25), 8_000, 1);
        let inputs = [
            wav(8_000, 1, 0.25),
            mp3(16_000, 1, 0.5),
            encode_flac(&sine(8_000, 1, 0.25), 8_000, 1).unwrap(),
            opus_fixtures::ogg_opus(&opus),
            opus_fixtures::webm_opus(&opus),
        ];
        for mut bytes in inputs {
            if let Some(b) = bytes.get_mut(flip) {
                *b = byte;
            }
            bytes.truncate(cut);
            match CODEC.prepare_for_transcription(&bytes, None) {
                Ok(_) | Err(AudioError::Undecodable(_)) => {}
                Err(other) => prop_assert!(false, "unexpected {other:?}"),
            }
        }
    }
}

/// A rough timing, not an assertion: `cargo test --release --lib audio -- --ignored --nocapture`.
#[test]
#[ignore = "timing; run with --release"]
fn time_preparing_a_30_second_wav() {
    let source = wav(48_000, 2, 30.0);
    let started = std::time::Instant::now();
    let prepared = CODEC.prepare_for_transcription(&source, Some("long.wav")).unwrap();
    eprintln!(
        "prepare_for_transcription(30 s 48 kHz stereo WAV, {} bytes) took {:?} -> {} bytes of MP3",
        source.len(),
        started.elapsed(),
        prepared.mp3.len()
    );
    let source = wav(16_000, 1, 30.0);
    let started = std::time::Instant::now();
    CODEC.prepare_for_transcription(&source, Some("long.wav")).unwrap();
    eprintln!(
        "prepare_for_transcription(30 s 16 kHz mono WAV) took {:?}",
        started.elapsed()
    );
    let speech = mp3(32_000, 1, 30.0);
    let started = std::time::Instant::now();
    CODEC.render_speech(&speech, SpeechFormat::Wav, 1.5).unwrap();
    eprintln!("render_speech(30 s MP3 -> WAV at 1.5x) took {:?}", started.elapsed());
}
