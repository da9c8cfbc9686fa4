//! Decoding any container and codec symphonia knows (MP3, WAV, FLAC, Ogg Vorbis, M4A/AAC),
//! plus Opus in Ogg or WebM (see [`super::opus`]), to interleaved `f32` PCM, including MP3
//! streams made of several files joined end to end. Decoding is a stream: each packet's
//! samples go to a sink as they are decoded, within the bounds of [`super::bounds`].

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

use super::bounds::{Tally, check_format, check_params};
use super::resample::Conformer;
use crate::domain::audio::{AudioError, AudioLimits};

pub use super::bounds::frames_duration;

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
        let frames = samples.len() / usize::from(channels.max(1));
        Self {
            sample_rate,
            channels,
            samples,
            duration: frames_duration(frames as u64, sample_rate),
            container,
        }
    }

    /// The number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }
}

/// What a stream holds, learnt by decoding it.
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

/// One decoded packet's audio, after the container's trims.
#[derive(Clone, Copy, Debug)]
pub struct Block<'a> {
    /// Frames per second (within [`super::bounds::SAMPLE_RATES`]).
    pub rate: u32,
    /// Channels per frame (1 to [`super::bounds::MAX_CHANNELS`]).
    pub channels: u16,
    /// Interleaved samples.
    pub samples: &'a [f32],
}

/// Where decoded blocks go; its errors end the decode.
pub type BlockSink<'a> = &'a mut dyn FnMut(Block<'_>) -> Result<(), AudioError>;

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

/// Decodes a whole stream to interleaved PCM, within the default [`AudioLimits`]. `hint` is a
/// file extension (`"wav"`, `"m4a"`; see [`hint_for`]) and only a hint: the content decides.
/// Parts with another sample rate or channel count (MP3 files joined together) are
/// converted to those of the first part.
///
/// # Errors
/// As [`decode_within`].
pub fn decode(bytes: &[u8], hint: Option<&str>) -> Result<DecodedAudio, AudioError> {
    decode_within(bytes, hint, &AudioLimits::DEFAULT)
}

/// As [`decode`], within `limits`: the samples it returns are at most
/// `limits.max_decoded_bytes`.
///
/// # Errors
/// [`AudioError::Undecodable`] when the bytes are not in a container and codec we decode,
/// hold no decodable audio, or announce a format out of bounds; [`AudioError::TooLong`] past
/// `limits`.
pub fn decode_within(bytes: &[u8], hint: Option<&str>, limits: &AudioLimits) -> Result<DecodedAudio, AudioError> {
    let mut samples: Vec<f32> = Vec::new();
    let mut conformer: Option<Conformer> = None;
    let info = {
        let mut collect = |block: Block<'_>| {
            let conformer = conformer.get_or_insert_with(|| Conformer::new(block.rate, block.channels));
            conformer.push(block.rate, block.channels, block.samples, &mut |converted| {
                samples.extend_from_slice(converted);
                Ok(())
            })
        };
        decode_stream(bytes, hint, limits, Some(&mut collect))?
    };
    if let Some(conformer) = conformer {
        conformer.finish(&mut |converted| {
            samples.extend_from_slice(converted);
            Ok(())
        })?;
    }
    Ok(DecodedAudio::new(
        info.sample_rate,
        info.channels,
        samples,
        info.container,
    ))
}

/// Decodes a whole stream only to learn its container, format and duration (the samples are
/// counted, not kept), within the default [`AudioLimits`].
///
/// # Errors
/// As [`decode_within`].
pub fn probe(bytes: &[u8], hint: Option<&str>) -> Result<AudioInfo, AudioError> {
    decode_stream(bytes, hint, &AudioLimits::DEFAULT, None)
}

/// Decodes a stream packet by packet, handing each packet's audio (after the container's
/// trims) to `sink`, and stops as soon as `limits` are passed. Without a sink the samples
/// are only counted. A panic inside symphonia (malformed input it did not foresee) becomes
/// an `Undecodable` error instead of taking the thread down.
///
/// # Errors
/// As [`decode_within`], and `sink`'s own errors.
pub fn decode_stream(
    bytes: &[u8],
    hint: Option<&str>,
    limits: &AudioLimits,
    sink: Option<BlockSink<'_>>,
) -> Result<AudioInfo, AudioError> {
    catch_unwind(AssertUnwindSafe(|| run(bytes, hint, limits, sink))).unwrap_or_else(|_| {
        Err(AudioError::Undecodable(
            "the decoder gave up on malformed data".to_owned(),
        ))
    })
}

