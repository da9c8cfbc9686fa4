//! The connection loop of the gateway: every accepted TCP connection is served as HTTP/1.1 by
//! hyper, and every request on it by the poem endpoint (routes, OpenAPI operations,
//! middleware).
//!
//! poem's own `Server` sniffs each connection for HTTP/2 (hyper-util's `auto` builder) and
//! keeps a large future per connection. The sniffed prefix makes hyper's read buffer double
//! to 16 KiB, and that future holds both protocols' connection state: about 32 KiB per open
//! stream in all (measured with `dhat`, see `bench/RESULTS.md`). OpenAI clients speak
//! HTTP/1.1; serving that alone halves the cost of a connection. Beyond poem's loop, this one
//! sets `TCP_NODELAY` (each event of a stream leaves at once), bounds the time to send a
//! request head (slow-header clients), backs off when accepting fails (out of descriptors)
//! instead of spinning, gives the answers hyper writes by itself to heads it cannot parse
//! (400, 414, 431) an OpenAI-shaped body ([`ShapedParseErrors`]), and shuts down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::combinators::BoxBody;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use poem::endpoint::BoxEndpoint;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::http::error::{ApiError, ErrorCode, ErrorType};

/// A client must send its whole request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest request head (request line and headers) accepted, in bytes: hyper's own read
/// buffer bound. Set as a head limit too, so that a head past it is refused (431) however its
/// bytes arrive: the buffer bound alone is checked only between reads, and one read can carry a
/// head past it whole.
const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// The endpoint every connection shares.
type SharedEndpoint = Arc<BoxEndpoint<'static>>;

/// What the service answers a request with.
type Answer = Result<hyper::Response<BoxBody<Bytes, io::Error>>, Infallible>;

/// Serves `endpoint` on `listener` until `shutdown` resolves; then stops accepting, lets the
/// requests and streams in flight finish for at most `grace`, and closes what is left.
///
/// # Errors
/// When the listener's address cannot be read.
pub async fn serve<E>(
    listener: TcpListener,
    endpoint: E,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint + 'static,
{
    let local = listener.local_addr()?;
    let endpoint: SharedEndpoint = Arc::new(endpoint.map_to_response().boxed());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_header_size(MAX_HEAD_BYTES);
    let graceful = GracefulShutdown::new();
    // Cancels the connections still open when the grace period is over.
    let cut = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, remote) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or memory: retrying at once would only spin.
                tracing::warn!(%error, "accepting a connection failed; pausing");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Fails only on a socket the peer has already closed; serving it then fails anyway.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let exchanges = Arc::new(Exchanges::default());
        let connection = builder.serve_connection(
            ShapedParseErrors::new(TokioIo::new(stream), Arc::clone(&exchanges)),
            service(Arc::clone(&endpoint), local, remote, exchanges),
        );
        let connection = graceful.watch(connection);
        let cut = cut.clone();
        tokio::spawn(async move {
            tokio::select! {
                served = connection => {
                    if let Err(error) = served {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                }
                () = cut.cancelled() => {}
            }
        });
    }
    drop(listener);
    tracing::info!(
        grace_secs = grace.as_secs_f32(),
        "shutting down: finishing the requests in flight"
    );
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("the grace period is over; closing the connections still open");
            cut.cancel();
        }
    }
    Ok(())
}

/// The hyper service of one connection: each request goes to the poem endpoint, and
/// `exchanges` counts the requests taken and the responses done.
fn service(
    endpoint: SharedEndpoint,
    local: SocketAddr,
    remote: SocketAddr,
    exchanges: Arc<Exchanges>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<BoxBody<Bytes, io::Error>>,
    Error = Infallible,
    Future = BoxFuture<'static, Answer>,
> {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let endpoint = Arc::clone(&endpoint);
        exchanges.taken.fetch_add(1, Ordering::Release);
        let answered = Answered(Arc::clone(&exchanges));
        // Boxed: hyper keeps a slot the size of this future for the connection's whole life
        // (2.3 KB, by the heap profile); the box holds it only while a request is handled.
        Box::pin(async move {
            let request = poem::Request::from((
                request,
                LocalAddr(local.into()),
                RemoteAddr(remote.into()),
                Scheme::HTTP,
            ));
            let response: hyper::Response<BoxBody<Bytes, io::Error>> = endpoint.get_response(request).await.into();
            Ok(response.map(|body| {
                BoxBody::new(AnsweredBody {
                    body,
                    _answered: answered,
                })
            }))
        }) as BoxFuture<'static, Answer>
    })
}

