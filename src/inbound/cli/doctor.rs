//! `hailuo-free-api doctor`: runs each step a request needs against the configured upstream
//! (reach the host, register a device, read the user info, send a one-word chat, read the
//! answer, delete the conversation) and prints one line per step: `ok` with a detail, or what
//! the upstream answered with what it most likely means (the profile drifted, the token is
//! dead, the network fails). It speaks through the chat port, with the adapter the settings
//! build, as the server does; and it never prints the token.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;
use futures::StreamExt;
use url::Url;

use crate::config::{Dialect, Settings, UpstreamSettings};
use crate::domain::chat::{AccountToken, ChatMessage, ChatPrompt, ConversationId, init_fingerprint_key};
use crate::domain::ports::{Account, AnswerStream, ChatProvider, ProviderError, Refusal};
use crate::domain::token_expiry;
use crate::outbound::hailuo::HailuoClient;
use crate::outbound::hailuo::agent::AgentClient;
use crate::outbound::hailuo::request::transport_error;

/// The one-word message the chat step sends.
const PROMPT: &str = "Hi";
/// How much of the answer the answer step shows, in characters.
const ANSWER_SHOWN: usize = 32;
/// How long the rest of an answer is read after its final event, before the deletion.
const DRAIN: Duration = Duration::from_secs(5);
/// Labels are padded to this width.
const LABEL_WIDTH: usize = 10;

/// `doctor`'s options. No `Debug`: it holds the token.
#[derive(clap::Args)]
pub struct DoctorArgs {
    /// The Hailuo token to try (the web app's `_token`). Never printed; give it through
    /// HAILUO_TOKEN to keep it out of the shell's history.
    #[arg(long, env = "HAILUO_TOKEN", hide_env_values = true, value_name = "TOKEN", value_parser = non_empty)]
    token: String,
    /// The upstream to check instead of `upstream.base_url`.
    #[arg(long, value_name = "URL", value_parser = http_url)]
    base_url: Option<Url>,
    /// The dialect to speak instead of `upstream.dialect` (hailuoai, hailuo-intl, minimax-agent); its
    /// profile and host are then the ones used.
    #[arg(long, value_name = "DIALECT", value_parser = dialect)]
    dialect: Option<Dialect>,
}

impl DoctorArgs {
    /// The dialect the command line chose, which settings are loaded on.
    pub fn dialect(&self) -> Option<Dialect> {
        self.dialect
    }

    /// Lays the command line's choices over the loaded settings: every option that names a
    /// setting is applied here, so that the doctor checks what the server would run with.
    pub fn apply(&self, settings: &mut Settings) {
        if let Some(base_url) = &self.base_url {
            settings.upstream.base_url = base_url.clone();
        }
    }
}

/// A dialect by the name `upstream.dialect` takes.
fn dialect(value: &str) -> Result<Dialect, String> {
    Dialect::ALL
        .into_iter()
        .find(|dialect| dialect.name() == value)
        .ok_or_else(|| {
            let names: Vec<&str> = Dialect::ALL.iter().map(|dialect| dialect.name()).collect();
            format!("unknown dialect `{value}`; expected one of {}", names.join(", "))
        })
}

/// A token given on the command line: not blank.
fn non_empty(value: &str) -> Result<String, String> {
    let value = value.trim();
    if value.is_empty() {
        return Err("the token must not be empty".to_owned());
    }
    Ok(value.to_owned())
}

/// A base URL given on the command line: `http://` or `https://`.
fn http_url(value: &str) -> Result<Url, String> {
    let url = Url::parse(value).map_err(|error| error.to_string())?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("`{other}://` is not http:// or https://")),
    }
}

