//! Opus for symphonia: symphonia 0.6 demuxes Opus from Ogg and Matroska/WebM but has no
//! decoder for it, so this wraps the decoder of `opus-rs` (a pure-Rust port of libopus
//! 1.6, no C) as a symphonia [`AudioDecoder`] and registers it beside symphonia's own codecs.
//!
//! Opus always decodes at 48 kHz here: the timestamps, pre-skip and end trim of both
//! containers count 48 kHz frames. The encoder's pre-skip is dropped from the start: the
//! Ogg demuxer already asks for it through the packets' start trim; Matroska does not, so
//! when the first packet carries no trim the pre-skip comes from the `OpusHead` the
//! container holds (WebM's `CodecPrivate`).

use std::sync::LazyLock;

use symphonia::core::audio::{
    AsGenericAudioBufferRef, AudioBuffer, AudioMut, AudioSpec, Channels, GenericAudioBufferRef, layouts,
};
use symphonia::core::codecs::CodecInfo;
use symphonia::core::codecs::audio::well_known::CODEC_ID_OPUS;
use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions, FinalizeResult};
use symphonia::core::codecs::registry::{CodecRegistry, RegisterableAudioDecoder, SupportedAudioCodec};
use symphonia::core::errors::{Error, Result};
use symphonia::core::packet::PacketRef;

/// The rate Opus decodes at.
pub const OPUS_RATE: u32 = 48_000;
/// The most frames one Opus packet decodes to (120 ms at 48 kHz).
const MAX_PACKET_FRAMES: usize = 5_760;

/// symphonia's codecs plus Opus.
pub fn codecs() -> &'static CodecRegistry {
    static REGISTRY: LazyLock<CodecRegistry> = LazyLock::new(|| {
        let mut registry = CodecRegistry::new();
        symphonia::default::register_enabled_codecs(&mut registry);
        registry.register_audio_decoder::<OpusDecoder>();
        registry
    });
    &REGISTRY
}

const SUPPORTED: &[SupportedAudioCodec] = &[SupportedAudioCodec {
    id: CODEC_ID_OPUS,
    info: CodecInfo {
        short_name: "opus",
        long_name: "Opus (opus-rs)",
        profiles: &[],
    },
}];

/// A mono or stereo Opus stream decoded to 48 kHz `f32`.
pub struct OpusDecoder {
    params: AudioCodecParameters,
    gapless: bool,
    decoder: opus_rs::OpusDecoder,
    channels: usize,
    pcm: Vec<f32>,
    buffer: AudioBuffer<f32>,
    /// Frames still to drop from the start, when the container did not ask for them.
    pre_skip: usize,
    /// Whether a packet was decoded since the start (or a reset).
    started: bool,
}

impl OpusDecoder {
    fn try_new(params: &AudioCodecParameters, options: &AudioDecoderOptions) -> Result<Self> {
        let head = params.extra_data.as_deref().and_then(OpusHead::parse);
        let channels = params
            .channels
            .as_ref()
            .map(Channels::count)
            .or(head.map(|h| usize::from(h.channels)))
            .unwrap_or(0);
        let layout = match channels {
            1 => layouts::CHANNEL_LAYOUT_MONO,
            2 => layouts::CHANNEL_LAYOUT_STEREO,
            _ => return Err(Error::Unsupported("opus: only mono and stereo streams are decoded")),
        };
        let decoder = opus_rs::OpusDecoder::new(OPUS_RATE as i32, channels)
            .map_err(|_| Error::Unsupported("opus: the decoder refused the stream's format"))?;
        Ok(Self {
            params: params.clone(),
            gapless: options.gapless,
            decoder,
            channels,
            pcm: vec![0.0; MAX_PACKET_FRAMES * channels],
            buffer: AudioBuffer::new(AudioSpec::new(OPUS_RATE, layout), MAX_PACKET_FRAMES),
            pre_skip: head.map_or(0, |h| usize::from(h.pre_skip)),
            started: false,
        })
    }
}

impl AudioDecoder for OpusDecoder {
    fn reset(&mut self) {
        // The decoder has no reset of its own: a fresh one forgets the last packets.
        if let Ok(fresh) = opus_rs::OpusDecoder::new(OPUS_RATE as i32, self.channels) {
            self.decoder = fresh;
        }
        // After a seek the container's timestamps say what to drop.
        self.pre_skip = 0;
        self.started = true;
    }

    fn codec_info(&self) -> &CodecInfo {
        &SUPPORTED[0].info
    }

    fn codec_params(&self) -> &AudioCodecParameters {
        &self.params
    }

    fn decode_ref(&mut self, packet: &PacketRef<'_>) -> Result<GenericAudioBufferRef<'_>> {
        // A packet of one byte or none is a lost frame, which the decoder would conceal.
        if packet.data.len() < 2 {
            return Err(Error::DecodeError("opus: empty packet"));
        }
        let frames = self
            .decoder
            .decode(packet.data, MAX_PACKET_FRAMES, &mut self.pcm)
            .map_err(|_| Error::DecodeError("opus: invalid packet"))?;
        let samples = self
            .pcm
            .get(..frames * self.channels)
            .ok_or(Error::DecodeError("opus: packet longer than 120 ms"))?;
        self.buffer.clear();
        self.buffer.render_uninit(Some(frames));
        self.buffer.copy_from_slice_interleaved(&samples);
        if self.gapless {
            let demuxer_trim = usize::try_from(packet.trim_start.get()).unwrap_or(usize::MAX);
            let first = !self.started;
            self.started = true;
            // The Ogg demuxer trims the pre-skip itself; Matroska leaves it to the decoder.
            if first && demuxer_trim > 0 {
                self.pre_skip = 0;
            }
            let own_trim = self.pre_skip.min(frames);
            self.pre_skip -= own_trim;
            let end = usize::try_from(packet.trim_end.get()).unwrap_or(usize::MAX);
            self.buffer.trim(demuxer_trim.saturating_add(own_trim), end);
        }
        Ok(self.buffer.as_generic_audio_buffer_ref())
    }

    fn finalize(&mut self) -> FinalizeResult {
        FinalizeResult::default()
    }

    fn last_decoded(&self) -> GenericAudioBufferRef<'_> {
        self.buffer.as_generic_audio_buffer_ref()
    }
}

impl RegisterableAudioDecoder for OpusDecoder {
    fn try_registry_new(params: &AudioCodecParameters, options: &AudioDecoderOptions) -> Result<Box<dyn AudioDecoder>> {
        Ok(Box::new(Self::try_new(params, options)?))
    }

    fn supported_codecs() -> &'static [SupportedAudioCodec] {
        SUPPORTED
    }
}

/// The fields of an `OpusHead` (RFC 7845 §5.1) the decoder needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpusHead {
    /// Output channels.
    pub channels: u8,
    /// 48 kHz frames to drop from the start of the decoded stream.
    pub pre_skip: u16,
}

impl OpusHead {
    /// Reads an `OpusHead` packet, or `None` when the bytes are not one.
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let rest = bytes.strip_prefix(b"OpusHead")?;
        let (&[_version, channels, skip_low, skip_high], _) = rest.split_first_chunk::<4>()?;
        Some(Self {
            channels,
            pre_skip: u16::from_le_bytes([skip_low, skip_high]),
        })
    }
}
