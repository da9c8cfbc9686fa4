//! The rest of the surface: models, liveness, docs and the committed OpenAPI spec.

use serde_json::Value;

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
