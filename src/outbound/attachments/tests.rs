//! The fetcher against a small file server on 127.0.0.1, with names resolved by a fixed table.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use poem::http::{Method, StatusCode};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{Body, Endpoint, Request, Response, Server};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::*;
use crate::domain::chat::AttachmentContent;

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";
const PDF: &[u8] = b"%PDF-1.4\n1 0 obj << >> endobj\ntrailer << >>\n%%EOF\n";
const LIMIT: u64 = 1024;
const BIG: usize = 4096;
/// A chunked body longer than the bytes read while opening.
const LONG: usize = 64 * 1024;

/// Names to addresses, like DNS would answer them.
struct FixedResolver(HashMap<&'static str, Vec<IpAddr>>);

impl Resolve for FixedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let found = self.0.get(name.as_str()).cloned();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = found.ok_or_else(|| format!("no such host: {host}"))?;
            Ok(Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0))) as Addrs)
        })
    }
}

fn test_resolver() -> Arc<dyn Resolve> {
    let ip = |text: &str| text.parse::<IpAddr>().unwrap();
    Arc::new(FixedResolver(HashMap::from([
        ("files.test", vec![ip("127.0.0.1")]),
        ("internal.test", vec![ip("10.0.0.7")]),
        ("mixed.test", vec![ip("127.0.0.1"), ip("192.168.1.1")]),
    ])))
}

/// The file server's routes.
struct FileServer {
    big_gets: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Endpoint for FileServer {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let head = req.method() == Method::HEAD;
        let path = req.uri().path().to_owned();
        let ok = |content_type: Option<&str>, body: &'static [u8]| {
            let mut builder = Response::builder().status(StatusCode::OK);
            if let Some(content_type) = content_type {
                builder = builder.content_type(content_type);
            }
            builder.body(Body::from_bytes(Bytes::from_static(body)))
        };
        Ok(match path.as_str() {
            "/image.png" => ok(Some("image/png"), PNG),
            "/report.pdf" => ok(None, PDF),
            "/document" => ok(None, PDF),
            "/typed" => ok(Some("application/pdf; qs=0.9"), PDF),
            "/octet.png" => ok(Some("application/octet-stream"), PNG),
            "/missing.png" => Response::builder().status(StatusCode::NOT_FOUND).body("not found"),
            "/no-head.txt" if head => Response::builder().status(StatusCode::METHOD_NOT_ALLOWED).finish(),
            "/no-head.txt" => ok(Some("text/plain; charset=utf-8"), b"hello"),
            "/big.bin" => {
                if !head {
                    self.big_gets.fetch_add(1, Ordering::SeqCst);
                }
                Response::builder().body(vec![7u8; BIG])
            }
            "/presigned.png" if head => Response::builder().status(StatusCode::FORBIDDEN).finish(),
            "/presigned.png" => ok(Some("image/png"), PNG),
            "/big-no-head" if head => Response::builder().status(StatusCode::METHOD_NOT_ALLOWED).finish(),
            "/big-no-head" => Response::builder().body(vec![7u8; BIG]),
            "/stream" => {
                let chunks = (0..BIG / 512).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![1u8; 512])));
                Response::builder().body(Body::from_bytes_stream(futures::stream::iter(chunks)))
            }
            "/long" => {
                let chunks = (0..LONG / 1024).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![2u8; 1024])));
                Response::builder().body(Body::from_bytes_stream(futures::stream::iter(chunks)))
            }
            "/stall" => {
                // More than the bytes read while opening, then nothing more.
                let first =
                    futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from(vec![3u8; 2 * SNIFF_BYTES])) });
                Response::builder().body(Body::from_bytes_stream(first.chain(futures::stream::pending())))
            }
            "/slow" => {
                tokio::time::sleep(Duration::from_secs(3)).await;
                ok(None, PNG)
            }
            "/redirect" => {
                let query = req.uri().query().unwrap_or_default().to_owned();
                let target = url::form_urlencoded::parse(query.as_bytes())
                    .find(|(key, _)| key == "to")
                    .map(|(_, value)| value.into_owned())
                    .unwrap_or_default();
                redirect(&target)
            }
            hops if hops.starts_with("/hops/") => match hops["/hops/".len()..].parse::<u32>() {
                Ok(0) => ok(Some("image/png"), PNG),
                Ok(left) => redirect(&format!("/hops/{}", left - 1)),
                Err(_) => Response::builder().status(StatusCode::BAD_REQUEST).finish(),
            },
            _ => Response::builder().status(StatusCode::NOT_FOUND).finish(),
        })
    }
}

