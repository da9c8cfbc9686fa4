//! What every upstream request shares (protocol §1): the profile's query string in its
//! order, the timestamp, the Sentry tracing headers, the JSON response envelope, and the
//! translation of HTTP failures into [`ProviderError`]s.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::config::{Placeholder, Profile, RefusalTexts};
use crate::domain::chat::AccountToken;
use crate::domain::ports::{Device, ProviderError, Refusal};

/// Which device a call identifies itself with in the query string.
#[derive(Clone, Copy, Debug)]
pub enum Caller<'a> {
    /// The device registration call itself: `uuid` is the new id, `device_id` is left out.
    Registering {
        /// The uuid being registered.
        user_id: &'a str,
    },
    /// Any later call: the account's registered device.
    Device(&'a Device),
}

/// The account as the `user_id` and `token` placeholders fill the query: its user id (when
/// empty, `user_id` is the device's uuid) and the token as its header carries it.
#[derive(Clone, Copy, Debug, Default)]
pub struct AccountQuery<'a> {
    /// The account's user id (`user_id`).
    pub user_id: &'a str,
    /// The token as sent (`token`).
    pub token: &'a str,
}

/// The current time as the upstream wants it: Unix milliseconds, truncated to whole seconds
/// (13 digits ending in `000`).
pub fn unix_now() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    format!("{seconds}000")
}

/// The profile's query string, ready to be filled: runs of literal `key=value` pairs
/// joined once, and the placeholders between them. Built once per client, since the query
/// is appended to every upstream call.
#[derive(Clone, Debug, Default)]
pub struct QueryTemplate {
    parts: Vec<QueryPart>,
    /// The bytes of the literal parts and the keys, separators included.
    fixed_len: usize,
}

#[derive(Clone, Debug)]
enum QueryPart {
    /// `k1=v1&k2=v2`, as sent.
    Literal(String),
    /// `key=` followed by the call's value.
    Slot { key: String, placeholder: Placeholder },
}

impl QueryTemplate {
    /// The template of `profile`'s query. A key that is neither a placeholder this adapter
    /// fills nor given a literal is left out with a warning (the settings' validation refuses
    /// such a profile at start).
    pub fn new(profile: &Profile) -> Self {
        let mut parts: Vec<QueryPart> = Vec::new();
        for key in &profile.query {
            let pair = match Placeholder::named(key) {
                Some(placeholder) => {
                    parts.push(QueryPart::Slot {
                        key: key.clone(),
                        placeholder,
                    });
                    continue;
                }
                None => profile.value(key).map(|value| format!("{key}={value}")),
            };
            let Some(pair) = pair else {
                tracing::warn!(key = %key, "skipping a query key of the upstream profile that has no value");
                continue;
            };
            match parts.last_mut() {
                Some(QueryPart::Literal(run)) => {
                    run.push('&');
                    run.push_str(&pair);
                }
                _ => parts.push(QueryPart::Literal(pair)),
            }
        }
        let fixed_len = parts
            .iter()
            .map(|part| match part {
                QueryPart::Literal(run) => run.len() + 1,
                QueryPart::Slot { key, .. } => key.len() + 2,
            })
            .sum();
        Self { parts, fixed_len }
    }

    /// `path` with the query string appended (`?`, or `&` when `path` already has a query);
    /// values are written as they are, and `device_id` is left out, key and all, for a
    /// registering caller. This is the `fullUri` the signature covers.
    pub fn full_uri(&self, path: &str, caller: Caller<'_>, unix: &str, account: AccountQuery<'_>) -> String {
        let (user_id, device_id) = match caller {
            Caller::Registering { user_id } => (user_id, None),
            Caller::Device(device) => (device.user_id.as_str(), Some(device.device_id.as_str())),
        };
        let filled =
            user_id.len() + device_id.map_or(0, str::len) + unix.len() + account.user_id.len() + account.token.len();
        // One buffer for the whole URI: this runs on every upstream call.
        let mut uri = String::with_capacity(path.len() + self.fixed_len + filled);
        uri.push_str(path);
        let mut separator = if path.contains('?') { '&' } else { '?' };
        for part in &self.parts {
            match part {
                QueryPart::Literal(run) => {
                    uri.push(separator);
                    uri.push_str(run);
                }
                QueryPart::Slot { key, placeholder } => {
                    let value = match placeholder {
                        Placeholder::Uuid => user_id,
                        Placeholder::DeviceId => match device_id {
                            Some(device_id) => device_id,
                            None => continue,
                        },
                        Placeholder::Unix => unix,
                        // A token that names no user is known by its device's uuid.
                        Placeholder::UserId if account.user_id.is_empty() => user_id,
                        Placeholder::UserId => account.user_id,
                        Placeholder::Token => account.token,
                    };
                    uri.push(separator);
                    uri.push_str(key);
                    uri.push('=');
                    uri.push_str(value);
                }
            }
            separator = '&';
        }
        uri
    }
}

