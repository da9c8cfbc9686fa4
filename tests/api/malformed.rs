//! Bad input on every endpoint: wrong JSON types, truncated and garbage bodies, invalid UTF-8,
//! huge strings, deeply nested JSON, odd content parts, broken multipart forms and unusable
//! `Authorization` values. Each is a 4xx with an OpenAI-shaped error (never a 5xx, never a
//! dropped connection), nothing reaches the upstream, and the server keeps serving.

use serde_json::{Value, json};

use crate::helpers::*;

/// One bad request and the status it must get.
struct Case {
    name: String,
    method: reqwest::Method,
    path: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
    status: u16,
}

const TOKEN: &str = "token-a";
/// 5 MB: far over every field's sense, well within `server.max_body_bytes`.
const HUGE: usize = 5 * 1024 * 1024;
/// Deeper than any parser should recurse.
const DEEP: usize = 100_000;
/// The longest error message we accept: a huge input must not be echoed back.
const MAX_MESSAGE_CHARS: usize = 2_000;

impl Case {
    fn new(name: impl Into<String>, method: reqwest::Method, path: &'static str, body: Vec<u8>, status: u16) -> Self {
        Self {
            name: name.into(),
            method,
            path,
            headers: Vec::new(),
            body,
            status,
        }
    }

    /// A POST with a bearer token and a JSON content type.
    fn json(name: impl Into<String>, path: &'static str, body: impl Into<Vec<u8>>, status: u16) -> Self {
        Self::new(name, reqwest::Method::POST, path, body.into(), status)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
    }

    fn header(mut self, name: &'static str, value: impl Into<Vec<u8>>) -> Self {
        self.headers.retain(|(existing, _)| *existing != name);
        self.headers.push((name, value.into()));
        self
    }

    fn without(mut self, name: &'static str) -> Self {
        self.headers.retain(|(existing, _)| *existing != name);
        self
    }
}

/// A chat request body that must be refused with a 400.
fn chat(name: &str, body: Value) -> Case {
    Case::json(format!("chat: {name}"), "/v1/chat/completions", body.to_string(), 400)
}

fn speech(name: &str, body: Value) -> Case {
    Case::json(format!("speech: {name}"), "/v1/audio/speech", body.to_string(), 400)
}

fn token_check(name: &str, body: Value) -> Case {
    Case::json(format!("token check: {name}"), "/token/check", body.to_string(), 400)
}

/// Bodies every JSON endpoint must refuse the same way, whatever it expects.
fn unreadable_json(path: &'static str, valid: &Value) -> Vec<Case> {
    let valid = valid.to_string();
    let mut cases: Vec<Case> = [1, valid.len() / 3, valid.len() / 2, valid.len() - 1]
        .into_iter()
        .map(|cut| {
            Case::json(
                format!("{path}: cut at byte {cut}"),
                path,
                &valid.as_bytes()[..cut],
                400,
            )
        })
        .collect();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut invalid_utf8 = valid.clone().into_bytes();
    let quote = invalid_utf8.iter().rposition(|b| *b == b'"').unwrap_or(0);
    invalid_utf8.splice(quote..quote, [0xff, 0xfe, 0xc3]);
    cases.extend([
        Case::json(format!("{path}: empty body"), path, "", 400),
        Case::json(format!("{path}: garbage bytes"), path, garbage, 400),
        Case::json(format!("{path}: invalid UTF-8 in a string"), path, invalid_utf8, 400),
        Case::json(format!("{path}: a JSON array"), path, "[1,2,3]", 400),
        Case::json(format!("{path}: a JSON string"), path, "\"hello\"", 400),
        Case::json(format!("{path}: JSON null"), path, "null", 400),
        Case::json(format!("{path}: two documents"), path, format!("{valid}{valid}"), 400),
        Case::json(format!("{path}: {DEEP} open brackets"), path, "[".repeat(DEEP), 400),
        Case::json(
            format!("{path}: {DEEP} nested arrays"),
            path,
            format!("{}{}", "[".repeat(DEEP), "]".repeat(DEEP)),
            400,
        ),
        Case::json(
            format!("{path}: {DEEP} nested objects"),
            path,
            format!("{}1{}", "{\"a\":".repeat(DEEP), "}".repeat(DEEP)),
            400,
        ),
        Case::json(
            format!("{path}: a huge string that is not JSON"),
            path,
            "x".repeat(HUGE),
            400,
        ),
        Case::json(format!("{path}: a text/plain content type"), path, valid.clone(), 400)
            .header("content-type", "text/plain"),
        Case::json(format!("{path}: no content type"), path, valid.clone(), 400).without("content-type"),
        Case::json(format!("{path}: a multipart content type"), path, valid.clone(), 400)
            .header("content-type", "multipart/form-data; boundary=x"),
        Case::json(format!("{path}: an unparsable content type"), path, valid.clone(), 400)
            .header("content-type", "no slash; ;=="),
    ]);
    cases
}

