//! The `minimax-agent` dialect's own behaviour: its answer read by polling (and what that
//! costs in upstream requests), its end marker, a deletion refused while an answer is
//! generated, the account's user id from the token, and no speech or transcription.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hailuo_free_api::config::{Dialect, Settings};
use hailuo_sim::{Fault, SimConfig, Simulator};
use serde_json::{Value, json};

use crate::helpers::*;

/// A JWT-shaped token whose payload names the user `user_id` (nothing is signed).
fn jwt_of(user_id: &str) -> String {
    let payload = json!({"user": {"id": user_id}, "exp": 4_102_444_800_u64}).to_string();
    format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(payload))
}

/// The dialect's own polling settings, as a deployment has them (the tests' short settle time
/// put back).
fn embedded_polling(settings: &mut Settings) {
    let embedded = Dialect::MinimaxAgent.profile().expect("the embedded profile parses");
    settings.upstream.profile.poll = embedded.poll;
}

#[tokio::test]
async fn an_answer_at_the_simulators_pace_costs_a_handful_of_polls() -> TestResult {
    let app = spawn_app_on_with(Dialect::MinimaxAgent, embedded_polling).await;
    let text = "你好，请介绍一下你自己";
    let completion = app.chat_ok("token-a", &ask(text)).await;
    let record = app.last_chat().expect("the chat reached the upstream");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        Simulator::answer_for(&record.msg_content)
    );
    let polls = app.sim.conversations().detail_polls();
    // At 3 characters a millisecond the answer is whole by the first poll (50 ms); the polls
    // after it (pauses of 100, 200, 400, 800 ms, then 500 ms to the 2 s settle time) see it
    // unchanged.
    println!("upstream requests per answer: 1 send_msg + {polls} get_chat_detail");
    assert!((2..=8).contains(&polls), "{polls} polls");
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn an_end_marker_ends_the_answer_without_waiting_for_it_to_settle() -> TestResult {
    let sim = SimConfig {
        agent_end_marker: Some("is_end".into()),
        ..SimConfig::on(Dialect::MinimaxAgent)
    };
    let app = spawn_app_with_sim(sim, |settings| {
        settings.upstream.profile.poll.end_marker = "is_end".into();
        // Longer than the client's wait: only the marker can end the answer in time.
        settings.upstream.profile.poll.settle = Duration::from_secs(3600);
    })
    .await;
    let completion = tokio::time::timeout(Duration::from_secs(30), app.chat_ok("token-a", &ask("hi"))).await?;
    let record = app.last_chat().expect("the chat reached the upstream");
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        Simulator::answer_for(&record.msg_content)
    );
    assert_eq!(
        app.sim.conversations().detail_polls(),
        1,
        "the first poll saw it whole and ended"
    );
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn a_slow_answer_streams_as_it_grows() -> TestResult {
    let app = spawn_app_on(Dialect::MinimaxAgent).await;
    app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(40)));
    let mut body = ask("a question whose answer comes slowly, chunk by chunk");
    body["stream"] = json!(true);
    let (status, data) = app.chat_stream("token-a", &body).await;
    assert_eq!(status, 200);
    let pieces: Vec<String> = data
        .iter()
        .filter_map(|payload| serde_json::from_str::<Value>(payload).ok())
        .filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().map(str::to_owned))
        .filter(|piece| !piece.is_empty())
        .collect();
    assert!(pieces.len() > 1, "the answer came in pieces: {pieces:?}");
    let record = app.last_chat().expect("the chat reached the upstream");
    assert_eq!(pieces.concat(), Simulator::answer_for(&record.msg_content));
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn a_conversation_left_mid_answer_is_deleted_once_its_answer_is_generated() -> TestResult {
    let app = spawn_app_on_with(Dialect::MinimaxAgent, |settings| {
        settings.session.idle_ttl = Duration::ZERO;
    })
    .await;
    // About 1.5 s of generation at this pace.
    app.sim.faults().inject(Fault::SlowChunks(Duration::from_millis(60)));
    let mut body = ask("a long answer that the client will not wait for, not at all, never, no");
    body["stream"] = json!(true);
    let response = app.chat("token-a", &body).await;
    let mut bytes = response.bytes_stream();
    read_until_first_words(&mut bytes).await;
    drop(bytes);
    // Deleting is refused with `chat is running` while the answer is generated, and asked
    // again until it goes through.
    assert!(app.all_conversations_deleted("token-a", Duration::from_secs(10)).await);
    assert!(
        app.sim.conversations().running_deletes() >= 1,
        "a deletion met the running chat"
    );
    assert_eq!(app.sim.conversations().deleted().len(), 1);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn the_user_id_comes_from_the_jwt_or_from_before_a_plus() -> TestResult {
    let app = spawn_app_on(Dialect::MinimaxAgent).await;
    let jwt = jwt_of("31234567");
    app.chat_ok(&jwt, &ask("hi")).await;
    // The simulator checks `user_id` against the JWT's user: a wrong one is a violation.
    app.assert_protocol_clean();

    // A JWT of another user sent with this one's id is a violation: the id is what is checked.
    let other = jwt_of("999");
    let prefixed = format!("31234567+{other}");
    let refused = app.chat(&prefixed, &ask("again")).await;
    assert_ne!(refused.status(), 200);
    let violations = app.sim.violations();
    assert!(
        violations
            .iter()
            .any(|violation| violation.contains("user_id Some(\"31234567\")")),
        "{violations:#?}"
    );
    // A JWT that names no user travels alone, and the id before the `+` is the user.
    let fresh = spawn_app_on(Dialect::MinimaxAgent).await;
    let bare = jwt_of("");
    fresh.chat_ok(&format!("31234567+{bare}"), &ask("again")).await;
    let record = fresh.last_chat().expect("the chat reached the upstream");
    assert_eq!(record.token, bare, "only the JWT travels");
    fresh.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn speech_and_transcription_answer_400_on_the_agent() -> TestResult {
    let app = spawn_app_on(Dialect::MinimaxAgent).await;
    let speech = app
        .speech("token-a", &json!({"model": "tts-1", "input": "你好", "voice": "alloy"}))
        .await;
    assert_eq!(speech.status(), 400);
    let error: Value = speech.json().await?;
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("minimax-agent") && message.contains("no speech"),
        "{message}"
    );

    let form = reqwest::multipart::Form::new().text("model", "whisper-1").part(
        "file",
        reqwest::multipart::Part::bytes(vec![1, 2, 3]).file_name("a.mp3"),
    );
    let transcription = app
        .client
        .post(app.url("/v1/audio/transcriptions"))
        .bearer_auth("token-a")
        .multipart(form)
        .send()
        .await?;
    assert_eq!(transcription.status(), 400);
    let error: Value = transcription.json().await?;
    assert_eq!(error["error"]["type"], "invalid_request_error");
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("no transcription"), "{message}");
    assert_eq!(app.sim.conversations().chats().len(), 0, "nothing reached the upstream");
    app.assert_protocol_clean();
    Ok(())
}
