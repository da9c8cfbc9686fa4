//! Documents and images in chat: fetched, uploaded over OSS, listed in the chat's form; the
//! tests that send one run on every dialect.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hailuo_free_api::config::Dialect;
use hailuo_sim::Simulator;
use serde_json::{Value, json};

use crate::file_server::{FileServer, TINY_PDF, TINY_PNG};
use crate::helpers::*;

async fn spawn_app_with_files_on(dialect: Dialect) -> (TestApp, FileServer) {
    // The file server is on loopback, which the SSRF guard refuses by default.
    let app = spawn_app_on_with(dialect, |s| s.files.allow_private_networks = true).await;
    (app, FileServer::start().await)
}

fn data_url(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", STANDARD.encode(bytes))
}

fn with_parts(parts: Value) -> Value {
    json!({"model": "MiniMax-VL-01", "messages": [{"role": "user", "content": parts}]})
}

on_every_dialect! {
    async fn an_image_by_url_reaches_the_upstream_as_an_image_file(dialect: Dialect) -> TestResult {
        let (app, files) = spawn_app_with_files_on(dialect).await;
        let url = files.put("cat.png", Some("image/png"), TINY_PNG);
        let body = with_parts(json!([
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": url}}
        ]));
        let completion = app.chat_ok("token-a", &body).await;

        let record = app.last_chat().expect("a chat");
        assert_eq!(record.msg_content, "What is in this picture?\n");
        assert_eq!(content(&completion), Simulator::answer_for(&record.msg_content));
        assert_eq!(record.files.len(), 1);
        assert_eq!(record.files[0].form_type, 2);
        assert!(record.files[0].file_name.ends_with(".png"), "{:?}", record.files);
        let uploaded = app.sim.oss().uploaded_files();
        assert_eq!(uploaded.len(), 1);
        assert_eq!(uploaded[0].bytes, TINY_PNG);
        assert_eq!(uploaded[0].mime, "image/png");
        assert_eq!(uploaded[0].file_id, record.files[0].file_id);
        app.assert_protocol_clean();
        Ok(())
    }
}

on_every_dialect! {
    async fn a_document_by_data_url_reaches_the_upstream_as_a_document(dialect: Dialect) -> TestResult {
        let (app, _files) = spawn_app_with_files_on(dialect).await;
        let body = with_parts(json!([
            {"type": "file", "file_url": {"url": data_url("application/pdf", TINY_PDF)}},
            {"type": "text", "text": "Summarise this."}
        ]));
        app.chat_ok("token-a", &body).await;

        let record = app.last_chat().expect("a chat");
        assert_eq!(record.files.len(), 1);
        assert_eq!(record.files[0].form_type, 6);
        assert!(record.files[0].file_name.ends_with(".pdf"));
        let uploaded = app.sim.oss().uploaded_files();
        assert_eq!(
            (uploaded[0].bytes.as_slice(), uploaded[0].mime.as_str()),
            (TINY_PDF, "application/pdf")
        );
        app.assert_protocol_clean();
        Ok(())
    }
}

on_every_dialect! {
    async fn two_attachments_after_a_history_keep_their_order_and_draw_attention(dialect: Dialect) -> TestResult {
        let (app, files) = spawn_app_with_files_on(dialect).await;
        let image = files.put("chart.png", Some("image/png"), TINY_PNG);
        let body = json!({"model": "hailuo", "messages": [
            {"role": "system", "content": "You read documents."},
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi!"},
            {"role": "user", "content": [
                {"type": "text", "text": "Compare these"},
                {"type": "image_url", "image_url": {"url": image}},
                {"type": "file", "file_url": {"url": data_url("application/pdf", TINY_PDF)}}
            ]}
        ]});
        app.chat_ok("token-a", &body).await;

        let record = app.last_chat().expect("a chat");
        assert_eq!(
            record.msg_content,
            "system:You read documents.\nuser:Hello\nassistant:Hi!\nsystem:关注用户最新发送文件和消息\nuser:Compare these\nassistant:"
        );
        let types: Vec<u8> = record.files.iter().map(|f| f.form_type).collect();
        assert_eq!(types, vec![2, 6], "the order the client gave");
        assert!(record.files[0].file_name.ends_with(".png") && record.files[1].file_name.ends_with(".pdf"));
        if dialect == Dialect::MinimaxAgent {
            // The agent's message lists its files as attachments and carries no form.
            assert!(record.form.is_none(), "{:?}", record.form);
        } else {
            let form: Value = serde_json::from_str(record.form.as_deref().expect("a form"))?;
            assert_eq!(form.as_array().map(Vec::len), Some(3));
            assert_eq!(
                form[2],
                json!({"name": "", "formType": 1, "content": record.msg_content})
            );
        }
        app.assert_protocol_clean();
        Ok(())
    }
}

