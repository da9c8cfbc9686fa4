//! The rest of the surface: models, liveness, docs and the committed OpenAPI spec.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn models_lists_the_chat_speech_and_transcription_models() -> TestResult {
    let app = spawn_app().await;
    let list: Value = app.get("/v1/models").await.json().await?;
    assert_eq!(list["object"], "list");
    let ids: Vec<&str> = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    for id in [
        "hailuo",
        "MiniMax-Text-01",
        "MiniMax-VL-01",
        "tts-1",
        "tts-1-hd",
        "whisper-1",
    ] {
        assert!(ids.contains(&id), "{id} missing from {ids:?}");
    }
    for model in list["data"].as_array().expect("data") {
        assert_eq!(model["object"], "model");
        assert!(model["created"].is_i64() && model["owned_by"].is_string());
    }
    Ok(())
}

#[tokio::test]
async fn ping_answers_pong() -> TestResult {
    let app = spawn_app().await;
    let response = app.get("/ping").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await?, "pong");
    Ok(())
}

#[tokio::test]
async fn the_welcome_page_links_the_docs_and_the_docs_are_served() -> TestResult {
    let app = spawn_app().await;
    let welcome = app.get("/").await;
    assert_eq!(welcome.status(), 200);
    assert!(welcome.text().await?.contains("href=\"/docs\""));
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await?.to_lowercase().contains("swagger"));
    Ok(())
}

/// `UPDATE_OPENAPI=1 cargo test the_committed_openapi_spec` rewrites the committed file.
#[tokio::test]
async fn the_committed_openapi_spec_is_what_the_server_serves() -> TestResult {
    let app = spawn_app().await;
    let served: Value = app.get("/openapi.json").await.json().await?;
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(path, serde_json::to_string_pretty(&served)? + "\n")?;
    }
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    assert_eq!(
        served, committed,
        "openapi/openapi.json is stale: run UPDATE_OPENAPI=1 cargo test the_committed_openapi_spec"
    );
    assert!(served["paths"]["/v1/chat/completions"]["post"].is_object());
    Ok(())
}

#[tokio::test]
async fn the_operations_with_a_request_body_are_the_ones_the_server_reads_a_body_for() -> TestResult {
    let app = spawn_app().await;
    let served: Value = app.get("/openapi.json").await.json().await?;
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, operations) in served["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            if operation.get("requestBody").is_some() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let mut read: Vec<(String, String)> = hailuo_free_api::inbound::http::limits::BODY_ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), (*path).to_owned()))
        .collect();
    documented.sort();
    read.sort();
    assert_eq!(
        documented, read,
        "limits::BODY_ROUTES must list the operations that take a body"
    );
    Ok(())
}

#[tokio::test]
async fn models_retrieve_answers_a_listed_model_and_404s_another() -> TestResult {
    let app = spawn_app().await;
    for id in ["hailuo", "MiniMax-Text-01", "whisper-1"] {
        let model: Value = app.get(&format!("/v1/models/{id}")).await.json().await?;
        assert_eq!(model["id"], id);
        assert_eq!(model["object"], "model");
        assert!(model["created"].is_i64() && model["owned_by"].is_string());
    }
    let error = assert_openai_error(app.get("/v1/models/gpt-4o").await, 404).await;
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
    Ok(())
}

/// Every operation of the served document, as `(METHOD, path, operation)`.
fn operations(spec: &Value) -> Vec<(String, String, Value)> {
    let mut found = Vec::new();
    for (path, methods) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in methods.as_object().expect("operations") {
            found.push((method.to_uppercase(), path.clone(), operation.clone()));
        }
    }
    found
}