/// The Sentry tracing headers of one request: `(Baggage, Sentry-Trace)`, with a fresh
/// 32-hex trace id and 16-hex span id, sampled.
pub fn sentry_headers(profile: &Profile) -> (String, String) {
    use std::fmt::Write as _;
    let (trace_id, span_id) = (rand::random::<u128>(), rand::random::<u64>());
    let mut baggage = String::with_capacity(
        136 + profile.sentry_environment.len() + profile.sentry_release.len() + profile.sentry_public_key.len(),
    );
    let mut sentry_trace = String::with_capacity(51);
    // Writing into a String cannot fail.
    let _ = write!(
        baggage,
        "sentry-environment={},sentry-release={},sentry-public_key={},sentry-trace_id={trace_id:032x},\
         sentry-sample_rate=1,sentry-sampled=true",
        profile.sentry_environment, profile.sentry_release, profile.sentry_public_key
    );
    // Sampled, as the web app's own traces are.
    let _ = write!(sentry_trace, "{trace_id:032x}-{span_id:016x}-1");
    (baggage, sentry_trace)
}

/// `Referer` for a call: the origin's root, or the conversation's page when continuing one.
pub fn referer(origin: &str, conversation: Option<&str>) -> String {
    match conversation {
        Some(chat_id) => format!("{origin}/?chat={chat_id}"),
        None => format!("{origin}/"),
    }
}

/// Why an upstream call did not give its payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// The envelope carried a non-zero code; `message` is the upstream's reason.
    #[error("the upstream answered code {code}: {message}")]
    Envelope {
        /// The upstream's code, as text.
        code: String,
        /// The upstream's reason.
        message: String,
    },
    /// An HTTP error status; `code` and `message` are the envelope's when the body had one.
    #[error("the upstream answered HTTP {status}: {message}")]
    Status {
        /// The HTTP status code.
        status: u16,
        /// The envelope's code, as text, when the body had one.
        code: Option<String>,
        /// What the upstream said, or the status's reason phrase.
        message: String,
    },
    /// No usable answer: the connection failed, timed out, or the body was malformed.
    #[error(transparent)]
    Transport(ProviderError),
}

impl CallFailure {
    /// As a failure of the account itself (try another token): envelope codes and 4xx are
    /// [`ProviderError::AccountRejected`], but the [known refusals](known_refusal), HTTP 429
    /// [`ProviderError::RateLimited`] and 5xx [`ProviderError::Unavailable`].
    pub fn into_account_rejected(self) -> ProviderError {
        self.into_provider_error(|message| ProviderError::AccountRejected { message })
    }

    /// As a refusal of this request: envelope codes and 4xx are [`ProviderError::Refused`],
    /// but the [known refusals](known_refusal), HTTP 429 [`ProviderError::RateLimited`] and
    /// 5xx [`ProviderError::Unavailable`].
    pub fn into_refused(self) -> ProviderError {
        self.into_provider_error(ProviderError::refused)
    }

    fn into_provider_error(self, refusal: impl FnOnce(String) -> ProviderError) -> ProviderError {
        match self {
            CallFailure::Envelope { code, message } => {
                known_refusal(&code, &message).unwrap_or_else(|| refusal(message))
            }
            CallFailure::Status { status, code, message } => {
                let known = known_refusal(code.as_deref().unwrap_or_default(), &message);
                match known {
                    // A busy account is busy whatever the status that says so.
                    Some(busy @ ProviderError::AccountBusy { .. }) => busy,
                    _ if status >= 500 => ProviderError::Unavailable {
                        message: format!("HTTP {status}: {message}"),
                    },
                    Some(known) => known,
                    None if status == TOO_MANY_REQUESTS => ProviderError::RateLimited { message },
                    None => refusal(message),
                }
            }
            CallFailure::Transport(error) => error,
        }
    }
}

/// HTTP 429 Too Many Requests.
const TOO_MANY_REQUESTS: u16 = 429;