/// Runs every step against the upstream of `settings` (with `args` applied), prints the
/// report and returns the exit status: success when every step passed, 1 otherwise.
///
/// # Errors
/// When the async runtime or the HTTP client cannot be built; an upstream failure is a
/// failed step, not an error.
pub fn run(settings: &Settings, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    // The fingerprint printed is the one the server's logs and metrics show.
    init_fingerprint_key(settings.store.secret.as_deref());
    let token = AccountToken::new(args.token.as_str());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let report = runtime.block_on(checkup(&settings.upstream, &token))?;
    let text = render(&settings.upstream, &token, &report, token_expiry::now_secs());
    print!("{}", redact(&text, token.expose()));
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Builds the adapter of `upstream` and runs the steps on `token`.
async fn checkup(upstream: &UpstreamSettings, token: &AccountToken) -> anyhow::Result<Report> {
    let http = upstream.http_client().context("building the upstream HTTP client")?;
    let provider = chat_provider(upstream)?;
    let reach = Reach {
        http: &http,
        base_url: &upstream.base_url,
        within: upstream.first_byte_timeout,
    };
    let mut report = Report::default();
    // `None` at the first failed step: the report's missing steps are the skipped ones.
    let _ = run_steps(&mut report, provider.as_ref(), reach, token).await;
    Ok(report)
}

/// The chat adapter the server builds for `upstream`.
///
/// # Errors
/// When its HTTP client cannot be built.
fn chat_provider(upstream: &UpstreamSettings) -> anyhow::Result<Arc<dyn ChatProvider>> {
    let client = HailuoClient::new(upstream).context("building the upstream HTTP client")?;
    Ok(match upstream.dialect {
        Dialect::MinimaxAgent => Arc::new(AgentClient::new(client)),
        Dialect::Hailuoai | Dialect::HailuoIntl => Arc::new(client),
    })
}

/// How the first step reaches the host: the upstream's HTTP client, the base URL, and the
/// time allowed for the response head (`upstream.first_byte_timeout_secs`).
#[derive(Clone, Copy)]
struct Reach<'a> {
    http: &'a reqwest::Client,
    base_url: &'a Url,
    within: Duration,
}

/// The steps in order, each recorded in `report`; stops at the first that fails, except that
/// a conversation the upstream made is deleted whatever happened to its answer.
async fn run_steps(
    report: &mut Report,
    provider: &dyn ChatProvider,
    reach: Reach<'_>,
    token: &AccountToken,
) -> Option<()> {
    let started = Instant::now();
    let reached = match tokio::time::timeout(reach.within, reach.http.get(reach.base_url.clone()).send()).await {
        Ok(sent) => sent.map_err(transport_error),
        Err(_) => Err(ProviderError::Timeout),
    };
    report.check(Step::Reach, reached, |response| {
        format!(
            "HTTP {} in {} ms",
            response.status().as_u16(),
            started.elapsed().as_millis()
        )
    })?;

    let device = report.check(Step::Register, provider.register_device(token).await, |device| {
        format!("device id of {} characters", device.device_id.chars().count())
    })?;
    let account = Account {
        token: token.clone(),
        device,
    };

    let alive = provider.is_alive(&account).await.and_then(|alive| {
        if alive {
            Ok(())
        } else {
            Err(ProviderError::AccountRejected {
                message: "the user info call was refused".to_owned(),
            })
        }
    });
    report.check(Step::UserInfo, alive, |()| "the account is logged in".to_owned())?;

    let prompt = ChatPrompt::new(vec![ChatMessage::text("user", PROMPT)]);
    let stream = report.check(Step::Chat, provider.send(&account, &prompt, Vec::new()).await, |_| {
        format!("{PROMPT:?} sent")
    })?;
    let (conversation, answer) = read_answer(stream).await;
    let answered = report.check(Step::Answer, answer, |text| describe_answer(text));
    let conversation = conversation?;
    let deleted = provider.delete_conversation(&account, &conversation).await;
    report.check(Step::Delete, deleted, |()| {
        format!("conversation {} deleted", conversation.as_str())
    })?;
    answered.map(drop)
}

/// Reads an answer to its final event, then what follows of it for a moment (the upstream
/// counts the answer under way until its response ends): the conversation it names and its
/// text.
async fn read_answer(mut stream: AnswerStream) -> (Option<ConversationId>, Result<String, ProviderError>) {
    let mut conversation = None;
    let mut text = String::new();
    while let Some(delta) = stream.next().await {
        match delta {
            Ok(delta) => {
                conversation.get_or_insert(delta.conversation);
                text.push_str(&delta.text);
                if delta.finished {
                    let _ = tokio::time::timeout(DRAIN, async { while stream.next().await.is_some() {} }).await;
                    if text.trim().is_empty() {
                        let message = "the answer has no text".to_owned();
                        return (conversation, Err(ProviderError::BadResponse { message }));
                    }
                    return (conversation, Ok(text));
                }
            }
            Err(error) => return (conversation, Err(error)),
        }
    }
    let message = "the answer ended before its final event".to_owned();
    (conversation, Err(ProviderError::BadResponse { message }))
}

