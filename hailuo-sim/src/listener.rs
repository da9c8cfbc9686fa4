//! The TCP acceptor `hailuo-sim` listens with: poem's, with Nagle's algorithm turned off on
//! every accepted connection, as the gateway's own connection loop
//! (`hailuo_free_api::inbound::server`) does.
//!
//! poem leaves `TCP_NODELAY` unset, so the second small write of a response (the next event
//! of a stream) waits for the client's acknowledgement of the first, which a delayed ACK
//! holds back up to 40 ms. A stream is many small events: each goes out at
//! once instead.

use std::io;

use poem::http::uri::Scheme;
use poem::listener::{Acceptor, TcpAcceptor};
use poem::web::{LocalAddr, RemoteAddr};
use tokio::net::TcpStream;

/// [`TcpAcceptor`] with `TCP_NODELAY` set on each connection.
pub(crate) struct NoDelayAcceptor {
    inner: TcpAcceptor,
}

impl NoDelayAcceptor {
    /// Wraps a bound acceptor.
    pub(crate) fn new(inner: TcpAcceptor) -> Self {
        Self { inner }
    }
}

impl Acceptor for NoDelayAcceptor {
    type Io = TcpStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        let (stream, local, remote, scheme) = self.inner.accept().await?;
        // Only fails on a socket already closed by the peer; serving it then fails anyway.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        Ok((stream, local, remote, scheme))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem::listener::{Listener, TcpListener};

    #[tokio::test]
    async fn accepted_connections_have_nodelay() -> io::Result<()> {
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
        let addr = acceptor
            .local_addr()
            .into_iter()
            .find_map(|addr| addr.as_socket_addr().copied())
            .ok_or_else(|| io::Error::other("no address"))?;
        let mut acceptor = NoDelayAcceptor::new(acceptor);
        let client = tokio::spawn(TcpStream::connect(addr));
        let (stream, ..) = acceptor.accept().await?;
        assert!(stream.nodelay()?);
        drop(client.await);
        Ok(())
    }
}