/// The upstream's code for a `uuid`/`device_id` pair it does not know (`设备未注册`).
pub const DEVICE_UNKNOWN_CODE: &str = "1003";
/// The upstream's code for a conversation that does not exist (`对话不存在`).
pub const CONVERSATION_NOT_FOUND_CODE: &str = "1200002";

/// The upstream's code for an account still busy with another answer (`上一条回复还未结束`).
pub const ACCOUNT_BUSY_CODE: &str = "1200009";

/// The messages by which the upstream says an account is busy with another answer
/// (`accounts.busy_markers`): a refusal whose message contains one of them is
/// [`ProviderError::AccountBusy`]. Their codes are not publicly known, so the text decides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BusyMarkers(std::sync::Arc<[String]>);

impl BusyMarkers {
    /// The markers given (empty ones left out).
    pub fn new(markers: &[String]) -> Self {
        Self(markers.iter().filter(|marker| !marker.is_empty()).cloned().collect())
    }

    /// Whether `message` says the account is busy.
    pub fn matches(&self, message: &str) -> bool {
        self.0.iter().any(|marker| message.contains(marker.as_str()))
    }
}

/// What a refusal's text says it is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reading {
    /// The account sent too many requests.
    Limited,
    /// Something about the request.
    Request(Refusal),
}

/// How the adapter reads the upstream's refusals by their text, where the codes say nothing it
/// knows: the busy markers (`accounts.busy_markers`) and the profile's refusal texts
/// (`[upstream.profile.refusals]`, compared without regard to case). Every refusal an adapter
/// meets passes through [`Self::read`], so that one reading holds for every call.
#[derive(Clone, Debug, Default)]
pub struct RefusalReader {
    busy: BusyMarkers,
    /// Each kind's texts, lowercase, in the order they are tried: a text's "too long" last,
    /// after the audio's.
    texts: std::sync::Arc<[(Reading, Vec<String>)]>,
}

impl RefusalReader {
    /// A reader of `texts`, with no busy markers.
    pub fn new(texts: &RefusalTexts) -> Self {
        let lists = [
            (Reading::Request(Refusal::ContentFiltered), &texts.content_filtered),
            (Reading::Request(Refusal::UnknownVoice), &texts.unknown_voice),
            (Reading::Request(Refusal::UnsupportedFile), &texts.unsupported_file),
            (Reading::Request(Refusal::FileTooLarge), &texts.file_too_large),
            (Reading::Request(Refusal::InvalidAudio), &texts.invalid_audio),
            (Reading::Request(Refusal::AudioTooLong), &texts.audio_too_long),
            (Reading::Limited, &texts.rate_limited),
            (Reading::Request(Refusal::Protocol), &texts.protocol),
            (Reading::Request(Refusal::TextTooLong), &texts.text_too_long),
        ];
        let texts = lists
            .into_iter()
            .map(|(reading, list)| {
                let lower = list
                    .iter()
                    .filter(|text| !text.is_empty())
                    .map(|text| text.to_lowercase())
                    .collect();
                (reading, lower)
            })
            .collect();
        Self {
            busy: BusyMarkers::default(),
            texts,
        }
    }

    /// This reader with `busy` as the busy markers.
    #[must_use]
    pub fn with_busy(mut self, busy: BusyMarkers) -> Self {
        self.busy = busy;
        self
    }

    /// What `message` says, by the first list holding one of its texts.
    fn reading(&self, message: &str) -> Option<Reading> {
        let lower = message.to_lowercase();
        self.texts
            .iter()
            .find(|(_, texts)| texts.iter().any(|text| lower.contains(text.as_str())))
            .map(|(reading, _)| *reading)
    }

    /// `error` as the upstream's text reads: a busy marker makes any refusal, or a 5xx
    /// carrying one, [`ProviderError::AccountBusy`] (a busy account is never the upstream
    /// failing); a refusal text makes an unrecognised refusal of the request, or of the
    /// account (but a logged-out one), [`ProviderError::RateLimited`] or a
    /// [`ProviderError::Refused`] with its [`Refusal`]. Anything else is unchanged.
    pub fn read(&self, error: ProviderError) -> ProviderError {
        let (message, account_refusal) = match &error {
            ProviderError::Refused {
                message,
                reason: Refusal::Unrecognised,
            } => (message, false),
            ProviderError::AccountRejected { message } => (message, true),
            ProviderError::RateLimited { message } | ProviderError::Unavailable { message } => {
                if self.busy.matches(message) {
                    return ProviderError::AccountBusy {
                        message: message.clone(),
                    };
                }
                return error;
            }
            _ => return error,
        };
        if self.busy.matches(message) {
            return ProviderError::AccountBusy {
                message: message.clone(),
            };
        }
        if account_refusal && logged_out(message) {
            return error;
        }
        match self.reading(message) {
            Some(Reading::Limited) => ProviderError::RateLimited {
                message: message.clone(),
            },
            Some(Reading::Request(reason)) => ProviderError::Refused {
                message: message.clone(),
                reason,
            },
            None => error,
        }
    }
}

