//! Opus test inputs made on the spot (no committed files): audio encoded with the pure-Rust
//! `opus-rs` encoder (the server decodes with its decoder; it also decodes files libopus
//! made, checked by hand with `opusenc` and `mkvmerge`), in
//! Ogg pages written by the `ogg` crate, or in a small WebM written here element by element
//! the way browsers' `MediaRecorder` does (EBML header, a segment and clusters of unknown
//! size, `SimpleBlock`s). Shared by the unit tests and the API tests (`#[path]` module).

use std::io::Cursor;

/// The encoder delay at 48 kHz that libopus and `opus-rs` announce (2.5 ms + 4 ms).
pub const PRE_SKIP: u16 = 312;

/// Audio encoded as Opus packets of 20 ms.
pub struct OpusPackets {
    /// The packets, in order.
    pub packets: Vec<Vec<u8>>,
    /// Channels (1 or 2).
    pub channels: u8,
    /// The input's sample rate.
    pub input_rate: u32,
    /// Frames of input, at 48 kHz (what a decoder must give back once trimmed).
    pub frames_48k: u64,
}

impl OpusPackets {
    /// The 48 kHz frames the packets decode to before any trimming.
    pub fn decoded_frames(&self) -> u64 {
        self.packets.len() as u64 * 960
    }
}

/// Encodes interleaved samples (`rate` of 8, 12, 16, 24 or 48 kHz; mono or stereo) to
/// 20 ms Opus packets, followed by enough silence to flush the encoder's delay.
pub fn encode(samples: &[f32], rate: u32, channels: u16) -> OpusPackets {
    let ch = usize::from(channels);
    let mut encoder = opus_rs::OpusEncoder::new(rate as i32, ch, opus_rs::Application::Audio).expect("an Opus encoder");
    encoder.bitrate_bps = 64_000;
    let frame = rate as usize / 50;
    let frames = samples.len() / ch;
    let delay = usize::from(PRE_SKIP) * rate as usize / 48_000;
    let mut padded = samples.to_vec();
    padded.resize((frames + delay).div_ceil(frame) * frame * ch, 0.0);
    let mut out = vec![0_u8; 4_000];
    let packets = padded
        .chunks(frame * ch)
        .map(|chunk| {
            let len = encoder.encode(chunk, frame, &mut out).expect("an Opus packet");
            out[..len].to_vec()
        })
        .collect();
    OpusPackets {
        packets,
        channels: u8::try_from(channels).expect("mono or stereo"),
        input_rate: rate,
        frames_48k: frames as u64 * 48_000 / u64::from(rate),
    }
}

/// The `OpusHead` identification header (RFC 7845 §5.1, channel mapping family 0).
pub fn opus_head(channels: u8, input_rate: u32) -> Vec<u8> {
    let mut head = b"OpusHead".to_vec();
    head.push(1);
    head.push(channels);
    head.extend_from_slice(&PRE_SKIP.to_le_bytes());
    head.extend_from_slice(&input_rate.to_le_bytes());
    head.extend_from_slice(&0_i16.to_le_bytes());
    head.push(0);
    head
}

/// An Ogg Opus file (RFC 7845): the granule position of the last page says where the
/// audio ends, so the padding is trimmed.
pub fn ogg_opus(opus: &OpusPackets) -> Vec<u8> {
    use ogg::writing::{PacketWriteEndInfo, PacketWriter};
    let serial = 0x0b05_0b05;
    let mut writer = PacketWriter::new(Cursor::new(Vec::new()));
    writer
        .write_packet(
            opus_head(opus.channels, opus.input_rate),
            serial,
            PacketWriteEndInfo::EndPage,
            0,
        )
        .expect("OpusHead");
    let mut tags = b"OpusTags".to_vec();
    let vendor = b"hailuo-free-api tests";
    tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
    tags.extend_from_slice(vendor);
    tags.extend_from_slice(&0_u32.to_le_bytes());
    writer
        .write_packet(tags, serial, PacketWriteEndInfo::EndPage, 0)
        .expect("OpusTags");
    let last = opus.packets.len().saturating_sub(1);
    for (i, packet) in opus.packets.iter().enumerate() {
        let (end, granule) = if i == last {
            (PacketWriteEndInfo::EndStream, u64::from(PRE_SKIP) + opus.frames_48k)
        } else if (i + 1) % 50 == 0 {
            (PacketWriteEndInfo::EndPage, (i as u64 + 1) * 960)
        } else {
            (PacketWriteEndInfo::NormalPacket, (i as u64 + 1) * 960)
        };
        writer
            .write_packet(packet.clone(), serial, end, granule)
            .expect("an Opus page");
    }
    writer.into_inner().into_inner()
}