fn redirect(location: &str) -> Response {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("location", location)
        .finish()
}

struct Files {
    port: u16,
    big_gets: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Files {
    async fn spawn() -> Files {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let port = acceptor
            .local_addr()
            .iter()
            .find_map(|local| local.as_socket_addr().map(SocketAddr::port))
            .unwrap();
        let big_gets = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let server = FileServer {
            big_gets: Arc::clone(&big_gets),
            requests: Arc::clone(&requests),
        };
        tokio::spawn(Server::new_with_acceptor(acceptor).run(server));
        Files {
            port,
            big_gets,
            requests,
        }
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.port)
    }

    fn redirect_to(&self, target: &str) -> String {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("to", target)
            .finish();
        self.url("files.test", &format!("/redirect?{query}"))
    }
}

fn settings(max_bytes: u64, allow_private_networks: bool) -> FileSettings {
    FileSettings {
        max_bytes,
        max_per_message: 10,
        max_total_bytes: u64::MAX,
        download_timeout: Duration::from_secs(1),
        allow_private_networks,
    }
}

/// A fetcher that resolves the test names and trusts 127.0.0.1 alone.
fn fetcher(max_bytes: u64) -> AttachmentFetcher {
    fetcher_with(settings(max_bytes, false))
}

fn fetcher_with(settings: FileSettings) -> AttachmentFetcher {
    let policy = AddressPolicy::public_only().trusting(["127.0.0.1".parse().unwrap()]);
    AttachmentFetcher::with_parts(&settings, policy, test_resolver()).unwrap()
}

/// An attachment read whole, as its upload would read it.
#[derive(Debug)]
struct Fetched {
    file_name: String,
    mime: String,
    length: Option<u64>,
    bytes: Vec<u8>,
}

impl Fetched {
    fn is_image(&self) -> bool {
        self.mime.starts_with("image/")
    }
}

/// Reads an attachment's content to its end.
async fn read_whole(attachment: Attachment) -> Result<Fetched, AttachmentError> {
    let mut bytes = Vec::new();
    let mut content = attachment.content;
    while let Some(piece) = content.next().await {
        bytes.extend_from_slice(&piece?);
    }
    Ok(Fetched {
        file_name: attachment.file_name,
        mime: attachment.mime,
        length: attachment.length,
        bytes,
    })
}

/// Attachments known by their URLs alone.
fn urls<'a>(urls: &[&'a str]) -> Vec<AttachmentRef<'a>> {
    urls.iter().copied().map(AttachmentRef::url).collect()
}

/// Opening one URL and reading it whole, for the tests of a single attachment.
trait FetchWhole {
    async fn fetch(&self, url: &str) -> Result<Fetched, AttachmentError>;
}

impl FetchWhole for AttachmentFetcher {
    async fn fetch(&self, url: &str) -> Result<Fetched, AttachmentError> {
        let mut opened = self.open(&urls(&[url])).await?;
        assert_eq!(opened.len(), 1);
        read_whole(opened.remove(0)).await
    }
}

