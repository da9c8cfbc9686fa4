//! The message shapes of the current OpenAI API: documents by `file_data` (named by their
//! `filename`), image URLs as plain strings, `input_audio` heard into the prompt, the
//! `developer` role; and the refusals, each a 400 naming its place (`param`) without echoing
//! the input: a `file_id`, an unknown role or part type, audio that cannot be heard, and every
//! parameter the gateway cannot honour yet.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hailuo_free_api::config::{Dialect, Settings};
use hailuo_sim::Simulator;
use serde_json::{Value, json};

use crate::audio_fixtures::{sine, wav};
use crate::file_server::{FileServer, TINY_PDF, TINY_PNG};
use crate::helpers::*;

fn pdf_data_url() -> String {
    format!("data:application/pdf;base64,{}", STANDARD.encode(TINY_PDF))
}

fn user_parts(parts: Value) -> Value {
    json!({"model": "hailuo", "messages": [{"role": "user", "content": parts}]})
}

/// Speech-like audio: a tone of `seconds`, as a base64 WAV.
fn spoken(seconds: f32) -> String {
    STANDARD.encode(wav(&sine(seconds, 16_000, 1, 440.0, 0.5), 16_000, 1))
}

/// A refused chat: its status, `param` and `code`, nothing sent upstream, and a message
/// that does not hold `not_echoed`.
async fn assert_refused(app: &TestApp, body: &Value, status: u16, param: &str, code: &str, not_echoed: &str) -> String {
    let error = assert_openai_error(app.chat("token-a", body).await, status).await;
    assert_eq!(error["param"], param, "{error}");
    assert_eq!(error["code"], code, "{error}");
    let message = error["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        not_echoed.is_empty() || !message.contains(not_echoed),
        "the message echoes the input: {message}"
    );
    assert!(
        app.sim.conversations().chats().is_empty(),
        "a refused request reached the upstream"
    );
    assert!(
        app.sim.oss().uploaded_files().is_empty(),
        "a refused request uploaded a file"
    );
    message
}

on_every_dialect! {
    async fn a_document_by_file_data_reaches_the_upstream_under_its_filename(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let body = user_parts(json!([
            {"type": "text", "text": "Summarise this."},
            {"type": "file", "file": {"file_data": pdf_data_url(), "filename": "季度 report.pdf"}}
        ]));
        app.chat_ok("token-a", &body).await;

        let record = app.last_chat().expect("a chat");
        assert_eq!(record.msg_content, "Summarise this.\n");
        assert_eq!(record.files.len(), 1);
        assert_eq!((record.files[0].form_type, record.files[0].file_name.as_str()), (6, "季度 report.pdf"));
        let uploaded = app.sim.oss().uploaded_files();
        assert_eq!(uploaded.len(), 1);
        assert_eq!(uploaded[0].file_name, "季度 report.pdf");
        assert_eq!((uploaded[0].bytes.as_slice(), uploaded[0].mime.as_str()), (TINY_PDF, "application/pdf"));
        app.assert_protocol_clean();
        Ok(())
    }
}

on_every_dialect! {
    async fn an_image_url_given_as_a_string_reaches_the_upstream(dialect: Dialect) -> TestResult {
        let app = spawn_app_on_with(dialect, |s| s.files.allow_private_networks = true).await;
        let files = FileServer::start().await;
        let url = files.put("cat.png", Some("image/png"), TINY_PNG);
        let body = user_parts(json!([
            {"type": "image_url", "image_url": url},
            {"type": "text", "text": "What is this?"}
        ]));
        app.chat_ok("token-a", &body).await;

        let record = app.last_chat().expect("a chat");
        assert_eq!(record.files.len(), 1);
        assert_eq!(record.files[0].form_type, 2);
        let uploaded = app.sim.oss().uploaded_files();
        assert_eq!((uploaded[0].bytes.as_slice(), uploaded[0].mime.as_str()), (TINY_PNG, "image/png"));
        app.assert_protocol_clean();
        Ok(())
    }
}