on_every_dialect! {
    async fn a_streamed_answer_about_an_image_works(dialect: Dialect) -> TestResult {
        let (app, files) = spawn_app_with_files_on(dialect).await;
        let url = files.put("dog.png", Some("image/png"), TINY_PNG);
        let mut body =
            with_parts(json!([{"type": "text", "text": "Describe"}, {"type": "image_url", "image_url": {"url": url}}]));
        body["stream"] = json!(true);
        let (status, data) = app.chat_stream("token-a", &body).await;
        assert_eq!(status, 200);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        assert_eq!(app.last_chat().expect("a chat").files.len(), 1);
        app.assert_protocol_clean();
        Ok(())
    }
}

on_every_dialect! {
    async fn the_mime_type_comes_from_the_bytes_when_nothing_else_tells(dialect: Dialect) -> TestResult {
        let (app, files) = spawn_app_with_files_on(dialect).await;
        let url = files.put("blob", None, TINY_PNG);
        app.chat_ok(
            "token-a",
            &with_parts(json!([{"type": "file", "file_url": {"url": url}}])),
        )
        .await;
        let record = app.last_chat().expect("a chat");
        assert_eq!(record.files[0].form_type, 2, "PNG bytes make it an image");
        assert!(record.files[0].file_name.ends_with(".png"));
        Ok(())
    }
}

on_every_dialect! {
    async fn a_failed_upload_is_retried(dialect: Dialect) -> TestResult {
        let (app, _files) = spawn_app_with_files_on(dialect).await;
        app.sim.faults().fail_uploads(1);
        let body = with_parts(json!([{"type": "image_url", "image_url": {"url": data_url("image/png", TINY_PNG)}}]));
        app.chat_ok("token-a", &body).await;
        assert_eq!(app.sim.conversations().chats().len(), 1);
        assert_eq!(app.sim.oss().uploaded_files().len(), 1);
        app.assert_protocol_clean();
        Ok(())
    }
}

/// Sends one attachment that must fail with `status`; nothing may reach the upstream.
async fn assert_refused(app: &TestApp, url: &str, status: u16) -> Value {
    let body = with_parts(json!([
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": url}}
    ]));
    let error = assert_openai_error(app.chat("token-a", &body).await, status).await;
    assert!(app.sim.conversations().chats().is_empty(), "no chat request for {url}");
    assert!(app.sim.oss().uploaded_files().is_empty(), "no upload for {url}");
    error
}

on_every_dialect! {
    async fn an_unreachable_or_failing_url_is_a_400_naming_it(dialect: Dialect) -> TestResult {
        let (app, files) = spawn_app_with_files_on(dialect).await;
        let missing = files.url("/files/missing.png");
        let error = assert_refused(&app, &missing, 400).await;
        let message = error["message"].as_str().expect("a message");
        assert!(message.contains(&missing) && message.contains("404"), "{message}");

        let failing = files.url("/status/500");
        let error = assert_refused(&app, &failing, 400).await;
        assert!(error["message"].as_str().expect("a message").contains("500"));

        let unreachable = "http://127.0.0.1:9/cat.png";
        let error = assert_refused(&app, unreachable, 400).await;
        assert!(error["message"].as_str().expect("a message").contains(unreachable));
        Ok(())
    }
}

