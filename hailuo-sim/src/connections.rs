//! Connections the simulator can reset: every accepted TCP connection is wrapped so that a
//! handler can break it with a real RST (`SO_LINGER` 0, then close) instead of a clean end,
//! before any response byte or in the middle of a stream. The handler finds its connection by
//! the peer address of its request. Each connection also keeps a probe (a duplicate of its
//! socket) through which a silent handler can tell that the client has gone, which the server
//! itself only notices when it writes.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use poem::http::uri::Scheme;
use poem::listener::Acceptor;
use poem::web::{LocalAddr, RemoteAddr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::listener::NoDelayAcceptor;

/// How often a probe looks again when the client sent more bytes instead of leaving.
const PROBE_AGAIN: std::time::Duration = std::time::Duration::from_millis(50);

/// One open connection, as the registry holds it.
struct Entry {
    switch: Arc<AtomicBool>,
    probe: Option<Arc<TcpStream>>,
    /// Turns `true` when the server drops the connection.
    closed: watch::Receiver<bool>,
}

/// The open connections, by peer address, each with its reset switch and probe.
#[derive(Default)]
pub(crate) struct Connections {
    open: Mutex<HashMap<SocketAddr, Entry>>,
}

impl Connections {
    fn open(&self) -> MutexGuard<'_, HashMap<SocketAddr, Entry>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the connection from `peer` for reset: its next read or write fails and the socket
    /// closes with an RST. Returns whether such a connection is open.
    pub fn reset(&self, peer: SocketAddr) -> bool {
        match self.open().get(&peer) {
            Some(entry) => {
                entry.switch.store(true, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Marks every open connection for reset (a restart).
    pub fn reset_all(&self) {
        for entry in self.open().values() {
            entry.switch.store(true, Ordering::SeqCst);
        }
    }

    /// Resolves once the client of `peer` has closed its side of the connection (or it broke,
    /// or the server dropped it); never when there is no such connection.
    pub async fn client_gone(&self, peer: SocketAddr) {
        let found = self
            .open()
            .get(&peer)
            .map(|entry| (entry.probe.clone(), entry.closed.clone()));
        let Some((probe, mut closed)) = found else {
            return std::future::pending().await;
        };
        let eof = async move {
            let Some(probe) = probe else {
                return std::future::pending().await;
            };
            let mut byte = [0_u8; 1];
            loop {
                match probe.peek(&mut byte).await {
                    // More bytes (a pipelined request): the client is still there.
                    Ok(n) if n > 0 => tokio::time::sleep(PROBE_AGAIN).await,
                    _ => return,
                }
            }
        };
        tokio::select! {
            () = eof => {}
            _ = closed.wait_for(|closed| *closed) => {}
        }
    }

    fn register(&self, peer: SocketAddr, probe: Option<Arc<TcpStream>>) -> (Arc<AtomicBool>, watch::Sender<bool>) {
        let switch = Arc::new(AtomicBool::new(false));
        let (close, closed) = watch::channel(false);
        let entry = Entry {
            switch: Arc::clone(&switch),
            probe,
            closed,
        };
        self.open().insert(peer, entry);
        (switch, close)
    }

    fn unregister(&self, peer: SocketAddr, switch: &Arc<AtomicBool>) {
        let mut open = self.open();
        if open.get(&peer).is_some_and(|entry| Arc::ptr_eq(&entry.switch, switch)) {
            open.remove(&peer);
        }
    }
}

/// Splits an accepted stream into the stream served and a probe sharing its socket (`None`
/// when the socket cannot be duplicated: the connection then works without one).
fn with_probe(stream: TcpStream) -> io::Result<(TcpStream, Option<Arc<TcpStream>>)> {
    let std = stream.into_std()?;
    let probe = std.try_clone().and_then(TcpStream::from_std);
    let stream = TcpStream::from_std(std)?;
    Ok((stream, probe.ok().map(Arc::new)))
}

/// A TCP acceptor whose connections can be reset through [`Connections`].
pub(crate) struct ResettableAcceptor {
    /// Each event goes out at once (as the real upstream's do), not held back by Nagle.
    pub inner: NoDelayAcceptor,
    pub connections: Arc<Connections>,
}

impl Acceptor for ResettableAcceptor {
    type Io = ResettableStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (stream, local, remote, scheme) = self.inner.accept().await?;
        let (stream, probe) = with_probe(stream)?;
        let peer = remote.as_socket_addr().copied();
        let (switch, close) = match peer {
            Some(peer) => {
                let (switch, close) = self.connections.register(peer, probe);
                (switch, Some(close))
            }
            None => (Arc::new(AtomicBool::new(false)), None),
        };
        let io = ResettableStream {
            stream,
            peer,
            switch,
            close,
            connections: Arc::clone(&self.connections),
        };
        Ok((io, local, remote, scheme))
    }
}

/// An accepted connection that fails every read and write once its switch is on, after
/// setting a zero linger so that closing it sends an RST.
pub(crate) struct ResettableStream {
    stream: TcpStream,
    peer: Option<SocketAddr>,
    switch: Arc<AtomicBool>,
    close: Option<watch::Sender<bool>>,
    connections: Arc<Connections>,
}

impl ResettableStream {
    /// `Some(error)` once the connection is to be reset.
    fn check(&self) -> Option<io::Error> {
        if !self.switch.load(Ordering::SeqCst) {
            return None;
        }
        if let Err(err) = self.stream.set_zero_linger() {
            tracing::warn!(error = %err, "hailuo-sim: could not set a zero linger for a reset");
        }
        Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "hailuo-sim: simulated reset",
        ))
    }
}

impl Drop for ResettableStream {
    fn drop(&mut self) {
        if let Some(peer) = self.peer {
            self.connections.unregister(peer, &self.switch);
        }
        // Ends the probes' waits, which hold the socket's duplicate open.
        if let Some(close) = &self.close {
            close.send_replace(true);
        }
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if let Some(err) = self.check() {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if let Some(err) = self.check() {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(err) = self.check() {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(err) = self.check() {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
