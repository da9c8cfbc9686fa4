//! Speech and transcription (protocol §8, §9) against a hand-signed client: a clean client
//! leaves no violation; a wrong voice, hasty polling, a missing `Referer`, a non-MP3 upload or
//! a signature over the wrong bytes does.

#![allow(clippy::unwrap_used, clippy::panic)]

use std::io::Cursor;
use std::time::Duration;

use serde_json::{Value, json};

use super::audio::{SPEECH_SAMPLE_RATE, analyse_mp3, encode_mp3, sine_tone};
use super::protocol_tests::{Browser, events, registered, until_free};
use super::verify::{VoiceSignedFields, voice_signature};
use super::*;

/// A pause between polls that the simulator accepts.
const POLITE_PAUSE: Duration = Duration::from_millis(120);

/// Chats `prompt` on a new conversation; the assistant message id.
async fn answered_message(browser: &Browser, prompt: &str) -> String {
    let body = browser.chat(prompt, "0").await;
    events(&body)
        .iter()
        .find(|event| event["data"]["messageResult"]["isEnd"] == 0)
        .and_then(|event| event["data"]["messageResult"]["msgID"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no final event in {body}"))
}

async fn select_voice(browser: &Browser, voice: &str) -> Value {
    let body = json!({"robotID": "1", "config": {"robotVoiceID": voice}}).to_string();
    browser
        .json(
            reqwest::Method::POST,
            "/v1/api/chat/update_robot_custom_config",
            Some(body),
        )
        .await
}

async fn poll_tts(browser: &Browser, msg_id: &str, timbre: &str) -> Value {
    let path = format!("/v1/api/chat/msg_tts?msgID={msg_id}&timbre={timbre}");
    browser.json(reqwest::Method::GET, &path, None).await
}

/// Polls politely until the URLs come.
async fn tts_urls(browser: &Browser, msg_id: &str, timbre: &str) -> Vec<String> {
    for _ in 0..10 {
        let answer = poll_tts(browser, msg_id, timbre).await;
        assert_eq!(answer["statusInfo"]["code"], 0, "{answer}");
        if answer["data"]["requestStatus"] == 2 {
            let urls = answer["data"]["result"].as_array().unwrap();
            return urls.iter().map(|url| url.as_str().unwrap().to_owned()).collect();
        }
        tokio::time::sleep(POLITE_PAUSE).await;
    }
    panic!("msg_tts never became ready");
}

async fn download(browser: &Browser, url: &str, referer: Option<&str>) -> reqwest::Response {
    let mut request = browser.http.get(url);
    if let Some(referer) = referer {
        request = request.header("Referer", referer);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn speech_is_pending_then_served_as_mp3s_as_long_as_the_answer() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-s").await;
    let prompt = "请把这一整句话原原本本地读出来，谢谢你";
    let msg_id = answered_message(&browser, prompt).await;
    let answer = Simulator::answer_for(prompt);
    assert!(answer.chars().count() > 20);

    assert_eq!(select_voice(&browser, "female-shaonv").await["statusInfo"]["code"], 0);
    assert_eq!(sim.speech().current_voice("token-s").as_deref(), Some("female-shaonv"));

    for _ in 0..2 {
        let pending = poll_tts(&browser, &msg_id, "female-shaonv").await;
        assert_eq!(pending["data"]["requestStatus"], 1, "{pending}");
        assert_eq!(pending["data"]["result"], json!([]));
        tokio::time::sleep(POLITE_PAUSE).await;
    }
    let urls = tts_urls(&browser, &msg_id, "female-shaonv").await;
    assert_eq!(urls.len(), 2, "a long answer is spoken in two files: {urls:?}");
    assert_eq!(sim.speech().polls(&msg_id), 3);

    let referer = format!("{}/", browser.profile.origin);
    let mut total = Duration::ZERO;
    for url in &urls {
        let response = download(&browser, url, Some(&referer)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "audio/mpeg");
        let summary = analyse_mp3(response.bytes().await.unwrap().to_vec()).unwrap();
        assert_eq!((summary.channels, summary.sample_rate), (1, SPEECH_SAMPLE_RATE));
        total += summary.duration;
    }
    let expected = Simulator::speech_duration_for(&answer);
    assert!(
        total.abs_diff(expected) < Duration::from_millis(60),
        "{total:?} vs {expected:?}"
    );
    assert_eq!(
        sim.speech().requests(),
        vec![TtsRecord {
            token: "token-s".to_owned(),
            msg_id: msg_id.clone(),
            timbre: "female-shaonv".to_owned(),
            text: answer,
        }]
    );
    assert!(sim.speech().voice_mismatches().is_empty());
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn a_short_answer_is_one_file_and_the_cdn_wants_the_referer() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.speech().set_pending_polls(0);
    let browser = registered(&sim, "token-r").await;
    let msg_id = answered_message(&browser, "你好").await;
    select_voice(&browser, "male-botong").await;
    let urls = tts_urls(&browser, &msg_id, "male-botong").await;
    assert_eq!(urls.len(), 1);
    assert!(urls[0].starts_with(&sim.base_url()), "{urls:?}");
    let referer = format!("{}/", browser.profile.origin);
    let mp3 = download(&browser, &urls[0], Some(&referer))
        .await
        .bytes()
        .await
        .unwrap();
    let duration = analyse_mp3(mp3.to_vec()).unwrap().duration;
    let expected = Simulator::speech_duration_for(&Simulator::answer_for("你好"));
    assert!(duration.abs_diff(expected) < Duration::from_millis(60), "{duration:?}");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());

    assert_eq!(download(&browser, &urls[0], None).await.status(), 403);
    assert_eq!(sim.violations().len(), 1, "{:?}", sim.violations());
    assert!(sim.violations()[0].contains("Referer"));
}

#[tokio::test]
async fn a_timbre_other_than_the_selected_voice_is_a_voice_mismatch() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.speech().set_pending_polls(0);
    let browser = registered(&sim, "token-m").await;
    let msg_id = answered_message(&browser, "说点什么").await;
    select_voice(&browser, "male-botong").await;
    let answer = poll_tts(&browser, &msg_id, "Podcast_girl").await;
    assert_eq!(answer["data"]["requestStatus"], 2, "{answer}");
    assert_eq!(sim.speech().voice_mismatches().len(), 1);
    assert!(sim.speech().voice_mismatches()[0].contains("Podcast_girl"));
    assert_eq!(sim.violations().len(), 1, "{:?}", sim.violations());
    assert!(sim.violations()[0].contains("voice mismatch"));
}

#[tokio::test]
async fn polling_without_pause_is_flagged() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-p").await;
    let msg_id = answered_message(&browser, "快").await;
    select_voice(&browser, "male-botong").await;
    poll_tts(&browser, &msg_id, "male-botong").await;
    poll_tts(&browser, &msg_id, "male-botong").await;
    assert_eq!(sim.speech().polls(&msg_id), 2);
    assert!(
        sim.violations().iter().any(|v| v.contains("polling without pause")),
        "{:?}",
        sim.violations()
    );
}

