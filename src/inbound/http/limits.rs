//! Request bodies, read in one place before any route sees them. Only the operations that take
//! a body ([`BODY_ROUTES`]) read one; any other request carrying a body (`GET /ping` with a
//! chunked upload, an unknown route) gets 413 at once, its body unread, and its connection is
//! closed. A body that may be read arrives under `server.max_body_bytes` (413),
//! `server.body_timeout_secs` and `server.min_body_bytes_per_sec` (408) ([`LimitedBody`]), so
//! neither a huge nor a trickling body can hold memory or a connection for long. A JSON body
//! is read here whole into one buffer; a multipart form streams on to its parser, which
//! spools the file to disk.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use poem::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use poem::http::{HeaderMap, HeaderValue, Method, StatusCode};
use poem::{Body, Endpoint, IntoResponse, Middleware, Request, Response, Result};
use tokio::time::{Instant, Sleep};

use super::error::{ApiError, ErrorCode, ErrorType};
use crate::config::BodyLimits;

/// The operations that take a request body: every other request must come without one. The
/// OpenAPI document's operations with a `requestBody` are exactly these (a test keeps it so).
pub const BODY_ROUTES: [(Method, &str); 4] = [
    (Method::POST, "/v1/chat/completions"),
    (Method::POST, "/v1/audio/speech"),
    (Method::POST, "/v1/audio/transcriptions"),
    (Method::POST, "/token/check"),
];

/// The first allocation for a body of unknown length: a trickle of tiny frames then costs
/// about what it has sent.
const FIRST_CAPACITY: usize = 1024;

/// Reads request bodies under [`BodyLimits`] and refuses bodies where none belongs.
pub struct BodyLimit {
    limits: BodyLimits,
}

impl BodyLimit {
    /// The middleware for these limits.
    pub fn new(limits: BodyLimits) -> Self {
        Self { limits }
    }
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            limits: self.limits,
        }
    }
}

/// An endpoint behind a [`BodyLimit`].
pub struct BodyLimitEndpoint<E> {
    inner: E,
    limits: BodyLimits,
}

/// Why a body was not read whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// The route takes no body.
    NotAllowed,
    /// Larger than `server.max_body_bytes`.
    TooLarge,
    /// Not all there within `server.body_timeout_secs`.
    TooLate,
    /// Slower than `server.min_body_bytes_per_sec` after the grace period.
    TooSlow,
    /// The connection broke or the chunked framing was invalid.
    Unreadable,
}

impl Refusal {
    fn error(self, limits: &BodyLimits) -> ApiError {
        let kind = ErrorType::InvalidRequestError;
        match self {
            Self::NotAllowed => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                kind,
                ErrorCode::BodyNotAllowed,
                format!(
                    "this route takes no request body; only these do: {}",
                    BODY_ROUTES
                        .iter()
                        .map(|(method, path)| format!("{method} {path}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Self::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                kind,
                ErrorCode::RequestTooLarge,
                format!(
                    "the request body is too large: at most {} bytes (`server.max_body_bytes`)",
                    limits.max_bytes
                ),
            ),
            Self::TooLate => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                kind,
                ErrorCode::RequestTimeout,
                format!(
                    "the request body did not arrive within {} s (`server.body_timeout_secs`)",
                    limits.timeout.as_secs()
                ),
            ),
            Self::TooSlow => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                kind,
                ErrorCode::RequestTimeout,
                format!(
                    "the request body arrived slower than {} bytes per second \
                     (`server.min_body_bytes_per_sec`)",
                    limits.min_bytes_per_sec
                ),
            ),
            Self::Unreadable => ApiError::invalid_request("the request body could not be read"),
        }
    }
}

/// Whether `method path` is one of [`BODY_ROUTES`].
fn takes_body(method: &Method, path: &str) -> bool {
    BODY_ROUTES
        .iter()
        .any(|(route_method, route_path)| route_method == method && *route_path == path)
}

/// When the next byte must have arrived, `received` bytes after `started`: by the total
/// deadline, and once the grace period is over, soon enough that the average rate since the
/// head stays at or above the minimum.
fn next_deadline(started: Instant, received: usize, limits: &BodyLimits) -> Instant {
    let by_rate = match limits.min_bytes_per_sec {
        0 => limits.timeout,
        rate => limits
            .rate_grace
            .max(Duration::from_secs_f64(received as f64 / rate as f64)),
    };
    started + by_rate.min(limits.timeout)
}

/// Makes room for `needed` bytes in `buffer`: doubling, so a body costs amortised linear time,
/// but never past an announced length (a body's final buffer is then exact).
fn grow(buffer: &mut Vec<u8>, needed: usize, announced: Option<usize>) {
    if needed <= buffer.capacity() {
        return;
    }
    let doubled = buffer.capacity().saturating_mul(2).max(needed).max(FIRST_CAPACITY);
    let target = match announced {
        Some(length) if length >= needed => doubled.min(length),
        _ => doubled,
    };
    buffer.reserve_exact(target - buffer.len());
}

/// A request body that ends in an error, its [`Refusal`] noted in `cut`, as soon as it runs
/// past `max_bytes`, its deadline or its minimum rate (see [`next_deadline`]).
struct LimitedBody {
    frames: BoxStream<'static, io::Result<Bytes>>,
    limits: BodyLimits,
    started: Instant,
    received: usize,
    /// When the next frame must have come.
    due: Pin<Box<Sleep>>,
    cut: Arc<OnceLock<Refusal>>,
}

impl LimitedBody {
    fn new(body: Body, limits: BodyLimits, cut: Arc<OnceLock<Refusal>>) -> Self {
        let started = Instant::now();
        Self {
            frames: body.into_bytes_stream().boxed(),
            limits,
            started,
            received: 0,
            due: Box::pin(tokio::time::sleep_until(next_deadline(started, 0, &limits))),
            cut,
        }
    }

