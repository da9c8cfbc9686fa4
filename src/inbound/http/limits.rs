//! The request body limit (`server.max_body_bytes`): 413 before reading further, whether the
//! body announces its length or not.

use poem::http::StatusCode;
use poem::{Body, Endpoint, Middleware, Request, Result};

/// Refuses bodies larger than a limit.
pub struct BodyLimit {
    max_bytes: usize,
}

impl BodyLimit {
    /// A limit of `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self { max_bytes }
    }
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint {
            inner,
            max_bytes: self.max_bytes,
        }
    }
}

/// An endpoint behind a [`BodyLimit`].
pub struct BodyLimitEndpoint<E> {
    inner: E,
    max_bytes: usize,
}

fn too_large() -> poem::Error {
    poem::Error::from_status(StatusCode::PAYLOAD_TOO_LARGE)
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut request: Request) -> Result<Self::Output> {
        let announced = request
            .headers()
            .get(poem::http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        match announced {
            Some(length) if length > self.max_bytes as u64 => return Err(too_large()),
            Some(_) => {}
            None => {
                // No announced length (chunked): read at most the limit, then refuse.
                let body = request.take_body();
                if !body.is_empty() {
                    let bytes = body
                        .into_bytes_limit(self.max_bytes)
                        .await
                        .map_err(|error| match error {
                            poem::error::ReadBodyError::PayloadTooLarge => too_large(),
                            other => poem::Error::from(other),
                        })?;
                    request.set_body(Body::from_bytes(bytes));
                }
            }
        }
        self.inner.call(request).await
    }
}