/// The chat endpoint's bad requests.
fn chat_cases() -> Vec<Case> {
    let huge = "x".repeat(HUGE);
    let user = |content: Value| json!({"messages": [{"role": "user", "content": content}]});
    let mut cases = vec![
        // Wrong types, field by field.
        chat(
            "model is a number",
            json!({"model": 42, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        chat(
            "model is an object",
            json!({"model": {}, "messages": [{"role": "user", "content": "hi"}]}),
        ),
        chat("messages is missing", json!({"model": "hailuo"})),
        chat("messages is a string", json!({"messages": "hi"})),
        chat(
            "messages is an object",
            json!({"messages": {"role": "user", "content": "hi"}}),
        ),
        chat("messages is null", json!({"messages": null})),
        chat("messages is empty", json!({"messages": []})),
        chat("a message is a string", json!({"messages": ["hi"]})),
        chat("a message is null", json!({"messages": [null]})),
        chat("a message is a number", json!({"messages": [7]})),
        chat("role is missing", json!({"messages": [{"content": "hi"}]})),
        chat("role is a number", json!({"messages": [{"role": 1, "content": "hi"}]})),
        chat("role is null", json!({"messages": [{"role": null, "content": "hi"}]})),
        chat("content is a number", user(json!(42))),
        chat("content is a boolean", user(json!(true))),
        chat("content is an object", user(json!({"text": "hi"}))),
        chat(
            "stream is a string",
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
        ),
        chat(
            "stream is a number",
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": 1}),
        ),
        chat(
            "stream_options is a string",
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": true, "stream_options": "usage"}),
        ),
        chat(
            "include_usage is a string",
            json!({"messages": [{"role": "user", "content": "hi"}], "stream": true,
                   "stream_options": {"include_usage": "yes"}}),
        ),
        chat(
            "conversation_id is a number",
            json!({"messages": [{"role": "user", "content": "hi"}], "conversation_id": 243_612_345_678_901_234_u64}),
        ),
        // Odd content parts.
        chat(
            "an unknown part type",
            user(json!([{"type": "video", "video": "x"}, {"type": "text", "text": "hi"}])),
        ),
        chat("a part without a type", user(json!([{"text": "hi"}]))),
        chat("a part type that is a number", user(json!([{"type": 1, "text": "hi"}]))),
        chat("a part that is a string", user(json!(["hi"]))),
        chat("a part that is null", user(json!([null]))),
        chat("a text part without text", user(json!([{"type": "text"}]))),
        chat("a text part with a number", user(json!([{"type": "text", "text": 5}]))),
        chat(
            "an image part without image_url",
            user(json!([{"type": "image_url"}, {"type": "text", "text": "hi"}])),
        ),
        chat(
            "an image_url without url",
            user(json!([{"type": "image_url", "image_url": {}}, {"type": "text", "text": "hi"}])),
        ),
        chat(
            "an image_url that is an empty string",
            user(json!([{"type": "image_url", "image_url": ""}, {"type": "text", "text": "hi"}])),
        ),
        chat(
            "an image_url that is a number",
            user(json!([{"type": "image_url", "image_url": 7}, {"type": "text", "text": "hi"}])),
        ),
        chat(
            "an image url that is a number",
            user(json!([{"type": "image_url", "image_url": {"url": 42}}, {"type": "text", "text": "hi"}])),
        ),
        chat(
            "an image url that is null",
            user(json!([{"type": "image_url", "image_url": {"url": null}}, {"type": "text", "text": "hi"}])),
        ),
        chat(
            "a file part whose file has no file_data",
            user(
                json!([{"type": "file", "file": {"url": "https://example.com/a.pdf"}}, {"type": "text", "text": "hi"}]),
            ),
        ),
        chat("an empty parts list", user(json!([]))),
        chat("null content", json!({"messages": [{"role": "user", "content": null}]})),
        chat("no content at all", json!({"messages": [{"role": "user"}]})),
        chat("blank text only", user(json!("  \n\t "))),
        chat(
            "a data URL that is not base64",
            user(
                json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64,!!!not base64!!!"}},
                        {"type": "text", "text": "hi"}]),
            ),
        ),
        chat(
            "a data URL without a comma",
            user(
                json!([{"type": "image_url", "image_url": {"url": "data:image/png;base64"}}, {"type": "text", "text": "hi"}]),
            ),
        ),
        chat(
            "a data URL without data",
            user(
                json!([{"type": "file", "file_url": {"url": "data:application/pdf;base64,"}}, {"type": "text", "text": "hi"}]),
            ),
        ),
        chat(
            "an attachment URL that is not a URL",
            user(
                json!([{"type": "image_url", "image_url": {"url": "not a url at all"}}, {"type": "text", "text": "hi"}]),
            ),
        ),
        chat(
            "an attachment URL of another scheme",
            user(
                json!([{"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}}, {"type": "text", "text": "hi"}]),
            ),
        ),
        // Huge strings where they make the request wrong.
        chat("messages is a 5 MB string", json!({"messages": huge})),
        chat("content is a 5 MB string inside an object", user(json!({"text": huge}))),
        chat("a 5 MB part type", user(json!([{"type": huge, "text": "hi"}]))),
        chat(
            "a 5 MB garbage data URL",
            user(
                json!([{"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", "!".repeat(HUGE))}},
                        {"type": "text", "text": "hi"}]),
            ),
        ),
        chat(
            "a 5 MB role on an empty message",
            json!({"messages": [{"role": huge, "content": []}]}),
        ),
    ];
    cases.extend(unreadable_json(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}]}),
    ));
    cases
}