/// Whether `message` says the account is not logged in, or no longer.
fn logged_out(message: &str) -> bool {
    message.contains("未登录") || message.contains("登录已失效")
}

/// The upstream's codes for an account that is not logged in (`用户未登录`) or whose login
/// expired (`登录已失效，请重新登录`).
pub const LOGGED_OUT_CODES: [&str; 2] = ["1001", "1004"];

/// The refusals whose meaning is known whatever the call: a logged-out account, a forgotten
/// device, a missing conversation and a busy account (by its code; the configured
/// [`BusyMarkers`] add the texts). Recognised by code or by the upstream's text, since none
/// is documented and either may change alone.
pub fn known_refusal(code: &str, message: &str) -> Option<ProviderError> {
    if LOGGED_OUT_CODES.contains(&code) || logged_out(message) {
        return Some(ProviderError::AccountRejected {
            message: message.to_owned(),
        });
    }
    if code == DEVICE_UNKNOWN_CODE || message.contains("设备未注册") {
        return Some(ProviderError::DeviceUnknown {
            message: message.to_owned(),
        });
    }
    if code == CONVERSATION_NOT_FOUND_CODE || message.contains("对话不存在") {
        return Some(ProviderError::ConversationNotFound {
            message: message.to_owned(),
        });
    }
    if code == ACCOUNT_BUSY_CODE {
        return Some(ProviderError::AccountBusy {
            message: message.to_owned(),
        });
    }
    None
}

/// Reads a JSON response body by the envelope rule: `{"statusInfo":{"code":0},"data":P}`
/// gives `P` (`null` when absent), a non-zero code fails with the upstream's message, and a
/// body without an object `statusInfo` is the payload itself. The `minimax-agent` envelope,
/// `{"base_resp":{"status_code":0,"status_msg":".."}, ...}`, gives the whole body on
/// `status_code` 0 and fails with `status_msg` otherwise.
///
/// # Errors
/// [`CallFailure::Envelope`] for a non-zero code; [`CallFailure::Transport`] with
/// [`ProviderError::BadResponse`] when the body is not JSON.
pub fn parse_envelope(body: &[u8]) -> Result<Value, CallFailure> {
    let mut body: Value = serde_json::from_slice(body).map_err(|error| {
        CallFailure::Transport(ProviderError::BadResponse {
            message: format!("the upstream answered something that is not JSON: {error}"),
        })
    })?;
    if let Some(base) = body.get("base_resp").and_then(Value::as_object) {
        return match base.get("status_code") {
            Some(code) if code.as_i64() == Some(0) => Ok(body),
            code => Err(envelope_failure(
                code.cloned().unwrap_or(Value::Null),
                base.get("status_msg"),
            )),
        };
    }
    let Some(status) = body.get("statusInfo").and_then(Value::as_object) else {
        return Ok(body);
    };
    let code = status.get("code").cloned().unwrap_or(Value::Null);
    if code.as_i64() == Some(0) {
        return Ok(body.get_mut("data").map(Value::take).unwrap_or(Value::Null));
    }
    Err(envelope_failure(code, status.get("message")))
}

/// The failure of an envelope's non-zero `code`, its `message` when it has a non-empty one.
fn envelope_failure(code: Value, message: Option<&Value>) -> CallFailure {
    let code = code.to_string();
    let message = match message.and_then(Value::as_str).map(str::trim) {
        Some(message) if !message.is_empty() => message.to_owned(),
        _ => format!("upstream error code {code}"),
    };
    CallFailure::Envelope { code, message }
}

/// The failure of an HTTP error `status` whose body was `body`.
pub fn status_failure(status: reqwest::StatusCode, body: &[u8]) -> CallFailure {
    let (code, message) = match parse_envelope(body) {
        Err(CallFailure::Envelope { code, message }) => (Some(code), message),
        _ => (None, status.canonical_reason().unwrap_or("error").to_owned()),
    };
    CallFailure::Status {
        status: status.as_u16(),
        code,
        message,
    }
}