/// The first characters of an answer, on one line, and its length.
fn describe_answer(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut shown: String = flat.chars().take(ANSWER_SHOWN).collect();
    if flat.chars().count() > ANSWER_SHOWN {
        shown.push('…');
    }
    format!("\"{shown}\" ({} characters)", text.chars().count())
}

/// One step a request needs, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// An HTTP request to the base URL: DNS, TCP and TLS (any status will do).
    Reach,
    /// A fresh device registered for the token (protocol §3).
    Register,
    /// The account's user info (§4).
    UserInfo,
    /// A one-word chat message accepted (§5).
    Chat,
    /// Its answer read to the end (§5.2).
    Answer,
    /// The conversation deleted (§5.3).
    Delete,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 6] = [
        Step::Reach,
        Step::Register,
        Step::UserInfo,
        Step::Chat,
        Step::Answer,
        Step::Delete,
    ];

    /// The step's name in the report.
    pub fn label(self) -> &'static str {
        match self {
            Step::Reach => "reach",
            Step::Register => "register",
            Step::UserInfo => "user info",
            Step::Chat => "chat",
            Step::Answer => "answer",
            Step::Delete => "delete",
        }
    }
}

/// What most likely broke, from the way a step failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hint {
    /// A signature or a parameter was refused: the web app changed what it sends.
    Profile,
    /// The upstream knows no login for the token.
    Token,
    /// The host cannot be reached: connection refused, DNS, TLS.
    Network,
    /// Nothing came back in time.
    Slow,
    /// The upstream failed on its side (5xx).
    UpstreamDown,
    /// The account is answering something else.
    Busy,
    /// The upstream limits the account's requests.
    Limited,
    /// The answer does not follow the protocol the gateway speaks.
    Protocol,
    /// Nothing recognisable: the upstream's message is all there is.
    Unknown,
}

impl Hint {
    /// The likely cause, in a few words.
    pub fn cause(self) -> &'static str {
        match self {
            Hint::Profile => "the profile drifted",
            Hint::Token => "the token is dead or expired",
            Hint::Network => "the network",
            Hint::Slow => "no answer in time",
            Hint::UpstreamDown => "the upstream is down",
            Hint::Busy => "the account is busy",
            Hint::Limited => "the account is rate limited",
            Hint::Protocol => "the protocol changed",
            Hint::Unknown => "the upstream refused",
        }
    }

    /// What the operator should look at.
    pub fn advice(self) -> &'static str {
        match self {
            Hint::Profile => {
                "a signature or parameter was rejected: the profile drifted; compare [upstream.profile] \
                 (version_code, app_id, the headers) with what the web app sends now"
            }
            Hint::Token => "the token is dead or expired: log in to the web app and copy a fresh _token",
            Hint::Network => {
                "a network failure (connection refused, DNS or TLS): check upstream.base_url, the \
                 network and any proxy"
            }
            Hint::Slow => "no answer in time: the network or the upstream is slow, or a firewall drops packets",
            Hint::UpstreamDown => "the upstream failed on its side: try again later",
            Hint::Busy => "the account is busy with another answer: try again in a moment",
            Hint::Limited => "the upstream limits this account's requests: try again later, or use another token",
            Hint::Protocol => {
                "the answer does not follow the protocol the gateway speaks: the web app changed \
                 (docs/protocol.md)"
            }
            Hint::Unknown => "the upstream refused; its message above says why",
        }
    }
}

/// What `error` most likely means: by its kind where the adapter classified it, otherwise by
/// the upstream's message, the same texts the adapter recognises (protocol §10).
pub fn hint_for(error: &ProviderError) -> Hint {
    match error {
        ProviderError::Refused {
            reason: Refusal::Protocol,
            ..
        } => Hint::Profile,
        ProviderError::AccountRejected { message } | ProviderError::Refused { message, .. } => refusal_hint(message),
        ProviderError::RateLimited { .. } => Hint::Limited,
        ProviderError::DeviceUnknown { .. } => Hint::Profile,
        ProviderError::AccountBusy { .. } => Hint::Busy,
        ProviderError::Unavailable { message } if message.starts_with("HTTP 5") => Hint::UpstreamDown,
        ProviderError::Unavailable { .. } => Hint::Network,
        ProviderError::Timeout | ProviderError::GaveUp { .. } => Hint::Slow,
        ProviderError::BadResponse { .. } | ProviderError::ConversationNotFound { .. } => Hint::Protocol,
        ProviderError::Attachment(_) => Hint::Unknown,
    }
}