on_every_dialect! {
    async fn the_developer_role_is_read_as_system(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let body = json!({"messages": [
            {"role": "developer", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": "I cannot say."}]},
            {"role": "user", "content": [{"type": "text", "text": "Please?"}]}
        ]});
        app.chat_ok("token-a", &body).await;

        let record = app.last_chat().expect("a chat");
        assert_eq!(
            record.msg_content,
            "system:Answer in one word.\nuser:Capital of France?\nassistant:I cannot say.\nuser:Please?\nassistant:"
        );
        app.assert_protocol_clean();
        Ok(())
    }
}

#[tokio::test]
async fn file_data_without_a_filename_is_named_by_its_type_and_bare_base64_by_its_filename() -> TestResult {
    let app = spawn_app().await;
    let body = user_parts(json!([
        {"type": "text", "text": "Compare."},
        {"type": "file", "file": {"file_data": pdf_data_url()}},
        {"type": "file", "file": {"file_data": STANDARD.encode("# Notes\n"), "filename": "notes.md"}},
        {"type": "file", "file": {"file_data": STANDARD.encode("plain"), "filename": "dir/../readme"}}
    ]));
    app.chat_ok("token-a", &body).await;

    let uploaded = app.sim.oss().uploaded_files();
    let record = app.last_chat().expect("a chat");
    let names: Vec<&str> = record.files.iter().map(|f| f.file_name.as_str()).collect();
    let (stem, extension) = names[0].split_once('.').expect("an extension");
    assert!(uuid::Uuid::parse_str(stem).is_ok() && extension == "pdf", "{names:?}");
    assert_eq!(names[1..], ["notes.md", "readme.txt"]);
    let by_name = |name: &str| uploaded.iter().find(|f| f.file_name == name).expect("uploaded");
    assert_eq!(
        (by_name("notes.md").bytes.as_slice(), by_name("notes.md").mime.as_str()),
        (b"# Notes\n".as_slice(), "text/markdown")
    );
    assert_eq!(by_name("readme.txt").mime, "text/plain");
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn files_of_one_name_in_a_message_are_told_apart() -> TestResult {
    let app = spawn_app().await;
    let file = json!({"type": "file", "file": {"file_data": pdf_data_url(), "filename": "report.pdf"}});
    let body = user_parts(json!([{"type": "text", "text": "Both?"}, file, file]));
    app.chat_ok("token-a", &body).await;

    let record = app.last_chat().expect("a chat");
    let names: Vec<&str> = record.files.iter().map(|f| f.file_name.as_str()).collect();
    assert_eq!(names, ["report.pdf", "report (2).pdf"]);
    assert_eq!(app.sim.oss().uploaded_files().len(), 2);
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn a_file_by_id_is_refused_naming_its_place() -> TestResult {
    let app = spawn_app().await;
    let body = json!({"messages": [
        {"role": "user", "content": "Hello"},
        {"role": "user", "content": [
            {"type": "text", "text": "Read it."},
            {"type": "file", "file": {"file_id": "file-abc123"}}
        ]}
    ]});
    let message = assert_refused(
        &app,
        &body,
        400,
        "messages[1].content[1].file.file_id",
        "unsupported_file_id",
        "",
    )
    .await;
    assert!(
        message.contains("no Files API") && message.contains("file_data") && message.contains("file_url"),
        "{message}"
    );
    Ok(())
}

on_streamed_dialects! {
    not_on_agent("minimax-agent has no transcription: its refusal of audio is tested below")
    async fn input_audio_is_transcribed_into_the_prompt_in_its_place(dialect: Dialect) -> TestResult {
        let app = spawn_app_on(dialect).await;
        let body = json!({"messages": [
            {"role": "system", "content": "Translate what you hear."},
            {"role": "user", "content": [
                {"type": "text", "text": "Here:"},
                {"type": "input_audio", "input_audio": {"data": spoken(1.5), "format": "wav"}},
                {"type": "text", "text": "Thanks."}
            ]}
        ]});
        let completion = app.chat_ok("token-a", &body).await;

        let upload = app.sim.transcription().uploads().pop().expect("the audio was transcribed");
        let transcript = Simulator::transcript_for(upload.duration);
        assert!(!transcript.is_empty());
        let record = app.last_chat().expect("a chat");
        assert_eq!(
            record.msg_content,
            format!("system:Translate what you hear.\nuser:Here:\nuser:{transcript}\nuser:Thanks.\nassistant:")
        );
        // The transcript counts in the usage as the same text sent as text would.
        let mut as_text = body.clone();
        as_text["messages"][1]["content"][1] = json!({"type": "text", "text": transcript});
        let said = app.chat_ok("token-a", &as_text).await;
        assert_eq!(completion["usage"]["prompt_tokens"], said["usage"]["prompt_tokens"]);
        app.assert_protocol_clean();
        Ok(())
    }
}

#[tokio::test]
async fn input_audio_on_an_upstream_without_transcription_is_a_clear_400() -> TestResult {
    let app = spawn_app_on(Dialect::MinimaxAgent).await;
    let body = user_parts(json!([{"type": "input_audio", "input_audio": {"data": spoken(1.0), "format": "wav"}}]));
    let message = assert_refused(
        &app,
        &body,
        400,
        "messages[0].content[0].input_audio",
        "invalid_request",
        "",
    )
    .await;
    assert!(message.contains("no transcription"), "{message}");
    Ok(())
}

fn limited_audio(settings: &mut Settings) {
    settings.audio.max_duration = Duration::from_secs(2);
    settings.audio.max_upload_bytes = 200_000;
}

#[tokio::test]
async fn audio_that_cannot_be_heard_is_refused_naming_its_place() -> TestResult {
    let app = spawn_app_with(limited_audio).await;
    let audio = |data: String| {
        user_parts(json!([
            {"type": "text", "text": "Listen:"},
            {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
        ]))
    };
    let place = "messages[0].content[1].input_audio";
    assert_refused(
        &app,
        &audio("!!! not base64 !!!".into()),
        400,
        &format!("{place}.data"),
        "invalid_audio",
        "!!!",
    )
    .await;
    let text = STANDARD.encode("this is text pretending to be audio, long enough to probe");
    assert_refused(&app, &audio(text), 400, place, "invalid_audio", "").await;
    assert_refused(&app, &audio(spoken(3.0)), 413, place, "audio_too_long", "").await;
    let huge = "A".repeat(400_000);
    assert_refused(
        &app,
        &audio(huge.clone()),
        413,
        &format!("{place}.data"),
        "file_too_large",
        &huge[..100],
    )
    .await;
    let format = user_parts(json!([{"type": "input_audio", "input_audio": {"data": spoken(1.0), "format": "aiff"}}]));
    assert_refused(
        &app,
        &format,
        400,
        "messages[0].content[0].input_audio.format",
        "invalid_value",
        "",
    )
    .await;
    assert!(
        app.sim.transcription().uploads().is_empty(),
        "nothing was sent to be transcribed"
    );
    Ok(())
}

#[tokio::test]
async fn more_audio_parts_than_a_request_may_carry_are_refused_before_any_is_heard() -> TestResult {
    let app = spawn_app_with(|s| s.files.max_per_message = 1).await;
    let part = json!({"type": "input_audio", "input_audio": {"data": spoken(0.5), "format": "wav"}});
    let body = json!({"messages": [
        {"role": "user", "content": [part]},
        {"role": "user", "content": [{"type": "text", "text": "And this:"}, part]}
    ]});
    let message = assert_refused(&app, &body, 400, "messages", "invalid_request", "").await;
    assert!(message.contains("at most 1"), "{message}");
    assert!(app.sim.transcription().uploads().is_empty(), "nothing was heard");
    Ok(())
}

#[tokio::test]
async fn an_unknown_role_or_part_type_is_refused_at_its_place_without_echoing_it() -> TestResult {
    let app = spawn_app().await;
    let role = json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "robot", "content": "Beep."}
    ]});
    let message = assert_refused(&app, &role, 400, "messages[1].role", "invalid_value", "").await;
    assert!(
        message.contains("'robot'") && message.contains("developer"),
        "{message}"
    );

    let long_role = "r".repeat(10_000);
    let body = json!({"messages": [{"role": long_role, "content": "hi"}]});
    let message = assert_refused(&app, &body, 400, "messages[0].role", "invalid_value", &long_role[..100]).await;
    assert!(message.len() < 300, "{message}");

    let long_type = "t".repeat(10_000);
    let body = json!({"messages": [
        {"role": "user", "content": "Hello"},
        {"role": "assistant", "content": "Hi!"},
        {"role": "user", "content": [{"type": "text", "text": "Look:"}, {"type": long_type, "video": {"url": "x"}}]}
    ]});
    let message = assert_refused(
        &app,
        &body,
        400,
        "messages[2].content[1].type",
        "invalid_value",
        &long_type[..100],
    )
    .await;
    assert!(message.contains("input_audio") && message.len() < 300, "{message}");
    Ok(())
}