    fn refuse(&self, refusal: Refusal) -> Poll<Option<io::Result<Bytes>>> {
        // The first refusal stands; a body is refused once.
        let refusal = *self.cut.get_or_init(|| refusal);
        Poll::Ready(Some(Err(io::Error::other(format!(
            "request body refused: {refusal:?}"
        )))))
    }
}

impl Stream for LimitedBody {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(refusal) = self.cut.get() {
            return self.refuse(*refusal);
        }
        match self.frames.poll_next_unpin(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                self.received = self.received.saturating_add(frame.len());
                if self.received > self.limits.max_bytes {
                    return self.refuse(Refusal::TooLarge);
                }
                let due = next_deadline(self.started, self.received, &self.limits);
                self.due.as_mut().reset(due);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(_))) => self.refuse(Refusal::Unreadable),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.due.as_mut().poll(cx) {
                Poll::Ready(()) if self.started + self.limits.timeout <= Instant::now() => {
                    self.refuse(Refusal::TooLate)
                }
                Poll::Ready(()) => self.refuse(Refusal::TooSlow),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Reads `body` whole into one buffer. Each frame is copied and dropped as it comes: a frame
/// is a slice of the connection's read buffer, and keeping thousands of one-byte frames (as
/// collecting them does) would keep thousands of those buffers alive.
async fn read_whole(mut body: LimitedBody, announced: Option<usize>) -> io::Result<Bytes> {
    let mut buffer: Vec<u8> = Vec::new();
    while let Some(frame) = body.next().await {
        let frame = frame?;
        let needed = buffer.len() + frame.len();
        grow(&mut buffer, needed, announced);
        buffer.extend_from_slice(&frame);
    }
    Ok(Bytes::from(buffer))
}

/// Whether the body is a multipart form (it streams on to the form parser).
fn is_multipart(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.trim_start().to_ascii_lowercase().starts_with("multipart/"))
}

/// The refusal's answer. The body is left unread, so the connection closes after it.
fn refuse(refusal: Refusal, limits: &BodyLimits) -> Response {
    let mut response = refusal.error(limits).into_response();
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Response> {
        let body = request.take_body();
        if body.is_empty() {
            request.set_body(body);
            return self.inner.call(request).await.map(IntoResponse::into_response);
        }
        if !takes_body(request.method(), request.uri().path()) {
            return Ok(refuse(Refusal::NotAllowed, &self.limits));
        }
        let announced = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let announced = match announced {
            Some(length) if length > self.limits.max_bytes as u64 => {
                return Ok(refuse(Refusal::TooLarge, &self.limits));
            }
            // Not larger than `max_bytes`, which is a usize.
            Some(length) => usize::try_from(length).ok(),
            None => None,
        };
        let cut = Arc::new(OnceLock::new());
        let body = LimitedBody::new(body, self.limits, Arc::clone(&cut));
        if is_multipart(request.headers()) {
            request.set_body(Body::from_bytes_stream(body));
            let answer = self.inner.call(request).await;
            // The form parser saw only an error: the refusal is the answer.
            return match cut.get() {
                Some(refusal) => Ok(refuse(*refusal, &self.limits)),
                None => answer.map(IntoResponse::into_response),
            };
        }
        match read_whole(body, announced).await {
            Ok(bytes) => {
                request.set_body(Body::from_bytes(bytes));
                self.inner.call(request).await.map(IntoResponse::into_response)
            }
            Err(_) => Ok(refuse(cut.get().copied().unwrap_or(Refusal::Unreadable), &self.limits)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timeout_secs: u64, rate: u64, grace_secs: u64) -> BodyLimits {
        BodyLimits {
            max_bytes: 1000,
            timeout: Duration::from_secs(timeout_secs),
            min_bytes_per_sec: rate,
            rate_grace: Duration::from_secs(grace_secs),
        }
    }

    #[test]
    fn the_next_byte_is_due_by_the_grace_then_by_the_rate_and_never_past_the_deadline() {
        let started = Instant::now();
        let limits = limits(300, 100, 10);
        assert_eq!(next_deadline(started, 0, &limits), started + Duration::from_secs(10));
        assert_eq!(next_deadline(started, 999, &limits), started + Duration::from_secs(10));
        assert_eq!(
            next_deadline(started, 2_000, &limits),
            started + Duration::from_secs(20)
        );
        assert_eq!(
            next_deadline(started, 1_000_000, &limits),
            started + Duration::from_secs(300)
        );
        let no_rate = super::tests::limits(300, 0, 10);
        assert_eq!(next_deadline(started, 0, &no_rate), started + Duration::from_secs(300));
    }

    #[test]
    fn a_buffer_doubles_but_stops_at_the_announced_length() {
        let mut buffer = Vec::new();
        grow(&mut buffer, 1, None);
        assert!(buffer.capacity() >= FIRST_CAPACITY);
        grow(&mut buffer, 5_000, Some(5_000));
        assert_eq!(buffer.capacity(), 5_000);
        let mut unknown = Vec::with_capacity(4_096);
        grow(&mut unknown, 4_097, None);
        assert!(unknown.capacity() >= 8_192);
    }

    #[test]
    fn only_the_listed_operations_take_a_body() {
        assert!(takes_body(&Method::POST, "/v1/chat/completions"));
        assert!(!takes_body(&Method::GET, "/v1/chat/completions"));
        assert!(!takes_body(&Method::POST, "/ping"));
        assert!(!takes_body(&Method::POST, "/v1/chat/completions/"));
    }
}