/// What the decode loop keeps between packets.
struct Decoding<'k> {
    container: &'static str,
    mpeg_audio: bool,
    has_padding_info: bool,
    tally: Tally,
    /// The format of the first packet that held audio.
    first: Option<(u32, u16)>,
    /// One packet's samples, interleaved (reused).
    scratch: Vec<f32>,
    sink: Option<BlockSink<'k>>,
}

impl Decoding<'_> {
    /// Counts one decoded packet against the limits and hands its audio to the sink, trimming
    /// encoder delay and padding as the container asks.
    fn take(&mut self, buffer: &GenericAudioBufferRef<'_>, packet: &Packet) -> Result<(), AudioError> {
        let spec = buffer.spec();
        let (rate, count) = (spec.rate(), spec.channels().count());
        check_format(rate, count, self.container)?;
        // Within bounds: 1 to 8 channels.
        let channels = u16::try_from(count).unwrap_or(1);
        let frames = buffer.frames();
        let (skip_start, skip_end) = if self.mpeg_audio {
            mpeg_trim(packet, frames, self.has_padding_info)
        } else {
            (0, 0)
        };
        let kept = frames.saturating_sub(skip_start).saturating_sub(skip_end);
        self.tally.add(rate, count, frames, kept)?;
        if kept == 0 {
            return Ok(());
        }
        self.first.get_or_insert((rate, channels));
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        self.scratch.clear();
        buffer.copy_to_vec_interleaved(&mut self.scratch);
        let start = skip_start * count;
        match self.scratch.get(start..start + kept * count) {
            Some(samples) => sink(Block {
                rate,
                channels,
                samples,
            }),
            None => Ok(()),
        }
    }
}

fn run(
    bytes: &[u8],
    hint: Option<&str>,
    limits: &AudioLimits,
    sink: Option<BlockSink<'_>>,
) -> Result<AudioInfo, AudioError> {
    if bytes.is_empty() {
        return Err(AudioError::Undecodable("the file is empty".to_owned()));
    }
    let mut symphonia_hint = Hint::new();
    if let Some(ext) = hint {
        symphonia_hint.with_extension(ext);
    }
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
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
    check_params(&params, container)?;
    let mpeg_audio = [CODEC_ID_MP1, CODEC_ID_MP2, CODEC_ID_MP3].contains(&params.codec);
    // For MPEG audio symphonia trims everything past the first file's announced length,
    // which would cut off the later files of a joined stream: trim by hand instead.
    let options = AudioDecoderOptions::default().gapless(!mpeg_audio);
    let mut decoder = make_decoder(&params, &options, container)?;

    let mut state = Decoding {
        container,
        mpeg_audio,
        has_padding_info,
        tally: Tally::new(*limits),
        first: None,
        scratch: Vec::new(),
        sink,
    };
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
            Ok(buffer) => {
                state.take(&buffer, &packet)?;
                true
            }
            Err(SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_)) if mpeg_audio => {
                // A joined file with another sample rate or channel count: a fresh decoder
                // takes its format from the frame header.
                let mut fresh = make_decoder(&params, &options, container)?;
                let retried = match fresh.decode(&packet) {
                    Ok(buffer) => {
                        state.take(&buffer, &packet)?;
                        true
                    }
                    Err(e) => {
                        last_error = e.to_string();
                        false
                    }
                };
                if retried {
                    decoder = fresh;
                }
                retried
            }
            Err(e @ (SymphoniaError::DecodeError(_) | SymphoniaError::IoError(_))) => {
                last_error = e.to_string();
                false
            }
            Err(e) => {
                return Err(AudioError::Undecodable(format!(
                    "cannot decode the {container} audio ({e})"
                )));
            }
        };
        if !decoded {
            errors += 1;
        }
    }
    let duration = state.tally.duration();
    let (sample_rate, channels) = match state.first {
        Some(format) => format,
        None if errors > 0 => {
            return Err(AudioError::Undecodable(format!(
                "the {container} audio does not decode ({last_error})"
            )));
        }
        // Audio of no length is still audio: keep the format the container announced.
        None => {
            let channels = params.channels.as_ref().map_or(1, |c| c.count());
            (
                params.sample_rate.unwrap_or(44_100),
                u16::try_from(channels).unwrap_or(1).max(1),
            )
        }
    };
    Ok(AudioInfo {
        container,
        sample_rate,
        channels,
        duration,
    })
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