/// The speech endpoint's bad requests.
fn speech_cases() -> Vec<Case> {
    let huge = "x".repeat(HUGE);
    let mut cases = vec![
        speech("input is missing", json!({"voice": "alloy"})),
        speech("voice is missing", json!({"input": "hi"})),
        speech("input is a number", json!({"input": 42, "voice": "alloy"})),
        speech("input is null", json!({"input": null, "voice": "alloy"})),
        speech("input is a list", json!({"input": ["hi"], "voice": "alloy"})),
        speech("voice is a number", json!({"input": "hi", "voice": 1})),
        speech("voice is an object", json!({"input": "hi", "voice": {"id": "alloy"}})),
        speech(
            "model is a number",
            json!({"model": 1, "input": "hi", "voice": "alloy"}),
        ),
        speech(
            "response_format is a number",
            json!({"input": "hi", "voice": "alloy", "response_format": 3}),
        ),
        speech(
            "response_format is unknown",
            json!({"input": "hi", "voice": "alloy", "response_format": "opus"}),
        ),
        speech(
            "speed is a string",
            json!({"input": "hi", "voice": "alloy", "speed": "fast"}),
        ),
        speech(
            "speed is a list",
            json!({"input": "hi", "voice": "alloy", "speed": [1]}),
        ),
        speech(
            "speed is too high",
            json!({"input": "hi", "voice": "alloy", "speed": 100}),
        ),
        speech(
            "speed is negative",
            json!({"input": "hi", "voice": "alloy", "speed": -1}),
        ),
        speech(
            "speed is past f32",
            json!({"input": "hi", "voice": "alloy", "speed": 1e300}),
        ),
        speech("input is empty", json!({"input": "", "voice": "alloy"})),
        speech("input is blank", json!({"input": " \n ", "voice": "alloy"})),
        speech("input is 5 MB", json!({"input": huge, "voice": "alloy"})),
        speech("voice is 5 MB and input is missing", json!({"voice": huge})),
        Case::json(
            "speech: speed is a number too large for JSON",
            "/v1/audio/speech",
            r#"{"input":"hi","voice":"alloy","speed":1e999}"#,
            400,
        ),
    ];
    cases.extend(unreadable_json(
        "/v1/audio/speech",
        &json!({"input": "hi", "voice": "alloy"}),
    ));
    cases
}

