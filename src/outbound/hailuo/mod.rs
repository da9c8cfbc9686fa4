//! The Hailuo web protocol adapter (protocol doc §1–§9): [`HailuoClient`] speaks to the
//! Hailuo web app as its browser client does and implements the domain's [`ChatProvider`].
//!
//! Every call goes through the same steps, kept here for all endpoints: [`HailuoClient::call`]
//! fixes the method, the full URI with its query string and the timestamp; the caller signs
//! it ([`signing`]); [`HailuoClient::request`] adds the headers; [`HailuoClient::call_json`]
//! does all of this for JSON endpoints and reads the response envelope.

pub mod agent;
pub mod answer;
pub mod chat;
pub mod device;
pub mod files;
pub mod identity;
pub mod prompt;
pub mod request;
pub mod signing;
pub mod speech;
pub mod transcription;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use opentelemetry::KeyValue;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, ORIGIN, REFERER};
use serde_json::Value;
use tracing::Instrument;

use crate::config::{Dialect, Profile, UpstreamSettings};
use crate::domain::chat::{AccountToken, Attachment, ChatPrompt, ConversationId};
use crate::domain::metrics::instruments;
use crate::domain::ports::{Account, AnswerStream, ChatProvider, Device, LateConversations, ProviderError};
use crate::domain::service::runner::current_attempt;

use self::request::{CallFailure, Caller};

/// The headers [`HailuoClient::request`] sets on each call (lowercase), which the profile's
/// fingerprint headers must not duplicate.
const PER_CALL_HEADERS: [&str; 9] = [
    "token",
    "yy",
    "referer",
    "origin",
    "baggage",
    "sentry-trace",
    "accept",
    "x-timestamp",
    "x-signature",
];
/// `Token`: the account token.
const TOKEN: HeaderName = HeaderName::from_static("token");
/// `Yy`: the request signature.
const YY: HeaderName = HeaderName::from_static("yy");
/// `Baggage`: Sentry's tracing context.
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");
/// `x-timestamp`: the call's Unix seconds (`minimax-agent`).
const X_TIMESTAMP: HeaderName = HeaderName::from_static("x-timestamp");
/// `x-signature`: the body's signature (`minimax-agent`).
const X_SIGNATURE: HeaderName = HeaderName::from_static("x-signature");
/// `Sentry-Trace`: Sentry's trace and span ids.
const SENTRY_TRACE: HeaderName = HeaderName::from_static("sentry-trace");

/// What a call accepts in return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accept {
    /// `*/*`: a JSON envelope.
    Any,
    /// `text/event-stream`: the streaming endpoints (chat, voice).
    EventStream,
}

impl Accept {
    fn header_value(self) -> &'static str {
        match self {
            Accept::Any => "*/*",
            Accept::EventStream => "text/event-stream",
        }
    }
}

/// One upstream call before it is signed: its method, full URI (path and the common query
/// string) and timestamp, which the signature covers, and how its headers differ.
#[derive(Clone, Debug)]
pub struct UpstreamCall {
    method: Method,
    full_uri: String,
    unix: String,
    accept: Accept,
    conversation: Option<String>,
}

impl UpstreamCall {
    /// Asks for an event stream (`Accept: text/event-stream`).
    #[must_use]
    pub fn streaming(mut self) -> Self {
        self.accept = Accept::EventStream;
        self
    }

    /// Continues `conversation`: the `Referer` is its page.
    #[must_use]
    pub fn in_conversation(mut self, conversation: &ConversationId) -> Self {
        self.conversation = Some(conversation.as_str().to_owned());
        self
    }

    /// The path with its complete query string, as sent and signed.
    pub fn full_uri(&self) -> &str {
        &self.full_uri
    }

    /// The timestamp sent as `unix` and signed.
    pub fn unix(&self) -> &str {
        &self.unix
    }

    /// The HTTP method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path without its query string (for spans: the query carries device ids).
    pub fn path(&self) -> &str {
        self.full_uri.split('?').next().unwrap_or_default()
    }
}

