//! `spawn_app()`: a server and its own simulator, and one helper per endpoint.

use std::future::Future;
use std::time::Duration;

use futures::StreamExt;
use hailuo_free_api::config::{Dialect, Settings};
use hailuo_free_api::startup::Application;
use hailuo_sim::{ChatRecord, SimConfig, Simulator};
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub sim: Simulator,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.sim.shutdown();
    }
}

/// Settings every test starts from: `dialect` and its profile, loopback, quick retries, short
/// waits.
fn test_settings(sim: &Simulator, dialect: Dialect) -> Settings {
    let mut settings = Settings::defaults_on(dialect).expect("the embedded defaults parse");
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.upstream.base_url = sim.base_url().parse().expect("the simulator's URL");
    settings.upstream.idle_timeout = Duration::from_secs(5);
    settings.upstream.retry_delay = Duration::from_millis(20);
    settings.accounts.busy_wait = Duration::from_secs(10);
    settings.session.sweep_interval = Duration::from_millis(50);
    // A polled answer settles once unchanged this long: well above the simulator's chunk pace.
    settings.upstream.profile.poll.settle = Duration::from_millis(150);
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server speaking `dialect` to a simulator playing it.
pub async fn spawn_app_on(dialect: Dialect) -> TestApp {
    spawn_app_with_sim(SimConfig::on(dialect), |_| {}).await
}

/// As [`spawn_app_on`], with the server's settings changed by `configure`.
pub async fn spawn_app_on_with(dialect: Dialect, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_sim(SimConfig::on(dialect), configure).await
}

/// Runs each test once on every dialect, as `<test>::hailuoai`, `<test>::hailuo_intl` and
/// `<test>::minimax_agent`: each is written `async fn name(dialect: Dialect) -> TestResult { .. }`.
// The otlp test binary shares this file and runs no test on every dialect.
#[allow(unused_macros)]
macro_rules! on_every_dialect {
    ($($(#[$meta:meta])* async fn $name:ident($dialect:ident: Dialect) -> TestResult $body:block)*) => {
        $(
            $(#[$meta])*
            mod $name {
                use super::*;

                async fn run($dialect: Dialect) -> TestResult $body

                #[tokio::test]
                async fn hailuoai() -> TestResult {
                    run(Dialect::Hailuoai).await
                }

                #[tokio::test]
                async fn hailuo_intl() -> TestResult {
                    run(Dialect::HailuoIntl).await
                }

                #[tokio::test]
                async fn minimax_agent() -> TestResult {
                    run(Dialect::MinimaxAgent).await
                }
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use on_every_dialect;

/// As [`on_every_dialect`], for tests of what only a streamed answer has (an event stream to
/// tear or break, the voice of the read-aloud feature): each runs on the two streamed dialects
/// and is preceded by `not_on_agent("why")`, the reason it does not apply to the polled one,
/// which becomes the test module's doc.
#[allow(unused_macros)]
macro_rules! on_streamed_dialects {
    ($($(#[$meta:meta])* not_on_agent($why:literal) async fn $name:ident($dialect:ident: Dialect) -> TestResult $body:block)*) => {
        $(
            $(#[$meta])*
            #[doc = concat!("Not on `minimax-agent`: ", $why)]
            mod $name {
                use super::*;

                async fn run($dialect: Dialect) -> TestResult $body

                #[tokio::test]
                async fn hailuoai() -> TestResult {
                    run(Dialect::Hailuoai).await
                }

                #[tokio::test]
                async fn hailuo_intl() -> TestResult {
                    run(Dialect::HailuoIntl).await
                }
            }
        )*
    };
}
#[allow(unused_imports)]
pub(crate) use on_streamed_dialects;

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_sim(SimConfig::default(), configure).await
}

pub async fn spawn_app_with_sim(sim_config: SimConfig, configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dialect = sim_config.dialect;
    let sim = Simulator::start(sim_config).await.expect("the simulator starts");
    let mut settings = test_settings(&sim, dialect);
    configure(&mut settings);
    let app = Application::build(settings).await.expect("the server builds");
    let address = format!("http://{}", app.addr());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(10),
    ));
    TestApp {
        address,
        client: reqwest::Client::builder().no_proxy().build().expect("a client"),
        sim,
        stop: Some(stop),
    }
}

/// One user message, not streamed.
/// Speech polls quick enough for tests and slow enough for the simulator, which flags polls
/// closer than 100 ms.
pub fn quick_speech_polls(settings: &mut Settings) {
    settings.audio.tts_poll_interval = Duration::from_millis(120);
}

pub fn ask(text: &str) -> Value {
    json!({"model": "hailuo", "messages": [{"role": "user", "content": text}]})
}

impl TestApp {
    /// The last chat request the simulator accepted.
    pub fn last_chat(&self) -> Option<ChatRecord> {
        self.sim.conversations().chats().pop()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request sent")
    }

    /// The value of the first `name{...}` line of `/metrics` that carries `label`.
    pub async fn metric(&self, name: &str, label: &str) -> Option<f64> {
        let body = self.get("/metrics").await.text().await.ok()?;
        body.lines()
            .find(|line| line.starts_with(&format!("{name}{{")) && line.contains(label))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|value| value.parse().ok())
    }

    /// `POST /v1/chat/completions` with `Authorization: Bearer <tokens>`.
    pub async fn chat(&self, tokens: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(tokens)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /v1/audio/speech` with `Authorization: Bearer <tokens>`.
    pub async fn speech(&self, tokens: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/audio/speech"))
            .bearer_auth(tokens)
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    /// A non-streamed chat that must succeed: its JSON.
    pub async fn chat_ok(&self, tokens: &str, body: &Value) -> Value {
        let response = self.chat(tokens, body).await;
        let status = response.status();
        let text = response.text().await.expect("a body");
        assert_eq!(
            status,
            200,
            "chat failed: {text}; upstream saw: {:#?}",
            self.sim.violations()
        );
        serde_json::from_str(&text).expect("JSON")
    }

    /// A streamed chat: the `data:` payloads, in order, read with a real SSE parser.
    pub async fn chat_stream(&self, tokens: &str, body: &Value) -> (reqwest::StatusCode, Vec<String>) {
        let response = self.chat(tokens, body).await;
        let status = response.status();
        (status, sse_data(response).await)
    }

    /// `POST /token/check`.
    pub async fn check_token(&self, token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/token/check"))
            .json(&json!({ "token": token }))
            .send()
            .await
            .expect("request sent")
    }

    /// Waits (bounded) until the simulator holds no conversation of `token`.
    pub async fn all_conversations_deleted(&self, token: &str, within: Duration) -> bool {
        eventually(within, || async { self.sim.conversations().live(token).is_empty() }).await
    }

    /// Waits (bounded) until the simulator holds no conversation at all, whoever made it.
    pub async fn nothing_left_upstream(&self, within: Duration) -> bool {
        eventually(within, || async { self.sim.conversations().all_live().is_empty() }).await
    }

    /// Starts a graceful shutdown, as SIGTERM does.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits (bounded) until the simulator has no stream open and no account busy: after we
    /// hang up on one, the upstream notices at its next write, and until then and a moment
    /// after the account is busy there.
    pub async fn upstream_idle(&self) -> bool {
        eventually(Duration::from_secs(5), || async {
            self.sim.accounts().active_streams() == 0 && !self.sim.accounts().any_busy()
        })
        .await
    }

    /// The simulator saw nothing that breaks the protocol.
    pub fn assert_protocol_clean(&self) {
        let violations = self.sim.violations();
        assert!(violations.is_empty(), "protocol violations: {violations:#?}");
    }
}

/// Every `data:` payload of an SSE response.
pub async fn sse_data(response: reqwest::Response) -> Vec<String> {
    use eventsource_stream::Eventsource;
    let mut events = response.bytes_stream().eventsource();
    let mut data = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => data.push(event.data),
            Err(error) => panic!("bad SSE: {error}"),
        }
    }
    data
}

/// Every `data:` payload left in a streamed body (e.g. after [`read_until_first_words`]);
/// an event cut by a broken connection is dropped, the error that ends it is not an event.
pub async fn sse_data_from<S>(bytes: S) -> Vec<String>
where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    use eventsource_stream::Eventsource;
    let mut events = bytes.eventsource();
    let mut data = Vec::new();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => data.push(event.data),
            Err(error) => panic!("bad SSE: {error}"),
        }
    }
    data
}

/// Waits (bounded) until `condition` holds; false if it never did.
pub async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The text of a completion.
pub fn content(completion: &Value) -> &str {
    completion["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
}

/// Asserts an OpenAI-shaped error body and returns its message.
pub async fn assert_openai_error(response: reqwest::Response, status: u16) -> Value {
    let actual = response.status().as_u16();
    let text = response.text().await.expect("a body");
    assert_eq!(actual, status, "unexpected status; body: {text}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    let error = &body["error"];
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {body}"
    );
    assert!(error["type"].is_string(), "no type: {body}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "param/code missing: {body}"
    );
    error.clone()
}

/// Reads a streamed answer up to its first words (the simulator's answers begin with 海),
/// returning what was read; the rest stays in `bytes`.
pub async fn read_until_first_words<S>(bytes: &mut S) -> String
where
    S: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
{
    let mut seen = String::new();
    while !seen.contains("\"content\":\"海") {
        let next = bytes.next().await.expect("more of the stream").expect("a chunk");
        seen.push_str(&String::from_utf8_lossy(&next));
    }
    seen
}
