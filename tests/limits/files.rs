//! Attachment budgets: a chat naming many large files is refused by count (400, before any
//! download) or by its total (413, the other downloads cancelled), its downloads never pile up
//! in memory, and an upload within the budget streams through to the simulator's OSS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use hailuo_sim::SimConfig;
use poem::http::{Method, StatusCode};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Body, Request, Response};
use serde_json::{Value, json};

use crate::server::Server;

/// 60 MB, the size each file of the crafted chat answers with.
const SIXTY_MB: u64 = 60 * 1024 * 1024;
/// The piece a body is served in.
const PIECE: usize = 64 * 1024;
/// One piece of zeros, served again and again: the bodies are never held whole.
static ZEROS: [u8; PIECE] = [0; PIECE];

/// What the file server saw.
#[derive(Default)]
struct Seen {
    heads: AtomicUsize,
    gets: AtomicUsize,
    /// Body bytes handed to the sockets.
    served: AtomicU64,
}

/// Serves `/declared/<n>.png` (with `Content-Length`) and `/chunked/<n>.png` (without):
/// `n` bytes of zeros as `image/png`, generated while they are sent.
struct ZeroServer {
    addr: SocketAddr,
    seen: Arc<Seen>,
}

impl ZeroServer {
    async fn start() -> Self {
        let seen = Arc::new(Seen::default());
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let state = Arc::clone(&seen);
        let endpoint = poem::endpoint::make(move |request: Request| {
            let state = Arc::clone(&state);
            async move { serve(&state, &request) }
        });
        tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(endpoint));
        Self { addr, seen }
    }

    fn url(&self, kind: &str, size: u64, index: usize) -> String {
        format!("http://{}/{kind}/{size}/{index}.png", self.addr)
    }

    fn requests(&self) -> usize {
        self.seen.heads.load(Ordering::SeqCst) + self.seen.gets.load(Ordering::SeqCst)
    }
}

fn serve(seen: &Arc<Seen>, request: &Request) -> Response {
    let mut parts = request.uri().path().trim_start_matches('/').split('/');
    let (Some(kind), Some(Ok(size))) = (parts.next(), parts.next().map(str::parse::<u64>)) else {
        return Response::builder().status(StatusCode::NOT_FOUND).finish();
    };
    let declared = match kind {
        "declared" => true,
        "chunked" => false,
        _ => return Response::builder().status(StatusCode::NOT_FOUND).finish(),
    };
    let mut response = Response::builder().header("Content-Type", "image/png");
    if declared {
        response = response.header("Content-Length", size.to_string());
    }
    if request.method() == Method::HEAD {
        seen.heads.fetch_add(1, Ordering::SeqCst);
        return response.body(Body::empty());
    }
    seen.gets.fetch_add(1, Ordering::SeqCst);
    let pieces = size.div_ceil(PIECE as u64);
    let counter = Arc::clone(seen);
    let body = futures::stream::iter(0..pieces).map(move |index| {
        let length = (size - index * PIECE as u64).min(PIECE as u64);
        counter.served.fetch_add(length, Ordering::Relaxed);
        Ok::<_, std::io::Error>(Bytes::from_static(&ZEROS[..usize::try_from(length).unwrap()]))
    });
    response.body(Body::from_bytes_stream(body))
}

/// A chat whose last message names `urls` as images.
fn chat_with_images(urls: &[String]) -> Value {
    let mut parts = vec![json!({"type": "text", "text": "What is in these pictures?"})];
    parts.extend(
        urls.iter()
            .map(|url| json!({"type": "image_url", "image_url": {"url": url}})),
    );
    json!({"model": "hailuo", "messages": [{"role": "user", "content": parts}]})
}