/// The hint of a refusal, by the upstream's message.
fn refusal_hint(message: &str) -> Hint {
    let lower = message.to_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|needle| lower.contains(needle));
    if has(&["签名", "参数", "signature", "parameter", "param"]) {
        Hint::Profile
    } else if has(&[
        "未登录",
        "登录",
        "login",
        "log in",
        "unauthorized",
        "token",
        "user info",
    ]) {
        Hint::Token
    } else if has(&["还未结束", "正在进行", "is running", "busy"]) {
        Hint::Busy
    } else {
        Hint::Unknown
    }
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It worked: what it found.
    Passed(String),
    /// It failed: the error, and what it most likely means.
    Failed {
        /// The error as the adapter reports it.
        error: String,
        /// What most likely broke.
        hint: Hint,
    },
}

/// The outcome of each step that ran; a step without one was skipped.
#[derive(Debug, Default)]
pub struct Report {
    outcomes: Vec<(Step, Outcome)>,
}

impl Report {
    /// Records `step` from `result`: passed with `detail` of its value, or failed with the
    /// error's hint. Returns the value when it passed.
    pub fn check<T>(
        &mut self,
        step: Step,
        result: Result<T, ProviderError>,
        detail: impl FnOnce(&T) -> String,
    ) -> Option<T> {
        match result {
            Ok(value) => {
                self.outcomes.push((step, Outcome::Passed(detail(&value))));
                Some(value)
            }
            Err(error) => {
                let hint = hint_for(&error);
                self.outcomes.push((
                    step,
                    Outcome::Failed {
                        error: error.to_string(),
                        hint,
                    },
                ));
                None
            }
        }
    }

    /// The outcome of `step`, `None` when it was skipped.
    pub fn outcome(&self, step: Step) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|(done, _)| *done == step)
            .map(|(_, outcome)| outcome)
    }

    /// Whether every step ran and passed.
    pub fn passed(&self) -> bool {
        Step::ALL
            .iter()
            .all(|step| matches!(self.outcome(*step), Some(Outcome::Passed(_))))
    }
}

/// The report as printed: the upstream and the token's expiry, a line per step, a verdict.
fn render(upstream: &UpstreamSettings, token: &AccountToken, report: &Report, now: i64) -> String {
    let mut text = String::new();
    let line = |text: &mut String, label: &str, rest: &str| {
        // Writing into a String cannot fail.
        let _ = writeln!(text, "{label:<LABEL_WIDTH$} {rest}");
    };
    let value = |key: &str| upstream.profile.value(key).unwrap_or("none");
    line(
        &mut text,
        "upstream",
        &format!(
            "{} ({} dialect, version_code {}, app_id {})",
            upstream.base_url,
            upstream.dialect.name(),
            value("version_code"),
            value("app_id")
        ),
    );
    line(
        &mut text,
        "token",
        &format!("{token}: {}", expiry(token_expiry::expires_at(token.expose()), now)),
    );
    let mut failed = None;
    for step in Step::ALL {
        let rest = match report.outcome(step) {
            Some(Outcome::Passed(detail)) => format!("ok: {detail}"),
            Some(Outcome::Failed { error, hint }) => {
                failed.get_or_insert((step, *hint));
                format!("FAILED: {error} => {}", hint.advice())
            }
            None => "skipped".to_owned(),
        };
        line(&mut text, step.label(), &rest);
    }
    let verdict = match failed {
        None if report.passed() => format!("all {} steps passed", Step::ALL.len()),
        None => "not every step ran".to_owned(),
        Some((step, hint)) => format!("failed at {}: {}", step.label(), hint.cause()),
    };
    line(&mut text, "result", &verdict);
    text
}

/// When a token expires, as the report says it.
fn expiry(expires_at: Option<i64>, now: i64) -> String {
    let Some(at) = expires_at else {
        return "no expiry in the token".to_owned();
    };
    let when = u64::try_from(at).map_or_else(
        |_| format!("at Unix time {at}"),
        |secs| humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string(),
    );
    let days = token_expiry::days_left(at, now);
    if days >= 0.0 {
        format!("expires {when} ({days:.1} days left)")
    } else {
        format!("expired {when} ({:.1} days ago)", -days)
    }
}