#[tokio::test]
async fn unknown_messages_are_refused_and_never_ready_stays_pending() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-u").await;
    select_voice(&browser, "male-botong").await;
    let unknown = poll_tts(&browser, "243600000000000001", "male-botong").await;
    assert_ne!(unknown["statusInfo"]["code"], 0);
    assert_eq!(sim.violations().len(), 1, "{:?}", sim.violations());

    sim.speech().never_ready();
    let msg_id = answered_message(&browser, "等不到").await;
    for _ in 0..4 {
        let answer = poll_tts(&browser, &msg_id, "male-botong").await;
        assert_eq!(answer["data"]["requestStatus"], 1, "{answer}");
        tokio::time::sleep(POLITE_PAUSE).await;
    }

    let bad = select_voice(&browser, "").await;
    assert_ne!(bad["statusInfo"]["code"], 0);
    assert_eq!(sim.violations().len(), 2, "{:?}", sim.violations());
}

#[tokio::test]
async fn speech_after_the_conversation_was_deleted_is_a_violation() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.speech().set_pending_polls(0);
    let browser = registered(&sim, "token-d").await;
    let msg_id = answered_message(&browser, "删掉了").await;
    let chat_id = sim.conversations().chats()[0].chat_id.clone();
    select_voice(&browser, "male-botong").await;
    let path = format!("/v1/api/chat/history/{chat_id}");
    browser.json(reqwest::Method::DELETE, &path, None).await;
    let answer = poll_tts(&browser, &msg_id, "male-botong").await;
    assert_ne!(answer["statusInfo"]["code"], 0);
    assert!(sim.violations()[0].contains("deleted"), "{:?}", sim.violations());
}

