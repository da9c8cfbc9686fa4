//! A refusal is answered with the status of whoever is at fault: what is wrong with the
//! request is a 4xx naming it, what is wrong with the account a 401 or 429, and only what is
//! wrong with the upstream a 5xx. Each refusal the adapters read is played by the simulator
//! and checked through HTTP, on every dialect that has the call.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hailuo_free_api::config::Dialect;
use hailuo_sim::{Fault, Refusal};
use serde_json::{Value, json};

use crate::audio_fixtures::{sine, wav};
use crate::file_server::TINY_PDF;
use crate::helpers::*;

/// A conversation id of the upstream's shape that neither the gateway nor the upstream made.
const NEVER_MADE: &str = "243699999999999999";

fn continuing(conversation: &str, stream: bool) -> Value {
    json!({
        "conversation_id": conversation,
        "stream": stream,
        "messages": [{"role": "user", "content": "and then?"}]
    })
}

/// A chat attaching a small PDF as a data URL.
fn with_a_document() -> Value {
    let url = format!("data:application/pdf;base64,{}", STANDARD.encode(TINY_PDF));
    json!({"messages": [{"role": "user", "content": [
        {"type": "file", "file_url": {"url": url}},
        {"type": "text", "text": "Summarise this."}
    ]}]})
}