#[tokio::test]
async fn what_the_gateway_cannot_honour_is_a_400_naming_the_field() -> TestResult {
    let app = spawn_app().await;
    let refused = [
        ("n", json!(2)),
        (
            "tools",
            json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]),
        ),
        ("functions", json!([{"name": "get_weather"}])),
        ("tool_choice", json!("required")),
        ("function_call", json!({"name": "get_weather"})),
        ("response_format", json!({"type": "json_object"})),
        (
            "response_format",
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
        ),
        ("logprobs", json!(true)),
        ("top_logprobs", json!(2)),
        ("audio", json!({"voice": "alloy", "format": "wav"})),
        ("modalities", json!(["text", "audio"])),
    ];
    for (field, value) in refused {
        let mut body = ask("hi");
        body[field] = value;
        let message = assert_refused(&app, &body, 400, field, "unsupported_parameter", "").await;
        assert!(message.contains("not supported"), "{field}: {message}");
    }
    Ok(())
}

#[tokio::test]
async fn what_asks_for_nothing_unsupported_is_answered() -> TestResult {
    let app = spawn_app().await;
    let mut body = ask("hi");
    for (field, value) in [
        ("n", json!(1)),
        ("tools", json!([])),
        ("tool_choice", json!("none")),
        ("response_format", json!({"type": "text"})),
        ("logprobs", json!(false)),
        ("modalities", json!(["text"])),
        ("temperature", json!(0.2)),
        ("top_p", json!(0.9)),
        ("seed", json!(7)),
        ("user", json!("user-1")),
        ("metadata", json!({"team": "a"})),
        ("store", json!(false)),
        ("presence_penalty", json!(0)),
        ("frequency_penalty", json!(0.5)),
        ("stop", json!(["\n\n"])),
        ("max_tokens", json!(100)),
        ("max_completion_tokens", json!(100)),
        ("parallel_tool_calls", json!(false)),
    ] {
        body[field] = value;
    }
    let completion = app.chat_ok("token-a", &body).await;
    assert_eq!(content(&completion), Simulator::answer_for("hi\n"));
    Ok(())
}