/// `path` with its numeric segments (conversation ids) as `{id}`: a metric label of
/// bounded cardinality.
fn path_template(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.len() >= 6 && segment.bytes().all(|b| b.is_ascii_digit()) {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// When the first byte of a response must have arrived, kept in the response's extensions.
#[derive(Clone, Copy)]
struct FirstByteDeadline(tokio::time::Instant);

/// The client of the Hailuo web app: cheap to clone, all clones share one connection pool.
#[derive(Clone)]
pub struct HailuoClient {
    inner: Arc<ClientInner>,
    speech: speech::SpeechTiming,
    late: Option<LateWatch>,
    refusals: request::RefusalReader,
}

/// Where a chat given up before its response head is still listened to.
#[derive(Clone)]
struct LateWatch {
    sink: Arc<dyn LateConversations>,
    wait: Duration,
}

/// The response of a request still under way.
type PendingResponse =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<reqwest::Response, reqwest::Error>> + Send>>;

struct ClientInner {
    http: reqwest::Client,
    /// For the uploads to OSS, whose endpoint `request_policy` names: plain HTTP/1.1 or
    /// HTTP/2 by TLS negotiation, and no whole-request timeout (a body is as long as its file).
    oss: reqwest::Client,
    /// Time allowed until the response head, and until a stream's first chunk.
    first_byte_timeout: Duration,
    /// Silence allowed between two chunks of a stream.
    idle_timeout: Duration,
    base_url: String,
    profile: Profile,
    dialect: Dialect,
    /// The profile's query string, its literal parts joined once.
    query: request::QueryTemplate,
    /// The profile's browser fingerprint headers, checked once.
    fingerprint: HeaderMap,
}

impl HailuoClient {
    /// A client for the upstream configured in `settings`. Profile headers whose name or
    /// value is not valid HTTP, or that the client sets itself per call (`Token`, `Yy`,
    /// `Referer`, `Origin`, `Baggage`, `Sentry-Trace`, `Accept`), are left out with a warning.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(settings: &UpstreamSettings) -> Result<Self, reqwest::Error> {
        let http = settings.http_client()?;
        let oss = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .tcp_nodelay(true)
            .build()?;
        let mut fingerprint = HeaderMap::new();
        for (name, value) in &settings.profile.headers {
            match (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                (Ok(name), Ok(value)) if !PER_CALL_HEADERS.contains(&name.as_str()) => {
                    fingerprint.insert(name, value);
                }
                _ => {
                    tracing::warn!(header = %name, "skipping an invalid header of the upstream profile")
                }
            }
        }
        Ok(Self {
            inner: Arc::new(ClientInner {
                http,
                oss,
                first_byte_timeout: settings.first_byte_timeout,
                idle_timeout: settings.idle_timeout,
                base_url: settings.base_url.as_str().trim_end_matches('/').to_owned(),
                profile: settings.profile.clone(),
                dialect: settings.dialect,
                query: request::QueryTemplate::new(&settings.profile),
                fingerprint,
            }),
            speech: speech::SpeechTiming::default(),
            late: None,
            refusals: request::RefusalReader::new(&settings.profile.refusals),
        })
    }

    /// Listens, for up to `wait`, to each chat request whose response head did not come in
    /// time, and reports to `sink` the conversation its late answer names (`wait` zero: off).
    #[must_use]
    pub fn with_late_conversations(mut self, sink: Arc<dyn LateConversations>, wait: Duration) -> Self {
        self.late = (!wait.is_zero()).then_some(LateWatch { sink, wait });
        self
    }

    /// The messages by which the upstream says an account is busy (`accounts.busy_markers`):
    /// a refusal carrying one is [`ProviderError::AccountBusy`].
    #[must_use]
    pub fn with_busy_markers(mut self, markers: request::BusyMarkers) -> Self {
        self.refusals = self.refusals.with_busy(markers);
        self
    }

    /// `error` as the upstream's text reads it: the busy markers and the profile's refusal
    /// texts (see [`request::RefusalReader::read`]). Every refusal the adapters meet passes
    /// through it.
    pub fn read_refusal(&self, error: ProviderError) -> ProviderError {
        self.refusals.read(error)
    }

    /// How long speech waits for the upstream's audio, and how often it asks.
    #[must_use]
    pub fn with_speech_timing(mut self, timing: speech::SpeechTiming) -> Self {
        self.speech = timing;
        self
    }

    /// Time allowed until the response head (`upstream.first_byte_timeout_secs`): for a polled
    /// answer, until its first content.
    pub fn first_byte_timeout(&self) -> Duration {
        self.inner.first_byte_timeout
    }

    /// Which dialect this client speaks.
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// Who `token`'s account is to the upstream: on `minimax-agent` its user id (from a
    /// `<userID>+<JWT>` token, or the JWT's payload) and the JWT sent; elsewhere the token
    /// as it is, and no user id.
    pub fn identity<'t>(&self, token: &'t AccountToken) -> identity::AccountIdentity<'t> {
        match self.inner.dialect {
            Dialect::MinimaxAgent => identity::AccountIdentity::of(token.expose()),
            Dialect::Hailuoai | Dialect::HailuoIntl => identity::AccountIdentity::plain(token.expose()),
        }
    }

    /// The HTTP client (for calls outside the upstream's API, such as OSS uploads).
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The browser profile the upstream is told it talks to.
    pub fn profile(&self) -> &Profile {
        &self.inner.profile
    }

    /// Starts a call of `method` on `path` (which may carry its own query) for `caller` on
    /// `token`'s account, stamped now.
    pub fn call(&self, method: Method, path: &str, caller: Caller<'_>, token: &AccountToken) -> UpstreamCall {
        let unix = request::unix_now();
        let identity = self.identity(token);
        let account = request::AccountQuery {
            user_id: &identity.user_id,
            token: identity.token,
        };
        UpstreamCall {
            method,
            full_uri: self.inner.query.full_uri(path, caller, &unix, account),
            unix,
            accept: Accept::Any,
            conversation: None,
        }
    }

    /// The request of a signed call with every header the web app sends; the caller adds
    /// the body. A token that is not a valid header value fails when sent: check it first
    /// with [`request::check_token`].
    pub fn request(&self, call: &UpstreamCall, token: &AccountToken, signature: &str) -> reqwest::RequestBuilder {
        let profile = &self.inner.profile;
        let url = format!("{}{}", self.inner.base_url, call.full_uri);
        let Ok(parsed) = reqwest::Url::parse(&url) else {
            // reqwest reports the malformed URL when the request is sent.
            return self.inner.http.request(call.method.clone(), url);
        };
        let (baggage, sentry_trace) = request::sentry_headers(profile);
        let referer = request::referer(&profile.origin, call.conversation.as_deref());
        // One header map filled in place: this runs on every upstream call, and the
        // builder's `header()` would parse each name and merge map into map.
        let mut headers = self.inner.fingerprint.clone();
        let mut invalid = Vec::new();
        let per_call = [
            (TOKEN, self.identity(token).token),
            (YY, signature),
            (REFERER, referer.as_str()),
            (ORIGIN, profile.origin.as_str()),
            (BAGGAGE, baggage.as_str()),
            (SENTRY_TRACE, sentry_trace.as_str()),
            (ACCEPT, call.accept.header_value()),
        ];
        for (name, value) in per_call {
            match HeaderValue::from_str(value) {
                Ok(mut value) => {
                    // Sensitive: a logged request shows no token.
                    value.set_sensitive(name == TOKEN);
                    headers.insert(name, value);
                }
                Err(_) => invalid.push((name, value)),
            }
        }
        let mut request = reqwest::Request::new(call.method.clone(), parsed);
        *request.headers_mut() = headers;
        let builder = reqwest::RequestBuilder::from_parts(self.inner.http.clone(), request);
        // A value no header can carry fails the call when sent, with reqwest's own error.
        invalid
            .into_iter()
            .fold(builder, |builder, (name, value)| builder.header(name, value))
    }

    /// Sends `builder`, the request of `call` on `token`'s account, in an `upstream call`
    /// span (method, path without query, status, the runner's attempt, the account's
    /// fingerprint: never the token) and records its latency until the response head.
    ///
    /// # Errors
    /// As [`reqwest::RequestBuilder::send`].
    pub async fn send_traced(
        &self,
        call: &UpstreamCall,
        token: &AccountToken,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let path = call.path();
        let span = tracing::info_span!(
            "upstream call",
            otel.name = %format!("{} {path}", call.method),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %call.method,
            url.path = %path,
            http.response.status_code = tracing::field::Empty,
            attempt = tracing::field::Empty,
            account = %token.fingerprint(),
        );
        if let Some(attempt) = current_attempt() {
            span.record("attempt", attempt);
        }
        let started = std::time::Instant::now();
        let result = builder.send().instrument(span.clone()).await;
        let status = match &result {
            Ok(response) => {
                let status = response.status().as_u16();
                span.record("http.response.status_code", status);
                if status >= 500 {
                    span.record("otel.status_code", "ERROR");
                }
                i64::from(status)
            }
            Err(_) => {
                span.record("otel.status_code", "ERROR");
                0
            }
        };
        instruments().upstream_duration.record(
            started.elapsed().as_secs_f64(),
            &[
                KeyValue::new("url.path", path_template(path)),
                KeyValue::new("http.response.status_code", status),
            ],
        );
        result
    }

    /// [`Self::send_traced`] with `upstream.first_byte_timeout_secs` for the response head;
    /// the response remembers the deadline for [`Self::timed_body`].
    ///
    /// # Errors
    /// [`ProviderError::Timeout`] when the head does not arrive in time (or reqwest times
    /// out), [`ProviderError::Unavailable`] for other transport failures.
    pub async fn send_timed(
        &self,
        call: &UpstreamCall,
        token: &AccountToken,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        self.send_timed_then(call, token, builder, drop).await
    }

    /// As [`Self::send_timed`], handing a request whose head did not come in time, still
    /// under way, to `given_up` instead of dropping it.
    async fn send_timed_then(
        &self,
        call: &UpstreamCall,
        token: &AccountToken,
        builder: reqwest::RequestBuilder,
        given_up: impl FnOnce(PendingResponse),
    ) -> Result<reqwest::Response, ProviderError> {
        let deadline = tokio::time::Instant::now() + self.inner.first_byte_timeout;
        let (client, owned_call, owned_token) = (self.clone(), call.clone(), token.clone());
        let mut pending: PendingResponse =
            Box::pin(async move { client.send_traced(&owned_call, &owned_token, builder).await });
        match tokio::time::timeout_at(deadline, &mut pending).await {
            Ok(Ok(mut response)) => {
                response.extensions_mut().insert(FirstByteDeadline(deadline));
                Ok(response)
            }
            Ok(Err(error)) => Err(request::transport_error(error)),
            Err(_) => {
                tracing::warn!(path = %call.path(), account = %token, "no response head in time");
                given_up(pending);
                Err(ProviderError::Timeout)
            }
        }
    }

    /// Sends a chat message: as [`Self::send_timed`], but a request whose head did not come
    /// in time is still listened to in the background (see [`Self::with_late_conversations`]):
    /// an upstream that hung may yet make the conversation, which must not stay behind.
    ///
    /// # Errors
    /// As [`Self::send_timed`].
    pub async fn send_chat_timed(
        &self,
        call: &UpstreamCall,
        token: &AccountToken,
        builder: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ProviderError> {
        let Some(late) = self.late.clone() else {
            return self.send_timed(call, token, builder).await;
        };
        let token_for_watch = token.clone();
        self.send_timed_then(call, token, builder, move |pending| {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            runtime.spawn(watch_late_answer(pending, token_for_watch, late));
        })
        .await
    }

    /// The body of a streamed answer, held to the timeouts: its first chunk must arrive by
    /// the deadline of [`Self::send_timed`] (`upstream.first_byte_timeout_secs` after the
    /// request left), each later one within `upstream.idle_timeout_secs` of the previous.
    /// A timeout ends the stream with [`ProviderError::Timeout`].
    pub fn timed_body(&self, response: reqwest::Response) -> BoxStream<'static, Result<Bytes, ProviderError>> {
        let first = response
            .extensions()
            .get::<FirstByteDeadline>()
            .map_or_else(|| tokio::time::Instant::now() + self.inner.first_byte_timeout, |d| d.0);
        let idle = self.inner.idle_timeout;
        let bytes = response.bytes_stream().boxed();
        futures::stream::unfold(Some((bytes, Some(first))), move |state| async move {
            let (mut bytes, first) = state?;
            let until = first.unwrap_or_else(|| tokio::time::Instant::now() + idle);
            match tokio::time::timeout_at(until, bytes.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some((bytes, None)))),
                Ok(Some(Err(error))) => Some((Err(request::transport_error(error)), None)),
                Ok(None) => None,
                Err(_) => {
                    let what = if first.is_some() { "first chunk" } else { "next chunk" };
                    tracing::warn!(what, "the upstream went silent");
                    Some((Err(ProviderError::Timeout), None))
                }
            }
        })
        .boxed()
    }

    /// Sends a JSON call (signed with `body`, or `{}` without one) and reads the envelope; on
    /// `minimax-agent` with its `x-timestamp` and `x-signature` headers besides `Yy`.
    ///
    /// # Errors
    /// [`CallFailure::Status`] for an HTTP error status, [`CallFailure::Envelope`] for a
    /// non-zero code, [`CallFailure::Transport`] when the upstream cannot be reached or its
    /// body is not JSON.
    pub async fn call_json(
        &self,
        call: UpstreamCall,
        token: &AccountToken,
        body: Option<&Value>,
    ) -> Result<Value, CallFailure> {
        request::check_token(token).map_err(CallFailure::Transport)?;
        let builder = self.json_request(&call, token, body);
        let response = self
            .send_timed(&call, token, builder)
            .await
            .map_err(CallFailure::Transport)?;
        read_json(response).await
    }

    /// As [`Self::call_json`] for a call that makes a conversation (the agent's `send_msg`):
    /// when its response head does not come in time, the request is still listened to in the
    /// background (see [`Self::with_late_conversations`]), and the conversation
    /// `conversation_of` finds in its late answer is reported.
    ///
    /// # Errors
    /// As [`Self::call_json`].
    pub async fn call_json_chat(
        &self,
        call: UpstreamCall,
        token: &AccountToken,
        body: &Value,
        conversation_of: fn(&Value) -> Option<ConversationId>,
    ) -> Result<Value, CallFailure> {
        request::check_token(token).map_err(CallFailure::Transport)?;
        let builder = self.json_request(&call, token, Some(body));
        let Some(late) = self.late.clone() else {
            return self.call_json(call, token, Some(body)).await;
        };
        let token_for_watch = token.clone();
        let response = self
            .send_timed_then(&call, token, builder, move |pending| {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                runtime.spawn(watch_late_json(pending, token_for_watch, late, conversation_of));
            })
            .await
            .map_err(CallFailure::Transport)?;
        read_json(response).await
    }

    /// The signed request of a JSON call with `body` (`{}` signed without one); on
    /// `minimax-agent` with its `x-timestamp` and `x-signature` headers besides `Yy`.
    fn json_request(&self, call: &UpstreamCall, token: &AccountToken, body: Option<&Value>) -> reqwest::RequestBuilder {
        let body = body.map(Value::to_string);
        let signature = signing::sign_json(&call.full_uri, body.as_deref(), &call.unix, &self.inner.profile.salt);
        let mut builder = self.request(call, token, &signature);
        if self.inner.dialect == Dialect::MinimaxAgent {
            let (timestamp, body_signature) =
                signing::sign_agent_body(&call.unix, self.identity(token).token, body.as_deref());
            builder = builder
                .header(X_TIMESTAMP, timestamp)
                .header(X_SIGNATURE, body_signature);
        }
        if let Some(body) = body {
            builder = builder.header(CONTENT_TYPE, "application/json").body(body);
        }
        tracing::debug!(method = %call.method, uri = %call.full_uri, account = %token, "upstream call");
        builder
    }
}