/// A multipart body of `(name, file name, bytes)` fields with `boundary`.
fn form(boundary: &str, fields: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, file_name, bytes) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match file_name {
            Some(file_name) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\n\
                     Content-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => {
                body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes())
            }
        }
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

fn upload(name: &str, body: Vec<u8>, status: u16) -> Case {
    Case::new(
        format!("transcription: {name}"),
        reqwest::Method::POST,
        "/v1/audio/transcriptions",
        body,
        status,
    )
    .header("authorization", format!("Bearer {TOKEN}"))
    .header("content-type", "multipart/form-data; boundary=BOUNDARY")
}

/// The transcription endpoint's bad requests.
fn transcription_cases() -> Vec<Case> {
    let b = "BOUNDARY";
    let not_audio: &[u8] = b"this is not audio at all, just text pretending";
    let huge = "x".repeat(HUGE);
    let valid_shape = form(b, &[("file", Some("a.wav"), not_audio), ("model", None, b"whisper-1")]);
    let mut cases = vec![
        upload("the file is missing", form(b, &[("model", None, b"whisper-1")]), 400),
        upload("the form is empty", form(b, &[]), 400),
        upload(
            "the file is sent twice",
            form(
                b,
                &[("file", Some("a.wav"), not_audio), ("file", Some("b.wav"), not_audio)],
            ),
            400,
        ),
        upload(
            "the model is sent twice",
            form(
                b,
                &[
                    ("file", Some("a.wav"), not_audio),
                    ("model", None, b"whisper-1"),
                    ("model", None, b"whisper-1"),
                ],
            ),
            400,
        ),
        upload("the file is empty", form(b, &[("file", Some("a.wav"), b"")]), 400),
        upload("the file is not audio", valid_shape.clone(), 400),
        upload(
            "a 5 MB prompt with an empty file",
            form(b, &[("file", Some("a.wav"), b""), ("prompt", None, huge.as_bytes())]),
            400,
        ),
        upload(
            "a 5 MB prompt without a file",
            form(b, &[("prompt", None, huge.as_bytes())]),
            400,
        ),
        upload(
            "temperature is not a number",
            form(b, &[("file", Some("a.wav"), not_audio), ("temperature", None, b"hot")]),
            400,
        ),
        upload(
            "response_format is unknown",
            form(
                b,
                &[("file", Some("a.wav"), not_audio), ("response_format", None, b"xml")],
            ),
            400,
        ),
        upload(
            "the model is not UTF-8",
            form(
                b,
                &[("file", Some("a.wav"), not_audio), ("model", None, b"\xff\xfe\xfd")],
            ),
            400,
        ),
        upload(
            "the boundary is wrong",
            form("OTHER", &[("file", Some("a.wav"), not_audio)]),
            400,
        ),
        upload(
            "the body is cut off",
            valid_shape[..valid_shape.len() / 2].to_vec(),
            400,
        ),
        upload(
            "the body is garbage",
            (0..2048u32).map(|i| (i * 131 % 251) as u8).collect(),
            400,
        ),
        upload("the body is empty", Vec::new(), 400),
        upload("the content type has no boundary", valid_shape.clone(), 400)
            .header("content-type", "multipart/form-data"),
        upload(
            "the body is JSON",
            json!({"file": "a.wav"}).to_string().into_bytes(),
            400,
        )
        .header("content-type", "application/json"),
        upload("there is no content type", valid_shape.clone(), 400).without("content-type"),
        upload(
            "the content type is form-urlencoded",
            b"file=abc&model=whisper-1".to_vec(),
            400,
        )
        .header("content-type", "application/x-www-form-urlencoded"),
        upload(
            "a field without a name",
            format!("--{b}\r\nContent-Disposition: form-data\r\n\r\nabc\r\n--{b}--\r\n").into_bytes(),
            400,
        ),
        upload(
            "a part without headers",
            format!("--{b}\r\n\r\nabc\r\n--{b}--\r\n").into_bytes(),
            400,
        ),
    ];
    cases.push(upload(
        "the file is a 5 MB non-audio blob",
        form(b, &[("file", Some("a.mp3"), huge.as_bytes())]),
        400,
    ));
    // Header values out of bounds are refused before anything is sized from them.
    for (rate, channels) in [(u32::MAX, 1), (50_000_017, 2), (0, 1), (16_000, 0), (16_000, 200)] {
        let wav = crate::audio_fixtures::wav_claiming(rate, channels, 3_200);
        cases.push(upload(
            &format!("a WAV claiming {rate} Hz and {channels} channels"),
            form(b, &[("file", Some("a.wav"), &wav), ("model", None, b"whisper-1")]),
            400,
        ));
    }
    cases
}