/// Sends the chat; its status and error body.
async fn send_chat(server: &Server, body: &Value) -> (u16, Value) {
    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth("token-a")
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The server, allowed to fetch from loopback (the test's file server), with `env` added.
async fn start_server(env: &[(&str, &str)]) -> Server {
    let mut settings = vec![("HAILUO_FILES__ALLOW_PRIVATE_NETWORKS", "true")];
    settings.extend_from_slice(env);
    Server::start_with(SimConfig::default(), &settings).await
}

/// Sends `body` while checking that `/ping` keeps answering within 2 s; the chat's answer.
async fn chat_while_pinging(server: &Server, body: &Value, case: &str) -> (u16, Value) {
    let chat = send_chat(server, body);
    tokio::pin!(chat);
    loop {
        tokio::select! {
            answer = &mut chat => return answer,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                server.assert_pings_within(Duration::from_secs(2), case).await;
            }
        }
    }
}

/// Prints the case's peak memory growth over `idle`, for the record.
fn print_memory(server: &Server, idle: u64, case: &str) {
    let grown = server.peak_rss().saturating_sub(idle);
    eprintln!("{case}: peak resident memory grew by {} MB", grown / (1024 * 1024));
}

fn twenty(files: &ZeroServer, kind: &str) -> Vec<String> {
    (0..20).map(|index| files.url(kind, SIXTY_MB, index)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_images_of_sixty_megabytes_are_refused_by_count_before_any_download() {
    // The embedded defaults alone: the count is checked before the address guard is asked.
    let mut server = Server::start().await;
    let idle = server.rss();
    let files = ZeroServer::start().await;
    let case = "20 × 60 MB images, the default count";

    let (status, error) = chat_while_pinging(&server, &chat_with_images(&twenty(&files, "declared")), case).await;
    print_memory(&server, idle, case);

    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "invalid_attachment", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("20") && message.contains("10"), "{message}");
    assert_eq!(files.requests(), 0, "nothing was asked of the file server");
    server.assert_memory_bounded(case);
    server.assert_pings_within(Duration::from_secs(2), case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_declared_images_of_sixty_megabytes_are_refused_by_their_total_with_413() {
    let mut server = start_server(&[("HAILUO_FILES__MAX_PER_MESSAGE", "20")]).await;
    let idle = server.rss();
    let files = ZeroServer::start().await;
    let case = "20 × 60 MB declared images, count allowed";

    let (status, error) = chat_while_pinging(&server, &chat_with_images(&twenty(&files, "declared")), case).await;
    print_memory(&server, idle, case);

    assert_eq!(status, 413, "{error}");
    assert_eq!(error["error"]["code"], "attachment_too_large", "{error}");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("104857600") && message.contains("in total"),
        "{message}"
    );
    assert!(server.sim.oss().uploaded_files().is_empty() && server.sim.conversations().chats().is_empty());
    server.assert_memory_bounded(case);
    server.assert_pings_within(Duration::from_secs(2), case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_undeclared_images_of_sixty_megabytes_are_cut_at_the_total_with_413() {
    let mut server = start_server(&[("HAILUO_FILES__MAX_PER_MESSAGE", "20")]).await;
    let idle = server.rss();
    let files = ZeroServer::start().await;
    let case = "20 × 60 MB undeclared images, count allowed";

    let (status, error) = chat_while_pinging(&server, &chat_with_images(&twenty(&files, "chunked")), case).await;
    print_memory(&server, idle, case);

    assert_eq!(status, 413, "{error}");
    assert_eq!(error["error"]["code"], "attachment_too_large", "{error}");
    assert!(server.sim.oss().uploaded_files().is_empty() && server.sim.conversations().chats().is_empty());
    // The other downloads stopped with the one that passed the total: far less than the
    // 1.2 GB named was sent (the budget, plus what the sockets held).
    let served = files.seen.served.load(Ordering::SeqCst);
    eprintln!("{case}: the file server sent {} MB", served / (1024 * 1024));
    assert!(served < 400 * 1024 * 1024, "{} MB served", served / (1024 * 1024));
    server.assert_memory_bounded(case);
    server.assert_pings_within(Duration::from_secs(2), case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_such_requests_at_once_keep_memory_bounded() {
    let mut server = start_server(&[("HAILUO_FILES__MAX_PER_MESSAGE", "20")]).await;
    let idle = server.rss();
    let files = ZeroServer::start().await;
    let case = "4 × (20 × 60 MB undeclared images) at once";
    let body = chat_with_images(&twenty(&files, "chunked"));

    let answers = {
        let chats = futures::future::join_all((0..4).map(|_| send_chat(&server, &body)));
        tokio::pin!(chats);
        loop {
            tokio::select! {
                answers = &mut chats => break answers,
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    server.assert_pings_within(Duration::from_secs(2), case).await;
                }
            }
        }
    };
    print_memory(&server, idle, case);

    for (status, error) in &answers {
        assert_eq!(*status, 413, "{error}");
    }
    assert!(server.sim.oss().uploaded_files().is_empty() && server.sim.conversations().chats().is_empty());
    server.assert_memory_bounded(case);
    server.assert_pings_within(Duration::from_secs(2), case).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn images_within_the_budget_stream_through_to_the_simulators_oss() {
    let mut server = start_server(&[]).await;
    let idle = server.rss();
    let files = ZeroServer::start().await;
    let case = "3 × 30 MB images within the budget";
    let size = 30 * 1024 * 1024;
    let urls = vec![
        files.url("declared", size, 0),
        files.url("chunked", size, 1),
        files.url("declared", size, 2),
    ];

    let (status, answer) = chat_while_pinging(&server, &chat_with_images(&urls), case).await;
    print_memory(&server, idle, case);

    assert_eq!(status, 200, "{answer}");
    // Streamed, not held: the server grew by less than the 90 MB it passed on (its peak also
    // holds what starting took above its idle size).
    let grown = server.peak_rss().saturating_sub(idle);
    assert!(grown < 60 * 1024 * 1024, "{case}: grew by {} MB", grown / (1024 * 1024));
    let chat = server.sim.conversations().chats().pop().unwrap();
    assert_eq!(chat.files.len(), 3);
    let uploaded = server.sim.oss().uploaded_files();
    assert_eq!(uploaded.len(), 3);
    for (file, record) in uploaded.iter().zip(&chat.files) {
        assert_eq!(file.bytes.len() as u64, size);
        assert!(file.bytes.iter().all(|&byte| byte == 0));
        assert_eq!(file.mime, "image/png");
        assert!(
            chat.files.iter().any(|entry| entry.file_id == file.file_id),
            "{record:?}"
        );
    }
    server.assert_memory_bounded(case);
    server.assert_pings_within(Duration::from_secs(2), case).await;
}
