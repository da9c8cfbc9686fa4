//! Decoding any container and codec symphonia knows (MP3, WAV, FLAC, Ogg Vorbis, M4A/AAC),
//! plus Opus in Ogg or WebM (see [`super::opus`]), to interleaved `f32` PCM, including MP3
//! streams made of several files joined end to end.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use symphonia::core::audio::GenericAudioBufferRef;
use symphonia::core::codecs::audio::well_known::{CODEC_ID_MP1, CODEC_ID_MP2, CODEC_ID_MP3};
use symphonia::core::codecs::audio::{AudioCodecId, AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;

use super::resample::{remix, resample};
use crate::domain::audio::AudioError;

/// Audio decoded to PCM.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedAudio {
    /// Frames per second.
    pub sample_rate: u32,
    /// Channels per frame (at least 1).
    pub channels: u16,
    /// Interleaved samples in `-1.0..=1.0`; `frames() * channels` of them.
    pub samples: Vec<f32>,
    /// How long the audio lasts (`frames() / sample_rate`).
    pub duration: Duration,
    /// The container symphonia recognised (`"mp3"`, `"wave"`, `"flac"`, `"ogg"`, `"isomp4"`,
    /// `"matroska"`, ...).
    pub container: &'static str,
}

impl DecodedAudio {
    /// Builds decoded audio from interleaved samples, computing the duration.
    pub fn new(sample_rate: u32, channels: u16, samples: Vec<f32>, container: &'static str) -> Self {
        let duration = frames_duration(samples.len() / usize::from(channels.max(1)), sample_rate);
        Self {
            sample_rate,
            channels,
            samples,
            duration,
            container,
        }
    }

    /// The number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }
}

/// What a stream holds, learnt by decoding it without keeping the samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioInfo {
    /// The container symphonia recognised (`"mp3"` for MPEG audio).
    pub container: &'static str,
    /// Frames per second of the first decoded part.
    pub sample_rate: u32,
    /// Channels of the first decoded part.
    pub channels: u16,
    /// How long the audio lasts.
    pub duration: Duration,
}

/// The duration of `frames` frames at `sample_rate`.
pub fn frames_duration(frames: usize, sample_rate: u32) -> Duration {
    if sample_rate == 0 {
        return Duration::ZERO;
    }
    let frames = frames as u64;
    let rate = u64::from(sample_rate);
    Duration::from_secs(frames / rate) + Duration::from_nanos((frames % rate) * 1_000_000_000 / rate)
}

/// The symphonia hint for a file name: its extension, with `mpga`/`mpeg` meaning MP3.
pub fn hint_for(file_name: Option<&str>) -> Option<String> {
    let ext = file_name?.rsplit_once('.')?.1.trim().to_ascii_lowercase();
    match ext.as_str() {
        "" => None,
        "mpga" | "mpeg" | "mp2a" => Some("mp3".to_owned()),
        "oga" | "opus" => Some("ogg".to_owned()),
        _ => Some(ext),
    }
}

/// Decodes a whole stream to interleaved PCM. `hint` is a file extension (`"wav"`, `"m4a"`;
/// see [`hint_for`]) and only a hint: the content decides. Parts with another sample rate
/// or channel count (MP3 files joined together) are converted to those of the first part.
///
/// # Errors
/// [`AudioError::Undecodable`] when the bytes are not in a container and codec we decode,
/// or hold no decodable audio.
pub fn decode(bytes: &[u8], hint: Option<&str>) -> Result<DecodedAudio, AudioError> {
    let (container, segments) = guarded(|| run(bytes, hint, true))?;
    let mut parts = segments.into_iter();
    let Some(first) = parts.next() else {
        return Err(AudioError::Undecodable(format!(
            "the {container} stream holds no audio"
        )));
    };
    let (rate, channels) = (first.rate, first.channels);
    let mut samples = first.samples;
    for part in parts {
        let remixed = remix(&part.samples, part.channels, channels);
        let converted = resample(&remixed, channels, part.rate, rate)
            .map_err(|e| AudioError::Undecodable(format!("cannot convert a joined part: {e}")))?;
        samples.extend_from_slice(&converted);
    }
    Ok(DecodedAudio::new(rate, channels, samples, container))
}

