//! The HTTP edge: huge `Authorization` token lists, trickling bodies, bodies sent where none
//! belongs, and request heads hyper cannot parse, each against the real server binary over
//! raw sockets where the shape of the bytes matters.

use std::time::{Duration, Instant};

use hailuo_sim::SimConfig;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::Server;

/// An answer read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: Value,
}

/// Reads one answer (a head and a `content-length` body) off `stream`, within 20 s.
async fn read_answer(stream: &mut (impl AsyncReadExt + Unpin)) -> Answer {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            if let Some(end) = bytes.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&bytes[..end]).to_string();
                let length = head
                    .lines()
                    .find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if bytes.len() >= end + 4 + length {
                    let body = serde_json::from_slice(&bytes[end + 4..end + 4 + length]).unwrap_or(Value::Null);
                    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
                    return Answer { status, head, body };
                }
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!(
                    "the connection ended before an answer: {:?}",
                    String::from_utf8_lossy(&bytes)
                ),
                Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("an answer within 20 s")
}

/// Panics unless `answer` is an OpenAI-shaped error with `status` and `code`.
fn assert_openai_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    let error = &answer.body["error"];
    assert!(
        error["message"].as_str().is_some_and(|message| !message.is_empty()),
        "{answer:?}"
    );
    assert!(error["type"].is_string() && error.get("param").is_some(), "{answer:?}");
    assert_eq!(error["code"], code, "{answer:?}");
}

/// `n` distinct short tokens, comma-separated.
fn token_list(n: usize) -> String {
    (0..n).map(|i| format!("{i:x}")).collect::<Vec<_>>().join(",")
}