#[tokio::test]
async fn every_operation_has_openai_s_operation_id_and_documents_its_own_statuses() -> TestResult {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await?;
    let mut ids: Vec<(String, String, String)> = operations(&spec)
        .into_iter()
        .map(|(method, path, operation)| {
            let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
            (method, path, id)
        })
        .collect();
    ids.sort();
    let expected = [
        ("GET", "/ping", "ping"),
        ("GET", "/v1/models", "listModels"),
        ("GET", "/v1/models/{model}", "retrieveModel"),
        ("POST", "/token/check", "checkToken"),
        ("POST", "/v1/audio/speech", "createSpeech"),
        ("POST", "/v1/audio/transcriptions", "createTranscription"),
        ("POST", "/v1/chat/completions", "createChatCompletion"),
    ];
    let mut expected: Vec<(String, String, String)> = expected
        .iter()
        .map(|(method, path, id)| ((*method).to_owned(), (*path).to_owned(), (*id).to_owned()))
        .collect();
    expected.sort();
    assert_eq!(ids, expected);

    let statuses = |path: &str, method: &str| -> Vec<String> {
        let mut codes: Vec<String> = spec["paths"][path][method]["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .cloned()
            .collect();
        codes.sort();
        codes
    };
    // An operation of no body documents no body deadline, and one of no accounts no upstream.
    assert_eq!(statuses("/ping", "get"), ["200", "413"]);
    assert_eq!(statuses("/v1/models/{model}", "get"), ["200", "401", "404", "413"]);
    let chat = statuses("/v1/chat/completions", "post");
    for code in ["400", "401", "404", "408", "413", "429", "500", "502", "503", "504"] {
        assert!(chat.iter().any(|c| c == code), "{code} not in {chat:?}");
    }
    assert!(!statuses("/v1/audio/speech", "post").contains(&"404".to_owned()));
    Ok(())
}

#[tokio::test]
async fn the_error_schema_says_what_an_error_body_holds_param_null_included() -> TestResult {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await?;
    let detail = &spec["components"]["schemas"]["ErrorDetail"];
    assert_eq!(detail["properties"]["param"]["type"], "string");
    assert_eq!(detail["properties"]["param"]["nullable"], true);
    let codes = &spec["components"]["schemas"]["ErrorCode"]["enum"];
    for code in [
        "invalid_request",
        "model_not_found",
        "origin_not_allowed",
        "method_not_allowed",
    ] {
        assert!(
            codes.as_array().is_some_and(|codes| codes.contains(&json!(code))),
            "{code} not in {codes}"
        );
    }
    let kinds = &spec["components"]["schemas"]["ErrorType"]["enum"];
    assert!(
        kinds
            .as_array()
            .is_some_and(|kinds| kinds.contains(&json!("invalid_request_error")))
    );

    // And an answer is what it says: a `param` of null, a listed code and type.
    let error = assert_openai_error(app.get("/v1/nothing-here").await, 404).await;
    assert!(error["param"].is_null());
    assert!(codes.as_array().is_some_and(|codes| codes.contains(&error["code"])));
    assert!(kinds.as_array().is_some_and(|kinds| kinds.contains(&error["type"])));
    Ok(())
}

#[tokio::test]
async fn the_speech_request_s_schema_is_as_strict_as_the_server() -> TestResult {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await?;
    let speech = &spec["components"]["schemas"]["SpeechRequestDto"]["properties"];
    assert_eq!(speech["input"]["minLength"], 1);
    assert_eq!(speech["input"]["maxLength"], 4096);
    assert_eq!(speech["speed"]["minimum"], 0.25);
    assert_eq!(speech["speed"]["maximum"], 4.0);
    assert_eq!(
        speech["response_format"]["enum"],
        json!(["mp3", "wav", "pcm", "flac", null])
    );
    let voices = &speech["voice"]["anyOf"];
    assert_eq!(
        voices[0]["enum"],
        json!(["alloy", "echo", "fable", "onyx", "nova", "shimmer"])
    );
    assert!(voices[1]["pattern"].is_string());
    let form = &spec["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]
        ["properties"];
    assert_eq!(
        form["response_format"]["enum"],
        json!(["json", "text", "verbose_json", "srt", "vtt"])
    );
    // No placeholder examples: a request body's example is a real request.
    let example = &spec["components"]["schemas"]["SpeechRequestDto"]["example"];
    assert_eq!(example["voice"], "alloy");
    assert!(!spec.to_string().contains(r#""example":"string""#));
    Ok(())
}
