//! The Server-Sent Events writer of the simulator's streams (chat and `phone_msg`): one real
//! write per chunk, events torn in two writes on request, and the broken ends a fault plays.

use std::io;
use std::time::Duration;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use poem::{Body, Response};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;

use crate::state::StreamGuard;

use crate::fault::RESET_PAUSE;

/// The `text/event-stream` response over a channel-fed body.
pub(crate) fn event_stream_response(body: Body) -> Response {
    Response::builder()
        .content_type("text/event-stream")
        .header("Cache-Control", "no-cache")
        .body(body)
}

/// The client closed the stream.
pub(crate) struct ClientGone;

/// One SSE event as the upstream writes it.
pub(crate) fn event_text(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// Writes SSE bytes into the response body, one real write per chunk.
pub(crate) struct EventWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
}

/// A response body that holds its account's stream: the stream closes when the body has
/// been sent to its end, or when the server drops it (the client gone, noticed at a write).
struct HeldBody {
    chunks: ReceiverStream<io::Result<Bytes>>,
    guard: Option<StreamGuard>,
}

impl Stream for HeldBody {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let next = Pin::new(&mut this.chunks).poll_next(cx);
        if let Poll::Ready(None) = next
            && let Some(mut guard) = this.guard.take()
        {
            guard.ended();
        }
        next
    }
}

impl Drop for HeldBody {
    fn drop(&mut self) {
        if let Some(guard) = self.guard.as_mut() {
            guard.hung_up();
        }
    }
}

impl EventWriter {
    /// A writer and the body it feeds; the body holds `guard` until it ends or is dropped.
    pub(crate) fn channel(guard: Option<StreamGuard>) -> (Self, Body) {
        let (tx, rx) = mpsc::channel(4);
        let body = HeldBody {
            chunks: ReceiverStream::new(rx),
            guard,
        };
        (Self { tx }, Body::from_bytes_stream(body))
    }

    pub(crate) async fn write(&self, bytes: impl Into<Bytes>) -> Result<(), ClientGone> {
        self.tx.send(Ok(bytes.into())).await.map_err(|_| ClientGone)
    }

    /// Waits, or stops early when the client goes away.
    pub(crate) async fn pause(&self, delay: Duration) -> Result<(), ClientGone> {
        if delay.is_zero() {
            tokio::task::yield_now().await;
            return if self.tx.is_closed() { Err(ClientGone) } else { Ok(()) };
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.tx.closed() => Err(ClientGone),
        }
    }

    /// Writes one event, whole.
    pub(crate) async fn event(&mut self, name: &str, data: &str) -> Result<(), ClientGone> {
        self.write(event_text(name, data)).await
    }

    /// Writes one event in two writes `pause` apart, split inside a multi-byte character when
    /// it has one (else in the middle). A zero pause only yields between the two writes.
    pub(crate) async fn torn_event(&mut self, name: &str, data: &str, pause: Duration) -> Result<(), ClientGone> {
        let text = event_text(name, data);
        let split_at = text
            .char_indices()
            .find(|(_, c)| c.len_utf8() > 1)
            .map_or(text.len() / 2, |(index, _)| index + 1);
        let bytes = Bytes::from(text);
        self.write(bytes.slice(..split_at)).await?;
        self.pause(pause).await?;
        self.write(bytes.slice(split_at..)).await
    }

    /// Breaks the connection: the body ends before its declared length (see the `CutStream`
    /// response), so no clean end reaches the client. It waits [`RESET_PAUSE`] first: the
    /// server drops what it has not flushed when a body fails, and the upstream's bytes before
    /// a break (its `send_result` above all) do reach the client.
    pub(crate) async fn cut(&self) {
        if self.pause(RESET_PAUSE).await.is_err() {
            return;
        }
        let _ = self
            .tx
            .send(Err(io::Error::new(io::ErrorKind::ConnectionReset, "simulated cut")))
            .await;
    }
}
