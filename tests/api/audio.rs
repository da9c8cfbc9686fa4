//! `/v1/audio/speech` and `/v1/audio/transcriptions` through the server and the simulator, on
//! the two dialects that have them.

use std::time::Duration;

use hailuo_free_api::config::{Dialect, Settings};
use hailuo_sim::Simulator;
use serde_json::{Value, json};

use crate::audio_fixtures::{close, decoded_duration, ogg, sine, wav};
use crate::helpers::*;

/// Quick polls (the simulator flags polls closer than 100 ms) and one pending poll.
fn audio_settings(settings: &mut Settings) {
    quick_speech_polls(settings);
    settings.session.idle_ttl = Duration::from_secs(600);
}

async fn spawn_audio_app_on(dialect: Dialect) -> TestApp {
    let app = spawn_app_on_with(dialect, audio_settings).await;
    app.sim.speech().set_pending_polls(1);
    app
}

async fn speech_ok(app: &TestApp, token: &str, body: &Value) -> (String, Vec<u8>) {
    let response = app.speech(token, body).await;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    let bytes = response.bytes().await.expect("a body").to_vec();
    assert_eq!(status, 200, "speech failed: {}", String::from_utf8_lossy(&bytes));
    (content_type, bytes)
}

const TOLERANCE: Duration = Duration::from_millis(120);

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn each_openai_voice_maps_to_its_hailuo_voice_on_both_models(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        let table = [
            ("alloy", "male-botong", "xiaomo_sft"),
            ("echo", "Podcast_girl", "Leishen2_hailuo"),
            ("fable", "boyan_new_hailuo", "Zhongli_hailuo"),
            ("onyx", "female-shaonv", "Paimeng_hailuo"),
            ("nova", "YaeMiko_hailuo", "keli_hailuo"),
            ("shimmer", "xiaoyi_mix_hailuo", "Hutao_hailuo"),
        ];
        for (voice, standard, hd) in table {
            for (model, expected) in [("tts-1", standard), ("tts-1-hd", hd)] {
                let (content_type, _) = speech_ok(
                    &app,
                    "token-a",
                    &json!({"model": model, "input": "你好", "voice": voice}),
                )
                .await;
                assert_eq!(content_type, "audio/mpeg");
                let record = app.sim.speech().requests().pop().expect("a speech");
                assert_eq!(record.timbre, expected, "{model} {voice}");
                assert_eq!(app.sim.speech().current_voice("token-a").as_deref(), Some(expected));
            }
        }
        assert!(app.sim.speech().voice_mismatches().is_empty());
        app.assert_protocol_clean();
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn a_hailuo_voice_id_is_used_as_given(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        speech_ok(
            &app,
            "token-a",
            &json!({"model": "tts-1", "input": "相声", "voice": "Guodegang_hailuo"}),
        )
        .await;
        assert_eq!(
            app.sim.speech().requests().pop().expect("a speech").timbre,
            "Guodegang_hailuo"
        );
        speech_ok(
            &app,
            "token-a",
            &json!({"model": "whatever", "input": "克隆", "voice": "puv_123456"}),
        )
        .await;
        assert_eq!(
            app.sim.speech().requests().pop().expect("a speech").timbre,
            "puv_123456"
        );
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn replaced_voices_take_the_place_of_the_standard_ones(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| {
            audio_settings(s);
            // What REPLACE_AUDIO_MODEL="voice-a,,voice-c" does (the config test covers the variable).
            s.audio.replace_voices("voice-a,,voice-c");
        })
        .await;
        app.sim.speech().set_pending_polls(1);
        for (voice, expected) in [("alloy", "voice-a"), ("echo", "Podcast_girl"), ("fable", "voice-c")] {
            speech_ok(&app, "token-a", &json!({"input": "hi", "voice": voice})).await;
            assert_eq!(app.sim.speech().requests().pop().expect("a speech").timbre, expected);
        }
        speech_ok(
            &app,
            "token-a",
            &json!({"model": "tts-1-hd", "input": "hi", "voice": "alloy"}),
        )
        .await;
        assert_eq!(
            app.sim.speech().requests().pop().expect("a speech").timbre,
            "xiaomo_sft"
        );
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn every_response_format_carries_the_whole_speech(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        let input = "今天天气真好，我们一起去公园散步，然后回家吃饭。";
        for format in ["mp3", "wav", "pcm", "flac"] {
            let body = json!({"model": "tts-1", "input": input, "voice": "alloy", "response_format": format});
            let (content_type, bytes) = speech_ok(&app, "token-a", &body).await;
            let record = app.sim.speech().requests().pop().expect("a speech");
            let expected = Simulator::speech_duration_for(&record.text);
            let duration = match format {
                "mp3" => {
                    assert_eq!(content_type, "audio/mpeg");
                    // The upstream's parts joined: the server's decoder reads across the joins.
                    hailuo_free_api::outbound::audio::decode(&bytes, Some("mp3"))?.duration
                }
                "wav" => {
                    assert_eq!(content_type, "audio/wav");
                    let reader = hound::WavReader::new(std::io::Cursor::new(&bytes))?;
                    assert_eq!(reader.spec().bits_per_sample, 16);
                    Duration::from_secs_f64(f64::from(reader.duration()) / f64::from(reader.spec().sample_rate))
                }
                "pcm" => {
                    assert_eq!(content_type, "audio/pcm");
                    // 16-bit mono at 24 kHz.
                    Duration::from_secs_f64(bytes.len() as f64 / 48_000.0)
                }
                _ => {
                    assert_eq!(content_type, "audio/flac");
                    assert_eq!(&bytes[..4], b"fLaC");
                    decoded_duration(&bytes, "flac")
                }
            };
            assert!(
                close(duration, expected, TOLERANCE),
                "{format}: {duration:?} vs {expected:?}"
            );
        }
        app.assert_protocol_clean();
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn speed_changes_the_duration(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        let input = "一二三四五六七八九十，十九八七六五四三二一。";
        let (_, bytes) = speech_ok(
            &app,
            "token-a",
            &json!({"input": input, "voice": "alloy", "speed": 2.0}),
        )
        .await;
        let expected = Simulator::speech_duration_for(&app.sim.speech().requests().pop().expect("a speech").text) / 2;
        let duration = hailuo_free_api::outbound::audio::decode(&bytes, Some("mp3"))?.duration;
        assert!(close(duration, expected, TOLERANCE), "{duration:?} vs {expected:?}");
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn bad_speech_requests_are_400s(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        for body in [
            json!({"input": "", "voice": "alloy"}),
            json!({"input": "x".repeat(4_097), "voice": "alloy"}),
            json!({"input": "hi", "voice": "alloy", "speed": 5.0}),
            json!({"input": "hi", "voice": "alloy", "speed": 0.1}),
            json!({"input": "hi"}),
            json!({"input": 42, "voice": "alloy"}),
        ] {
            assert_openai_error(app.speech("token-a", &body).await, 400).await;
        }
        let error = assert_openai_error(
            app.speech(
                "token-a",
                &json!({"input": "hi", "voice": "alloy", "response_format": "opus"}),
            )
            .await,
            400,
        )
        .await;
        assert!(
            error["message"]
                .as_str()
                .expect("a message")
                .contains("mp3, wav, pcm, flac")
        );
        assert!(app.sim.conversations().chats().is_empty());
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn concurrent_speeches_on_one_account_keep_their_voices(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        let voices = ["alloy", "echo", "fable", "nova"];
        let bodies: Vec<Value> = voices
            .iter()
            .map(|voice| json!({"input": format!("我是{voice}的声音"), "voice": voice}))
            .collect();
        let speeches = bodies.iter().map(|body| speech_ok(&app, "token-solo", body));
        futures::future::join_all(speeches).await;
        assert!(
            app.sim.speech().voice_mismatches().is_empty(),
            "{:?}",
            app.sim.speech().voice_mismatches()
        );
        let mut timbres: Vec<String> = app.sim.speech().requests().into_iter().map(|r| r.timbre).collect();
        timbres.sort();
        assert_eq!(
            timbres,
            vec!["Podcast_girl", "YaeMiko_hailuo", "boyan_new_hailuo", "male-botong"]
        );
        app.assert_protocol_clean();
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn the_conversation_spoken_from_is_deleted(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        speech_ok(&app, "token-a", &json!({"input": "再见", "voice": "alloy"})).await;
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(3)).await);
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn audio_that_never_becomes_ready_is_a_504(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| {
            audio_settings(s);
            s.audio.tts_timeout = Duration::from_secs(1);
        })
        .await;
        app.sim.speech().never_ready();
        let error = assert_openai_error(
            app.speech("token-a", &json!({"input": "hi", "voice": "alloy"})).await,
            504,
        )
        .await;
        assert_eq!(error["type"], "timeout_error");
        assert!(app.all_conversations_deleted("token-a", Duration::from_secs(3)).await);
        Ok(())
    }
}

async fn transcribe(app: &TestApp, bytes: Vec<u8>, file_name: &str, format: Option<&str>) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes).file_name(file_name.to_owned()),
        )
        .text("model", "whisper-1");
    if let Some(format) = format {
        form = form.text("response_format", format.to_owned());
    }
    app.client
        .post(app.url("/v1/audio/transcriptions"))
        .bearer_auth("token-a")
        .multipart(form)
        .send()
        .await
        .expect("request sent")
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn wav_flac_ogg_and_mp3_are_transcribed(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        let tone = sine(1.5, 16_000, 1, 440.0, 0.5);
        let stereo = sine(1.5, 48_000, 2, 330.0, 0.5);
        let inputs = [
            ("speech.wav", wav(&tone, 16_000, 1)),
            ("speech.ogg", ogg(&stereo, 48_000, 2)),
            ("speech.flac", crate::audio_fixtures::flac(&tone, 16_000, 1)),
            ("speech.mp3", crate::audio_fixtures::mp3(&stereo, 48_000, 2)),
        ];
        for (name, bytes) in inputs {
            assert!(app.upstream_idle().await);
            let sent = bytes.len();
            let response = transcribe(&app, bytes, name, None).await;
            let status = response.status();
            let body_text = response.text().await?;
            assert_eq!(
                status,
                200,
                "{name}: {body_text}; upstream saw {:#?}",
                app.sim.violations()
            );
            let body: Value = serde_json::from_str(&body_text)?;
            let upload = app.sim.transcription().uploads().pop().expect("an upload");
            assert!(
                close(upload.duration, Duration::from_millis(1_500), TOLERANCE),
                "{name}: {:?}",
                upload.duration
            );
            assert_eq!(
                body,
                json!({"text": Simulator::transcript_for(upload.duration)}),
                "{name}"
            );
            if name.ends_with(".mp3") {
                assert_eq!(upload.bytes_len, sent, "an MP3 passes as it is");
            } else {
                assert_eq!(
                    (upload.sample_rate, upload.channels),
                    (44_100, 2),
                    "{name}: 44.1 kHz stereo"
                );
            }
        }
        app.assert_protocol_clean();
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn webm_ogg_opus_and_m4a_uploads_are_transcribed(dialect: Dialect) -> TestResult {
        use crate::audio_fixtures::{aac, opus};
        let app = spawn_audio_app_on(dialect).await;
        // What a browser's MediaRecorder uploads: WebM/Opus, 48 kHz mono.
        let recorded = opus::encode(&sine(1.5, 48_000, 1, 440.0, 0.5), 48_000, 1);
        // WebM does not say how much of the last packet is padding: only the pre-skip goes.
        let webm_frames = recorded.decoded_frames() - u64::from(opus::PRE_SKIP);
        let memo = opus::encode(&sine(2.0, 48_000, 2, 330.0, 0.5), 48_000, 2);
        let voice = opus::encode(&sine(1.0, 16_000, 1, 440.0, 0.5), 16_000, 1);
        // A phone's voice memo: AAC in M4A (its length includes the encoder's priming).
        let m4a = aac::m4a(&sine(1.5, 44_100, 1, 440.0, 0.5), 44_100, 1);
        let inputs = [
            ("recording.webm", opus::webm_opus(&recorded), webm_frames, 48_000),
            ("memo.opus", opus::ogg_opus(&memo), memo.frames_48k, 48_000),
            ("voice.ogg", opus::ogg_opus(&voice), voice.frames_48k, 48_000),
            ("memo.m4a", m4a.bytes.clone(), m4a.frames, m4a.rate),
        ];
        for (name, bytes, frames, rate) in inputs {
            let expected = Duration::from_secs_f64(frames as f64 / f64::from(rate));
            assert!(app.upstream_idle().await);
            let response = transcribe(&app, bytes, name, None).await;
            let status = response.status();
            let body_text = response.text().await?;
            assert_eq!(
                status,
                200,
                "{name}: {body_text}; upstream saw {:#?}",
                app.sim.violations()
            );
            let body: Value = serde_json::from_str(&body_text)?;
            let upload = app.sim.transcription().uploads().pop().expect("an upload");
            assert!(
                close(upload.duration, expected, TOLERANCE),
                "{name}: {:?}, expected {expected:?}",
                upload.duration
            );
            assert_eq!(
                (upload.sample_rate, upload.channels),
                (44_100, 2),
                "{name}: 44.1 kHz stereo MP3"
            );
            assert_eq!(
                body,
                json!({"text": Simulator::transcript_for(upload.duration)}),
                "{name}"
            );
        }
        app.assert_protocol_clean();
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn each_transcription_format_is_answered(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        let audio = wav(&sine(2.0, 16_000, 1, 440.0, 0.5), 16_000, 1);
        let text_response = transcribe(&app, audio.clone(), "a.wav", Some("text")).await;
        assert!(
            text_response.headers()["content-type"]
                .to_str()?
                .starts_with("text/plain")
        );
        let text = text_response.text().await?;
        let upload = app.sim.transcription().uploads().pop().expect("an upload");
        assert_eq!(text, Simulator::transcript_for(upload.duration));

        assert!(app.upstream_idle().await);
        let verbose: Value = transcribe(&app, audio.clone(), "a.wav", Some("verbose_json"))
            .await
            .json()
            .await?;
        assert!(verbose["text"].is_string(), "{verbose}");
        assert_eq!(verbose["text"], text.as_str());
        let duration = verbose["duration"].as_f64().expect("a duration");
        assert!((duration - 2.0).abs() < 0.1, "{duration}");
        assert_eq!(verbose["segments"][0]["end"], verbose["duration"]);

        assert!(app.upstream_idle().await);
        let srt = transcribe(&app, audio.clone(), "a.wav", Some("srt"))
            .await
            .text()
            .await?;
        assert!(srt.starts_with("1\n00:00:00,000 --> 00:00:02,"), "{srt}");
        assert!(srt.contains(&text));
        assert!(app.upstream_idle().await);
        let vtt = transcribe(&app, audio.clone(), "a.wav", Some("vtt"))
            .await
            .text()
            .await?;
        assert!(vtt.starts_with("WEBVTT\n\n00:00:00.000 --> 00:00:02."), "{vtt}");

        assert_openai_error(transcribe(&app, audio, "a.wav", Some("docx")).await, 400).await;
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn silence_is_an_empty_transcript(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        let silence = wav(&vec![0.0; 16_000], 16_000, 1);
        let body: Value = transcribe(&app, silence, "quiet.wav", None).await.json().await?;
        assert_eq!(body, json!({"text": ""}));
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn bytes_that_are_not_audio_are_a_400(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        let error = assert_openai_error(
            transcribe(&app, b"this is not audio at all".to_vec(), "a.mp3", None).await,
            400,
        )
        .await;
        assert!(
            error["message"]
                .as_str()
                .expect("a message")
                .contains("not decodable audio"),
            "{error}"
        );
        assert_openai_error(transcribe(&app, Vec::new(), "a.wav", None).await, 400).await;
        assert!(app.sim.transcription().uploads().is_empty());
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn an_oversized_upload_is_a_413(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.audio.max_upload_bytes = 10_000).await;
        let big = wav(&sine(1.0, 16_000, 1, 440.0, 0.5), 16_000, 1);
        assert_openai_error(transcribe(&app, big, "big.wav", None).await, 413).await;
        assert!(app.sim.transcription().uploads().is_empty());
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech or transcription; its 400s are tested in agent.rs")
    async fn the_answer_comes_without_waiting_for_the_spoken_reply(dialect: Dialect) -> TestResult {
        let app = spawn_audio_app_on(dialect).await;
        let response = transcribe(&app, wav(&sine(1.0, 16_000, 1, 440.0, 0.5), 16_000, 1), "a.wav", None).await;
        assert_eq!(response.status(), 200);
        // The simulator keeps sending the app's spoken reply for seconds; we hung up on it.
        let sim = app.sim.clone();
        assert!(
            eventually(Duration::from_secs(2), || {
                let sim = sim.clone();
                async move { sim.transcription().streams_abandoned() == 1 }
            })
            .await
        );
        Ok(())
    }
}