/// The envelope of a JSON call's response.
///
/// # Errors
/// As [`HailuoClient::call_json`].
async fn read_json(response: reqwest::Response) -> Result<Value, CallFailure> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| CallFailure::Transport(request::transport_error(e)))?;
    if !status.is_success() {
        return Err(request::status_failure(status, &bytes));
    }
    request::parse_envelope(&bytes)
}

/// Waits, for at most `late.wait`, for a JSON chat call given up to answer, and reports the
/// conversation `conversation_of` finds in its payload.
async fn watch_late_json(
    pending: PendingResponse,
    token: AccountToken,
    late: LateWatch,
    conversation_of: fn(&Value) -> Option<ConversationId>,
) {
    let named = tokio::time::timeout(late.wait, async move {
        let payload = read_json(pending.await.ok()?).await.ok()?;
        conversation_of(&payload)
    })
    .await;
    if let Ok(Some(conversation)) = named {
        late.sink.made(&token, &conversation);
    }
}

#[async_trait]
impl ChatProvider for HailuoClient {
    async fn register_device(&self, token: &AccountToken) -> Result<Device, ProviderError> {
        self.register(token).await
    }

    async fn is_alive(&self, account: &Account) -> Result<bool, ProviderError> {
        self.check_alive(account).await
    }