/// Decodes a whole stream only to learn its container, format and duration (cheap in
/// memory: the samples are counted, not kept).
///
/// # Errors
/// As [`decode`].
pub fn probe(bytes: &[u8], hint: Option<&str>) -> Result<AudioInfo, AudioError> {
    let (container, segments) = guarded(|| run(bytes, hint, false))?;
    let Some(first) = segments.first() else {
        return Err(AudioError::Undecodable(format!(
            "the {container} stream holds no audio"
        )));
    };
    let duration = segments.iter().map(|s| frames_duration(s.frames, s.rate)).sum();
    Ok(AudioInfo {
        container,
        sample_rate: first.rate,
        channels: first.channels,
        duration,
    })
}

/// A run of decoded audio with one sample rate and channel count.
struct Segment {
    rate: u32,
    channels: u16,
    frames: usize,
    samples: Vec<f32>,
}

/// Runs the decoder, turning a panic inside symphonia (malformed input it did not
/// foresee) into an `Undecodable` error instead of taking the worker thread down.
fn guarded<T>(work: impl FnOnce() -> Result<T, AudioError>) -> Result<T, AudioError> {
    catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        Err(AudioError::Undecodable(
            "the decoder gave up on malformed data".to_owned(),
        ))
    })
}

fn run(bytes: &[u8], hint: Option<&str>, keep: bool) -> Result<(&'static str, Vec<Segment>), AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Undecodable("the file is empty".to_owned()));
    }
    let mut symphonia_hint = Hint::new();
    if let Some(ext) = hint {
        symphonia_hint.with_extension(ext);
    }
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let mut reader = symphonia::default::get_probe()
        .probe(
            &symphonia_hint,
            source,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| AudioError::Undecodable(format!("no known audio container ({e})")))?;
    let container = reader.format_info().short_name;

    let track = reader
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::Undecodable(format!("the {container} file has no audio track")))?;
    let track_id = track.id;
    let has_padding_info = track.padding.is_some();
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .cloned()
        .ok_or_else(|| AudioError::Undecodable(format!("the {container} file has no audio track")))?;
    let mpeg_audio = [CODEC_ID_MP1, CODEC_ID_MP2, CODEC_ID_MP3].contains(&params.codec);
    // For MPEG audio symphonia trims everything past the first file's announced length,
    // which would cut off the later files of a joined stream: trim by hand instead.
    let options = AudioDecoderOptions::default().gapless(!mpeg_audio);
    let mut decoder = make_decoder(&params, &options, container)?;

    let mut segments: Vec<Segment> = Vec::new();
    let mut errors = 0usize;
    let mut last_error = String::new();
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            Err(SymphoniaError::ResetRequired) => {
                decoder = make_decoder(&params, &options, container)?;
                continue;
            }
            // A truncated or damaged tail: keep what decoded so far.
            Err(e) => {
                last_error = e.to_string();
                errors += 1;
                break;
            }
        };
        if packet.track_id != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(buffer) => Some(append(
                &mut segments,
                &buffer,
                &packet,
                mpeg_audio,
                has_padding_info,
                keep,
            )),
            Err(SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_)) if mpeg_audio => {
                // A joined file with another sample rate or channel count: a fresh decoder
                // takes its format from the frame header.
                let mut fresh = make_decoder(&params, &options, container)?;
                let retried = match fresh.decode(&packet) {
                    Ok(buffer) => Some(append(
                        &mut segments,
                        &buffer,
                        &packet,
                        mpeg_audio,
                        has_padding_info,
                        keep,
                    )),
                    Err(e) => {
                        last_error = e.to_string();
                        None
                    }
                };
                if retried.is_some() {
                    decoder = fresh;
                }
                retried
            }
            Err(e @ (SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_))) => {
                last_error = e.to_string();
                None
            }
            Err(e) => {
                return Err(AudioError::Undecodable(format!(
                    "cannot decode the {container} audio ({e})"
                )));
            }
        };
        if decoded.is_none() {
            errors += 1;
        }
    }
    if segments.iter().all(|s| s.frames == 0) && errors > 0 {
        return Err(AudioError::Undecodable(format!(
            "the {container} audio does not decode ({last_error})"
        )));
    }
    segments.retain(|s| s.frames > 0);
    if segments.is_empty() {
        // Audio of no length is still audio: keep the format the container announced.
        let channels = params.channels.as_ref().map_or(1, |c| c.count());
        segments.push(Segment {
            rate: params.sample_rate.unwrap_or(44_100),
            channels: u16::try_from(channels).unwrap_or(1).max(1),
            frames: 0,
            samples: Vec::new(),
        });
    }
    Ok((container, segments))
}

