//! Hostile audio sent to `/v1/audio/transcriptions`: WAV headers claiming absurd rates or
//! channel counts and an Ogg Vorbis setup declaring gigabytes of codebooks (400 before
//! anything is sized from them), and FLAC "bombs" of constant frames that hold far more
//! audio than their size (413 as soon as decoding passes the cap), each with the server's
//! memory bounded and `/ping` answering meanwhile.

use std::time::Duration;

use hailuo_sim::SimConfig;
use serde_json::Value;

use crate::audio_fixtures::wav_claiming;
use crate::server::Server;

/// How long `/ping` may take while the server refuses hostile audio.
const PING_WITHIN: Duration = Duration::from_secs(2);

/// 8 kHz frames per FLAC block: a whole number of them per file keeps every block full.
const BLOCK: usize = 32_000;

/// A FLAC file of `seconds` of 8 kHz mono silence (rounded up to whole 4-second blocks):
/// every frame is one constant subframe, so half an hour takes a few kilobytes.
fn silent_flac(seconds: usize) -> Vec<u8> {
    let blocks = (seconds * 8_000).div_ceil(BLOCK);
    let samples = vec![0i32; blocks * BLOCK];
    let mut config = flacenc::config::Encoder::default();
    config.block_size = BLOCK;
    config.multithread = false;
    let config = flacenc::error::Verify::into_verified(config).unwrap();
    let source = flacenc::source::MemSource::from_samples(&samples, 1, 16, 8_000);
    let stream = flacenc::encode_with_fixed_block_size(&config, source, BLOCK).unwrap();
    let mut sink = flacenc::bitsink::ByteSink::new();
    flacenc::component::BitRepr::write(&stream, &mut sink).unwrap();
    sink.into_inner()
}

/// Bits written least significant first, as Vorbis packs its headers.
#[derive(Default)]
struct LsbWriter {
    bytes: Vec<u8>,
    bits: usize,
}

impl LsbWriter {
    fn put(&mut self, value: u32, count: u32) -> &mut Self {
        for i in 0..count {
            if self.bits % 8 == 0 {
                self.bytes.push(0);
            }
            let last = self.bytes.len() - 1;
            self.bytes[last] |= (((value >> i) & 1) as u8) << (self.bits % 8);
            self.bits += 1;
        }
        self
    }
}

/// An Ogg Vorbis file whose setup header declares 256 codebooks of 131,072 entries x 20
/// dimensions with a type-1 lookup: 10 MB of floats each, 2.7 GB in all, from about 5 KB.
/// The rest of the setup is the smallest that parses (one floor, residue, mapping, mode).
fn vorbis_codebook_bomb() -> Vec<u8> {
    use ogg::writing::{PacketWriteEndInfo, PacketWriter};
    let mut ident = b"\x01vorbis".to_vec();
    ident.extend_from_slice(&0u32.to_le_bytes()); // version
    ident.push(1); // channels
    ident.extend_from_slice(&8_000u32.to_le_bytes());
    ident.extend_from_slice(&[0; 12]); // bitrates
    ident.extend_from_slice(&[0xB8, 1]); // block sizes 256 and 2048, framing
    let comment = b"\x03vorbis\0\0\0\0\0\0\0\0\x01".to_vec();
    let mut setup = LsbWriter::default();
    setup.put(255, 8);
    for _ in 0..256 {
        setup.put(0x56_4342, 24).put(20, 16).put(131_072, 24);
        // Ordered lengths: all 131,072 entries 17 bits long.
        setup.put(1, 1).put(16, 5).put(131_072, 18);
        // Type-1 lookup, one 1-bit multiplicand.
        setup.put(1, 4).put(0, 32).put(0, 32).put(0, 4).put(0, 1).put(0, 1);
    }
    setup.put(0, 6).put(0, 16); // time-domain transforms
    setup.put(0, 6).put(1, 16).put(0, 5).put(0, 2).put(0, 4); // a floor1 without partitions
    setup
        .put(0, 6)
        .put(0, 16)
        .put(0, 24)
        .put(0, 24)
        .put(0, 24)
        .put(0, 6)
        .put(0, 8)
        .put(0, 3)
        .put(0, 1);
    setup
        .put(0, 6)
        .put(0, 16)
        .put(0, 1)
        .put(0, 1)
        .put(0, 2)
        .put(0, 8)
        .put(0, 8)
        .put(0, 8);
    setup.put(0, 6).put(0, 1).put(0, 16).put(0, 16).put(0, 8);
    setup.put(1, 1); // framing
    let mut setup_packet = b"\x05vorbis".to_vec();
    setup_packet.extend_from_slice(&setup.bytes);
    let serial = 1;
    let mut writer = PacketWriter::new(std::io::Cursor::new(Vec::new()));
    for packet in [ident, comment, setup_packet] {
        writer
            .write_packet(packet, serial, PacketWriteEndInfo::EndPage, 0)
            .unwrap();
    }
    writer
        .write_packet(vec![0; 8], serial, PacketWriteEndInfo::EndStream, 256)
        .unwrap();
    writer.into_inner().into_inner()
}

