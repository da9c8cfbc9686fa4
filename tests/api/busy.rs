//! A busy account is waited for, not failed (protocol §12): the simulator keeps an account
//! busy a moment after each answer has ended (and after it noticed a client that hung up),
//! refusing with code 1200009 `上一条回复还未结束`; every request is still answered, in both
//! orders (finish then send, abandon then send), on one token and on several, for chat,
//! speech and transcription.

use std::time::Duration;

use hailuo_free_api::config::{Dialect, Settings};
use hailuo_sim::{BusyForm, BusyReply, Fault, SimConfig};
use serde_json::{Value, json};

use crate::audio_fixtures::{sine, wav};
use crate::helpers::*;

/// A simulator whose accounts stay busy `after_end` after each answer and `after_hangup`
/// after each hang-up it notices.
fn busy_sim(after_end: Duration, after_hangup: Duration) -> SimConfig {
    SimConfig {
        busy_after_end: after_end,
        busy_after_hangup: after_hangup,
        ..SimConfig::default()
    }
}

fn streamed(text: &str) -> Value {
    let mut body = ask(text);
    body["stream"] = json!(true);
    body
}

/// One chat, streamed or not, that must be answered whole.
async fn answered(app: &TestApp, tokens: &str, text: &str, stream: bool) {
    if stream {
        let (status, data) = app.chat_stream(tokens, &streamed(text)).await;
        assert_eq!(status, 200, "{data:?}");
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
        assert!(!data.iter().any(|event| event.contains("\"error\"")), "{data:?}");
    } else {
        let completion = app.chat_ok(tokens, &ask(text)).await;
        assert!(!content(&completion).is_empty(), "{completion}");
    }
}

/// Starts a slow streamed answer on `tokens`, reads its first words and hangs up.
async fn abandon(app: &TestApp, tokens: &str) {
    app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(30)));
    let response = app
        .chat(tokens, &streamed("a slow answer nobody reads to the end"))
        .await;
    assert_eq!(response.status(), 200);
    let mut bytes = Box::pin(response.bytes_stream());
    read_until_first_words(&mut bytes).await;
}