fn make_decoder(
    params: &AudioCodecParameters,
    options: &AudioDecoderOptions,
    container: &str,
) -> Result<Box<dyn AudioDecoder>, AudioError> {
    super::opus::codecs().make_audio_decoder(params, options).map_err(|_| {
        AudioError::Undecodable(format!(
            "{} audio in a {container} container is not supported",
            codec_name(params.codec)
        ))
    })
}

/// A readable name for the codecs users are likely to send.
fn codec_name(codec: AudioCodecId) -> String {
    use symphonia::core::codecs::audio::well_known as ids;
    let name = match codec {
        ids::CODEC_ID_OPUS => "Opus",
        ids::CODEC_ID_VORBIS => "Vorbis",
        ids::CODEC_ID_AAC => "AAC",
        ids::CODEC_ID_MP3 => "MP3",
        ids::CODEC_ID_FLAC => "FLAC",
        ids::CODEC_ID_ALAC => "ALAC",
        ids::CODEC_ID_AC3 => "AC-3",
        ids::CODEC_ID_EAC3 => "E-AC-3",
        ids::CODEC_ID_SPEEX => "Speex",
        ids::CODEC_ID_WMA => "WMA",
        _ => return format!("codec {codec}"),
    };
    name.to_owned()
}

/// Adds one decoded packet to the last segment (or a new one when its format differs),
/// trimming encoder delay and padding as the container asks. Returns the frames added.
fn append(
    segments: &mut Vec<Segment>,
    buffer: &GenericAudioBufferRef<'_>,
    packet: &Packet,
    mpeg_audio: bool,
    has_padding_info: bool,
    keep: bool,
) -> usize {
    let spec = buffer.spec();
    let rate = spec.rate();
    let channels = u16::try_from(spec.channels().count()).unwrap_or(u16::MAX).max(1);
    let frames = buffer.frames();
    let (skip_start, skip_end) = if mpeg_audio {
        mpeg_trim(packet, frames, has_padding_info)
    } else {
        (0, 0)
    };
    let kept = frames.saturating_sub(skip_start).saturating_sub(skip_end);

    let same_format = segments
        .last()
        .is_some_and(|s| s.rate == rate && s.channels == channels);
    if !same_format {
        segments.push(Segment {
            rate,
            channels,
            frames: 0,
            samples: Vec::new(),
        });
    }
    let Some(segment) = segments.last_mut() else {
        return 0;
    };
    segment.frames += kept;
    if keep && kept > 0 {
        let mut interleaved: Vec<f32> = Vec::with_capacity(buffer.samples_interleaved());
        buffer.copy_to_vec_interleaved(&mut interleaved);
        let ch = usize::from(channels);
        let start = skip_start * ch;
        let end = start + kept * ch;
        if let Some(slice) = interleaved.get(start..end) {
            segment.samples.extend_from_slice(slice);
        }
    }
    kept
}

/// Which frames of a decoded MPEG audio packet to drop: the encoder delay at the start, and
/// the padding where the first file ends (from its LAME tag). A packet wholly past that end
/// belongs to a file joined after the first one and is kept whole.
fn mpeg_trim(packet: &Packet, frames: usize, has_padding_info: bool) -> (usize, usize) {
    let start = usize::try_from(packet.trim_start.get())
        .unwrap_or(usize::MAX)
        .min(frames);
    // Symphonia counts the trim at the end from the first file's end, so it can exceed the packet.
    let end = usize::try_from(packet.trim_end.get()).unwrap_or(usize::MAX);
    let past_the_end = start == 0 && end >= frames;
    if past_the_end || !has_padding_info {
        (start, 0)
    } else {
        (start, end.min(frames - start))
    }
}
