//! Who may call, and on which Hailuo accounts. Without `auth.api_keys`, the bearer value is
//! the client's own Hailuo token list (`Authorization: Bearer T1,T2`), as in the reference
//! project. With API keys, every `/v1/*` request and `/token/check` must present one of them
//! ([`ApiKeyGate`], compared in constant time), and its work runs on the server's own tokens
//! (`auth.tokens`); a raw Hailuo token is just a wrong key. A presented value is never
//! logged nor echoed.

use std::sync::Arc;

use poem::http::header::AUTHORIZATION;
use poem::http::{HeaderMap, StatusCode};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::error::ApiError;
use crate::domain::chat::{AccountToken, ClientId, TooManyTokens};

/// A presented API key matched none of the server's keys. The message never repeats it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "invalid API key: this server requires `Authorization: Bearer <API key>` with one of its keys \
     (Hailuo tokens are not accepted from clients here)"
)]
pub struct InvalidApiKey;

impl poem::error::ResponseError for InvalidApiKey {
    fn status(&self) -> StatusCode {
        StatusCode::UNAUTHORIZED
    }
}

/// Why a request's `Authorization` gives it no accounts.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum AccountsRefused {
    /// A wrong or missing API key where the server has keys.
    #[error(transparent)]
    InvalidApiKey(#[from] InvalidApiKey),
    /// A client's token list longer than `accounts.max_tokens_per_request`.
    #[error(transparent)]
    TooManyTokens(#[from] TooManyTokens),
}

impl poem::error::ResponseError for AccountsRefused {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidApiKey(_) => StatusCode::UNAUTHORIZED,
            Self::TooManyTokens(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// How callers authenticate, built once from the settings.
pub struct ClientAuth {
    /// SHA-256 of each API key: comparing digests hides the keys' lengths too.
    key_digests: Vec<[u8; 32]>,
    /// The server's own tokens, for callers with a key.
    pool: Vec<AccountToken>,
    /// The most tokens a client's own list may name.
    max_client_tokens: usize,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth")
            .field("api_keys", &self.key_digests.len())
            .field("pool", &self.pool.len())
            .finish()
    }
}

impl ClientAuth {
    /// From `auth.api_keys` and `auth.tokens` (trimmed; empties dropped), with clients' own
    /// token lists capped at `max_client_tokens` (`accounts.max_tokens_per_request`; the
    /// server's pool is not capped).
    pub fn new(api_keys: &[String], pool_tokens: &[String], max_client_tokens: usize) -> Self {
        Self {
            key_digests: api_keys
                .iter()
                .map(|key| key.trim())
                .filter(|key| !key.is_empty())
                .map(digest)
                .collect(),
            pool: AccountToken::parse_list(&pool_tokens.join(",")),
            max_client_tokens,
        }
    }

    /// Whether clients must present an API key.
    pub fn requires_key(&self) -> bool {
        !self.key_digests.is_empty()
    }

    /// Whether `presented` is one of the keys: every key is compared, in constant time.
    fn is_key(&self, presented: &str) -> bool {
        let presented = digest(presented.trim());
        let matched = self
            .key_digests
            .iter()
            .fold(Choice::from(0), |matched, key| matched | key.ct_eq(&presented));
        bool::from(matched)
    }

    /// The accounts a request with this bearer value runs on: the server's pool for a
    /// valid key, the bearer's own token list without keys.
    ///
    /// # Errors
    /// [`AccountsRefused::InvalidApiKey`] when keys are required and `bearer` is none of
    /// them; [`AccountsRefused::TooManyTokens`] when a client's own list is too long.
    pub fn accounts(&self, bearer: &str) -> Result<Caller, AccountsRefused> {
        if !self.requires_key() {
            return Ok(Caller {
                tokens: AccountToken::parse_client_list(bearer, self.max_client_tokens)?,
                client: None,
            });
        }
        if self.is_key(bearer) {
            Ok(Caller {
                tokens: self.pool.clone(),
                client: Some(client_id(bearer.trim())),
            })
        } else {
            Err(InvalidApiKey.into())
        }
    }

    /// Checks the request's key when keys are required (any request passes without).
    ///
    /// # Errors
    /// [`InvalidApiKey`] for a missing or wrong key.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), InvalidApiKey> {
        if !self.requires_key() {
            return Ok(());
        }
        match bearer(headers) {
            Some(presented) if self.is_key(presented) => Ok(()),
            _ => Err(InvalidApiKey),
        }
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// The label a store keeps for the client of an API key: 128 bits of a labelled SHA-256 of
/// the key, which does not give the key back (API keys are random secrets).
fn client_id(key: &str) -> ClientId {
    let digest = Sha256::digest(format!("hailuo-free-api/client-id/v1:{key}").as_bytes());
    ClientId::new(format!("key:{}", hex::encode(&digest[..16])))
}

/// Who calls, and on which accounts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The accounts the request may run on.
    pub tokens: Vec<AccountToken>,
    /// With API keys on, the label of the key presented.
    pub client: Option<ClientId>,
}

/// The value of `Authorization: Bearer VALUE` (scheme case-insensitive).
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(rest.trim())
}

/// The accounts a request may use, from `Authorization: Bearer ...`.
///
/// Without API keys on the server: your Hailuo account token(s), the `_token` value from
/// the web app's LocalStorage; several tokens separated by commas let requests run side by
/// side (one answer per account at a time), e.g. `Authorization: Bearer TOKEN1,TOKEN2`.
/// With API keys on the server (`auth.api_keys`): one of its API keys,
/// `Authorization: Bearer sk-...`; the server answers with its own Hailuo tokens, and a
/// Hailuo token given here is refused with 401.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "resolve_accounts")]
pub struct HailuoTokens(pub Caller);

impl HailuoTokens {
    /// The tokens the request runs on, trimmed, without empties or duplicates.
    pub fn tokens(&self) -> Vec<AccountToken> {
        self.0.tokens.clone()
    }

    /// With API keys on, the label of the key presented.
    pub fn client(&self) -> Option<ClientId> {
        self.0.client.clone()
    }
}

/// The checker of [`HailuoTokens`]: the bearer value resolved by the server's [`ClientAuth`].
async fn resolve_accounts(request: &Request, bearer: Bearer) -> poem::Result<Caller> {
    match request.data::<Arc<ClientAuth>>() {
        Some(auth) => auth.accounts(&bearer.token).map_err(poem::Error::from),
        // Not wired: refuse rather than guess.
        None => {
            tracing::error!("the client authentication is not configured");
            Err(poem::Error::from_status(StatusCode::INTERNAL_SERVER_ERROR))
        }
    }
}

/// Refuses, before anything is read, a `/v1/*` or `/token/check` request without a valid
/// API key when the server has keys; does nothing when it has none.
pub struct ApiKeyGate {
    auth: Arc<ClientAuth>,
}

impl ApiKeyGate {
    /// The gate over the server's authentication.
    pub fn new(auth: Arc<ClientAuth>) -> Self {
        Self { auth }
    }
}

impl<E: Endpoint> Middleware<E> for ApiKeyGate {
    type Output = ApiKeyGateEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        ApiKeyGateEndpoint {
            inner,
            auth: Arc::clone(&self.auth),
        }
    }
}