#[tokio::test]
async fn chats_sent_the_moment_the_last_one_finished_on_one_token_are_all_answered() -> TestResult {
    // The window outlasts any wait the server could guess: every follow-up meets it.
    let app = spawn_app_with_sim(busy_sim(Duration::from_millis(200), Duration::ZERO), |_| {}).await;
    for round in 0..6 {
        answered(&app, "token-solo", &format!("question {round}"), round % 2 == 0).await;
    }
    assert!(
        app.sim.accounts().busy_refusals() >= 1,
        "the simulator's busy window was never met"
    );
    assert_eq!(app.sim.conversations().chats().len(), 6, "each question answered once");
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn concurrent_chats_on_several_busy_tokens_are_all_answered() -> TestResult {
    let app = spawn_app_with_sim(busy_sim(Duration::from_millis(100), Duration::ZERO), |_| {}).await;
    let requests = (0..8).map(|i| {
        let app = &app;
        async move { answered(app, "token-a,token-b", &format!("question {i}"), i % 2 == 1).await }
    });
    futures::future::join_all(requests).await;
    assert!(app.sim.accounts().busy_refusals() >= 1);
    assert_eq!(app.sim.accounts().max_concurrent_streams("token-a"), 1);
    assert_eq!(app.sim.accounts().max_concurrent_streams("token-b"), 1);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn the_account_is_held_until_the_upstream_response_has_ended() -> TestResult {
    // The response goes on 150 ms after the final event, and no window follows it: only a
    // lease freed before the response's end can meet a busy account.
    let sim = SimConfig {
        end_marker_delay: Duration::from_millis(150),
        ..busy_sim(Duration::ZERO, Duration::ZERO)
    };
    let app = spawn_app_with_sim(sim, |_| {}).await;
    for round in 0..10 {
        answered(&app, "token-solo", &format!("question {round}"), round % 2 == 1).await;
    }
    assert_eq!(app.sim.accounts().busy_refusals(), 0);
    Ok(())
}

#[tokio::test]
async fn a_chat_sent_at_once_after_a_client_hung_up_meets_no_busy_account() -> TestResult {
    let app = spawn_app_with_sim(busy_sim(Duration::ZERO, Duration::from_millis(20)), |_| {}).await;
    for stream in [false, true] {
        abandon(&app, "token-solo").await;
        answered(&app, "token-solo", "right after", stream).await;
    }
    assert_eq!(
        app.sim.accounts().busy_refusals(),
        0,
        "the account rests after a hang-up until the upstream has noticed"
    );
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn chats_sent_at_once_after_hang_ups_on_several_tokens_are_all_answered() -> TestResult {
    let app = spawn_app_with_sim(busy_sim(Duration::ZERO, Duration::from_millis(20)), |_| {}).await;
    let tokens = "token-a,token-b,token-c";
    futures::future::join_all((0..3).map(|_| abandon(&app, tokens))).await;
    let requests = (0..6).map(|i| {
        let app = &app;
        async move { answered(app, tokens, &format!("again {i}"), i % 2 == 0).await }
    });
    futures::future::join_all(requests).await;
    assert_eq!(app.sim.accounts().busy_refusals(), 0);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn without_a_rest_after_a_hang_up_the_busy_account_is_waited_for() -> TestResult {
    let app = spawn_app_with_sim(busy_sim(Duration::ZERO, Duration::from_millis(300)), |s| {
        s.accounts.hangup_rest = Duration::ZERO;
    })
    .await;
    abandon(&app, "token-solo").await;
    // Once the simulator has noticed the hang-up, its window runs.
    assert!(
        eventually(Duration::from_secs(5), || async {
            app.sim.accounts().active_streams() == 0
        })
        .await
    );
    answered(&app, "token-solo", "right after", true).await;
    assert!(
        app.sim.accounts().busy_refusals() >= 1,
        "the window was met and waited out"
    );
    Ok(())
}

#[tokio::test]
async fn an_account_busy_past_the_whole_wait_is_answered_429() -> TestResult {
    let app = spawn_app_with_sim(busy_sim(Duration::from_secs(30), Duration::ZERO), |s| {
        s.accounts.busy_wait = Duration::from_millis(600);
    })
    .await;
    answered(&app, "token-solo", "first", false).await;
    let response = app.chat("token-solo", &ask("second")).await;
    assert_eq!(
        response.headers()["retry-after"],
        "1",
        "the client is told when to come back"
    );
    let error = assert_openai_error(response, 429).await;
    assert_eq!(error["code"], "accounts_busy", "{error}");
    assert!(
        app.sim.accounts().busy_refusals() >= 2,
        "it tried again while the wait lasted"
    );
    Ok(())
}

async fn speech(app: &TestApp, tokens: &str, input: &str) -> reqwest::Response {
    app.speech(tokens, &json!({"model": "tts-1", "input": input, "voice": "alloy"}))
        .await
}

async fn speak(app: &TestApp, tokens: &str, input: &str) {
    let response = speech(app, tokens, input).await;
    let status = response.status();
    let body = response.bytes().await.expect("a body");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert!(!body.is_empty());
}

#[tokio::test]
async fn several_speeches_in_a_row_on_one_token_are_all_spoken() -> TestResult {
    // The window outlasts a whole speech: each next one meets it.
    let app = spawn_app_with_sim(busy_sim(Duration::from_millis(800), Duration::ZERO), quick_speech_polls).await;
    app.sim.speech().set_pending_polls(1);
    for round in 0..4 {
        speak(&app, "token-solo", &format!("第{round}句话")).await;
    }
    assert_eq!(app.sim.speech().requests().len(), 4);
    assert!(app.sim.accounts().busy_refusals() >= 1);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn concurrent_speeches_on_two_tokens_are_all_spoken() -> TestResult {
    let app = spawn_app_with_sim(busy_sim(Duration::from_millis(300), Duration::ZERO), quick_speech_polls).await;
    app.sim.speech().set_pending_polls(1);
    futures::future::join_all((0..4).map(|i| {
        let app = &app;
        async move { speak(app, "token-a,token-b", &format!("第{i}句话")).await }
    }))
    .await;
    assert_eq!(app.sim.speech().requests().len(), 4);
    app.assert_protocol_clean();
    Ok(())
}

async fn transcription(app: &TestApp, tokens: &str) -> reqwest::Response {
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

async fn transcribe(app: &TestApp, tokens: &str) -> Value {
    let response = transcription(app, tokens).await;
    let status = response.status();
    let body: Value = response.json().await.expect("JSON");
    assert_eq!(status, 200, "{body}");
    body
}

const SEVEN_TOKENS: &str = "token-1,token-2,token-3,token-4,token-5,token-6,token-7";

#[tokio::test]
async fn twelve_back_to_back_transcriptions_on_seven_tokens_meet_no_busy_account() -> TestResult {
    let app = spawn_app_with(transcription_rest).await;
    for _ in 0..12 {
        let body = transcribe(&app, SEVEN_TOKENS).await;
        assert!(body["text"].as_str().is_some_and(|text| !text.is_empty()), "{body}");
    }
    assert_eq!(app.sim.transcription().uploads().len(), 12);
    assert_eq!(
        app.sim.accounts().busy_refusals(),
        0,
        "each account rests after the hang-up on its spoken reply"
    );
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn transcriptions_in_a_row_on_one_token_wait_for_the_busy_account() -> TestResult {
    // No rest after the hang-up: each next transcription meets the account still busy.
    let app = spawn_app_with(|s| s.accounts.hangup_rest = Duration::ZERO).await;
    for _ in 0..4 {
        transcribe(&app, "token-solo").await;
    }
    assert_eq!(app.sim.transcription().uploads().len(), 4);
    assert!(app.sim.accounts().busy_refusals() >= 1);
    Ok(())
}

#[tokio::test]
async fn a_chat_right_after_a_transcription_on_the_same_token_is_answered() -> TestResult {
    let app = spawn_app_with(transcription_rest).await;
    transcribe(&app, "token-solo").await;
    answered(&app, "token-solo", "and now a question", true).await;
    assert_eq!(app.sim.accounts().busy_refusals(), 0);
    Ok(())
}

/// The simulator notices a hang-up on a transcription's spoken reply at its next write, one or
/// two 200 ms reply gaps later (about 400 ms): more than the default rest leaves on a loaded
/// machine, so the tests that count the refusals avoided give the account a rest with room.
fn transcription_rest(settings: &mut Settings) {
    settings.accounts.hangup_rest = Duration::from_secs(1);
}

/// The simulator as its binary starts by default: the busy windows `hailuo-sim` serves with.
fn as_the_binary_serves() -> SimConfig {
    SimConfig::default()
}

#[tokio::test]
async fn twelve_back_to_back_transcriptions_on_seven_tokens_with_the_default_settings_are_all_answered() -> TestResult {
    let app = spawn_app_with_sim(as_the_binary_serves(), |_| {}).await;
    for _ in 0..12 {
        let body = transcribe(&app, SEVEN_TOKENS).await;
        assert!(body["text"].as_str().is_some_and(|text| !text.is_empty()), "{body}");
    }
    assert_eq!(app.sim.transcription().uploads().len(), 12);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn twelve_concurrent_transcriptions_on_seven_tokens_with_the_default_settings_are_all_answered() -> TestResult {
    let app = spawn_app_with_sim(as_the_binary_serves(), |_| {}).await;
    futures::future::join_all((0..12).map(|_| transcribe(&app, SEVEN_TOKENS))).await;
    assert_eq!(app.sim.transcription().uploads().len(), 12);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn back_to_back_speeches_and_transcriptions_on_two_tokens_with_the_default_settings_are_all_answered()
-> TestResult {
    let app = spawn_app_with_sim(as_the_binary_serves(), quick_speech_polls).await;
    app.sim.speech().set_pending_polls(1);
    for round in 0..4 {
        speak(&app, "token-a,token-b", &format!("第{round}句话")).await;
        transcribe(&app, "token-a,token-b").await;
    }
    assert_eq!(app.sim.speech().requests().len(), 4);
    assert_eq!(app.sim.transcription().uploads().len(), 4);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn a_transcription_or_a_speech_whose_account_stays_busy_is_a_429_with_retry_after_not_a_502() -> TestResult {
    let app = spawn_app_with_sim(busy_sim(Duration::from_secs(30), Duration::from_secs(30)), |s| {
        quick_speech_polls(s);
        s.accounts.busy_wait = Duration::from_millis(600);
        s.accounts.hangup_rest = Duration::ZERO;
    })
    .await;
    app.sim.speech().set_pending_polls(1);
    // A transcription leaves its account busy (the hang-up's window), then a speech does (its
    // chat's window): what follows on the same account meets it past the whole wait.
    transcribe(&app, "token-a").await;
    speak(&app, "token-b", "第一句话").await;
    for response in [
        speech(&app, "token-a", "第二句话").await,
        transcription(&app, "token-b").await,
    ] {
        assert_eq!(response.headers()["retry-after"], "1");
        let error = assert_openai_error(response, 429).await;
        assert_eq!(error["code"], "accounts_busy", "{error}");
    }
    assert!(app.sim.accounts().busy_refusals() >= 2);
    Ok(())
}

/// Every form a busy refusal takes, each with one of the messages public clients have seen,
/// under a code the gateway does not know: the text alone says the account is busy.
fn busy_replies() -> Vec<BusyReply> {
    [
        (BusyForm::Event, "当前还有其他请求正在进行，请稍后再试"),
        (BusyForm::Envelope, "上一条回复还未结束"),
        (BusyForm::TooManyRequests, "当前账号有正在进行的对话"),
        (BusyForm::ServerError, "chat is running"),
    ]
    .into_iter()
    .map(|(form, message)| BusyReply {
        form,
        code: 42,
        message: message.to_owned(),
    })
    .collect()
}

on_every_dialect! {
    async fn a_busy_refusal_in_any_form_is_waited_for_and_never_a_502(dialect: Dialect) -> TestResult {
        // The agent's answer is complete once it has settled, some polls after it was
        // generated: its window must outlast that to be met.
        let window = match dialect {
            Dialect::MinimaxAgent => Duration::from_secs(1),
            Dialect::Hailuoai | Dialect::HailuoIntl => Duration::from_millis(200),
        };
        for reply in busy_replies() {
            let sim = SimConfig {
                busy_reply: Some(reply.clone()),
                ..SimConfig {
                    dialect,
                    ..busy_sim(window, Duration::ZERO)
                }
            };
            let app = spawn_app_with_sim(sim, |s| s.upstream.retries = 0).await;
            for round in 0..3 {
                answered(&app, "token-solo", &format!("question {round}"), round == 1).await;
            }
            assert!(app.sim.accounts().busy_refusals() >= 1, "{reply:?} never met");
            app.assert_protocol_clean();
        }
        Ok(())
    }
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no voice messages")
    async fn a_busy_voice_message_in_any_form_is_waited_for_and_never_a_502(dialect: Dialect) -> TestResult {
        for reply in busy_replies() {
            let sim = SimConfig {
                busy_reply: Some(reply.clone()),
                ..SimConfig {
                    dialect,
                    ..busy_sim(Duration::ZERO, Duration::from_millis(300))
                }
            };
            let app = spawn_app_with_sim(sim, |s| {
                s.upstream.retries = 0;
                s.accounts.hangup_rest = Duration::ZERO;
            })
            .await;
            for _ in 0..3 {
                transcribe(&app, "token-solo").await;
            }
            assert!(app.sim.accounts().busy_refusals() >= 1, "{reply:?} never met");
            app.assert_protocol_clean();
        }
        Ok(())
    }
}