/// Checks that `token` can travel in the `Token` header at all.
///
/// # Errors
/// [`ProviderError::AccountRejected`] when it cannot (the message does not show it).
pub fn check_token(token: &AccountToken) -> Result<(), ProviderError> {
    reqwest::header::HeaderValue::from_str(token.expose())
        .map(drop)
        .map_err(|_| ProviderError::AccountRejected {
            message: "the token holds characters an HTTP header cannot carry".to_owned(),
        })
}

/// Translates a reqwest failure: timeouts become [`ProviderError::Timeout`], anything else
/// [`ProviderError::Unavailable`]. The message gives the causes (reqwest's own text alone says
/// only "error sending request") and leaves out the URL; it never held the token, which
/// travels in a header.
pub fn transport_error(error: reqwest::Error) -> ProviderError {
    if error.is_timeout() {
        return ProviderError::Timeout;
    }
    let what = if error.is_connect() {
        "cannot connect"
    } else if error.is_body() || error.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    let error = error.without_url();
    let causes = std::iter::successors(std::error::Error::source(&error), |cause| cause.source());
    let message = causes.fold(format!("{what}: {error}"), |message, cause| {
        format!("{message}: {cause}")
    });
    ProviderError::Unavailable { message }
}

/// The answer of a streaming endpoint (chat, voice), when it is an event stream. Anything
/// else, received before any event, is this account failing the request (protocol §5.2).
///
/// # Errors
/// [`ProviderError::AccountRejected`] for an HTTP status below 500 or a JSON envelope with a
/// non-zero code; [`ProviderError::Unavailable`] for a 5xx; [`ProviderError::BadResponse`] for
/// any other answer that is not an event stream.
pub async fn expect_event_stream(response: reqwest::Response, what: &str) -> Result<reqwest::Response, ProviderError> {
    let status = response.status();
    let is_event_stream = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("text/event-stream"));
    if status.is_success() && is_event_stream {
        return Ok(response);
    }
    let body = response.bytes().await.map_err(transport_error)?;
    if !status.is_success() {
        return Err(status_failure(status, &body).into_account_rejected());
    }
    Err(match parse_envelope(&body) {
        Err(failure) => failure.into_account_rejected(),
        Ok(_) => ProviderError::BadResponse {
            message: format!("{what} answered JSON instead of an event stream"),
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn profile() -> Profile {
        Settings::defaults().unwrap().upstream.profile
    }

    fn device() -> Device {
        Device {
            user_id: "0b5f3c6e-1c2d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            device_id: "312345678901234567".into(),
            registered_at_ms: 0,
        }
    }

    #[tokio::test]
    async fn a_transport_error_names_its_causes_but_not_the_url() {
        // A port nobody listens on: bind one, note it, let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/secret-path?token=abc");
        let error = reqwest::Client::new().get(&url).send().await.unwrap_err();
        let ProviderError::Unavailable { message } = transport_error(error) else {
            panic!("a refused connection is the upstream being unavailable");
        };
        assert!(
            message.starts_with("cannot connect: error sending request"),
            "{message}"
        );
        // reqwest's own text stops there; the causes say why.
        assert!(message.to_ascii_lowercase().contains("connection refused"), "{message}");
        assert!(
            !message.contains("secret-path") && !message.contains("abc"),
            "{message}"
        );
    }

    #[test]
    fn the_query_string_follows_the_documented_order_with_the_profile_values() {
        let uri = QueryTemplate::new(&profile()).full_uri(
            "/v1/api/user/info",
            Caller::Device(&device()),
            "1700000000000",
            AccountQuery::default(),
        );
        assert_eq!(
            uri,
            "/v1/api/user/info?device_platform=web&app_id=3001&version_code=22200\
             &uuid=0b5f3c6e-1c2d-4e5f-8a9b-0c1d2e3f4a5b&device_id=312345678901234567&os_name=Windows\
             &browser_name=chrome&device_memory=8&cpu_core_num=12&browser_language=zh-CN\
             &browser_platform=Win32&screen_width=1920&screen_height=1080&unix=1700000000000"
        );
    }

    #[test]
    fn registration_leaves_out_the_device_id_and_a_path_query_is_extended() {
        let uri = QueryTemplate::new(&profile()).full_uri(
            "/v1/api/chat/msg_tts?msgID=1&timbre=male-botong",
            Caller::Registering { user_id: "u-1" },
            "1700000000000",
            AccountQuery::default(),
        );
        assert!(uri.starts_with("/v1/api/chat/msg_tts?msgID=1&timbre=male-botong&device_platform=web&"));
        assert!(uri.contains("&uuid=u-1&os_name=Windows&"));
        assert!(!uri.contains("device_id"));
    }

    #[test]
    fn the_intl_query_follows_its_own_order_and_an_added_key_takes_its_place() {
        use crate::config::Dialect;
        let mut intl = Dialect::HailuoIntl.profile().unwrap();
        let uri = QueryTemplate::new(&intl).full_uri(
            "/v1/api/user/info",
            Caller::Device(&device()),
            "1700000000000",
            AccountQuery::default(),
        );
        assert_eq!(
            uri,
            "/v1/api/user/info?device_platform=web&biz_id=2&app_id=3001&version_code=22201&lang=en\
             &uuid=0b5f3c6e-1c2d-4e5f-8a9b-0c1d2e3f4a5b&device_id=312345678901234567&os_name=Windows\
             &browser_name=chrome&cpu_core_num=12&browser_language=zh-CN&browser_platform=Win32\
             &screen_width=1920&screen_height=1080&unix=1700000000000"
        );
        intl.query.insert(1, "added".into());
        intl.values.insert("added".into(), "yes".into());
        let registering = QueryTemplate::new(&intl).full_uri(
            "/p",
            Caller::Registering { user_id: "u-1" },
            "1",
            AccountQuery::default(),
        );
        assert!(
            registering.starts_with("/p?device_platform=web&added=yes&biz_id=2&"),
            "{registering}"
        );
        assert!(
            registering.contains("&lang=en&uuid=u-1&os_name=Windows&"),
            "{registering}"
        );
        assert!(registering.ends_with("&unix=1"), "{registering}");
    }

    #[test]
    fn the_agent_query_fills_the_user_id_and_the_token_in_their_places() {
        use crate::config::Dialect;
        let agent = Dialect::MinimaxAgent.profile().unwrap();
        let account = AccountQuery {
            user_id: "3123",
            token: "eyJ.x.y",
        };
        let uri = QueryTemplate::new(&agent).full_uri(
            "/matrix/api/v1/chat/send_msg",
            Caller::Device(&device()),
            "1700000000000",
            account,
        );
        assert_eq!(
            uri,
            "/matrix/api/v1/chat/send_msg?device_platform=web&biz_id=3&app_id=3001&version_code=22201\
             &uuid=0b5f3c6e-1c2d-4e5f-8a9b-0c1d2e3f4a5b&device_id=312345678901234567&os_name=Mac\
             &browser_name=chrome&device_memory=8&cpu_core_num=11&browser_language=zh-CN\
             &browser_platform=MacIntel&user_id=3123&screen_width=1920&screen_height=1080\
             &unix=1700000000000&lang=zh&token=eyJ.x.y"
        );
    }

    #[test]
    fn unix_is_thirteen_digits_of_whole_seconds() {
        let unix = unix_now();
        assert_eq!(unix.len(), 13);
        assert!(unix.ends_with("000"));
        assert!(unix.bytes().all(|b| b.is_ascii_digit()));
    }

    #[test]
    fn sentry_headers_share_a_fresh_trace_id() {
        let (baggage, trace) = sentry_headers(&profile());
        let parts: Vec<&str> = trace.split('-').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), 32);
        assert_eq!(parts[1].len(), 16);
        assert_eq!(parts[2], "1", "sampled, as the web app's traces");
        assert!(parts[..2].iter().all(|p| p.bytes().all(|b| b.is_ascii_hexdigit())));
        assert_eq!(
            baggage,
            format!(
                "sentry-environment=production,sentry-release=CI7N-1MjJnx5pru-bzzhR,\
                 sentry-public_key=6cf106db5c7b7262eae7cc6b411c776a,sentry-trace_id={},\
                 sentry-sample_rate=1,sentry-sampled=true",
                parts[0]
            )
        );
        assert_ne!(sentry_headers(&profile()).1, trace);
    }

    #[test]
    fn the_envelope_gives_the_payload_or_the_upstream_reason() {
        let payload = parse_envelope(br#"{"statusInfo":{"code":0,"message":"Success"},"data":{"a":1}}"#).unwrap();
        assert_eq!(payload, serde_json::json!({"a": 1}));
        let bare = parse_envelope(br#"{"deviceIDStr":"1"}"#).unwrap();
        assert_eq!(bare, serde_json::json!({"deviceIDStr": "1"}));
        let refused = parse_envelope(r#"{"statusInfo":{"code":1004,"message":"用户未登录"},"data":{}}"#.as_bytes());
        assert_eq!(
            refused,
            Err(CallFailure::Envelope {
                code: "1004".into(),
                message: "用户未登录".into()
            })
        );
        assert!(matches!(
            parse_envelope(b"<html>"),
            Err(CallFailure::Transport(ProviderError::BadResponse { .. }))
        ));
    }

    #[test]
    fn the_agent_envelope_gives_the_whole_body_or_its_status_message() {
        let body = br#"{"chat_id":7,"base_resp":{"status_code":0,"status_msg":"success"}}"#;
        assert_eq!(parse_envelope(body).unwrap()["chat_id"], 7);
        let running = parse_envelope(br#"{"base_resp":{"status_code":1000,"status_msg":"chat is running"}}"#);
        assert_eq!(
            running,
            Err(CallFailure::Envelope {
                code: "1000".into(),
                message: "chat is running".into()
            })
        );
        let silent = parse_envelope(br#"{"base_resp":{"status_code":5}}"#);
        assert!(matches!(silent, Err(CallFailure::Envelope { message, .. }) if message == "upstream error code 5"));
    }

    #[test]
    fn a_token_that_cannot_be_a_header_is_rejected_without_showing_it() {
        assert!(check_token(&AccountToken::new("eyJhbGciOi.abc-_")).is_ok());
        let error = check_token(&AccountToken::new("bad\ntoken")).unwrap_err();
        assert!(matches!(&error, ProviderError::AccountRejected { message } if !message.contains("bad")));
    }

    #[test]
    fn failures_map_to_the_domain_by_who_failed() {
        let envelope = CallFailure::Envelope {
            code: "1".into(),
            message: "no".into(),
        };
        assert_eq!(
            envelope.clone().into_account_rejected(),
            ProviderError::AccountRejected { message: "no".into() }
        );
        assert_eq!(envelope.into_refused(), ProviderError::refused("no"));
        let server = status_failure(reqwest::StatusCode::BAD_GATEWAY, b"");
        assert!(matches!(
            server.into_account_rejected(),
            ProviderError::Unavailable { .. }
        ));
        let client = status_failure(
            reqwest::StatusCode::UNAUTHORIZED,
            r#"{"statusInfo":{"code":401,"message":"登录过期"}}"#.as_bytes(),
        );
        assert_eq!(
            client.into_account_rejected(),
            ProviderError::AccountRejected {
                message: "登录过期".into()
            }
        );
        // Too many requests is the account limited, not refused, whatever the call.
        let limited = status_failure(reqwest::StatusCode::TOO_MANY_REQUESTS, b"");
        assert_eq!(
            limited.clone().into_account_rejected(),
            ProviderError::RateLimited {
                message: "Too Many Requests".into()
            }
        );
        assert!(matches!(limited.into_refused(), ProviderError::RateLimited { .. }));
        // A known code in an error status's envelope means what it means in a 200.
        let gone = status_failure(
            reqwest::StatusCode::NOT_FOUND,
            r#"{"statusInfo":{"code":1200002,"message":"对话不存在"}}"#.as_bytes(),
        );
        assert!(matches!(
            gone.into_account_rejected(),
            ProviderError::ConversationNotFound { .. }
        ));
        let busy = status_failure(
            reqwest::StatusCode::SERVICE_UNAVAILABLE,
            r#"{"statusInfo":{"code":1200009,"message":"上一条回复还未结束"}}"#.as_bytes(),
        );
        assert!(matches!(busy.into_refused(), ProviderError::AccountBusy { .. }));
    }

    #[test]
    fn the_known_refusals_mean_the_same_whatever_the_call() {
        let refused = |code: &str, message: &str| {
            CallFailure::Envelope {
                code: code.into(),
                message: message.into(),
            }
            .into_refused()
        };
        assert!(matches!(refused("1003", "x"), ProviderError::DeviceUnknown { .. }));
        assert!(matches!(
            refused("77", "设备未注册"),
            ProviderError::DeviceUnknown { .. }
        ));
        assert!(matches!(
            refused("1200002", "x"),
            ProviderError::ConversationNotFound { .. }
        ));
        assert!(matches!(
            refused("9", "对话不存在"),
            ProviderError::ConversationNotFound { .. }
        ));
        for (code, message) in [
            ("1004", "x"),
            ("1001", "x"),
            ("5", "登录已失效，请重新登录"),
            ("6", "用户未登录"),
        ] {
            assert!(
                matches!(refused(code, message), ProviderError::AccountRejected { .. }),
                "{code} {message}"
            );
        }
        assert_eq!(refused("1500001", "敏感"), ProviderError::refused("敏感"));
        assert_eq!(
            refused("1200009", "上一条回复还未结束"),
            ProviderError::AccountBusy {
                message: "上一条回复还未结束".into()
            }
        );
    }

    fn default_reader() -> RefusalReader {
        let settings = Settings::defaults().unwrap();
        RefusalReader::new(&settings.upstream.profile.refusals)
            .with_busy(BusyMarkers::new(&settings.accounts.busy_markers))
    }

    #[test]
    fn every_default_busy_message_is_the_account_being_busy() {
        let reader = default_reader();
        for message in [
            "当前还有其他请求正在进行，请稍后再试",
            "上一条回复还未结束",
            "当前账号有正在进行的对话",
            "chat is running",
        ] {
            for error in [
                ProviderError::refused(message),
                ProviderError::AccountRejected {
                    message: message.into(),
                },
                ProviderError::RateLimited {
                    message: message.into(),
                },
                // A 5xx that says so too: a busy account never becomes the upstream failing.
                ProviderError::Unavailable {
                    message: format!("HTTP 503: {message}"),
                },
            ] {
                assert!(
                    matches!(reader.read(error), ProviderError::AccountBusy { .. }),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn a_refusal_text_says_what_the_refusal_is_about_whoever_it_was_taken_for() {
        let reader = default_reader();
        for (message, reason) in [
            ("内容涉及敏感信息，请修改后重试", Refusal::ContentFiltered),
            ("Content contains SENSITIVE words", Refusal::ContentFiltered),
            ("输入内容过长，请缩短后重试", Refusal::TextTooLong),
            ("音色不存在", Refusal::UnknownVoice),
            ("不支持的文件类型", Refusal::UnsupportedFile),
            ("文件过大", Refusal::FileTooLarge),
            ("音频格式错误", Refusal::InvalidAudio),
            ("音频时长超过限制", Refusal::AudioTooLong),
            ("Audio is too long", Refusal::AudioTooLong),
            ("签名错误", Refusal::Protocol),
            ("参数错误", Refusal::Protocol),
        ] {
            let expected = ProviderError::Refused {
                message: message.into(),
                reason,
            };
            assert_eq!(reader.read(ProviderError::refused(message)), expected, "{message}");
            // Refused before a stream, where the account was suspected: about the request.
            let before_stream = ProviderError::AccountRejected {
                message: message.into(),
            };
            assert_eq!(reader.read(before_stream), expected, "{message}");
        }
        assert_eq!(
            reader.read(ProviderError::refused("请求过于频繁，请稍后再试")),
            ProviderError::RateLimited {
                message: "请求过于频繁，请稍后再试".into()
            }
        );
    }

    #[test]
    fn other_refusals_and_failures_are_left_as_they_are() {
        let reader = default_reader();
        for error in [
            ProviderError::refused("something else entirely"),
            ProviderError::AccountRejected {
                message: "登录已失效，请重新登录".into(),
            },
            // Logged out is about the account, whatever else the message says.
            ProviderError::AccountRejected {
                message: "用户未登录，参数错误".into(),
            },
            ProviderError::Unavailable {
                message: "HTTP 503: 内容涉及敏感信息".into(),
            },
            ProviderError::Refused {
                message: "上一条回复还未结束".into(),
                reason: Refusal::TextTooLong,
            },
            ProviderError::Timeout,
        ] {
            assert_eq!(reader.read(error.clone()), error);
        }
        let none = BusyMarkers::new(&[String::new()]);
        assert!(!none.matches("上一条回复还未结束"), "an empty marker matches nothing");
        let added = BusyMarkers::new(&["账号繁忙".to_owned()]);
        assert!(added.matches("当前账号繁忙，请稍后"));
        assert!(
            !added.matches("上一条回复还未结束"),
            "only the configured markers count"
        );
    }

    #[test]
    fn a_text_added_to_the_profile_is_read_and_one_left_out_is_not() {
        let texts = RefusalTexts {
            unknown_voice: vec!["Timbre introuvable".into(), String::new()],
            ..RefusalTexts::default()
        };
        let reader = RefusalReader::new(&texts);
        assert!(matches!(
            reader.read(ProviderError::refused("timbre introuvable: x")),
            ProviderError::Refused {
                reason: Refusal::UnknownVoice,
                ..
            }
        ));
        assert_eq!(
            reader.read(ProviderError::refused("音色不存在")),
            ProviderError::refused("音色不存在"),
            "only the profile's texts count"
        );
    }
}