/// What a connection's service and its socket share: how many requests the service has
/// taken and how many of their responses are done (the body sent or dropped). While they
/// differ, a response of the service is still to be written, and nothing hyper writes is its
/// own answer. (Equal is not enough the other way: hyper drops a short body before it writes
/// it out, so [`ShapedParseErrors`] also looks at the head.)
#[derive(Debug, Default)]
struct Exchanges {
    taken: AtomicU64,
    answered: AtomicU64,
}

impl Exchanges {
    fn idle(&self) -> bool {
        self.answered.load(Ordering::Acquire) == self.taken.load(Ordering::Acquire)
    }
}

/// Counts a response as done when dropped: with its body, whether hyper sent it whole, gave up
/// on it, or never needed it (HEAD); or with the request, when it is never answered.
struct Answered(Arc<Exchanges>);

impl Drop for Answered {
    fn drop(&mut self) {
        self.0.answered.fetch_add(1, Ordering::Release);
    }
}

/// A response body that marks its response done when dropped.
struct AnsweredBody {
    body: BoxBody<Bytes, io::Error>,
    _answered: Answered,
}

impl hyper::body::Body for AnsweredBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A connection's socket as hyper sees it. hyper answers a request head it cannot parse by
/// itself, with an empty body, and closes the connection (it offers no hook for that
/// answer); this socket recognises that answer and writes in its place the same status with
/// an OpenAI-shaped JSON body. hyper's answer is a bare head (a status it uses for unparsable
/// heads, `content-length: 0`, `date`, perhaps `connection`), written while the service has
/// no response in flight ([`Exchanges`]); every response of the service with those statuses
/// carries an OpenAI-shaped body, so it never looks like that. Everything else passes through
/// untouched.
struct ShapedParseErrors<T> {
    io: T,
    exchanges: Arc<Exchanges>,
    replacing: Replacing,
}

/// Where a [`ShapedParseErrors`] is in replacing hyper's answer.
enum Replacing {
    /// Nothing to replace (yet): writes pass through.
    No,
    /// Writing `answer` (`written` bytes of it so far) in place of hyper's `hyper_len` bytes.
    Writing {
        answer: Vec<u8>,
        written: usize,
        hyper_len: usize,
    },
    /// The answer is out and says `connection: close`: anything hyper writes after it would
    /// only garble it, so it is dropped.
    Done,
}

impl<T> ShapedParseErrors<T> {
    fn new(io: T, exchanges: Arc<Exchanges>) -> Self {
        Self {
            io,
            exchanges,
            replacing: Replacing::No,
        }
    }

    /// When hyper starts writing `head` (`hyper_len` bytes in all) with no response of the
    /// service in flight: the answer to write instead, for the statuses hyper uses for heads
    /// it cannot parse.
    fn replace(&mut self, head: &[u8], hyper_len: usize) {
        if !matches!(self.replacing, Replacing::No) || !self.exchanges.idle() {
            return;
        }
        let Some(status) = hyper_parse_error_status(head) else {
            return;
        };
        if let Some(answer) = parse_error_answer(status) {
            self.replacing = Replacing::Writing {
                answer,
                written: 0,
                hyper_len,
            };
        }
    }
}