/// The token check, the models, liveness, and unknown routes and methods.
fn other_cases() -> Vec<Case> {
    let mut cases = vec![
        token_check("token is missing", json!({})),
        token_check("token is a number", json!({"token": 42})),
        token_check("token is null", json!({"token": null})),
        token_check("token is a list", json!({"token": ["a"]})),
        token_check("token is empty", json!({"token": ""})),
        token_check("token is blank", json!({"token": "  \t "})),
        token_check(
            "token is missing next to 5 MB of junk",
            json!({"junk": "x".repeat(HUGE)}),
        ),
    ];
    cases.extend(unreadable_json("/token/check", &json!({"token": "token-a"})));
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    cases.extend([
        Case::new("models: POST", post.clone(), "/v1/models", Vec::new(), 405),
        Case::new("models: DELETE", reqwest::Method::DELETE, "/v1/models", Vec::new(), 405),
        Case::new("ping: POST", post.clone(), "/ping", Vec::new(), 405),
        Case::new("ping: PUT", reqwest::Method::PUT, "/ping", Vec::new(), 405),
        // A method the route does not take is refused first, its body unread; a body where
        // the operation takes none is refused unread too.
        Case::new(
            "models: POST with a body",
            post.clone(),
            "/v1/models",
            b"{}".to_vec(),
            405,
        ),
        Case::new(
            "ping: POST with a body",
            post.clone(),
            "/ping",
            b"garbage\xff".to_vec(),
            405,
        ),
        Case::new("ping: GET with a body", get.clone(), "/ping", b"hello".to_vec(), 413),
        Case::new(
            "metrics: GET with a body",
            get.clone(),
            "/metrics",
            b"hello".to_vec(),
            413,
        ),
        Case::new("docs: GET with a body", get.clone(), "/docs", b"hello".to_vec(), 413),
        Case::new(
            "an unknown route with a body",
            post.clone(),
            "/nowhere",
            b"{}".to_vec(),
            413,
        ),
        Case::new("chat: GET", get.clone(), "/v1/chat/completions", Vec::new(), 405),
        Case::new("speech: GET", get.clone(), "/v1/audio/speech", Vec::new(), 405),
        Case::new(
            "transcriptions: GET",
            get.clone(),
            "/v1/audio/transcriptions",
            Vec::new(),
            405,
        ),
        Case::new("token check: GET", get.clone(), "/token/check", Vec::new(), 405),
        Case::new("an unknown route", get.clone(), "/v1/nothing/here", Vec::new(), 404),
        // Not UTF-8 once decoded: poem refuses the path itself.
        Case::new("an undecodable route", post, "/v1/%ff%fe/..%2f..", Vec::new(), 400),
    ]);
    let too_many = (0..65).map(|i| format!("token-{i}")).collect::<Vec<_>>().join(",");
    cases.push(
        chat(
            "65 tokens in Authorization",
            json!({"messages": [{"role": "user", "content": "hi"}]}),
        )
        .header("authorization", format!("Bearer {too_many}")),
    );
    cases
}

