//! A small web server on 127.0.0.1 serving the files the tests attach, plus redirects,
//! error statuses and oversized bodies. It counts the downloads it serves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use poem::http::{Method, StatusCode};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Body, Request, Response, Server};

/// A 1×1 transparent PNG.
pub const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52, 0x00, 0x00, 0x00,
    0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4, 0x89, 0x00, 0x00, 0x00, 0x0D, 0x49,
    0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0x00, 0x01, 0x00, 0x00, 0x05, 0x00, 0x01, 0x0D, 0x0A, 0x2D, 0xB4, 0x00, 0x00,
    0x00, 0x00, 0x49, 0x45, 0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

/// A minimal PDF.
pub const TINY_PDF: &[u8] = b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n2 0 obj<</Type/Pages/Kids[]/Count 0>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n";

#[derive(Default)]
struct Served {
    files: Mutex<HashMap<String, (Option<String>, Bytes)>>,
    downloads: AtomicUsize,
}

pub struct FileServer {
    pub addr: SocketAddr,
    served: Arc<Served>,
}

impl FileServer {
    pub async fn start() -> FileServer {
        let served = Arc::new(Served::default());
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.expect("bind");
        let addr = *acceptor.local_addr()[0].as_socket_addr().expect("a socket address");
        let state = Arc::clone(&served);
        let endpoint = poem::endpoint::make(move |request: Request| {
            let state = Arc::clone(&state);
            async move { serve(&state, addr, request) }
        });
        tokio::spawn(Server::new_with_acceptor(acceptor).run(endpoint));
        FileServer { addr, served }
    }

    /// Serves `bytes` at `/files/<name>`, with `content_type` when given.
    pub fn put(&self, name: &str, content_type: Option<&str>, bytes: &[u8]) -> String {
        self.served.files.lock().expect("lock").insert(
            name.to_owned(),
            (content_type.map(str::to_owned), Bytes::copy_from_slice(bytes)),
        );
        self.url(&format!("/files/{name}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// How many GETs were answered with a body.
    pub fn downloads(&self) -> usize {
        self.served.downloads.load(Ordering::SeqCst)
    }
}

fn serve(state: &Served, addr: SocketAddr, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let is_get = request.method() == Method::GET;
    if let Some(name) = path.strip_prefix("/files/") {
        let Some((content_type, bytes)) = state.files.lock().expect("lock").get(name).cloned() else {
            return Response::builder().status(StatusCode::NOT_FOUND).body("no such file");
        };
        if is_get {
            state.downloads.fetch_add(1, Ordering::SeqCst);
        }
        let mut response = Response::builder().header("Content-Length", bytes.len().to_string());
        if let Some(content_type) = content_type {
            response = response.header("Content-Type", content_type);
        }
        return response.body(if is_get { Body::from_bytes(bytes) } else { Body::empty() });
    }
    if let Some(rest) = path.strip_prefix("/redirect/") {
        // /redirect/<n>/<file>: n more redirects, then /files/<file>
        let (hops, file) = rest.split_once('/').unwrap_or((rest, ""));
        let hops: usize = hops.parse().unwrap_or(0);
        let next = if hops <= 1 {
            format!("http://{addr}/files/{file}")
        } else {
            format!("http://{addr}/redirect/{}/{file}", hops - 1)
        };
        return Response::builder()
            .status(StatusCode::FOUND)
            .header("Location", next)
            .finish();
    }
    if let Some(code) = path.strip_prefix("/status/") {
        let status = code
            .parse()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .unwrap_or(StatusCode::IM_A_TEAPOT);
        return Response::builder().status(status).body("nope");
    }
    if let Some(size) = path.strip_prefix("/declared/") {
        // Announces a size; counts a download if anyone GETs it anyway.
        if is_get {
            state.downloads.fetch_add(1, Ordering::SeqCst);
        }
        let size: usize = size.parse().unwrap_or(0);
        return Response::builder()
            .header("Content-Type", "application/pdf")
            .header("Content-Length", size.to_string())
            .body(if is_get {
                Body::from_vec(vec![b'x'; size])
            } else {
                Body::empty()
            });
    }
    if let Some(size) = path.strip_prefix("/chunked/") {
        // No Content-Length: the size shows only while reading.
        let size: usize = size.parse().unwrap_or(0);
        let chunks = (0..size.div_ceil(4096))
            .map(move |i| Ok::<_, std::io::Error>(Bytes::from(vec![b'y'; 4096.min(size - i * 4096)])));
        return Response::builder()
            .header("Content-Type", "text/plain")
            .body(if is_get {
                Body::from_bytes_stream(futures::stream::iter(chunks))
            } else {
                Body::empty()
            });
    }
    Response::builder().status(StatusCode::NOT_FOUND).body("unknown")
}
