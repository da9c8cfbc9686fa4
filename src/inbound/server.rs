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
//! instead of spinning, and shuts down gracefully.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::combinators::BoxBody;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use poem::endpoint::BoxEndpoint;
use poem::http::uri::Scheme;
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Endpoint, EndpointExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A client must send its whole request head within this time.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

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
        .header_read_timeout(HEADER_READ_TIMEOUT);
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
        let connection = builder.serve_connection(TokioIo::new(stream), service(Arc::clone(&endpoint), local, remote));
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

/// The hyper service of one connection: each request goes to the poem endpoint.
fn service(
    endpoint: SharedEndpoint,
    local: SocketAddr,
    remote: SocketAddr,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = hyper::Response<BoxBody<Bytes, io::Error>>,
    Error = Infallible,
    Future = BoxFuture<'static, Answer>,
> {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let endpoint = Arc::clone(&endpoint);
        // Boxed: hyper keeps a slot the size of this future for the connection's whole life
        // (2.3 KB, by the heap profile); the box holds it only while a request is handled.
        Box::pin(async move {
            let request = poem::Request::from((
                request,
                LocalAddr(local.into()),
                RemoteAddr(remote.into()),
                Scheme::HTTP,
            ));
            Ok(endpoint.get_response(request).await.into())
        }) as BoxFuture<'static, Answer>
    })
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