on_every_dialect! {
    async fn an_unknown_conversation_is_a_404_asked_upstream_once(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        for stream in [false, true] {
            let error = assert_openai_error(app.chat("token-a,token-b", &continuing(NEVER_MADE, stream)).await, 404).await;
            assert_eq!(error["code"], "conversation_not_found", "{error}");
            assert_eq!(error["param"], "conversation_id", "{error}");
            assert_eq!(error["type"], "invalid_request_error", "{error}");
        }
        // Each was asked once, on one account: a client's mistake is not retried elsewhere.
        let chats = app.sim.conversations().chats();
        assert_eq!(chats.len(), 2, "{chats:?}");
        assert!(chats.iter().all(|chat| chat.requested_chat_id == NEVER_MADE));
        app.assert_protocol_clean();
        Ok(())
    }

    async fn content_the_upstream_filters_is_a_400_asked_once(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        app.sim.faults().inject(Fault::ContentFiltered { after_events: 0 });
        let error = assert_openai_error(app.chat("token-a,token-b", &ask("something bad")).await, 400).await;
        assert_eq!(error["code"], "content_filtered", "{error}");
        assert_eq!(error["param"], "messages", "{error}");
        assert!(error["message"].as_str().is_some_and(|m| m.contains("内容涉及敏感信息")), "{error}");
        assert_eq!(app.sim.conversations().chats().len(), 1, "not retried on the other token");
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_prompt_the_upstream_finds_too_long_is_a_400_context_length_exceeded(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        app.sim.faults().refuse_next(Refusal::TextTooLong);
        let error = assert_openai_error(app.chat("token-a,token-b", &ask("a very long prompt")).await, 400).await;
        assert_eq!(error["code"], "context_length_exceeded", "{error}");
        assert_eq!(error["param"], "messages", "{error}");
        assert!(error["message"].as_str().is_some_and(|m| m.contains("输入内容过长")), "{error}");
        assert_eq!(app.sim.conversations().chats().len(), 1, "not retried on the other token");
        // The account was not to blame: it answers the next one.
        app.chat_ok("token-a,token-b", &ask("a short one")).await;
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_rate_limited_account_gives_way_to_another_token(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        app.sim.faults().refuse_next(Refusal::RateLimited);
        app.chat_ok("token-a,token-b", &ask("hi")).await;
        let chats = app.sim.conversations().chats();
        assert_eq!(chats.len(), 2, "{chats:?}");
        assert_ne!(chats[0].token, chats[1].token, "the second try went to the other token");
        app.assert_protocol_clean();
        Ok(())
    }

    async fn accounts_all_rate_limited_are_a_429_with_retry_after_and_do_not_rest(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.accounts.cooldown_after = 1).await;
        app.sim.faults().refuse_next(Refusal::RateLimited);
        let response = app.chat("token-a", &ask("hi")).await;
        assert_eq!(response.headers()["retry-after"], "30");
        let error = assert_openai_error(response, 429).await;
        assert_eq!(error["code"], "account_rate_limited", "{error}");
        assert_eq!(error["type"], "rate_limit_error", "{error}");
        // Not a refusal of the token: it is tried again at once, and answers.
        app.chat_ok("token-a", &ask("hi again")).await;
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_file_type_the_upstream_does_not_take_is_a_400_and_sends_no_chat(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        app.sim.faults().refuse_next(Refusal::FileTypeRefused);
        let error = assert_openai_error(app.chat("token-a,token-b", &with_a_document()).await, 400).await;
        assert_eq!(error["code"], "unsupported_file_type", "{error}");
        assert_eq!(error["param"], "messages", "{error}");
        assert!(app.sim.conversations().chats().is_empty());
        assert_eq!(
            app.sim.oss().policy_requests("token-a") + app.sim.oss().policy_requests("token-b"),
            1,
            "not retried on the other token"
        );
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_file_too_large_for_the_upstream_is_a_413(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        app.sim.faults().refuse_next(Refusal::FileTooLarge);
        let error = assert_openai_error(app.chat("token-a", &with_a_document()).await, 413).await;
        assert_eq!(error["code"], "attachment_too_large", "{error}");
        assert!(error["message"].as_str().is_some_and(|m| m.contains("文件过大")), "{error}");
        assert!(app.sim.conversations().chats().is_empty());
        app.assert_protocol_clean();
        Ok(())
    }

    async fn a_profile_the_upstream_no_longer_takes_is_a_502_not_a_401_for_every_token(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.upstream.profile.salt = "not-the-salt".into()).await;
        let error = assert_openai_error(app.chat("token-a,token-b", &ask("hi")).await, 502).await;
        assert_eq!(error["code"], "upstream_refused", "{error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains("签名错误") && message.contains("upstream.profile"), "{error}");
        // Refused once: the other token was not tried as if the first were dead.
        assert_eq!(app.sim.violations().len(), 1, "{:?}", app.sim.violations());
        Ok(())
    }
}

async fn speak(app: &TestApp, tokens: &str, voice: &str) -> reqwest::Response {
    app.speech(tokens, &json!({"model": "tts-1", "input": "你好", "voice": voice}))
        .await
}

async fn transcribe(app: &TestApp, tokens: &str) -> reqwest::Response {
    let audio = wav(&sine(0.6, 16_000, 1, 440.0, 0.5), 16_000, 1);
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(audio).file_name("a.wav"))
        .text("model", "whisper-1");
    app.client
        .post(app.url("/v1/audio/transcriptions"))
        .bearer_auth(tokens)
        .multipart(form)
        .send()
        .await
        .expect("request sent")
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no speech; its 400 is tested in agent.rs")
    async fn a_voice_the_upstream_does_not_know_is_a_400_naming_it(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, quick_speech_polls).await;
        app.sim.faults().refuse_next(Refusal::UnknownVoice);
        let error = assert_openai_error(speak(&app, "token-a,token-b", "alloy").await, 400).await;
        assert_eq!(error["code"], "unknown_voice", "{error}");
        assert_eq!(error["param"], "voice", "{error}");
        let message = error["message"].as_str().unwrap_or_default();
        assert!(message.contains("male-botong") && message.contains("音色不存在"), "{error}");
        assert_eq!(app.sim.conversations().chats().len(), 1, "not retried on the other token");
        app.assert_protocol_clean();
        Ok(())
    }

    not_on_agent("minimax-agent has no speech; its 400 is tested in agent.rs")
    async fn a_text_to_speak_the_upstream_filters_or_finds_too_long_is_a_400_about_input(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, quick_speech_polls).await;
        app.sim.faults().inject(Fault::ContentFiltered { after_events: 0 });
        let filtered = assert_openai_error(speak(&app, "token-a", "alloy").await, 400).await;
        assert_eq!(filtered["code"], "content_filtered", "{filtered}");
        assert_eq!(filtered["param"], "input", "{filtered}");
        app.sim.faults().refuse_next(Refusal::TextTooLong);
        let long = assert_openai_error(speak(&app, "token-a", "alloy").await, 400).await;
        assert_eq!(long["code"], "input_too_long", "{long}");
        assert_eq!(long["param"], "input", "{long}");
        app.assert_protocol_clean();
        Ok(())
    }

    not_on_agent("minimax-agent has no transcription; its 400 is tested in agent.rs")
    async fn audio_the_upstream_cannot_use_is_a_400_and_audio_too_long_for_it_a_413(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        app.sim.faults().refuse_next(Refusal::AudioRefused);
        let refused = assert_openai_error(transcribe(&app, "token-a,token-b").await, 400).await;
        assert_eq!(refused["code"], "invalid_audio", "{refused}");
        assert_eq!(refused["param"], "file", "{refused}");
        assert!(refused["message"].as_str().is_some_and(|m| m.contains("音频格式错误")), "{refused}");
        app.sim.faults().refuse_next(Refusal::AudioTooLong);
        let long = assert_openai_error(transcribe(&app, "token-a,token-b").await, 413).await;
        assert_eq!(long["code"], "audio_too_long", "{long}");
        // Neither was retried on the other token; the next upload is heard.
        let heard = transcribe(&app, "token-a,token-b").await;
        assert_eq!(heard.status(), 200);
        assert_eq!(app.sim.transcription().uploads().len(), 1);
        app.assert_protocol_clean();
        Ok(())
    }
}