/// Unusable `Authorization` values on the endpoints that take tokens.
fn authorization_cases() -> Vec<Case> {
    let values: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("missing", None),
        ("empty", Some(b"".to_vec())),
        ("Bearer alone", Some(b"Bearer".to_vec())),
        ("Bearer and a space", Some(b"Bearer ".to_vec())),
        ("commas only", Some(b"Bearer , ,,".to_vec())),
        ("Basic", Some(b"Basic dXNlcjpwYXNz".to_vec())),
        ("no scheme", Some(TOKEN.as_bytes().to_vec())),
        ("non-UTF-8 bytes", Some(b"Bearer \xff\xfe\xfd".to_vec())),
    ];
    let mut cases = Vec::new();
    for (what, value) in values {
        let bodies: [(&'static str, Vec<u8>, &str); 2] = [
            (
                "/v1/chat/completions",
                json!({"messages": [{"role": "user", "content": "hi"}]})
                    .to_string()
                    .into_bytes(),
                "application/json",
            ),
            (
                "/v1/audio/speech",
                json!({"input": "hi", "voice": "alloy"}).to_string().into_bytes(),
                "application/json",
            ),
        ];
        for (path, body, content_type) in bodies {
            let mut case = Case::new(
                format!("{path}: Authorization {what}"),
                reqwest::Method::POST,
                path,
                body,
                401,
            )
            .header("content-type", content_type);
            if let Some(value) = &value {
                case = case.header("authorization", value.clone());
            }
            cases.push(case);
        }
        let mut upload = upload(
            &format!("Authorization {what}"),
            form("BOUNDARY", &[("file", Some("a.wav"), b"RIFF....")]),
            401,
        )
        .without("authorization");
        if let Some(value) = value {
            upload = upload.header("authorization", value);
        }
        cases.push(upload);
    }
    cases
}

/// Sends every case and collects what went wrong, so one run shows every failure.
async fn barrage(app: &TestApp, cases: Vec<Case>) -> Vec<String> {
    let mut failures = Vec::new();
    for case in cases {
        let mut request = app.client.request(case.method.clone(), app.url(case.path));
        for (name, value) in &case.headers {
            let value = reqwest::header::HeaderValue::from_bytes(value).expect("a header value");
            request = request.header(*name, value);
        }
        let response = match request.body(case.body).send().await {
            Ok(response) => response,
            Err(error) => {
                failures.push(format!("{}: no response ({error})", case.name));
                continue;
            }
        };
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        if status != case.status {
            failures.push(format!(
                "{}: status {status}, want {}; body: {}",
                case.name,
                case.status,
                text.chars().take(300).collect::<String>()
            ));
            continue;
        }
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error = &body["error"];
        let message = error["message"].as_str().unwrap_or_default();
        if message.is_empty()
            || !error["type"].is_string()
            || error.get("param").is_none()
            || error.get("code").is_none()
        {
            failures.push(format!(
                "{}: not an OpenAI error: {}",
                case.name,
                text.chars().take(300).collect::<String>()
            ));
        } else if message.chars().count() > MAX_MESSAGE_CHARS {
            failures.push(format!(
                "{}: the error message echoes the input ({} chars)",
                case.name,
                message.chars().count()
            ));
        } else if message.contains(TOKEN) {
            failures.push(format!("{}: the error message shows the token", case.name));
        }
    }
    failures
}