on_every_dialect! {
    async fn bad_data_urls_and_schemes_are_400s(dialect: Dialect) -> TestResult {
        let (app, _files) = spawn_app_with_files_on(dialect).await;
        for url in [
            "data:image/png;base64,!!!not-base64!!!",
            "data:image/png;base64,",
            "data:image/png;base64",
            "ftp://example.com/cat.png",
            "file:///etc/passwd",
            "cat.png",
        ] {
            assert_refused(&app, url, 400).await;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_file_announced_too_large_is_a_413_without_downloading_it() -> TestResult {
    let app = spawn_app_with(|s| {
        s.files.allow_private_networks = true;
        s.files.max_bytes = 10_000;
    })
    .await;
    let files = FileServer::start().await;
    assert_refused(&app, &files.url("/declared/20000"), 413).await;
    assert_eq!(files.downloads(), 0, "refused before downloading");
    Ok(())
}

#[tokio::test]
async fn a_download_is_cut_the_moment_it_passes_the_limit() -> TestResult {
    let app = spawn_app_with(|s| {
        s.files.allow_private_networks = true;
        s.files.max_bytes = 10_000;
    })
    .await;
    let files = FileServer::start().await;
    assert_refused(&app, &files.url("/chunked/50000"), 413).await;
    // Just under the limit is fine.
    let fine = files.put("notes.txt", Some("text/plain"), &[b'z'; 9_000]);
    app.chat_ok(
        "token-a",
        &with_parts(json!([{"type": "file", "file_url": {"url": fine}}])),
    )
    .await;
    Ok(())
}

#[tokio::test]
async fn a_data_url_over_the_limit_is_a_413() -> TestResult {
    let app = spawn_app_with(|s| s.files.max_bytes = 100).await;
    assert_refused(&app, &data_url("application/pdf", &[b'p'; 200]), 413).await;
    Ok(())
}

on_every_dialect! {
    async fn when_one_attachment_fails_nothing_is_sent(dialect: Dialect) -> TestResult {
        let (app, files) = spawn_app_with_files_on(dialect).await;
        let good = files.put("ok.png", Some("image/png"), TINY_PNG);
        let body = with_parts(json!([
            {"type": "image_url", "image_url": {"url": good}},
            {"type": "file", "file_url": {"url": files.url("/files/gone.pdf")}}
        ]));
        assert_openai_error(app.chat("token-a", &body).await, 400).await;
        assert!(app.sim.conversations().chats().is_empty());
        assert!(app.sim.oss().uploaded_files().is_empty());
        Ok(())
    }
}

on_every_dialect! {
    async fn redirects_are_followed_up_to_five(dialect: Dialect) -> TestResult {
        let (app, files) = spawn_app_with_files_on(dialect).await;
        files.put("far.png", Some("image/png"), TINY_PNG);
        assert_refused(&app, &files.url("/redirect/6/far.png"), 400).await;
        let body = with_parts(json!([{"type": "image_url", "image_url": {"url": files.url("/redirect/5/far.png")}}]));
        app.chat_ok("token-a", &body).await;
        Ok(())
    }
}

#[tokio::test]
async fn internal_addresses_are_refused_by_default() -> TestResult {
    let app = spawn_app().await;
    let files = FileServer::start().await;
    let loopback = files.put("secret.png", Some("image/png"), TINY_PNG);
    let port = files.addr.port();
    let urls = [
        loopback,
        format!("http://localhost:{port}/files/secret.png"),
        format!("http://[::1]:{port}/files/secret.png"),
        format!("http://[::ffff:127.0.0.1]:{port}/files/secret.png"),
        "http://10.1.2.3/x.png".to_owned(),
        "http://172.16.0.1/x.png".to_owned(),
        "http://192.168.1.1/x.png".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://100.64.0.1/x.png".to_owned(),
        "http://[fe80::1]/x.png".to_owned(),
        "http://[fc00::1]/x.png".to_owned(),
        "http://224.0.0.1/x.png".to_owned(),
        "http://255.255.255.255/x.png".to_owned(),
        "http://0.0.0.0/x.png".to_owned(),
        "http://[::]/x.png".to_owned(),
        "http://[::ffff:169.254.169.254]/x.png".to_owned(),
    ];
    for url in &urls {
        let error = assert_refused(&app, url, 400).await;
        assert!(
            error["message"].as_str().expect("a message").contains("not allowed"),
            "{url}: {error}"
        );
    }
    assert_eq!(files.downloads(), 0, "nothing was fetched from loopback");
    Ok(())
}

#[tokio::test]
async fn more_attachments_than_a_message_may_carry_are_a_400_before_any_download() -> TestResult {
    let app = spawn_app_with(|s| {
        s.files.allow_private_networks = true;
        s.files.max_per_message = 2;
    })
    .await;
    let files = FileServer::start().await;
    let url = files.put("one.png", Some("image/png"), TINY_PNG);
    let parts: Vec<Value> = (0..3)
        .map(|_| json!({"type": "image_url", "image_url": {"url": url}}))
        .collect();
    let error = assert_openai_error(app.chat("token-a", &with_parts(json!(parts))).await, 400).await;
    assert_eq!(error["code"], "invalid_attachment");
    assert!(
        error["message"].as_str().expect("a message").contains("at most 2"),
        "{error}"
    );
    assert_eq!(files.downloads(), 0, "refused before downloading");
    assert!(app.sim.conversations().chats().is_empty() && app.sim.oss().uploaded_files().is_empty());

    let parts: Vec<Value> = (0..2)
        .map(|_| json!({"type": "image_url", "image_url": {"url": url}}))
        .collect();
    app.chat_ok("token-a", &with_parts(json!(parts))).await;
    assert_eq!(app.sim.oss().uploaded_files().len(), 2);
    Ok(())
}

#[tokio::test]
async fn attachments_past_the_total_are_a_413_though_each_is_within_its_limit() -> TestResult {
    let app = spawn_app_with(|s| {
        s.files.allow_private_networks = true;
        s.files.max_total_bytes = 15_000;
    })
    .await;
    let files = FileServer::start().await;
    for (first, second) in [
        (files.url("/declared/10000"), files.url("/declared/10000")),
        (files.url("/chunked/10000"), files.url("/chunked/10000")),
        (
            files.url("/declared/10000"),
            data_url("application/pdf", &[b'p'; 10_000]),
        ),
    ] {
        let body = with_parts(json!([
            {"type": "file", "file_url": {"url": first}},
            {"type": "file", "file_url": {"url": second}}
        ]));
        let error = assert_openai_error(app.chat("token-a", &body).await, 413).await;
        assert_eq!(error["code"], "attachment_too_large");
        assert!(
            error["message"]
                .as_str()
                .expect("a message")
                .contains("15000 bytes in total"),
            "{error}"
        );
    }
    assert!(app.sim.conversations().chats().is_empty() && app.sim.oss().uploaded_files().is_empty());
    app.assert_protocol_clean();

    let body = with_parts(json!([{"type": "file", "file_url": {"url": files.url("/chunked/10000")}}]));
    app.chat_ok("token-a", &body).await;
    assert_eq!(app.sim.oss().uploaded_files()[0].bytes.len(), 10_000);
    Ok(())
}

on_every_dialect! {
    async fn a_failed_upload_of_a_url_is_retried_with_a_fresh_download(dialect: Dialect) -> TestResult {
        let (app, files) = spawn_app_with_files_on(dialect).await;
        app.sim.faults().fail_uploads(1);
        let url = files.put("again.png", Some("image/png"), TINY_PNG);
        let body = with_parts(json!([{"type": "image_url", "image_url": {"url": url}}]));
        app.chat_ok("token-a", &body).await;
        assert_eq!(files.downloads(), 2, "the first download went into the failed upload");
        let uploaded = app.sim.oss().uploaded_files();
        assert_eq!(uploaded.len(), 1);
        assert_eq!(uploaded[0].bytes, TINY_PNG);
        app.assert_protocol_clean();
        Ok(())
    }
}