    async fn send(
        &self,
        account: &Account,
        prompt: &ChatPrompt,
        attachments: Vec<Attachment>,
    ) -> Result<AnswerStream, ProviderError> {
        self.send_prompt_with(account, prompt, attachments).await
    }

    async fn delete_conversation(&self, account: &Account, conversation: &ConversationId) -> Result<(), ProviderError> {
        self.delete(account, conversation).await
    }
}

/// Waits, for at most `late.wait`, for a chat request given up to answer, and reports the
/// conversation its answer names; the answer itself is dropped (nobody is waiting for it).
async fn watch_late_answer(pending: PendingResponse, token: AccountToken, late: LateWatch) {
    let named = tokio::time::timeout(late.wait, async move {
        let response = pending.await.ok()?;
        let response = request::expect_event_stream(response, "a late chat").await.ok()?;
        let mut answer = answer::decode_answer(response.bytes_stream(), request::transport_error);
        // The first delta names the conversation (an empty opening one, or the first piece).
        match answer.next().await {
            Some(Ok(delta)) => Some(delta.conversation),
            _ => None,
        }
    })
    .await;
    if let Ok(Some(conversation)) = named {
        late.sink.made(&token, &conversation);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn client(base_url: &str) -> HailuoClient {
        let mut settings = Settings::defaults().unwrap().upstream;
        settings.base_url = base_url.parse().unwrap();
        HailuoClient::new(&settings).unwrap()
    }

    fn device() -> Device {
        Device {
            user_id: "u-1".into(),
            device_id: "42".into(),
            registered_at_ms: 0,
        }
    }

    #[test]
    fn a_request_carries_the_signature_headers_and_the_fingerprint() {
        let client = client("http://127.0.0.1:9/");
        let conversation = ConversationId::parse("243612345678901234").unwrap();
        let call = client
            .call(
                Method::POST,
                "/v4/api/chat/msg",
                Caller::Device(&device()),
                &AccountToken::new("t"),
            )
            .streaming()
            .in_conversation(&conversation);
        let request = client
            .request(&call, &AccountToken::new("secret-token"), "abc")
            .build()
            .unwrap();
        let url = request.url().as_str();
        assert!(url.starts_with("http://127.0.0.1:9/v4/api/chat/msg?device_platform=web&"));
        assert_eq!(
            format!("{}?{}", request.url().path(), request.url().query().unwrap()),
            call.full_uri()
        );
        let headers = request.headers();
        assert_eq!(headers["token"], "secret-token");
        assert!(headers["token"].is_sensitive());
        assert!(!format!("{request:?}").contains("secret-token"));
        assert_eq!(headers["yy"], "abc");
        assert_eq!(headers["referer"], "https://hailuoai.com/?chat=243612345678901234");
        assert_eq!(headers["origin"], "https://hailuoai.com");
        assert_eq!(headers["accept"], "text/event-stream");
        assert!(headers["user-agent"].to_str().unwrap().contains("Chrome/127"));
        assert_eq!(headers["sec-fetch-site"], "same-origin");
        assert!(
            headers["baggage"]
                .to_str()
                .unwrap()
                .starts_with("sentry-environment=production,")
        );
        assert!(headers["sentry-trace"].to_str().unwrap().ends_with("-1"));
    }

    #[test]
    fn profile_headers_cannot_override_the_per_call_headers() {
        let mut settings = Settings::defaults().unwrap().upstream;
        settings.profile.headers.insert("Accept".into(), "text/html".into());
        settings.profile.headers.insert("Bad Name".into(), "x".into());
        let client = HailuoClient::new(&settings).unwrap();
        let call = client.call(
            Method::GET,
            "/v1/api/user/info",
            Caller::Device(&device()),
            &AccountToken::new("t"),
        );
        let request = client.request(&call, &AccountToken::new("t"), "s").build().unwrap();
        let accepts: Vec<_> = request.headers().get_all("accept").iter().collect();
        assert_eq!(accepts, ["*/*"]);
    }

    #[test]
    fn only_the_token_is_sensitive_and_a_value_no_header_can_carry_fails_the_call() {
        let good = client("http://127.0.0.1:9");
        let call = good.call(
            Method::GET,
            "/v1/api/user/info",
            Caller::Device(&device()),
            &AccountToken::new("t"),
        );
        let request = good.request(&call, &AccountToken::new("t"), "s").build().unwrap();
        let sensitive: Vec<_> = request
            .headers()
            .iter()
            .filter(|(_, value)| value.is_sensitive())
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(sensitive, ["token"]);

        let mut settings = Settings::defaults().unwrap().upstream;
        settings.profile.origin = "https://hailuoai.com\n".into();
        let bad_origin = HailuoClient::new(&settings).unwrap();
        assert!(bad_origin.request(&call, &AccountToken::new("t"), "s").build().is_err());
        // A base URL that does not parse never reaches a client: the settings refuse it.
        assert!("http://[::1".parse::<url::Url>().is_err());
    }

    #[test]
    fn conversation_ids_leave_the_metric_label() {
        assert_eq!(
            path_template("/v1/api/chat/history/243612345678901234"),
            "/v1/api/chat/history/{id}"
        );
        assert_eq!(path_template("/v4/api/chat/msg"), "/v4/api/chat/msg");
    }

    #[test]
    fn a_plain_call_accepts_anything_and_refers_to_the_root() {
        let client = client("http://127.0.0.1:9");
        let call = client.call(
            Method::GET,
            "/v1/api/user/info",
            Caller::Device(&device()),
            &AccountToken::new("t"),
        );
        let request = client.request(&call, &AccountToken::new("t"), "s").build().unwrap();
        assert_eq!(request.headers()["accept"], "*/*");
        assert_eq!(request.headers()["referer"], "https://hailuoai.com/");
        assert!(call.unix().ends_with("000"));
    }
}
