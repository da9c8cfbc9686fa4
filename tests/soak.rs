//! The soak test: many requests, streamed and not, through the real server and the simulator
//! with a share of them faulted; in the end no request hung, no account stayed leased, no
//! conversation stayed upstream, the protocol was kept and the memory stayed flat.
//!
//! Ignored by default (it runs for minutes); run it with
//! `cargo test --release --test soak -- --ignored --nocapture`. Environment:
//! `SOAK_REQUESTS` (default 100000), `SOAK_CONCURRENCY` (default 64), `SOAK_FAULT_RATE`
//! (default 0.1), `SOAK_SEED` (default 1).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use hailuo_free_api::config::Settings;
use hailuo_free_api::startup::Application;
use hailuo_sim::{SimConfig, Simulator};
use serde_json::{Value, json};

/// Accounts the requests spread over.
const TOKENS: usize = 32;
/// Longer than any legitimate request can take (retries, waits for a busy account): a request
/// still running after this hung.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long an account may be waited for; the final per-token check must be answered well
/// within it, so that a leaked lease shows as a timeout.
const BUSY_WAIT_SECS: u64 = 60;
/// How long a token refused twice in a row rests.
const COOLDOWN_SECS: u64 = 1;
/// The final per-token check's bound.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);
/// Growth of the resident set allowed between the end of the warm-up and the end. The
/// steady state holds at most `SOAK_CONCURRENCY` requests in flight, a few hundred bytes of
/// session record per pending conversation and the simulator's ledger between two
/// `forget_history` calls (a few MB); what is left is allocator slack (per-thread arenas
/// that grow to the peak concurrency once). A leak of even 300 bytes per request would pass
/// 30 MB over 100,000 requests.
const RSS_GROWTH_LIMIT_KB: u64 = 30 * 1024;
/// Requests between two `forget_history` calls on the simulator.
const HISTORY_EVERY: usize = 2_000;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The resident set size of this process (server and simulator both run in it), in kB.
fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .expect("a VmRSS line")
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A whole answer.
    Answered,
    /// A stream that ended with an OpenAI-shaped error event.
    StreamError(String),
    /// An OpenAI-shaped error response.
    Error(u16, String),
}

fn token(i: usize) -> String {
    format!("soak-account-{i:02}")
}

/// Checks an OpenAI error object, returning its `code` (or `type`).
fn error_kind(error: &Value) -> Result<String, String> {
    let message = error["message"].as_str().unwrap_or_default();
    if message.is_empty() || !error["type"].is_string() || error.get("param").is_none() || error.get("code").is_none() {
        return Err(format!("not an OpenAI error: {error}"));
    }
    Ok(error["code"]
        .as_str()
        .or_else(|| error["type"].as_str())
        .unwrap_or("?")
        .to_owned())
}

async fn one_request(client: &reqwest::Client, url: &str, i: usize) -> Result<Outcome, String> {
    let stream = i % 2 == 1;
    // Two accounts per request, neighbours, so the accounts overlap between requests.
    let tokens = format!("{},{}", token(i % TOKENS), token((i + 1) % TOKENS));
    let body = json!({
        "model": "hailuo",
        "stream": stream,
        "messages": [{"role": "user", "content": format!("soak request {i}")}]
    });
    let response = client
        .post(url)
        .bearer_auth(tokens)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("request {i} not sent: {e}"))?;
    let status = response.status().as_u16();
    if status != 200 {
        let text = response.text().await.map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).map_err(|_| format!("{status}: not JSON: {text}"))?;
        return Ok(Outcome::Error(status, error_kind(&value["error"])?));
    }
    // The prompt reaches the upstream as a line: the answer repeats it, newline included.
    let expected = Simulator::answer_for(&format!("soak request {i}\n"));
    if !stream {
        let value: Value = response.json().await.map_err(|e| e.to_string())?;
        let content = value["choices"][0]["message"]["content"].as_str().unwrap_or_default();
        return if content == expected {
            Ok(Outcome::Answered)
        } else {
            Err(format!("request {i}: wrong answer {value}"))
        };
    }
    let mut events = response.bytes_stream().eventsource();
    let mut text = String::new();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| format!("request {i}: broken SSE: {e}"))?;
        if event.data == "[DONE]" {
            return if text == expected {
                Ok(Outcome::Answered)
            } else {
                Err(format!("request {i}: streamed {text:?}, expected {expected:?}"))
            };
        }
        let chunk: Value = serde_json::from_str(&event.data).map_err(|e| format!("request {i}: {e}"))?;
        if let Some(error) = chunk.get("error") {
            return Ok(Outcome::StreamError(error_kind(error)?));
        }
        text.push_str(chunk["choices"][0]["delta"]["content"].as_str().unwrap_or_default());
    }
    Err(format!("request {i}: the stream ended without [DONE] or an error"))
}

/// The `hailuo_accounts_busy` gauge of `/metrics`.
async fn accounts_busy(client: &reqwest::Client, base: &str) -> f64 {
    let body = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("/metrics")
        .text()
        .await
        .expect("a body");
    body.lines()
        .find(|line| line.starts_with("hailuo_accounts_busy"))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no hailuo_accounts_busy in /metrics:\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "long-running: cargo test --release --test soak -- --ignored --nocapture"]