/// The status of `head` when it has the shape of hyper's own answers: a status line and no
/// header but `content-length: 0`, `date` and perhaps `connection` (hyper names no other).
fn hyper_parse_error_status(head: &[u8]) -> Option<&[u8]> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let status = rest.get(..3)?;
    let end = rest.windows(4).position(|window| window == b"\r\n\r\n")?;
    let mut lines = rest[..end].split(|byte| *byte == b'\n').skip(1);
    let mut empty_body = false;
    let own_headers = lines.all(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        empty_body |= line == b"content-length: 0";
        line == b"content-length: 0" || line.starts_with(b"date: ") || line.starts_with(b"connection: ")
    });
    (own_headers && empty_body).then_some(status)
}

/// The OpenAI-shaped answer for one of the statuses hyper gives unparsable heads.
fn parse_error_answer(status: &[u8]) -> Option<Vec<u8>> {
    let kind = ErrorType::InvalidRequestError;
    let error = match status {
        b"400" => ApiError::new(
            poem::http::StatusCode::BAD_REQUEST,
            kind,
            ErrorCode::MalformedRequest,
            "the request is not valid HTTP/1.1: its request line or a header could not be parsed",
        ),
        b"414" => ApiError::new(
            poem::http::StatusCode::URI_TOO_LONG,
            kind,
            ErrorCode::UriTooLong,
            "the request URI is too long",
        ),
        b"431" => ApiError::new(
            poem::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            kind,
            ErrorCode::HeadersTooLarge,
            "the request head is too large: at most 100 headers, of about 400 KB in all",
        ),
        _ => return None,
    };
    let body = serde_json::to_string(&error.body).ok()?;
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\n\
         connection: close\r\ndate: {}\r\n\r\n",
        error.status.as_u16(),
        error.status.canonical_reason().unwrap_or(""),
        body.len(),
        httpdate::fmt_http_date(SystemTime::now()),
    );
    Some([head.into_bytes(), body.into_bytes()].concat())
}

impl<T: hyper::rt::Write + Unpin> ShapedParseErrors<T> {
    /// Writes the replacement out, then reports hyper's `len` bytes as written; `None` when
    /// not replacing.
    fn poll_replacement(&mut self, cx: &mut Context<'_>, len: usize) -> Option<Poll<io::Result<usize>>> {
        loop {
            match &mut self.replacing {
                Replacing::No => return None,
                Replacing::Done => return Some(Poll::Ready(Ok(len))),
                Replacing::Writing {
                    answer,
                    written,
                    hyper_len,
                } => {
                    if *written == answer.len() {
                        let hyper_len = *hyper_len;
                        self.replacing = Replacing::Done;
                        return Some(Poll::Ready(Ok(hyper_len)));
                    }
                    match Pin::new(&mut self.io).poll_write(cx, &answer[*written..]) {
                        Poll::Ready(Ok(0)) => return Some(Poll::Ready(Err(io::ErrorKind::WriteZero.into()))),
                        Poll::Ready(Ok(n)) => *written += n,
                        other => return Some(other),
                    }
                }
            }
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for ShapedParseErrors<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for ShapedParseErrors<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        this.replace(buf, buf.len());
        match this.poll_replacement(cx, buf.len()) {
            Some(replaced) => replaced,
            None => Pin::new(&mut this.io).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let len = bufs.iter().map(|buf| buf.len()).sum();
        if let Some(first) = bufs.iter().find(|buf| !buf.is_empty()) {
            this.replace(first, len);
        }
        match this.poll_replacement(cx, len) {
            Some(replaced) => replaced,
            None => Pin::new(&mut this.io).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::{Route, get, handler};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[handler]
    fn hello() -> &'static str {
        "hello"
    }

    #[handler]
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_millis(300)).await;
        "slow"
    }

    #[handler]
    async fn endless() -> &'static str {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        "never"
    }