/// A WebM file holding the packets as `SimpleBlock`s, laid out as a browser's
/// `MediaRecorder` writes it: the segment and the clusters have an unknown size, and
/// nothing but the `OpusHead` pre-skip (and `CodecDelay`) says what to drop at the start.
pub fn webm_opus(opus: &OpusPackets) -> Vec<u8> {
    let mut file = element(
        0x1A45_DFA3,
        &[
            uint(0x4286, 1),
            uint(0x42F7, 1),
            uint(0x42F2, 4),
            uint(0x42F3, 8),
            element(0x4282, &[b"webm".to_vec()]),
            uint(0x4287, 4),
            uint(0x4285, 2),
        ],
    );
    // Segment, unknown size.
    file.extend_from_slice(&[0x18, 0x53, 0x80, 0x67]);
    file.extend_from_slice(&UNKNOWN_SIZE);
    file.extend(element(
        0x1549_A966,
        &[
            uint(0x2A_D7B1, 1_000_000),
            element(0x4D80, &[b"hailuo-free-api tests".to_vec()]),
            element(0x5741, &[b"hailuo-free-api tests".to_vec()]),
        ],
    ));
    let audio = element(
        0xE1,
        &[
            element(0xB5, &[48_000.0_f64.to_be_bytes().to_vec()]),
            uint(0x9F, u64::from(opus.channels)),
        ],
    );
    let track = element(
        0xAE,
        &[
            uint(0xD7, 1),
            uint(0x73C5, 1),
            uint(0x83, 2),
            element(0x86, &[b"A_OPUS".to_vec()]),
            element(0x63A2, &[opus_head(opus.channels, opus.input_rate)]),
            uint(0x56AA, u64::from(PRE_SKIP) * 1_000_000_000 / 48_000),
            uint(0x56BB, 80_000_000),
            audio,
        ],
    );
    file.extend(element(0x1654_AE6B, &[track]));
    // Clusters of 5 s (250 packets), unknown size, timestamps in ms.
    for (c, cluster) in opus.packets.chunks(250).enumerate() {
        file.extend_from_slice(&[0x1F, 0x43, 0xB6, 0x75]);
        file.extend_from_slice(&UNKNOWN_SIZE);
        file.extend(uint(0xE7, c as u64 * 5_000));
        for (i, packet) in cluster.iter().enumerate() {
            let mut block = vec![0x81];
            block.extend_from_slice(&(i as i16 * 20).to_be_bytes());
            block.push(0x80);
            block.extend_from_slice(packet);
            file.extend(element(0xA3, &[block]));
        }
    }
    file
}

const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// An EBML element: its ID, an 8-byte size and its children (or data) one after another.
fn element(id: u32, children: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = children.concat();
    let mut out: Vec<u8> = id.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
    out.push(0x01);
    out.extend_from_slice(&(body.len() as u64).to_be_bytes()[1..]);
    out.extend(body);
    out
}

/// An EBML unsigned integer element, in as few bytes as it needs.
fn uint(id: u32, value: u64) -> Vec<u8> {
    let bytes: Vec<u8> = value.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
    element(id, &[if bytes.is_empty() { vec![0] } else { bytes }])
}