async fn soak_many_requests_with_faults_leave_nothing_behind() {
    let requests: usize = env_or("SOAK_REQUESTS", 100_000);
    let concurrency: usize = env_or("SOAK_CONCURRENCY", 64);
    let fault_rate: f64 = env_or("SOAK_FAULT_RATE", 0.1);
    let seed: u64 = env_or("SOAK_SEED", 1);

    let sim = Simulator::start(SimConfig {
        fault_rate,
        fault_seed: Some(seed),
        chunk_chars: 4,
        chunk_delay: Duration::ZERO,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts");
    let mut settings = Settings::defaults().expect("the embedded defaults parse");
    settings.server.host = "127.0.0.1".into();
    settings.server.port = 0;
    settings.upstream.base_url = sim.base_url().parse().expect("the simulator's URL");
    settings.upstream.idle_timeout = Duration::from_secs(10);
    settings.upstream.retry_delay = Duration::from_millis(10);
    settings.accounts.busy_wait = Duration::from_secs(BUSY_WAIT_SECS);
    // Injected refusals (`AccountRefused`) rest a token refused twice in a row: briefly, so
    // the cool-down is exercised and over before the final checks.
    settings.accounts.cooldown = Duration::from_secs(COOLDOWN_SECS);
    settings.session.idle_ttl = Duration::from_secs(0);
    settings.session.sweep_interval = Duration::from_millis(200);
    let app = Application::build(settings).await.expect("the server builds");
    let base = format!("http://{}", app.addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(
        async move {
            let _ = stopped.await;
        },
        Duration::from_secs(10),
    ));
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("a client");
    let url = format!("{base}/v1/chat/completions");

    let warm_up = (requests / 10).max(1);
    let started = Instant::now();
    let mut outcomes: BTreeMap<Outcome, usize> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut rss_start = None;
    let mut done = 0;
    let mut results = futures::stream::iter(0..requests)
        .map(|i| {
            let client = &client;
            let url = &url;
            async move {
                match tokio::time::timeout(REQUEST_TIMEOUT, one_request(client, url, i)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Err(format!("request {i} hung for {REQUEST_TIMEOUT:?}")),
                }
            }
        })
        .buffer_unordered(concurrency);
    while let Some(result) = results.next().await {
        match result {
            Ok(outcome) => *outcomes.entry(outcome).or_default() += 1,
            Err(failure) => failures.push(failure),
        }
        done += 1;
        if done % HISTORY_EVERY == 0 {
            sim.forget_history();
        }
        if done == warm_up {
            sim.forget_history();
            rss_start = Some(rss_kb());
        }
    }
    drop(results);
    let duration = started.elapsed();

    // Let the sweeper delete what the last answers left, then look upstream.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !sim.conversations().all_live().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let left_upstream = sim.conversations().all_live();
    let busy = accounts_busy(&client, &base).await;

    // Every account answers at once: none is leased any more (the wait for a busy one is
    // longer than this check's bound).
    sim.faults().set_rate(0.0);
    // Tokens resting after injected refusals are back once their cool-down is over.
    tokio::time::sleep(Duration::from_secs(COOLDOWN_SECS) + Duration::from_millis(500)).await;
    let mut stuck_accounts = Vec::new();
    for i in 0..TOKENS {
        let check = client
            .post(&url)
            .bearer_auth(token(i))
            .json(&json!({"model": "hailuo", "messages": [{"role": "user", "content": "check"}]}))
            .send();
        match tokio::time::timeout(CHECK_TIMEOUT, check).await {
            Ok(Ok(response)) if response.status() == 200 => {}
            Ok(Ok(response)) => stuck_accounts.push(format!("{}: {}", token(i), response.status())),
            Ok(Err(error)) => stuck_accounts.push(format!("{}: {error}", token(i))),
            Err(_) => stuck_accounts.push(format!("{}: no answer within {CHECK_TIMEOUT:?}", token(i))),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sim.conversations().all_live().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sim.forget_history();
    let rss_end = rss_kb();
    let rss_start = rss_start.unwrap_or(rss_end);
    let violations = sim.violations();

    println!("soak: {requests} requests, concurrency {concurrency}, fault rate {fault_rate}, seed {seed}");
    println!(
        "soak: {:.1} s, {:.0} requests/s",
        duration.as_secs_f64(),
        requests as f64 / duration.as_secs_f64()
    );
    println!("soak: faults played upstream: {:?}", sim.faults().played());
    for (outcome, count) in &outcomes {
        println!("soak: {count:>7} {outcome:?}");
    }
    println!(
        "soak: RSS {rss_start} kB after the warm-up ({warm_up} requests), {rss_end} kB at the end ({:+} kB)",
        rss_end as i64 - rss_start as i64
    );
    println!(
        "soak: failures {}, accounts busy {busy}, left upstream {}",
        failures.len(),
        left_upstream.len()
    );

    assert!(
        failures.is_empty(),
        "{} requests failed, e.g. {:#?}",
        failures.len(),
        &failures[..failures.len().min(10)]
    );
    assert_eq!(outcomes.values().sum::<usize>(), requests);
    assert!(
        outcomes.get(&Outcome::Answered).copied().unwrap_or(0) >= requests / 2,
        "most requests are answered: {outcomes:?}"
    );
    assert!(
        left_upstream.is_empty(),
        "{} conversations left upstream",
        left_upstream.len()
    );
    assert_eq!(busy, 0.0, "accounts still leased after the run");
    assert!(stuck_accounts.is_empty(), "accounts not answering: {stuck_accounts:?}");
    assert!(
        sim.conversations().all_live().is_empty(),
        "the checks left conversations upstream"
    );
    assert!(violations.is_empty(), "protocol violations: {violations:#?}");
    assert_eq!(sim.accounts().active_streams(), 0, "streams still open upstream");
    assert!(
        rss_end <= rss_start + RSS_GROWTH_LIMIT_KB,
        "memory grew from {rss_start} kB to {rss_end} kB"
    );

    let _ = stop.send(());
    let _ = server.await;
    sim.shutdown();
}