#[tokio::test]
async fn forgetting_the_history_keeps_the_speech_being_polled_and_its_mp3s() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-f").await;
    let msg_id = answered_message(&browser, "记住我").await;
    select_voice(&browser, "male-botong").await;
    sim.forget_history();
    let pending = poll_tts(&browser, &msg_id, "male-botong").await;
    assert_eq!(pending["data"]["requestStatus"], 1, "{pending}");
    tokio::time::sleep(POLITE_PAUSE).await;
    sim.forget_history();
    let urls = tts_urls(&browser, &msg_id, "male-botong").await;
    assert_eq!(sim.speech().polls(&msg_id), 3, "the pending job kept its polls");
    sim.forget_history();
    let referer = format!("{}/", browser.profile.origin);
    for url in &urls {
        assert_eq!(download(&browser, url, Some(&referer)).await.status(), 200);
    }
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn forgetting_the_history_drops_the_messages_of_a_deleted_conversation() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.speech().set_pending_polls(0);
    let browser = registered(&sim, "token-g").await;
    let kept = answered_message(&browser, "留下").await;
    until_free(&sim, "token-g").await;
    let gone = answered_message(&browser, "删掉").await;
    let gone_chat = sim.conversations().chats()[1].chat_id.clone();
    select_voice(&browser, "male-botong").await;
    tts_urls(&browser, &gone, "male-botong").await;
    let path = format!("/v1/api/chat/history/{gone_chat}");
    browser.json(reqwest::Method::DELETE, &path, None).await;
    sim.forget_history();
    {
        let ledger = sim.state().ledger();
        assert!(ledger.conversations.messages.contains_key(&kept));
        assert!(!ledger.conversations.messages.contains_key(&gone));
        assert!(!ledger.speech.jobs.contains_key(&gone));
    }
    assert!(sim.conversations().chats().is_empty(), "the records are dropped");
    tts_urls(&browser, &kept, "male-botong").await;
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

/// A `phone_msg` request carrying `voice`, signed over `signed` (normally the same bytes).
async fn phone_request(browser: &Browser, voice: &[u8], signed: &[u8], file_name: &str) -> reqwest::Response {
    let unix = Browser::unix();
    let uri = browser.full_uri("/v1/api/chat/phone_msg", &unix);
    let fields = VoiceSignedFields {
        character_id: "1",
        chat_id: "0",
        voice: signed,
    };
    let yy = voice_signature(&uri, &fields, &unix, &browser.profile.salt);
    let referer = format!("{}/", browser.profile.origin);
    let part = reqwest::multipart::Part::bytes(voice.to_vec())
        .file_name(file_name.to_owned())
        .mime_str("audio/mp3")
        .unwrap();
    let form = reqwest::multipart::Form::new()
        .text("chatID", "0")
        .text("characterID", "1")
        .text("playSpeedLevel", "1")
        .part("voiceBytes", part);
    browser
        .dress(browser.http.post(format!("{}{uri}", browser.base)), &referer, &yy)
        .header("Accept", "text/event-stream")
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn phone(browser: &Browser, voice: &[u8]) -> String {
    phone_request(browser, voice, voice, "audio.mp3")
        .await
        .text()
        .await
        .unwrap()
}

fn tone_mp3(duration: Duration, amplitude_zero: bool) -> Vec<u8> {
    let samples = if amplitude_zero {
        vec![0_i16; (duration.as_secs_f64() * f64::from(SPEECH_SAMPLE_RATE)) as usize]
    } else {
        sine_tone(duration, 440.0, SPEECH_SAMPLE_RATE)
    };
    encode_mp3(&samples, SPEECH_SAMPLE_RATE).unwrap()
}

/// The SSE events of a body, with their names.
fn named_events(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter_map(|block| {
            let name = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name.to_owned(), serde_json::from_str(data).ok()?))
        })
        .collect()
}