/// An endpoint behind [`ApiKeyGate`].
pub struct ApiKeyGateEndpoint<E> {
    inner: E,
    auth: Arc<ClientAuth>,
}

/// Whether `path` needs a key when the server has keys.
fn guarded(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/v1" || path == "/token/check"
}

impl<E: Endpoint> Endpoint for ApiKeyGateEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        if guarded(request.uri().path())
            && let Err(invalid) = self.auth.check(request.headers())
        {
            return Ok(ApiError::unauthorized(invalid.to_string()).into_response());
        }
        self.inner.call(request).await.map(IntoResponse::into_response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(keys: &[&str], pool: &[&str]) -> ClientAuth {
        let owned = |items: &[&str]| items.iter().map(|item| (*item).to_owned()).collect::<Vec<_>>();
        ClientAuth::new(&owned(keys), &owned(pool), 3)
    }

    #[test]
    fn without_keys_the_bearer_is_the_token_list() {
        let auth = keys(&[], &[]);
        assert!(!auth.requires_key());
        assert_eq!(
            auth.accounts(" a, b ,a").ok(),
            Some(Caller {
                tokens: vec![AccountToken::new("a"), AccountToken::new("b")],
                client: None
            })
        );
    }

    #[test]
    fn a_client_list_past_the_cap_is_refused_but_the_pool_is_not_capped() {
        let auth = keys(&[], &[]);
        assert_eq!(auth.accounts("a,b,,a").ok().map(|caller| caller.tokens.len()), Some(2));
        assert!(matches!(
            auth.accounts("a,b,c,d"),
            Err(AccountsRefused::TooManyTokens(_))
        ));
        // Named four times: duplicates count against the cap.
        assert!(matches!(
            auth.accounts("a,a,a,a"),
            Err(AccountsRefused::TooManyTokens(_))
        ));
        let pool = keys(&["sk-one"], &["p1", "p2", "p3", "p4", "p5"]);
        assert_eq!(pool.accounts("sk-one").ok().map(|caller| caller.tokens.len()), Some(5));
    }

    #[test]
    fn a_valid_key_gives_the_pool_and_anything_else_is_refused() {
        let auth = keys(&["sk-one", "sk-two"], &["pool-1", "pool-2"]);
        let pool = vec![AccountToken::new("pool-1"), AccountToken::new("pool-2")];
        let one = auth.accounts(" sk-one ").unwrap();
        let two = auth.accounts("sk-two").unwrap();
        assert_eq!((&one.tokens, &two.tokens), (&pool, &pool));
        // Each key is its own client, the same whatever the spaces around it, and its label
        // does not hold the key.
        assert_eq!(one.client, auth.accounts("sk-one").unwrap().client);
        assert_ne!(one.client, two.client);
        assert!(
            one.client
                .as_ref()
                .is_some_and(|client| !client.as_str().contains("sk-one"))
        );
        for wrong in ["", "sk-on", "sk-one2", "SK-ONE", "pool-1", "sk-one,sk-two"] {
            assert!(auth.accounts(wrong).is_err(), "{wrong:?} was accepted");
        }
    }

    #[test]
    fn the_gate_reads_the_bearer_header() {
        let auth = keys(&["sk-one"], &["pool-1"]);
        let mut headers = HeaderMap::new();
        assert!(auth.check(&headers).is_err(), "no header");
        headers.insert(AUTHORIZATION, "Basic sk-one".parse().expect("a header value"));
        assert!(auth.check(&headers).is_err(), "another scheme");
        headers.insert(AUTHORIZATION, "bearer sk-one".parse().expect("a header value"));
        assert!(auth.check(&headers).is_ok());
        assert!(keys(&[], &[]).check(&HeaderMap::new()).is_ok(), "no keys: open");
        assert!(guarded("/v1/models") && guarded("/token/check"));
        assert!(!guarded("/ping") && !guarded("/metrics") && !guarded("/docs") && !guarded("/openapi.json"));
    }
}