#[track_caller]
fn invalid<T: std::fmt::Debug>(result: Result<T, AttachmentError>) -> String {
    match result {
        Err(AttachmentError::Invalid(message)) => message,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[track_caller]
fn too_large<T: std::fmt::Debug>(result: Result<T, AttachmentError>) -> String {
    match result {
        Err(AttachmentError::TooLarge(message)) => message,
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

#[track_caller]
fn assert_not_allowed(message: &str) {
    assert!(message.contains("is not allowed"), "{message}");
}

fn extension(attachment: &Fetched) -> &str {
    attachment.file_name.rsplit_once('.').unwrap().1
}

#[tokio::test]
async fn an_image_is_downloaded_by_name_with_its_bytes_type_and_a_fresh_name() {
    let files = Files::spawn().await;
    let attachment = fetcher(LIMIT)
        .fetch(&files.url("files.test", "/image.png"))
        .await
        .unwrap();
    assert_eq!(&attachment.bytes[..], PNG);
    assert_eq!(attachment.mime, "image/png");
    assert!(attachment.is_image());
    let (stem, ext) = attachment.file_name.rsplit_once('.').unwrap();
    assert_eq!(ext, "png");
    assert!(uuid::Uuid::parse_str(stem).is_ok());
}

#[tokio::test]
async fn without_a_content_type_the_type_comes_from_the_extension_then_the_magic() {
    let files = Files::spawn().await;
    let fetcher = fetcher(LIMIT);
    for path in ["/report.pdf", "/document", "/typed"] {
        let attachment = fetcher.fetch(&files.url("files.test", path)).await.unwrap();
        assert_eq!(&attachment.bytes[..], PDF, "{path}");
        assert_eq!(attachment.mime, "application/pdf", "{path}");
        assert_eq!(extension(&attachment), "pdf", "{path}");
    }
    let octet = fetcher.fetch(&files.url("files.test", "/octet.png")).await.unwrap();
    assert_eq!(octet.mime, "image/png");
}

#[tokio::test]
async fn a_server_refusing_head_still_serves_the_file() {
    let files = Files::spawn().await;
    let attachment = fetcher(LIMIT)
        .fetch(&files.url("files.test", "/no-head.txt"))
        .await
        .unwrap();
    assert_eq!(&attachment.bytes[..], b"hello");
    assert_eq!(attachment.mime, "text/plain");
    assert_eq!(extension(&attachment), "txt");
}

#[tokio::test]
async fn a_link_valid_for_get_only_still_serves_the_file() {
    let files = Files::spawn().await;
    let attachment = fetcher(LIMIT)
        .fetch(&files.url("files.test", "/presigned.png"))
        .await
        .unwrap();
    assert_eq!(&attachment.bytes[..], PNG);
    assert_eq!(attachment.mime, "image/png");
    assert_eq!(extension(&attachment), "png");
}

#[tokio::test]
async fn a_missing_file_is_invalid_naming_the_url_and_the_status() {
    let files = Files::spawn().await;
    let message = invalid(fetcher(LIMIT).fetch(&files.url("files.test", "/missing.png")).await);
    assert!(message.contains("/missing.png") && message.contains("404"), "{message}");
}

#[tokio::test]
async fn a_declared_size_over_the_limit_is_too_large_without_downloading() {
    let files = Files::spawn().await;
    let message = too_large(fetcher(LIMIT).fetch(&files.url("files.test", "/big.bin")).await);
    assert!(message.contains("/big.bin") && message.contains("1024"), "{message}");
    assert_eq!(files.big_gets.load(Ordering::SeqCst), 0);
    too_large(fetcher(LIMIT).fetch(&files.url("files.test", "/big-no-head")).await);
}

#[tokio::test]
async fn an_undeclared_body_is_cut_once_it_passes_the_limit() {
    let files = Files::spawn().await;
    too_large(fetcher(LIMIT).fetch(&files.url("files.test", "/stream")).await);
    let whole = fetcher(BIG as u64)
        .fetch(&files.url("files.test", "/stream"))
        .await
        .unwrap();
    assert_eq!(whole.bytes.len(), BIG);
    assert_eq!(whole.mime, "application/octet-stream");
    assert_eq!(extension(&whole), "bin");
}

#[tokio::test]
async fn a_literal_loopback_address_is_refused_by_the_default_policy() {
    let files = Files::spawn().await;
    let fetcher = AttachmentFetcher::new(&settings(LIMIT, false)).unwrap();
    assert_not_allowed(&invalid(fetcher.fetch(&files.url("127.0.0.1", "/image.png")).await));
    assert_not_allowed(&invalid(fetcher.fetch(&files.url("[::1]", "/image.png")).await));
    assert_not_allowed(&invalid(fetcher.fetch(&files.url("localhost", "/image.png")).await));
}

#[tokio::test]
async fn allowing_private_networks_lets_loopback_through() {
    let files = Files::spawn().await;
    let fetcher = AttachmentFetcher::new(&settings(LIMIT, true)).unwrap();
    let attachment = fetcher.fetch(&files.url("127.0.0.1", "/image.png")).await.unwrap();
    assert_eq!(&attachment.bytes[..], PNG);
}

#[tokio::test]
async fn names_resolving_to_any_private_address_are_refused() {
    let files = Files::spawn().await;
    let fetcher = fetcher(LIMIT);
    let internal = invalid(fetcher.fetch(&files.url("internal.test", "/image.png")).await);
    assert_not_allowed(&internal);
    assert!(
        internal.contains("10.0.0.7") && internal.contains("private"),
        "{internal}"
    );
    let mixed = invalid(fetcher.fetch(&files.url("mixed.test", "/image.png")).await);
    assert_not_allowed(&mixed);
    assert!(mixed.contains("192.168.1.1"), "{mixed}");
}

#[tokio::test]
async fn redirects_to_internal_addresses_or_other_schemes_are_refused() {
    let files = Files::spawn().await;
    let fetcher = fetcher(LIMIT);
    for target in [
        files.url("internal.test", "/image.png"),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://[::ffff:10.0.0.1]/".to_owned(),
    ] {
        let message = invalid(fetcher.fetch(&files.redirect_to(&target)).await);
        assert_not_allowed(&message);
    }
    let message = invalid(fetcher.fetch(&files.redirect_to("ftp://files.test/image.png")).await);
    assert!(
        message.contains("ftp") && message.contains("only http and https"),
        "{message}"
    );
}

#[tokio::test]
async fn five_redirects_are_followed_and_six_are_refused() {
    let files = Files::spawn().await;
    let fetcher = fetcher(LIMIT);
    let attachment = fetcher.fetch(&files.url("files.test", "/hops/5")).await.unwrap();
    assert_eq!(&attachment.bytes[..], PNG);
    let message = invalid(fetcher.fetch(&files.url("files.test", "/hops/6")).await);
    assert!(message.contains("more than 5"), "{message}");
}

#[tokio::test]
async fn an_unreachable_host_is_invalid_and_not_called_forbidden() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let fetcher = fetcher(LIMIT);
    let refused = invalid(fetcher.fetch(&format!("http://files.test:{port}/a.png")).await);
    assert!(
        refused.contains("could not be reached") && refused.contains("files.test"),
        "{refused}"
    );
    let unknown = invalid(fetcher.fetch("http://nowhere.test/a.png").await);
    assert!(unknown.contains("could not be reached"), "{unknown}");
}

#[tokio::test]
async fn a_server_slower_than_the_timeout_is_invalid() {
    let files = Files::spawn().await;
    let message = invalid(fetcher(LIMIT).fetch(&files.url("files.test", "/slow")).await);
    assert!(message.contains("did not answer within 1 s"), "{message}");
}

#[tokio::test]
async fn other_schemes_are_invalid_naming_the_allowed_ones() {
    let fetcher = fetcher(LIMIT);
    for url in [
        "ftp://files.test/a.png",
        "file:///etc/passwd",
        "gopher://files.test/",
        "files.test/a.png",
    ] {
        let message = invalid(fetcher.fetch(url).await);
        assert!(message.contains("http, https or data"), "{url}: {message}");
    }
}

#[tokio::test]
async fn data_urls_are_decoded_and_named() {
    let fetcher = fetcher(LIMIT);
    let png = fetcher
        .fetch("data:image/png;base64,iVBORw0KGgoAAAANSUhEUg==")
        .await
        .unwrap();
    assert_eq!(png.mime, "image/png");
    assert_eq!(extension(&png), "png");
    let sniffed = fetcher.fetch("data:;base64,JVBERi0xLjQK").await.unwrap();
    assert_eq!(sniffed.mime, "application/pdf");
    let text = fetcher.fetch("data:,hello%20world").await.unwrap();
    assert_eq!(text.mime, "text/plain");
    assert_eq!(&text.bytes[..], b"hello world");
    assert_eq!(extension(&text), "txt");
}

#[tokio::test]
async fn bad_data_urls_are_invalid_and_never_quoted_whole() {
    let fetcher = fetcher(LIMIT);
    let long_bad = format!("data:image/png;base64,{}!", "A".repeat(400));
    let message = invalid(fetcher.fetch(&long_bad).await);
    assert!(message.contains("base64") && message.len() < 200, "{message}");
    assert!(invalid(fetcher.fetch("data:image/png;base64,").await).contains("no data"));
    assert!(invalid(fetcher.fetch("data:image/png;base64").await).contains("no comma"));
    let big = format!("data:;base64,{}", "A".repeat(2000));
    let message = too_large(fetcher.fetch(&big).await);
    assert!(message.contains("1024") && message.len() < 200, "{message}");
}

#[test]
fn error_messages_quote_urls_shortened_and_without_passwords() {
    assert_eq!(quote("https://a.test/x"), "`https://a.test/x`");
    assert_eq!(quote("https://user:secret@a.test/x"), "`https://user:***@a.test/x`");
    let long = format!("data:text/plain,{}", "é".repeat(100));
    let quoted = quote(&long);
    assert!(
        quoted.ends_with("…`") && quoted.chars().count() == QUOTED_URL_CHARS + 3,
        "{quoted}"
    );
}

#[tokio::test]
async fn a_download_declares_its_length_and_reads_its_first_bytes_only_when_opened() {
    let files = Files::spawn().await;
    let fetcher = fetcher(LONG as u64);
    let mut opened = fetcher
        .open(&urls(&[&files.url("files.test", "/image.png")]))
        .await
        .unwrap();
    let attachment = opened.remove(0);
    assert_eq!(attachment.length, Some(PNG.len() as u64));
    assert_eq!(read_whole(attachment).await.unwrap().bytes, PNG);
    let long = fetcher.fetch(&files.url("files.test", "/long")).await.unwrap();
    assert_eq!(
        (long.length, long.bytes.len()),
        (None, LONG),
        "chunked: no length known before"
    );
}

#[tokio::test]
async fn more_files_than_a_message_may_carry_are_refused_before_any_request() {
    let files = Files::spawn().await;
    let fetcher = fetcher_with(FileSettings {
        max_per_message: 2,
        ..settings(LIMIT, false)
    });
    let url = files.url("files.test", "/image.png");
    let message = invalid(fetcher.open(&urls(&[&url, &url, &url])).await);
    assert!(
        message.contains("attaches 3 files") && message.contains("at most 2"),
        "{message}"
    );
    assert_eq!(files.requests.load(Ordering::SeqCst), 0);
    assert_eq!(fetcher.open(&urls(&[&url, &url])).await.unwrap().len(), 2);
}

#[tokio::test]
async fn declared_sizes_past_the_total_are_refused_while_opening() {
    let files = Files::spawn().await;
    let fetcher = fetcher_with(FileSettings {
        max_total_bytes: (BIG + BIG / 2) as u64,
        ..settings(BIG as u64, false)
    });
    let big = files.url("files.test", "/big.bin");
    let message = too_large(fetcher.open(&urls(&[&big, &big])).await);
    assert!(message.contains("6144 bytes in total"), "{message}");
    assert_eq!(fetcher.open(&urls(&[&big])).await.unwrap().len(), 1, "one alone fits");
}

#[tokio::test]
async fn undeclared_bodies_past_the_total_fail_as_they_are_read_and_so_do_their_siblings() {
    let files = Files::spawn().await;
    let fetcher = fetcher_with(FileSettings {
        max_total_bytes: (LONG + LONG / 4) as u64,
        ..settings(LONG as u64, false)
    });
    let long = files.url("files.test", "/long");
    let mut opened = fetcher.open(&urls(&[&long, &long])).await.unwrap();
    let second = opened.pop().unwrap();
    let first = read_whole(opened.pop().unwrap()).await.unwrap();
    assert_eq!(first.bytes.len(), LONG);
    let message = too_large(read_whole(second).await);
    assert!(
        message.contains(&format!("{} bytes in total", LONG + LONG / 4)),
        "{message}"
    );
}

#[tokio::test]
async fn once_the_total_is_passed_every_other_download_of_the_request_stops() {
    let files = Files::spawn().await;
    let fetcher = fetcher_with(FileSettings {
        max_total_bytes: (3 * SNIFF_BYTES) as u64,
        ..settings(LONG as u64, false)
    });
    let long = files.url("files.test", "/long");
    let mut opened = fetcher.open(&urls(&[&long, &long, &long])).await.unwrap();
    // The three openings read 3 × SNIFF_BYTES: the next byte of any file passes the total.
    let mut third = opened.pop().unwrap().content;
    let mut second = opened.pop().unwrap().content;
    let mut first = opened.pop().unwrap().content;
    assert!(first.next().await.unwrap().is_ok(), "bytes read while opening are kept");
    let mut failed = false;
    while let Some(piece) = first.next().await {
        failed = piece.is_err();
    }
    assert!(failed, "the first file fails past the total");
    assert!(second.next().await.unwrap().is_ok(), "its own bytes read while opening");
    let next = async |content: &mut AttachmentContent| loop {
        match content.next().await {
            Some(Ok(_)) => {}
            other => return other,
        }
    };
    too_large(next(&mut second).await.unwrap());
    too_large(next(&mut third).await.unwrap());
}

#[tokio::test]
async fn data_urls_count_against_the_total() {
    let fetcher = fetcher_with(FileSettings {
        max_total_bytes: 5,
        ..settings(LIMIT, false)
    });
    let message = too_large(fetcher.open(&urls(&["data:,abc", "data:,def"])).await);
    assert!(message.contains("5 bytes in total"), "{message}");
    assert_eq!(fetcher.open(&urls(&["data:,abc"])).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_body_that_stalls_once_it_is_read_fails_at_the_download_timeout() {
    let files = Files::spawn().await;
    let fetcher = fetcher(LONG as u64);
    let mut opened = fetcher
        .open(&urls(&[&files.url("files.test", "/stall")]))
        .await
        .unwrap();
    // The timeout counts from the first read of the body, not from the opening.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let started = std::time::Instant::now();
    let message = invalid(read_whole(opened.remove(0)).await);
    assert!(message.contains("did not answer within 1 s"), "{message}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}