    async fn start(
        grace: Duration,
    ) -> io::Result<(
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<io::Result<()>>,
    )> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Route::new()
            .at("/hello", get(hello))
            .at("/slow", get(slow))
            .at("/endless", get(endless));
        let server = tokio::spawn(serve(
            listener,
            app,
            async move {
                let _ = stopped.await;
            },
            grace,
        ));
        Ok((addr, stop, server))
    }

    async fn get_path(addr: SocketAddr, path: &str) -> io::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    }

    /// Starts the server, sends a request for `path`, and asks for shutdown while it is in
    /// flight.
    async fn shut_down_during(
        path: &'static str,
        grace: Duration,
    ) -> io::Result<(
        SocketAddr,
        tokio::task::JoinHandle<io::Result<()>>,
        tokio::task::JoinHandle<io::Result<String>>,
    )> {
        let (addr, stop, server) = start(grace).await?;
        let in_flight = tokio::spawn(get_path(addr, path));
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        Ok((addr, server, in_flight))
    }

    #[tokio::test]
    async fn serves_the_endpoint_over_http_1_1() -> io::Result<()> {
        let (addr, stop, server) = start(Duration::from_secs(5)).await?;
        let answer = get_path(addr, "/hello").await?;
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nhello"), "{answer}");
        let missing = get_path(addr, "/nothing").await?;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let _ = stop.send(());
        server.await.map_err(io::Error::other)??;
        Ok(())
    }

    #[test]
    fn only_heads_of_hyper_s_own_shape_are_replaced() {
        let date = "date: Mon, 01 Jan 2024 00:00:00 GMT\r\n\r\n";
        let own = format!("HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n{date}");
        assert_eq!(hyper_parse_error_status(own.as_bytes()), Some(&b"431"[..]));
        let ours = format!("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 9\r\n{date}");
        assert_eq!(hyper_parse_error_status(ours.as_bytes()), None);
        let closing = format!("HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n{date}");
        assert_eq!(hyper_parse_error_status(closing.as_bytes()), Some(&b"400"[..]));
        let chunk = format!("1a\r\nHTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{date}");
        assert_eq!(hyper_parse_error_status(chunk.as_bytes()), None);
        assert!(
            parse_error_answer(b"404").is_none(),
            "only the statuses of unparsable heads"
        );
    }

    #[tokio::test]
    async fn a_head_hyper_cannot_parse_is_answered_with_an_openai_error() -> io::Result<()> {
        let (addr, stop, _server) = start(Duration::from_secs(5)).await?;
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nno colon\r\n\r\n")
            .await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        let (first, second) = answer.split_once("hello").unwrap_or_default();
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(second.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{answer}");
        let body = second.split_once("\r\n\r\n").map(|(_, body)| body).unwrap_or_default();
        let body: serde_json::Value =
            serde_json::from_str(body).map_err(|e| io::Error::other(format!("{e}: {answer:?}")))?;
        assert_eq!(body["error"]["code"], "malformed_request", "{answer}");
        let _ = stop.send(());
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_finishes_the_requests_in_flight_and_stops_accepting() -> io::Result<()> {
        let (addr, server, in_flight) = shut_down_during("/slow", Duration::from_secs(5)).await?;
        server.await.map_err(io::Error::other)??;
        let answer = in_flight.await.map_err(io::Error::other)??;
        assert!(answer.ends_with("\r\n\r\nslow"), "{answer}");
        assert!(
            tokio::net::TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
        Ok(())
    }

    #[tokio::test]
    async fn shutdown_closes_what_is_left_after_the_grace_period() -> io::Result<()> {
        let (_, server, in_flight) = shut_down_during("/endless", Duration::from_millis(50)).await?;
        // The handler would take an hour: the server must give up on it after the grace.
        tokio::time::timeout(Duration::from_secs(20), server)
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)??;
        let answer = tokio::time::timeout(Duration::from_secs(20), in_flight)
            .await
            .map_err(io::Error::other)?
            .map_err(io::Error::other)?;
        // Closed without an answer (an orderly close, or a reset).
        assert!(
            answer.as_ref().is_ok_and(String::is_empty) || answer.is_err(),
            "{answer:?}"
        );
        Ok(())
    }
}