fn hello() -> Value {
    json!({"model": "hailuo", "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn sixty_thousand_tokens_are_a_quick_400_and_ping_keeps_answering_meanwhile() {
    let mut server = Server::start().await;
    let header = format!("Bearer {}", token_list(60_000));
    let started = Instant::now();
    let requests: Vec<_> = (0..3)
        .map(|_| {
            let request = server
                .client
                .post(server.url("/v1/chat/completions"))
                .header("authorization", header.clone())
                .json(&hello());
            tokio::spawn(async move { request.send().await })
        })
        .collect();
    server
        .assert_pings_within(Duration::from_secs(2), "three 60,000-token requests")
        .await;
    for request in requests {
        let response = request.await.unwrap().unwrap();
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "too_many_tokens", "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("64"), "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        server.sim.conversations().chats().is_empty(),
        "a refused request reached the upstream"
    );
    server.assert_memory_bounded("three 60,000-token requests");
}

#[tokio::test]
async fn sixty_five_tokens_are_refused_and_sixty_four_are_served() {
    let server = Server::start().await;
    let ask = |tokens: usize| {
        server
            .client
            .post(server.url("/v1/chat/completions"))
            .header("authorization", format!("Bearer {}", token_list(tokens)))
            .json(&hello())
            .send()
    };
    let refused = ask(65).await.unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_tokens", "{body}");
    let served = ask(64).await.unwrap();
    assert_eq!(served.status(), 200, "{}", served.text().await.unwrap());
    // Duplicates count: 65 names of one token are 65 tokens named.
    let repeated = server
        .client
        .post(server.url("/v1/chat/completions"))
        .header("authorization", format!("Bearer {}", vec!["same"; 65].join(",")))
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(repeated.status(), 400);
}

/// How a trickling client ended.
#[derive(Debug, PartialEq, Eq)]
enum Cut {
    /// A 408 with an OpenAI body, after this many bytes sent.
    Answered(usize),
    /// Closed without an answer.
    Closed,
}

/// The two ways a body is read: JSON (buffered whole) and a multipart form (streamed to
/// its parser).
const TRICKLED: [(&str, &str); 2] = [
    ("/v1/chat/completions", "application/json"),
    ("/v1/audio/transcriptions", "multipart/form-data; boundary=BOUNDARY"),
];

/// Sends a head for `target` (one of [`TRICKLED`]) announcing `announced` bytes, then one
/// body byte every `every`, until the server answers or closes (or `give_up` passes).
async fn trickle(
    socket: String,
    target: (&str, &str),
    announced: usize,
    every: Duration,
    give_up: Duration,
) -> Result<Cut, String> {
    let stream = TcpStream::connect(&socket).await.map_err(|e| e.to_string())?;
    let (mut reader, mut writer) = stream.into_split();
    let (path, content_type) = target;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\
         Content-Type: {content_type}\r\nContent-Length: {announced}\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.map_err(|e| e.to_string())?;
    let answer = tokio::spawn(async move {
        let mut bytes = Vec::new();
        let _ = reader.read_to_end(&mut bytes).await;
        bytes
    });
    let started = Instant::now();
    let mut sent = 0;
    while !answer.is_finished() && started.elapsed() < give_up && sent < announced {
        if writer.write_all(b" ").await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(every).await;
    }
    let bytes = tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .map_err(|_| format!("still open after {sent} bytes"))?
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&bytes);
    if text.is_empty() {
        return Ok(Cut::Closed);
    }
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let body: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    if text.starts_with("HTTP/1.1 408") && body["error"]["code"] == "request_timeout" {
        Ok(Cut::Answered(sent))
    } else {
        Err(format!("unexpected answer after {sent} bytes: {text}"))
    }
}

/// How far the server's resident memory may grow while 100 connections trickle bodies. By
/// the time it is read here they have sent about 25,000 body bytes; keeping each received
/// frame as its own read buffer (4.3 KB resident per byte, as measured) would take 100 MB.
const TRICKLE_BUDGET: u64 = 24 * 1024 * 1024;

#[tokio::test]
async fn a_hundred_trickling_bodies_are_cut_off_at_the_body_deadline_with_memory_bounded() {
    let mut server = Server::start_with(
        SimConfig::default(),
        &[
            ("HAILUO_SERVER__BODY_TIMEOUT_SECS", "6"),
            // The deadline alone: the rate is tried in the next case.
            ("HAILUO_SERVER__MIN_BODY_BYTES_PER_SEC", "0"),
        ],
    )
    .await;
    // The tokenizer's tables load in the background after start: not this case's memory.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let idle = server.rss();
    let started = Instant::now();
    let clients: Vec<_> = (0..100)
        .map(|i| {
            tokio::spawn(trickle(
                server.socket.clone(),
                TRICKLED[i % 2],
                100_000,
                Duration::from_millis(20),
                Duration::from_secs(15),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;
    server
        .assert_pings_within(Duration::from_secs(2), "100 trickling bodies")
        .await;
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(started.elapsed())).await;
    let grown = server.rss().saturating_sub(idle);
    let mut sent = 0;
    for client in clients {
        match client.await.unwrap() {
            Ok(Cut::Answered(bytes)) => sent += bytes,
            other => panic!("a trickling body was not cut off with 408: {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "cut off after {took:?}, the deadline is 6 s"
    );
    eprintln!(
        "100 trickling bodies: {sent} bytes sent in {took:?}; resident memory after 5 s +{} KB",
        grown / 1024
    );
    assert!(sent > 10_000, "only {sent} bytes were sent");
    assert!(
        grown <= TRICKLE_BUDGET,
        "the resident memory grew by {} MB while 100 bodies trickled in",
        grown / (1024 * 1024)
    );
    server.assert_memory_bounded("100 trickling bodies");
    assert!(
        server.sim.conversations().chats().is_empty(),
        "a cut-off body reached the upstream"
    );
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_is_cut_off_after_the_grace_period() {
    let server = Server::start_with(
        SimConfig::default(),
        &[
            ("HAILUO_SERVER__MIN_BODY_BYTES_PER_SEC", "100"),
            ("HAILUO_SERVER__BODY_RATE_GRACE_SECS", "1"),
        ],
    )
    .await;
    for target in TRICKLED {
        let started = Instant::now();
        // 10 bytes per second, for a body of 1,000: the 300 s deadline is far away.
        let cut = trickle(
            server.socket.clone(),
            target,
            1_000,
            Duration::from_millis(100),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        assert!(matches!(cut, Cut::Answered(sent) if sent < 100), "{target:?}: {cut:?}");
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{target:?}: cut off after {:?}",
            started.elapsed()
        );
    }
    // A body at full speed passes the same limits.
    let served = server
        .client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth("t")
        .json(&hello())
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
}

/// 104 MB: past the 100 MB `server.max_body_bytes`, as in the issue.
const HUGE_BODY: usize = 104 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// Sends `head` for a chunked body, then its first chunk, and reads the answer; then keeps
/// sending chunks (up to [`HUGE_BODY`]) until the server's closed connection stops them.
/// Returns the answer and how many body bytes were sent in all.
async fn chunked_to(socket: &str, head: &str) -> (Answer, usize) {
    let mut stream = TcpStream::connect(socket).await.unwrap();
    let chunk = [
        format!("{CHUNK:x}\r\n").into_bytes(),
        vec![b'x'; CHUNK],
        b"\r\n".to_vec(),
    ]
    .concat();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&chunk).await.unwrap();
    let answer = read_answer(&mut stream).await;
    let mut sent = CHUNK;
    let keep_sending = async {
        while sent < HUGE_BODY {
            if stream.write_all(&chunk).await.is_err() {
                break;
            }
            sent += CHUNK;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), keep_sending)
        .await
        .expect("the server kept reading the body");
    (answer, sent)
}

fn chunked_head(method: &str, path: &str, authorization: Option<&str>) -> String {
    let authorization = authorization.map_or(String::new(), |value| format!("Authorization: {value}\r\n"));
    format!("{method} {path} HTTP/1.1\r\nHost: x\r\n{authorization}Transfer-Encoding: chunked\r\n\r\n")
}

#[tokio::test]
async fn a_chunked_body_to_ping_is_refused_before_it_is_read() {
    let server = Server::start().await;
    let (answer, sent) = chunked_to(&server.socket, &chunked_head("GET", "/ping", None)).await;
    assert_openai_error(&answer, 413, "body_not_allowed");
    assert!(
        answer.head.to_ascii_lowercase().contains("connection: close"),
        "{answer:?}"
    );
    assert!(sent < HUGE_BODY / 4, "{sent} bytes of the body were taken");
    server
        .assert_pings_within(Duration::from_secs(2), "after a body to /ping")
        .await;
}

#[tokio::test]
async fn with_api_keys_a_body_is_refused_before_it_is_read_on_unknown_and_keyless_routes() {
    let server = Server::start_with(
        SimConfig::default(),
        &[
            ("HAILUO_AUTH__API_KEYS", "sk-test"),
            ("HAILUO_AUTH__TOKENS", "pool-token"),
        ],
    )
    .await;
    let cases = [
        (chunked_head("POST", "/nowhere", None), 413, "body_not_allowed"),
        (
            chunked_head("POST", "/v1/nowhere", Some("Bearer sk-test")),
            413,
            "body_not_allowed",
        ),
        (
            chunked_head("POST", "/v1/chat/completions", None),
            401,
            "invalid_api_key",
        ),
        (
            chunked_head("POST", "/v1/chat/completions", Some("Bearer wrong")),
            401,
            "invalid_api_key",
        ),
    ];
    for (head, status, code) in cases {
        let (answer, sent) = chunked_to(&server.socket, &head).await;
        assert_openai_error(&answer, status, code);
        assert!(sent < HUGE_BODY / 4, "{head:?}: {sent} bytes of the body were taken");
    }
    assert!(server.sim.conversations().chats().is_empty());
}

#[tokio::test]
async fn six_huge_chunked_bodies_at_once_to_ping_and_an_unknown_route_keep_memory_bounded() {
    let mut server = Server::start_with(
        SimConfig::default(),
        &[
            ("HAILUO_AUTH__API_KEYS", "sk-test"),
            ("HAILUO_AUTH__TOKENS", "pool-token"),
        ],
    )
    .await;
    let heads = [
        chunked_head("GET", "/ping", None),
        chunked_head("PUT", "/nowhere", None),
    ];
    let senders: Vec<_> = (0..6)
        .map(|i| {
            let socket = server.socket.clone();
            let head = heads[i % 2].clone();
            tokio::spawn(async move { chunked_to(&socket, &head).await })
        })
        .collect();
    for sender in senders {
        let (answer, sent) = sender.await.unwrap();
        assert_openai_error(&answer, 413, "body_not_allowed");
        assert!(sent < HUGE_BODY / 4, "{sent} bytes of the body were taken");
    }
    server.assert_memory_bounded("six 104 MB chunked bodies where none belongs");
    server
        .assert_pings_within(Duration::from_secs(2), "six huge bodies")
        .await;
}

/// Sends `bytes` on a fresh connection and reads the answer.
async fn raw(socket: &str, bytes: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(socket).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_answer(&mut stream).await
}

#[tokio::test]
async fn heads_hyper_cannot_parse_get_openai_shaped_answers_over_a_raw_socket() {
    let server = Server::start().await;
    let many_headers: String = (0..120).map(|i| format!("X-Filler-{i}: {i}\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "a header without a colon",
            b"GET /ping HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "a garbage request line",
            b"\x01\x02 / HTTP/1.1\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "a bad version",
            b"GET /ping HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "malformed_request",
        ),
        (
            "120 headers",
            format!("GET /ping HTTP/1.1\r\nHost: x\r\n{many_headers}\r\n").into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "a 500 KB header",
            format!(
                "GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "b".repeat(500_000)
            )
            .into_bytes(),
            431,
            "headers_too_large",
        ),
        (
            "a 70 KB URI",
            format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "u".repeat(70_000)).into_bytes(),
            414,
            "uri_too_long",
        ),
    ];
    for (name, bytes, status, code) in cases {
        let answer = raw(&server.socket, &bytes).await;
        assert_eq!(answer.status, status, "{name}: {answer:?}");
        assert_openai_error(&answer, status, code);
        assert!(
            answer
                .head
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{name}"
        );
    }

    // On a kept-alive connection, after an answered request: the same.
    let mut stream = TcpStream::connect(&server.socket).await.unwrap();
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let first = read_answer(&mut stream).await;
    assert_eq!(first.status, 200, "{first:?}");
    stream
        .write_all(b"GET /ping HTTP/1.1\r\nBroken header\r\n\r\n")
        .await
        .unwrap();
    let second = read_answer(&mut stream).await;
    assert_openai_error(&second, 400, "malformed_request");
    server
        .assert_pings_within(Duration::from_secs(2), "after malformed heads")
        .await;
}