#[tokio::test]
async fn a_one_second_tone_is_transcribed_then_the_reply_streams_for_seconds() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-v").await;
    let mp3 = tone_mp3(Duration::from_secs(1), false);
    let body = phone(&browser, &mp3).await;
    let events = named_events(&body);
    assert_eq!(events[0].0, "asr_chunk", "{body}");
    assert_eq!(events[0].1["status_code"], 0);
    let uploads = sim.transcription().uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].bytes_len, mp3.len());
    assert_eq!((uploads[0].channels, uploads[0].sample_rate), (1, SPEECH_SAMPLE_RATE));
    assert!(uploads[0].duration.abs_diff(Duration::from_secs(1)) < Duration::from_millis(60));
    assert_eq!(
        events[0].1["data"]["text"],
        Simulator::transcript_for(uploads[0].duration)
    );
    assert_eq!(events[0].1["data"]["text"], "（1.0 秒的语音）");
    assert!(events[1..].iter().all(|(name, _)| name == "audio_chunk"));
    assert!(events.len() > 10);
    assert_eq!(sim.transcription().streams_abandoned(), 0);
    assert_eq!(sim.accounts().active_streams(), 0);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn silence_and_too_short_audio_are_no_speech() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-q").await;
    for mp3 in [
        tone_mp3(Duration::from_secs(1), true),
        tone_mp3(Duration::from_millis(200), false),
    ] {
        until_free(&sim, "token-q").await;
        let events = named_events(&phone(&browser, &mp3).await);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].1["status_code"], 1_200_041);
        assert_eq!(events[0].1["err_message"], "未识别到语音");
    }
    assert_eq!(sim.transcription().uploads().len(), 2);
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
}

#[tokio::test]
async fn a_wav_upload_is_an_audio_format_error_and_a_violation() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-w").await;
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut wav, spec).unwrap();
    for sample in sine_tone(Duration::from_secs(1), 440.0, 16_000) {
        writer.write_sample(sample).unwrap();
    }
    writer.finalize().unwrap();
    let events = named_events(&phone(&browser, wav.get_ref()).await);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_ne!(events[0].1["status_code"], 0);
    assert_eq!(events[0].1["err_message"], "音频格式错误");
    assert!(sim.transcription().uploads().is_empty());
    assert_eq!(sim.violations().len(), 1, "{:?}", sim.violations());
    assert!(sim.violations()[0].contains("not MP3"));
}

#[tokio::test]
async fn the_voice_signature_covers_exactly_the_first_1024_bytes() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-x").await;
    let mp3 = tone_mp3(Duration::from_secs(1), false);
    assert!(mp3.len() > 2048);

    let mut late = mp3.clone();
    late[1500] ^= 0x01;
    let body = phone_request(&browser, &late, &mp3, "audio.mp3")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(named_events(&body)[0].0, "asr_chunk", "{body}");
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());

    let mut early = mp3.clone();
    early[500] ^= 0x01;
    let refused: Value = phone_request(&browser, &early, &mp3, "audio.mp3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(refused["statusInfo"]["code"], 1002, "{refused}");
    assert_eq!(sim.violations().len(), 1, "{:?}", sim.violations());

    let misnamed: Value = phone_request(&browser, &mp3, &mp3, "voice.mp3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(misnamed["statusInfo"]["code"], 1005, "{misnamed}");
    assert_eq!(sim.violations().len(), 2, "{:?}", sim.violations());
}

#[tokio::test]
async fn a_client_that_leaves_after_the_transcript_is_counted_as_abandoning() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-y").await;
    let mut response = phone_request(
        &browser,
        &tone_mp3(Duration::from_secs(1), false),
        &tone_mp3(Duration::from_secs(1), false),
        "audio.mp3",
    )
    .await;
    let first = response.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("asr_chunk"));
    drop(response);
    for _ in 0..40 {
        if sim.transcription().streams_abandoned() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(sim.transcription().streams_abandoned(), 1);
    assert_eq!(sim.accounts().active_streams(), 0);
}

#[tokio::test]
async fn a_voice_message_while_a_chat_streams_gets_a_busy_event() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let browser = registered(&sim, "token-z").await;
    sim.faults().inject(Fault::SlowChunks(Duration::from_millis(300)));
    let slow = browser.chat_request("慢慢说", "0").await;
    let events = named_events(&phone(&browser, &tone_mp3(Duration::from_secs(1), false)).await);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].1["status_code"], 1_200_009);
    drop(slow);
}