/// After a barrage: nothing reached the upstream, the upstream saw no violation, and a valid
/// request is still answered.
async fn still_serving(app: &TestApp, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} bad answers:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        app.sim.conversations().chats().is_empty(),
        "a refused request reached the upstream"
    );
    assert!(
        app.sim.oss().uploaded_files().is_empty(),
        "a refused attachment was uploaded"
    );
    assert!(
        app.sim.speech().requests().is_empty(),
        "a refused speech reached the upstream"
    );
    assert!(
        app.sim.transcription().uploads().is_empty(),
        "a refused transcription reached the upstream"
    );
    assert_eq!(app.get("/ping").await.status(), 200);
    assert_eq!(app.get("/v1/models").await.status(), 200);
    let answer = app.chat_ok(TOKEN, &ask("still there?")).await;
    assert!(!content(&answer).is_empty());
    app.assert_protocol_clean();
}

#[tokio::test]
async fn malformed_chat_requests_are_openai_shaped_400s_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let failures = barrage(&app, chat_cases()).await;
    still_serving(&app, failures).await;
}

#[tokio::test]
async fn malformed_speech_requests_are_openai_shaped_400s_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let failures = barrage(&app, speech_cases()).await;
    still_serving(&app, failures).await;
}

#[tokio::test]
async fn malformed_transcription_forms_are_openai_shaped_400s_and_the_server_keeps_serving() {
    let app = spawn_app().await;
    let failures = barrage(&app, transcription_cases()).await;
    still_serving(&app, failures).await;
}

#[tokio::test]
async fn audio_longer_than_the_duration_cap_is_an_openai_shaped_413() {
    let app = spawn_app_with(|settings| settings.audio.max_duration = std::time::Duration::from_secs(2)).await;
    let tone = crate::audio_fixtures::sine(3.0, 8_000, 1, 440.0, 0.5);
    let flac = crate::audio_fixtures::flac(&tone, 8_000, 1);
    let b = "BOUNDARY";
    let case = upload(
        "three seconds past a two-second cap",
        form(b, &[("file", Some("a.flac"), &flac), ("model", None, b"whisper-1")]),
        413,
    );
    let failures = barrage(&app, vec![case]).await;
    still_serving(&app, failures).await;
}

#[tokio::test]
async fn malformed_token_checks_methods_and_routes_are_openai_shaped_4xx() {
    let app = spawn_app().await;
    let failures = barrage(&app, other_cases()).await;
    still_serving(&app, failures).await;
}

#[tokio::test]
async fn unusable_authorization_values_are_openai_shaped_401s() {
    let app = spawn_app().await;
    let failures = barrage(&app, authorization_cases()).await;
    still_serving(&app, failures).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_an_openai_shaped_413() {
    let app = spawn_app_with(|settings| settings.server.max_body_bytes = 4 * 1024).await;
    let big = "x".repeat(8 * 1024);
    let cases = vec![
        chat(
            "a body over the limit",
            json!({"messages": [{"role": "user", "content": big}]}),
        ),
        speech("a body over the limit", json!({"input": big, "voice": "alloy"})),
        upload(
            "a body over the limit",
            form("BOUNDARY", &[("file", Some("a.wav"), big.as_bytes())]),
            413,
        ),
    ]
    .into_iter()
    .map(|case| Case { status: 413, ..case })
    .collect();
    let failures = barrage(&app, cases).await;
    still_serving(&app, failures).await;
}
