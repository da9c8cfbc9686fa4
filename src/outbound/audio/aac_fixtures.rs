//! M4A test inputs made on the spot (no committed files): audio encoded to AAC-LC with
//! Fraunhofer FDK AAC (the `fdk-aac` crate builds it from its bundled source), in an MP4
//! file written by the `mp4` crate. Shared by the unit tests and the API tests (`#[path]`).

use std::io::Cursor;

/// Frames per AAC-LC packet.
pub const AAC_FRAME: u64 = 1_024;

/// An M4A file and how long its packets last.
pub struct M4a {
    /// The file.
    pub bytes: Vec<u8>,
    /// Frames the packets decode to (the encoder's priming and padding included: the
    /// `mp4` crate writes no edit list to trim them).
    pub frames: u64,
    /// The sample rate.
    pub rate: u32,
}

/// Encodes interleaved samples (mono or stereo) to AAC-LC at 128 kbit/s in an M4A.
pub fn m4a(samples: &[f32], rate: u32, channels: u16) -> M4a {
    use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};
    let encoder = Encoder::new(EncoderParams {
        bit_rate: BitRate::Cbr(128_000),
        sample_rate: rate,
        transport: Transport::Raw,
        channels: if channels == 1 {
            ChannelMode::Mono
        } else {
            ChannelMode::Stereo
        },
        audio_object_type: AudioObjectType::Mpeg4LowComplexity,
    })
    .expect("an AAC encoder");
    let ch = usize::from(channels);
    // Silence after the audio pushes the encoder's delay out.
    let mut pcm: Vec<i16> = samples.iter().map(|s| (s * 32_767.0) as i16).collect();
    pcm.resize(pcm.len() + 3 * 1_024 * ch, 0);
    let mut packets = Vec::new();
    let mut out = vec![0_u8; 8_192];
    let mut at = 0;
    while at < pcm.len() {
        let end = (at + 1_024 * ch).min(pcm.len());
        let info = encoder.encode(&pcm[at..end], &mut out).expect("AAC");
        if info.output_size > 0 {
            packets.push(out[..info.output_size].to_vec());
        }
        at += info.input_consumed.max(1);
    }

    let config = mp4::Mp4Config {
        major_brand: str::parse("M4A ").expect("a brand"),
        minor_version: 512,
        compatible_brands: vec![
            str::parse("isom").expect("a brand"),
            str::parse("M4A ").expect("a brand"),
        ],
        timescale: 1_000,
    };
    let mut writer = mp4::Mp4Writer::write_start(Cursor::new(Vec::new()), &config).expect("an MP4 writer");
    let track = mp4::TrackConfig {
        track_type: mp4::TrackType::Audio,
        timescale: rate,
        language: "und".to_owned(),
        media_conf: mp4::MediaConfig::AacConfig(mp4::AacConfig {
            bitrate: 128_000,
            profile: mp4::AudioObjectType::AacLowComplexity,
            freq_index: freq_index(rate),
            chan_conf: if channels == 1 {
                mp4::ChannelConfig::Mono
            } else {
                mp4::ChannelConfig::Stereo
            },
        }),
    };
    writer.add_track(&track).expect("an audio track");
    for (i, packet) in packets.iter().enumerate() {
        let sample = mp4::Mp4Sample {
            start_time: i as u64 * AAC_FRAME,
            duration: AAC_FRAME as u32,
            rendering_offset: 0,
            is_sync: true,
            bytes: bytes::Bytes::copy_from_slice(packet),
        };
        writer.write_sample(1, &sample).expect("an AAC sample");
    }
    writer.write_end().expect("the moov box");
    let mut bytes = writer.into_writer().into_inner();
    // mp4 0.14 writes the esds box's SLConfigDescriptor with a length of 0 before its
    // "predefined" byte (and that byte as 0): make it the length 1, predefined 2 (MP4) that
    // ISO/IEC 14496-14 asks for and symphonia reads. It follows the 2-byte AudioSpecificConfig.
    let sl = bytes
        .windows(7)
        .rposition(|w| w[0] == 0x05 && w[1] == 0x02 && w[4..] == [0x06, 0x00, 0x00])
        .expect("the esds descriptors");
    bytes[sl + 5..sl + 7].copy_from_slice(&[0x01, 0x02]);
    M4a {
        bytes,
        frames: packets.len() as u64 * AAC_FRAME,
        rate,
    }
}

/// The MPEG-4 sampling frequency index of `rate` (ISO/IEC 14496-3 Table 1.18).
fn freq_index(rate: u32) -> mp4::SampleFreqIndex {
    let rates = [
        96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    ];
    let index = rates.iter().position(|r| *r == rate).expect("an AAC sample rate");
    mp4::SampleFreqIndex::try_from(index as u8).expect("a frequency index")
}