/// Sends `bytes` as `name` for transcription; returns the status and the JSON body.
async fn transcribe(client: reqwest::Client, url: String, bytes: Vec<u8>, name: &str) -> (u16, Value) {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(name.to_owned()),
        )
        .text("model", "whisper-1");
    let response = client
        .post(url)
        .bearer_auth("some-token")
        .multipart(form)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends each upload at once, pinging the server until all are answered; returns the answers.
async fn refused_while_pinging(
    server: &mut Server,
    uploads: Vec<(Vec<u8>, &'static str)>,
    case: &str,
) -> Vec<(u16, Value)> {
    let url = server.url("/v1/audio/transcriptions");
    let tasks: Vec<_> = uploads
        .into_iter()
        .map(|(bytes, name)| tokio::spawn(transcribe(server.client.clone(), url.clone(), bytes, name)))
        .collect();
    while !tasks.iter().all(tokio::task::JoinHandle::is_finished) {
        server.assert_pings_within(PING_WITHIN, case).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.unwrap());
    }
    server.assert_pings_within(PING_WITHIN, case).await;
    server.assert_memory_bounded(case);
    answers
}

/// Checks an OpenAI-shaped refusal of `status` with `code`.
fn assert_refused(answer: &(u16, Value), status: u16, code: &str, case: &str) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{case}: {body}");
    assert_eq!(body["error"]["code"], code, "{case}: {body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{case}: {body}");
    assert_eq!(body["error"]["param"], "file", "{case}: {body}");
}

async fn a_wav_claiming(rate: u32, channels: u16, case: &str) {
    let mut server = Server::start().await;
    let wav = wav_claiming(rate, channels, 3_200);
    let answers = refused_while_pinging(&mut server, vec![(wav, "speech.wav")], case).await;
    assert_refused(&answers[0], 400, "invalid_audio", case);
    assert!(
        server.sim.transcription().uploads().is_empty(),
        "{case}: nothing reached the upstream"
    );
}

#[tokio::test]
async fn a_wav_claiming_four_gigahertz_is_refused_with_400() {
    a_wav_claiming(u32::MAX, 1, "4,294,967,295 Hz").await;
}

#[tokio::test]
async fn a_wav_claiming_fifty_megahertz_is_refused_with_400() {
    a_wav_claiming(50_000_017, 2, "50,000,017 Hz").await;
}

#[tokio::test]
async fn a_wav_claiming_zero_hertz_is_refused_with_400() {
    a_wav_claiming(0, 1, "0 Hz").await;
}

#[tokio::test]
async fn wavs_claiming_no_channels_or_two_hundred_are_refused_with_400() {
    a_wav_claiming(16_000, 0, "0 channels").await;
    a_wav_claiming(16_000, 200, "200 channels").await;
}

#[tokio::test]
async fn an_ogg_vorbis_setup_declaring_gigabytes_of_codebooks_is_refused_with_400() {
    let mut server = Server::start().await;
    let bomb = vorbis_codebook_bomb();
    assert!(bomb.len() < 8_192, "the bomb is {} bytes", bomb.len());
    let case = "Vorbis codebooks";
    let answers = refused_while_pinging(&mut server, vec![(bomb, "speech.ogg")], case).await;
    assert_refused(&answers[0], 400, "invalid_audio", case);
    let message = answers[0].1["error"]["message"].as_str().unwrap();
    assert!(message.contains("codebooks"), "{message}");
}

#[tokio::test]
async fn ten_silent_minutes_of_flac_are_refused_with_413_past_a_one_minute_cap() {
    let mut server = Server::start_with(SimConfig::default(), &[("HAILUO_AUDIO__MAX_DURATION_SECS", "60")]).await;
    let bomb = silent_flac(600);
    assert!(bomb.len() < 4_096, "the bomb is {} bytes", bomb.len());
    let answers = refused_while_pinging(&mut server, vec![(bomb, "speech.flac")], "10 minutes, 60 s cap").await;
    assert_refused(&answers[0], 413, "audio_too_long", "10 minutes, 60 s cap");
    let message = answers[0].1["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("60 seconds") && message.contains("audio.max_duration_secs"),
        "{message}"
    );
}

#[tokio::test]
async fn a_flac_just_over_thirty_minutes_is_refused_with_413_at_the_default_cap() {
    let mut server = Server::start().await;
    let bomb = silent_flac(30 * 60 + 4);
    assert!(bomb.len() < 16_384, "the bomb is {} bytes", bomb.len());
    let answers = refused_while_pinging(&mut server, vec![(bomb, "speech.flac")], "30 min 4 s, default cap").await;
    assert_refused(&answers[0], 413, "audio_too_long", "30 min 4 s, default cap");
    assert!(
        answers[0].1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1800 seconds")
    );
}

#[tokio::test]
async fn four_flac_bombs_at_once_are_refused_while_ping_keeps_answering() {
    let mut server = Server::start().await;
    let bomb = silent_flac(30 * 60 + 4);
    let uploads = (0..4).map(|_| (bomb.clone(), "speech.flac")).collect();
    let answers = refused_while_pinging(&mut server, uploads, "4 bombs at once").await;
    for answer in &answers {
        assert_refused(answer, 413, "audio_too_long", "4 bombs at once");
    }
}