/// `text` with every occurrence of `secret` masked (a last guard: no message should hold it).
fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    text.replace(secret, "<token>")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn refused(message: &str) -> ProviderError {
        ProviderError::AccountRejected {
            message: message.to_owned(),
        }
    }

    #[test]
    fn signature_and_parameter_refusals_point_at_the_profile() {
        assert_eq!(hint_for(&refused("签名错误")), Hint::Profile);
        assert_eq!(hint_for(&refused("参数错误")), Hint::Profile);
        assert_eq!(
            hint_for(&ProviderError::DeviceUnknown {
                message: "设备未注册".into()
            }),
            Hint::Profile
        );
        assert!(Hint::Profile.advice().contains("[upstream.profile]"));
    }

    #[test]
    fn login_refusals_and_401_point_at_the_token() {
        assert_eq!(hint_for(&refused("登录已失效，请重新登录")), Hint::Token);
        assert_eq!(hint_for(&refused("用户未登录")), Hint::Token);
        assert_eq!(hint_for(&refused("Unauthorized")), Hint::Token);
        assert_eq!(
            hint_for(&refused("the token holds characters an HTTP header cannot carry")),
            Hint::Token
        );
    }

    #[test]
    fn transport_failures_point_at_the_network_or_the_upstream() {
        let connect = ProviderError::Unavailable {
            message: "cannot connect: error sending request: connection refused".into(),
        };
        assert_eq!(hint_for(&connect), Hint::Network);
        let down = ProviderError::Unavailable {
            message: "HTTP 503: Service Unavailable".into(),
        };
        assert_eq!(hint_for(&down), Hint::UpstreamDown);
        assert_eq!(hint_for(&ProviderError::Timeout), Hint::Slow);
        let busy = ProviderError::refused("上一条回复还未结束");
        assert_eq!(hint_for(&busy), Hint::Busy);
        assert_eq!(hint_for(&refused("内容涉及敏感信息")), Hint::Unknown);
    }

    #[test]
    fn the_steps_after_a_failure_are_skipped_and_the_verdict_names_the_failed_one() {
        let mut report = Report::default();
        report.check(Step::Reach, Ok(()), |()| "HTTP 404 in 1 ms".into());
        report.check::<()>(Step::Register, Err(refused("参数错误")), |()| String::new());
        assert!(!report.passed());
        let upstream = Settings::defaults().unwrap().upstream;
        let text = render(&upstream, &AccountToken::new("plain-token"), &report, 0);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + Step::ALL.len() + 1, "{text}");
        assert!(lines[2].starts_with("reach      ok: HTTP 404"), "{text}");
        assert!(lines[3].starts_with("register   FAILED: "), "{text}");
        assert!(lines[3].contains("参数错误"), "{text}");
        assert!(lines[3].contains("[upstream.profile]"), "{text}");
        for skipped in &lines[4..8] {
            assert!(skipped.ends_with("skipped"), "{text}");
        }
        assert!(lines[8].starts_with("result     failed at register"), "{text}");
        assert!(lines[1].ends_with("no expiry in the token"), "{text}");
        assert!(!text.contains("plain-token"), "{text}");
    }

    #[test]
    fn the_expiry_is_a_date_with_the_days_left_or_gone() {
        let at = 1_798_761_600; // 2027-01-01T00:00:00Z
        assert_eq!(
            expiry(Some(at), at - 86_400 * 3),
            "expires 2027-01-01T00:00:00Z (3.0 days left)"
        );
        assert_eq!(
            expiry(Some(at), at + 43_200),
            "expired 2027-01-01T00:00:00Z (0.5 days ago)"
        );
        assert_eq!(expiry(None, at), "no expiry in the token");
    }

    #[test]
    fn the_token_is_masked_wherever_it_shows() {
        assert_eq!(redact("a secret-1 b secret-1", "secret-1"), "a <token> b <token>");
        assert_eq!(redact("nothing", ""), "nothing");
    }

    #[test]
    fn a_long_answer_is_cut_on_one_line() {
        assert_eq!(describe_answer("海螺收到：Hi\n"), "\"海螺收到：Hi\" (8 characters)");
        let long = "word ".repeat(20);
        let shown = describe_answer(&long);
        assert!(shown.contains('…'), "{shown}");
        assert!(shown.ends_with("(100 characters)"), "{shown}");
    }

    #[test]
    fn the_command_line_refuses_a_blank_token_and_a_base_url_that_is_not_http() {
        assert!(non_empty("  ").is_err());
        assert_eq!(non_empty(" t ").unwrap(), "t");
        assert!(http_url("ftp://example.com").is_err());
        assert!(http_url("not a url").is_err());
        assert_eq!(http_url("http://127.0.0.1:9").unwrap().as_str(), "http://127.0.0.1:9/");
    }
}
