//! `cargo bench --bench gateway`: the gateway against the simulator, on this machine, with the
//! figures written to `bench/RESULTS.md` (or `--out PATH`).
//!
//! It starts the release binaries `hailuo-sim` (open mode) and `hailuo-free-api` (its embedded
//! defaults, pointed at the simulator) as child processes on 127.0.0.1 and measures:
//! 1. the latency the proxy adds to a non-streamed chat, p50/p99, at open-loop rates of 100,
//!    1,000 and the most the box sustains: (client → server → simulator) minus the same
//!    upstream exchange sent straight to the simulator by the same adapter, in the same run;
//! 2. the same for the first token of a stream, and the gap between chunks;
//! 3. the server's resident memory with 1,000 and 10,000 concurrent slow streams;
//! 4. cold start to the first answered `/ping`;
//! 5. (`--only dialects`) streams on every dialect: the first token through the proxy, and the
//!    upstream requests per answer (a polled dialect asks for its answer several times).
//!
//! Open loop: request `i` is due at `start + i / rate` whether or not earlier ones have
//! answered, and its latency counts from when it was due (no coordinated omission).
//! `cargo test` runs this file without `--bench`: it then only says how to run it.
//!
//! `hailuo-sim` is a workspace member of its own, which cargo does not build for this
//! package's benchmark: the benchmark builds it first with `cargo build --release -p
//! hailuo-sim` (the cargo that runs it, same target directory) and runs the executable that
//! build reports. `HAILUO_SIM_BIN=PATH` runs that binary instead.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures::StreamExt;
use hailuo_free_api::config::{Dialect, Settings};
use hailuo_free_api::domain::chat::{AccountToken, ChatMessage, ChatPrompt};
use hailuo_free_api::domain::ports::Account;
use hailuo_free_api::outbound::hailuo::HailuoClient;
use hdrhistogram::Histogram;
use serde_json::{Value, json};

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The prompt of the latency runs: the answer is a handful of events.
const SHORT_PROMPT: &str = "ping";

fn main() -> BenchResult<()> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|arg| arg == "--bench") {
        println!(
            "gateway benchmark: run it with `cargo bench --bench gateway` or `bench/run.sh` (README: Performance)"
        );
        return Ok(());
    }
    let options = Options::parse(&args)?;
    // Thousands of connections need more descriptors than the usual soft limit.
    let nofile = rlimit::increase_nofile_limit(u64::MAX)?;
    // The client side is deliberately single-threaded: the server and the simulator get
    // the machine's cores, the load generator stays out of their way.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run(options, nofile))
}

/// What the results say of the simulator's pause inside torn events.
fn tear_note(tear_pause_us: u64) -> String {
    if tear_pause_us == 0 {
        "The simulator answers the latency and stream runs without timers: the two halves of a torn event go \
         out back to back (`--tear-pause-us 0`), since a timer there fires on the simulator's millisecond tick \
         and would round the time a request took to arrive to whole milliseconds (section 6, \"[The simulator's tear pause and the latency it distorts](#the-simulators-tear-pause-and-the-latency-it-distorts)\")."
            .to_owned()
    } else {
        format!(
            "The simulator pauses {tear_pause_us} µs inside every torn event (`--tear-pause-us {tear_pause_us}`): its \
             timer fires on a millisecond tick, so the added latency below is rounded to whole milliseconds, by how \
             the requests' arrival meets that tick (section 6, \"[The simulator's tear pause and the latency it distorts](#the-simulators-tear-pause-and-the-latency-it-distorts)\")."
        )
    }
}

/// Command-line options (after cargo's own `--bench`).
#[derive(Debug, Clone)]
struct Options {
    out: PathBuf,
    /// Seconds measured per latency point.
    seconds: u64,
    /// Stream counts of the memory runs.
    stream_counts: Vec<usize>,
    /// Only these phases: `cold`, `latency`, `streams`, `dialects`, `memory`.
    only: Option<String>,
    /// The simulator's pause inside a torn event, in µs, for the latency and stream phases:
    /// 0 by default, 1000 is the simulator's own (why: [`tear_note`]).
    tear_pause_us: u64,
}

impl Options {
    fn parse(args: &[String]) -> BenchResult<Self> {
        let mut options = Options {
            out: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/RESULTS.md"),
            seconds: 10,
            stream_counts: vec![1_000, 10_000],
            only: None,
            tear_pause_us: 0,
        };
        let mut iter = args.iter().skip(1);
        while let Some(arg) = iter.next() {
            match arg.as_str() {
                "--out" => options.out = PathBuf::from(iter.next().ok_or("--out needs a path")?),
                "--seconds" => options.seconds = iter.next().ok_or("--seconds needs a number")?.parse()?,
                "--streams" => {
                    options.stream_counts = iter
                        .next()
                        .ok_or("--streams needs a list")?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?;
                }
                "--only" => options.only = Some(iter.next().ok_or("--only needs a phase")?.clone()),
                "--tear-pause-us" => {
                    options.tear_pause_us = iter.next().ok_or("--tear-pause-us needs a number")?.parse()?;
                }
                _ => {}
            }
        }
        Ok(options)
    }

    fn runs(&self, phase: &str) -> bool {
        self.only
            .as_deref()
            .is_none_or(|only| only.split(',').any(|p| p == phase))
    }
}

async fn run(options: Options, nofile: u64) -> BenchResult<()> {
    let mut report = Report::new(&options, nofile);
    // Built before anything is timed.
    let sim = sim_binary()?;
    eprintln!("== hailuo-sim: {}", sim.display());
    if options.runs("cold") {
        eprintln!("== cold start");
        report.cold = Some(cold_start().await?);
    }
    if options.runs("latency") {
        eprintln!("== non-streamed latency");
        let (points, ceiling) = latency_runs(&options).await?;
        report.latency = points;
        report.ceiling = Some(ceiling);
    }
    if options.runs("streams") {
        eprintln!("== streams");
        report.streams = Some(stream_run(&options).await?);
    }
    if options.runs("dialects") {
        for dialect in Dialect::ALL {
            eprintln!("== streams on the {} dialect", dialect.name());
            report.dialects.push(dialect_run(&options, dialect).await?);
        }
    }
    if options.runs("memory") {
        for &count in &options.stream_counts {
            eprintln!("== memory with {count} streams");
            report.memory.push(memory_run(count).await?);
        }
    }
    let text = report.render();
    if let Some(dir) = options.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&options.out, &text)?;
    println!("{text}");
    eprintln!("written to {}", options.out.display());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Processes

/// A child process killed when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident and peak resident memory, in bytes, from `/proc/<pid>/status`.
    fn memory(&self) -> BenchResult<(u64, u64)> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kb| kb.parse::<u64>().ok())
                .map_or(0, |kb| kb * 1024)
        };
        Ok((field("VmRSS:"), field("VmHWM:")))
    }

    /// CPU time (user + system) used so far, from `/proc/<pid>/stat`.
    fn cpu(&self) -> BenchResult<Duration> {
        cpu_of(&self.pid().to_string())
    }
}

/// CPU time (user + system) a process (a pid, or `self`) has used so far.
fn cpu_of(pid: &str) -> BenchResult<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit(')').next().ok_or("odd /proc stat")?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 =
        fields.get(11).ok_or("odd stat")?.parse::<u64>()? + fields.get(12).ok_or("odd stat")?.parse::<u64>()?;
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> BenchResult<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `hailuo-sim` on a free port with answers of `chunk_chars` characters per event,
/// `chunk_delay_ms` apart, and `tear_pause_us` inside each torn event.
async fn start_sim(chunk_delay_ms: u64, chunk_chars: usize, tear_pause_us: u64) -> BenchResult<(Proc, String)> {
    start_sim_on(Dialect::default(), chunk_delay_ms, chunk_chars, tear_pause_us).await
}

/// [`start_sim`], playing `dialect`.
async fn start_sim_on(
    dialect: Dialect,
    chunk_delay_ms: u64,
    chunk_chars: usize,
    tear_pause_us: u64,
) -> BenchResult<(Proc, String)> {
    let port = free_port()?;
    let child = Command::new(sim_binary()?)
        .args(["--port", &port.to_string()])
        .args(["--dialect", dialect.name()])
        .args(["--chunk-delay-ms", &chunk_delay_ms.to_string()])
        .args(["--chunk-chars", &chunk_chars.to_string()])
        .args(["--tear-pause-us", &tear_pause_us.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let proc = Proc { child };
    let base = format!("http://127.0.0.1:{port}");
    wait_listening(SocketAddr::from(([127, 0, 0, 1], port))).await?;
    Ok((proc, base))
}

/// The `hailuo-sim` executable: `HAILUO_SIM_BIN`, else the one a release build of the
/// workspace member makes (built once per run).
fn sim_binary() -> BenchResult<PathBuf> {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    if let Some(path) = std::env::var_os("HAILUO_SIM_BIN") {
        return Ok(PathBuf::from(path));
    }
    if let Some(path) = BUILT.get() {
        return Ok(path.clone());
    }
    let path = build_sim()?;
    Ok(BUILT.get_or_init(|| path).clone())
}

/// `cargo build --release -p hailuo-sim`, with the cargo that runs this benchmark; the
/// executable it reports.
fn build_sim() -> BenchResult<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let output = Command::new(cargo)
        .args(["build", "--release", "-p", "hailuo-sim", "--bin", "hailuo-sim"])
        .args(["--message-format", "json", "--manifest-path", manifest])
        .stderr(Stdio::inherit())
        .output()?;
    if !output.status.success() {
        return Err(format!("`cargo build --release -p hailuo-sim` failed ({})", output.status).into());
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact" && message["target"]["name"] == "hailuo-sim")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "`cargo build -p hailuo-sim` reported no hailuo-sim executable".into())
}

async fn wait_listening(addr: SocketAddr) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!("nothing listens on {addr}").into())
}

/// Starts `hailuo-free-api` with its embedded defaults, pointed at `upstream`, plus `env`.
fn spawn_server(upstream: &str, env: &[(&str, &str)]) -> BenchResult<(Proc, String)> {
    let port = free_port()?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_hailuo-free-api"));
    command
        .env_clear()
        .env("HAILUO_SERVER__HOST", "127.0.0.1")
        .env("HAILUO_SERVER__PORT", port.to_string())
        .env("HAILUO_UPSTREAM__BASE_URL", upstream)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // Experiments: `HAILUO_*`, allocator (`_RJEM_MALLOC_CONF`, `MALLOC_*`) and `TOKIO_*`
    // variables given to the benchmark reach the server.
    for (key, value) in std::env::vars() {
        if key.starts_with("HAILUO_")
            || key.starts_with("MALLOC_")
            || key.starts_with("_RJEM_")
            || key.starts_with("TOKIO_")
        {
            command.env(key, value);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let child = command.spawn()?;
    Ok((Proc { child }, format!("http://127.0.0.1:{port}")))
}

async fn start_server(upstream: &str, env: &[(&str, &str)]) -> BenchResult<(Proc, String)> {
    let (proc, base) = spawn_server(upstream, env)?;
    let client = http_client()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(response) = client.get(format!("{base}/ping")).send().await
            && response.status().is_success()
        {
            return Ok((proc, base));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err("the server did not answer /ping".into())
}

fn http_client() -> BenchResult<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .build()?)
}

// ---------------------------------------------------------------------------------------------
// Measuring

/// Latencies in microseconds.
#[derive(Clone)]
struct Recorder {
    hist: Histogram<u64>,
    errors: u64,
}

impl Recorder {
    #[allow(clippy::expect_used)]
    fn new() -> Self {
        Self {
            // 1 µs to 5 minutes, 3 significant digits: constant, valid bounds.
            hist: Histogram::new_with_bounds(1, 300_000_000, 3).expect("valid histogram bounds"),
            errors: 0,
        }
    }

    fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        self.hist.saturating_record(micros);
    }

    fn p(&self, quantile: f64) -> f64 {
        self.hist.value_at_quantile(quantile) as f64 / 1000.0
    }

    /// Adds what `other` recorded.
    fn merge(&mut self, other: &Recorder) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.hist.add(&other.hist);
        self.errors += other.errors;
    }
}

/// How many alternating slices each measured point is cut into: the direct and the proxy
/// side take turns, so that a burst of noise from the machine's neighbours falls on both.
const SLICES: u32 = 10;

type Shared = Arc<Mutex<Recorders>>;

/// What one run records: the latency to the whole answer (or the first token) and the
/// gaps between chunks.
struct Recorders {
    first: Recorder,
    gaps: Recorder,
}

impl Recorders {
    fn shared() -> Shared {
        Arc::new(Mutex::new(Recorders {
            first: Recorder::new(),
            gaps: Recorder::new(),
        }))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `request(i, due)` at `rate` per second for `duration`, open loop, and waits for the
/// stragglers (at most 30 s). Returns the rate actually offered.
async fn open_loop<F, Fut>(rate: f64, duration: Duration, request: F) -> f64
where
    F: Fn(u64, Instant) -> Fut,
    Fut: Future<Output = ()> + 'static,
{
    let start = Instant::now();
    let total = (rate * duration.as_secs_f64()).round() as u64;
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            while sent < total {
                let elapsed = start.elapsed().as_secs_f64();
                let due_now = ((elapsed * rate).floor() as u64 + 1).min(total);
                while sent < due_now {
                    let due = start + Duration::from_secs_f64(sent as f64 / rate);
                    tasks.spawn_local(request(sent, due));
                    sent += 1;
                }
                // Sleep until the next request is due (tokio's timer has millisecond grain;
                // requests due within the same millisecond go out together).
                let next = start + Duration::from_secs_f64(sent as f64 / rate);
                tokio::time::sleep_until(next.into()).await;
            }
            let _ = tokio::time::timeout(Duration::from_secs(30), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
        })
        .await;
    let offered = sent as f64 / start.elapsed().as_secs_f64().max(duration.as_secs_f64());
    tasks.abort_all();
    offered
}

/// One non-streamed chat through the proxy; records the time from `due` to the whole answer.
async fn proxy_chat(client: reqwest::Client, url: String, token: String, due: Instant, shared: Shared) {
    let body = json!({"model": "hailuo", "messages": [{"role": "user", "content": SHORT_PROMPT}]});
    let result = async {
        let response = client.post(&url).bearer_auth(&token).json(&body).send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            return Err(format!("{status}: {}", String::from_utf8_lossy(&bytes)).into());
        }
        let value: Value = serde_json::from_slice(&bytes)?;
        if value["choices"][0]["message"]["content"]
            .as_str()
            .is_none_or(str::is_empty)
        {
            return Err("an answer without content".into());
        }
        BenchResult::Ok(())
    }
    .await;
    record_answer(&shared, result, due, "proxy");
}

/// The same upstream exchange straight to the simulator: the adapter sends the prompt and
/// reads the whole answer.
async fn direct_chat(client: HailuoClient, account: Account, due: Instant, shared: Shared, prompt: &'static str) {
    let chat = ChatPrompt::new(vec![ChatMessage::text("user", prompt)]);
    let result = async {
        let mut stream = client.send_prompt(&account, &chat).await?;
        let mut text = String::new();
        while let Some(delta) = stream.next().await {
            text.push_str(&delta?.text);
        }
        if text.is_empty() {
            return Err("an answer without content".into());
        }
        BenchResult::Ok(())
    }
    .await;
    record_answer(&shared, result, due, "direct");
}

/// A stream straight to the simulator: the first token and the gaps between chunks.
async fn direct_stream(client: HailuoClient, account: Account, due: Instant, shared: Shared, prompt: &'static str) {
    let chat = ChatPrompt::new(vec![ChatMessage::text("user", prompt)]);
    let mut clock = ChunkClock::new(due);
    let result = async {
        let mut stream = client.send_prompt(&account, &chat).await?;
        while let Some(delta) = stream.next().await {
            if !delta?.text.is_empty() {
                clock.content();
            }
        }
        BenchResult::Ok(())
    }
    .await;
    record_stream(&shared, result, clock, "direct");
}

/// One streamed chat through the proxy: first content chunk and gaps between chunks.
async fn proxy_stream(
    client: reqwest::Client,
    url: String,
    token: String,
    due: Instant,
    shared: Shared,
    prompt: &'static str,
) {
    let body = json!({"model": "hailuo", "stream": true, "messages": [{"role": "user", "content": prompt}]});
    let mut clock = ChunkClock::new(due);
    let result = async {
        let response = client.post(&url).bearer_auth(&token).json(&body).send().await?;
        if !response.status().is_success() {
            return Err(format!("status {}", response.status()).into());
        }
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let event = event?;
            if event.data == "[DONE]" {
                break;
            }
            let value: Value = serde_json::from_str(&event.data)?;
            if let Some(error) = value.get("error") {
                return Err(format!("error event: {error}").into());
            }
            let has_text = value["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|text| !text.is_empty());
            if has_text {
                clock.content();
            }
        }
        BenchResult::Ok(())
    }
    .await;
    record_stream(&shared, result, clock, "proxy");
}

/// When a stream's content chunks arrived: the first, counted from when the request was due,
/// and the gaps between the next ones.
struct ChunkClock {
    due: Instant,
    first: Option<Duration>,
    last: Option<Instant>,
    gaps: Vec<Duration>,
}

impl ChunkClock {
    fn new(due: Instant) -> Self {
        Self {
            due,
            first: None,
            last: None,
            gaps: Vec::new(),
        }
    }

    /// A chunk with content arrived now.
    fn content(&mut self) {
        let now = Instant::now();
        if self.first.is_none() {
            self.first = Some(now - self.due);
        }
        if let Some(previous) = self.last {
            self.gaps.push(now - previous);
        }
        self.last = Some(now);
    }
}

/// Counts a failure: the first three are printed.
fn record_error(recorders: &mut Recorders, side: &str, error: &dyn std::fmt::Display) {
    recorders.first.errors += 1;
    if recorders.first.errors <= 3 {
        eprintln!("{side} error: {error}");
    }
}

/// A whole answer: its latency from when it was due.
fn record_answer(shared: &Shared, result: BenchResult<()>, due: Instant, side: &str) {
    let mut recorders = lock(shared);
    match result {
        Ok(()) => recorders.first.record(due.elapsed()),
        Err(error) => record_error(&mut recorders, side, &error),
    }
}

/// A stream: its first token and the gaps between chunks; a stream without content fails.
fn record_stream(shared: &Shared, result: BenchResult<()>, clock: ChunkClock, side: &str) {
    let mut recorders = lock(shared);
    match (result, clock.first) {
        (Ok(()), Some(first)) => {
            recorders.first.record(first);
            for gap in clock.gaps {
                recorders.gaps.record(gap);
            }
        }
        (Ok(()), None) => record_error(&mut recorders, side, &"a stream without content"),
        (Err(error), _) => record_error(&mut recorders, side, &error),
    }
}

/// Registers a device for each of `count` tokens named `prefix-i`, for the direct exchanges.
async fn direct_accounts(client: &HailuoClient, prefix: &str, count: usize) -> BenchResult<Vec<Account>> {
    let mut accounts = Vec::with_capacity(count);
    for i in 0..count {
        let token = AccountToken::new(format!("{prefix}-{i}"));
        let device = client.register(&token).await?;
        accounts.push(Account { token, device });
    }
    Ok(accounts)
}

fn direct_client(upstream: &str) -> BenchResult<HailuoClient> {
    let mut settings = Settings::defaults()?;
    settings.upstream.base_url = upstream.parse()?;
    Ok(HailuoClient::new(&settings.upstream)?)
}

/// Sends one request per proxy token so each has its device before measuring.
async fn warm_proxy(client: &reqwest::Client, url: &str, prefix: &str, count: usize) -> BenchResult<()> {
    let mut tasks = futures::stream::iter(0..count)
        .map(|i| {
            let client = client.clone();
            let url = url.to_owned();
            let token = format!("{prefix}-{i}");
            async move {
                let body = json!({"messages": [{"role": "user", "content": "warm"}]});
                client
                    .post(&url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await?
                    .error_for_status()?;
                BenchResult::Ok(())
            }
        })
        .buffer_unordered(32);
    while let Some(result) = tasks.next().await {
        result?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phases

/// One latency point: the rate offered and both sides' recorders.
struct LatencyPoint {
    label: String,
    rate: f64,
    direct: Recorder,
    proxy: Recorder,
    /// CPU time per request of each process, on each side.
    cpu: CpuPerRequest,
}

/// CPU time per answered request, in microseconds, by process and side: what each answer
/// costs the machine's two cores (read from `/proc/<pid>/stat` around every turn, so the
/// clock's 10 ms grain averages out over thousands of requests).
#[derive(Default, Clone, Copy)]
struct CpuPerRequest {
    direct_client: f64,
    direct_sim: f64,
    proxy_client: f64,
    proxy_server: f64,
    proxy_sim: f64,
}

/// CPU time used so far by the benchmark itself, the server and the simulator.
fn cpu_now(server: &Proc, sim: &Proc) -> [Duration; 3] {
    [
        cpu_of("self").unwrap_or_default(),
        server.cpu().unwrap_or_default(),
        sim.cpu().unwrap_or_default(),
    ]
}

/// Adds what each process used between two `cpu_now` readings to `total`.
fn add_cpu(total: &mut [Duration; 3], before: [Duration; 3], after: [Duration; 3]) {
    for ((total, before), after) in total.iter_mut().zip(before).zip(after) {
        *total += after.saturating_sub(before);
    }
}

/// Microseconds per request of each process's `total`.
fn per_request(total: [Duration; 3], requests: u64) -> [f64; 3] {
    total.map(|used| used.as_secs_f64() * 1e6 / requests.max(1) as f64)
}

/// The number of distinct accounts the latency runs spread over (one answer per account).
const ACCOUNTS: usize = 256;

async fn latency_runs(options: &Options) -> BenchResult<(Vec<LatencyPoint>, f64)> {
    let (sim, upstream) = start_sim(0, 3, options.tear_pause_us).await?;
    let (server, base) = start_server(&upstream, &[]).await?;
    let url = format!("{base}/v1/chat/completions");
    let client = http_client()?;
    let direct = direct_client(&upstream)?;
    let accounts = Arc::new(direct_accounts(&direct, "direct", ACCOUNTS).await?);
    warm_proxy(&client, &url, "proxy", ACCOUNTS).await?;
    let duration = Duration::from_secs(options.seconds);

    // The most the box sustains: closed loop through the proxy, 32 at a time, gives the
    // ceiling; then open-loop probes climb towards it until the proxy falls behind.
    let ceiling = closed_loop_rate(&client, &url, Duration::from_secs(5)).await;
    eprintln!("closed-loop throughput through the proxy: {ceiling:.0} req/s");
    let max_rate = sustained_rate(ceiling, &client, &url, &direct, &accounts).await;
    eprintln!("sustained open-loop rate: {max_rate:.0} req/s");

    let mut points = Vec::new();
    let max_label = format!("max sustained ({max_rate:.0} req/s)");
    for (label, rate) in [
        ("100 req/s", 100.0),
        ("1,000 req/s", 1_000.0),
        (max_label.as_str(), max_rate),
    ] {
        // A short unrecorded warm-up at the rate, then the two sides in turn.
        let _ = one_side(
            rate,
            Duration::from_secs(1),
            Side::Proxy,
            &client,
            &url,
            &direct,
            &accounts,
        )
        .await;
        // The two sides take turns, `SLICES` times each, for `duration` in all per side.
        let slice = duration / SLICES;
        let (mut direct_rec, mut proxy_rec) = (Recorder::new(), Recorder::new());
        let mut offered_sum = 0.0;
        let (mut direct_cpu, mut proxy_cpu) = ([Duration::ZERO; 3], [Duration::ZERO; 3]);
        for _ in 0..SLICES {
            let before = cpu_now(&server, &sim);
            let (part, _) = one_side(rate, slice, Side::Direct, &client, &url, &direct, &accounts).await;
            add_cpu(&mut direct_cpu, before, cpu_now(&server, &sim));
            direct_rec.merge(&part);
            let before = cpu_now(&server, &sim);
            let (part, offered) = one_side(rate, slice, Side::Proxy, &client, &url, &direct, &accounts).await;
            add_cpu(&mut proxy_cpu, before, cpu_now(&server, &sim));
            proxy_rec.merge(&part);
            offered_sum += offered;
        }
        let offered = offered_sum / f64::from(SLICES);
        let [direct_client, _, direct_sim] = per_request(direct_cpu, direct_rec.hist.len() + direct_rec.errors);
        let [proxy_client, proxy_server, proxy_sim] = per_request(proxy_cpu, proxy_rec.hist.len() + proxy_rec.errors);
        let cpu = CpuPerRequest {
            direct_client,
            direct_sim,
            proxy_client,
            proxy_server,
            proxy_sim,
        };
        eprintln!(
            "{label}: CPU per request, direct: client {direct_client:.0} µs, sim {direct_sim:.0} µs; \
             proxy: client {proxy_client:.0} µs, server {proxy_server:.0} µs, sim {proxy_sim:.0} µs"
        );
        eprintln!(
            "{label}: offered {offered:.0}/s; direct p50 {:.3} p99 {:.3} ms; proxy p50 {:.3} p99 {:.3} ms",
            direct_rec.p(0.5),
            direct_rec.p(0.99),
            proxy_rec.p(0.5),
            proxy_rec.p(0.99)
        );
        points.push(LatencyPoint {
            label: label.to_owned(),
            rate: offered,
            direct: direct_rec,
            proxy: proxy_rec,
            cpu,
        });
    }
    drop(server);
    drop(sim);
    Ok((points, ceiling))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Direct,
    Proxy,
}

async fn one_side(
    rate: f64,
    duration: Duration,
    side: Side,
    client: &reqwest::Client,
    url: &str,
    direct: &HailuoClient,
    accounts: &Arc<Vec<Account>>,
) -> (Recorder, f64) {
    let shared = Recorders::shared();
    let offered = open_loop(rate, duration, |i, due| {
        let shared = Arc::clone(&shared);
        let client = client.clone();
        let url = url.to_owned();
        let direct = direct.clone();
        let accounts = Arc::clone(accounts);
        let index = usize::try_from(i).unwrap_or(0) % ACCOUNTS;
        async move {
            match side {
                Side::Proxy => proxy_chat(client, url, format!("proxy-{index}"), due, shared).await,
                Side::Direct => {
                    if let Some(account) = accounts.get(index).cloned() {
                        direct_chat(direct, account, due, shared, SHORT_PROMPT).await;
                    }
                }
            }
        }
    })
    .await;
    let recorder = lock(&shared).first.clone();
    (recorder, offered)
}

/// The highest open-loop rate, in steps of 100 req/s from 1,000 up to `ceiling`, that the
/// proxy keeps up with for 3 s: every request offered and answered, p99 under 25 ms (a few
/// times the simulator's own answer time). 1,000 when even that falls behind.
async fn sustained_rate(
    ceiling: f64,
    client: &reqwest::Client,
    url: &str,
    direct: &HailuoClient,
    accounts: &Arc<Vec<Account>>,
) -> f64 {
    let mut sustained = 1_000.0;
    let mut rate = 1_100.0;
    while rate <= ceiling.max(1_100.0) {
        let (probe, offered) = one_side(rate, Duration::from_secs(3), Side::Proxy, client, url, direct, accounts).await;
        let kept_up = probe.errors == 0 && offered >= rate * 0.97 && probe.p(0.99) < 25.0;
        eprintln!(
            "probe {rate:.0} req/s: offered {offered:.0}, p99 {:.3} ms, errors {} -> {}",
            probe.p(0.99),
            probe.errors,
            if kept_up { "kept up" } else { "fell behind" }
        );
        if !kept_up {
            break;
        }
        sustained = rate;
        rate += 100.0;
    }
    sustained
}

/// Requests per second through the proxy with 32 requests always in flight.
async fn closed_loop_rate(client: &reqwest::Client, url: &str, duration: Duration) -> f64 {
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let mut workers = tokio::task::JoinSet::new();
            for worker in 0..32usize {
                let client = client.clone();
                let url = url.to_owned();
                let done = Arc::clone(&done);
                workers.spawn_local(async move {
                    let mut i = worker;
                    while start.elapsed() < duration {
                        let shared = Recorders::shared();
                        proxy_chat(
                            client.clone(),
                            url.clone(),
                            format!("proxy-{}", i % ACCOUNTS),
                            Instant::now(),
                            shared,
                        )
                        .await;
                        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        i += 32;
                    }
                });
            }
            while workers.join_next().await.is_some() {}
        })
        .await;
    done.load(std::sync::atomic::Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// First token and chunk gaps of streams, both sides.
struct StreamPoint {
    rate: f64,
    chunk_delay_ms: u64,
    direct_first: Recorder,
    proxy_first: Recorder,
    direct_gaps: Recorder,
    proxy_gaps: Recorder,
}

/// Streams through the proxy on one dialect: the first token, counted from when each request
/// was due, and the upstream requests the server made per answer (by path, from its own
/// `hailuo_upstream_duration_seconds` counts).
struct DialectPoint {
    dialect: Dialect,
    rate: f64,
    chunk_delay_ms: u64,
    first: Recorder,
    answers: u64,
    /// Upstream requests per answer, by path.
    calls: BTreeMap<String, f64>,
}

/// The streams of a dialect's point: fewer than the stream phase's, since a polled answer
/// holds its account until its content has settled.
const DIALECT_RATE: f64 = 20.0;

async fn dialect_run(options: &Options, dialect: Dialect) -> BenchResult<DialectPoint> {
    let chunk_delay_ms = 5;
    let (sim, upstream) = start_sim_on(dialect, chunk_delay_ms, 3, options.tear_pause_us).await?;
    // Each conversation deleted as soon as its answer ends, so that deletions count per answer.
    let (server, base) = start_server(
        &upstream,
        &[
            ("HAILUO_UPSTREAM__DIALECT", dialect.name()),
            ("HAILUO_SESSION__IDLE_TTL_SECS", "0"),
        ],
    )
    .await?;
    let url = format!("{base}/v1/chat/completions");
    let client = http_client()?;
    warm_proxy(&client, &url, "dialect", ACCOUNTS).await?;
    // The warm-up's deletions finish before the count starts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = upstream_calls(&client, &base).await?;
    let shared = Recorders::shared();
    let duration = Duration::from_secs(options.seconds);
    open_loop(DIALECT_RATE, duration, |i, due| {
        let shared = Arc::clone(&shared);
        let client = client.clone();
        let url = url.clone();
        let index = usize::try_from(i).unwrap_or(0) % ACCOUNTS;
        async move { proxy_stream(client, url, format!("dialect-{index}"), due, shared, STREAM_PROMPT).await }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = upstream_calls(&client, &base).await?;
    let first = lock(&shared).first.clone();
    let answers = first.hist.len();
    let calls = after
        .iter()
        .map(|(path, count)| {
            let made = count - before.get(path).copied().unwrap_or(0.0);
            (path.clone(), made / answers.max(1) as f64)
        })
        .filter(|(_, per_answer)| *per_answer > 0.0)
        .collect();
    drop(server);
    drop(sim);
    Ok(DialectPoint {
        dialect,
        rate: DIALECT_RATE,
        chunk_delay_ms,
        first,
        answers,
        calls,
    })
}

/// The server's count of upstream requests so far, by path (`/metrics`).
async fn upstream_calls(client: &reqwest::Client, base: &str) -> BenchResult<BTreeMap<String, f64>> {
    let text = client.get(format!("{base}/metrics")).send().await?.text().await?;
    let mut calls = BTreeMap::new();
    for line in text
        .lines()
        .filter(|line| line.starts_with("hailuo_upstream_duration_seconds_count{"))
    {
        let path = line
            .split("url_path=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("?");
        let count: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse().ok())
            .unwrap_or(0.0);
        *calls.entry(path.to_owned()).or_insert(0.0) += count;
    }
    Ok(calls)
}

fn render_dialects(out: &mut String, points: &[DialectPoint], seconds: u64) {
    let _ = writeln!(
        out,
        "## Dialects: the first token and the upstream requests per answer\n"
    );
    if let Some(point) = points.first() {
        let _ = writeln!(
            out,
            "Streams through the proxy on each dialect, {:.0} a second for {seconds} s, against the simulator playing \
             that dialect; the simulator adds 3 characters to the answer every {} ms (about 20 pieces), on a streamed \
             dialect as events, on `minimax-agent` to the message its polls read. The first token counts from when the \
             request was due; on a streamed dialect it reaches the client as the simulator produces it, so the \
             difference to it is what polling adds. Requests per answer are the server's own upstream counts \
             (`hailuo_upstream_duration_seconds`) over the answers, each conversation deleted as soon as its answer \
             ends.\n",
            point.rate, point.chunk_delay_ms
        );
    }
    let streamed = points.iter().find(|point| point.dialect == Dialect::default());
    let _ = writeln!(
        out,
        "| dialect | answers | first token p50 | first token p99 | **p50 vs `hailuoai`** | **p99 vs `hailuoai`** | upstream requests per answer | errors |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for point in points {
        let (d50, d99) = streamed.map_or((0.0, 0.0), |base| {
            (
                point.first.p(0.5) - base.first.p(0.5),
                point.first.p(0.99) - base.first.p(0.99),
            )
        });
        let total: f64 = point.calls.values().sum();
        let by_path: Vec<String> = point
            .calls
            .iter()
            .map(|(path, per_answer)| format!("{per_answer:.2} `{path}`"))
            .collect();
        let _ = writeln!(
            out,
            "| `{}` | {} | {:.3} ms | {:.3} ms | **{d50:+.3} ms** | **{d99:+.3} ms** | **{total:.2}**: {} | {} |",
            point.dialect.name(),
            point.answers,
            point.first.p(0.5),
            point.first.p(0.99),
            by_path.join(", "),
            point.first.errors
        );
    }
    let _ = writeln!(out);
}

/// Sixty characters: about twenty events at three characters each.
const STREAM_PROMPT: &str = "stream me an answer of about sixty characters, please, now!!";

async fn stream_run(options: &Options) -> BenchResult<StreamPoint> {
    let chunk_delay_ms = 5;
    let (sim, upstream) = start_sim(chunk_delay_ms, 3, options.tear_pause_us).await?;
    let (server, base) = start_server(&upstream, &[]).await?;
    let url = format!("{base}/v1/chat/completions");
    let client = http_client()?;
    let direct = direct_client(&upstream)?;
    let accounts = Arc::new(direct_accounts(&direct, "direct", ACCOUNTS).await?);
    warm_proxy(&client, &url, "proxy", ACCOUNTS).await?;
    let duration = Duration::from_secs(options.seconds);
    let rate = 100.0;

    let run = |side: Side, duration: Duration| {
        let shared = Recorders::shared();
        let client = client.clone();
        let url = url.clone();
        let direct = direct.clone();
        let accounts = Arc::clone(&accounts);
        async move {
            let offered = open_loop(rate, duration, |i, due| {
                let shared = Arc::clone(&shared);
                let client = client.clone();
                let url = url.clone();
                let direct = direct.clone();
                let index = usize::try_from(i).unwrap_or(0) % ACCOUNTS;
                let account = accounts.get(index).cloned();
                async move {
                    match (side, account) {
                        (Side::Proxy, _) => {
                            proxy_stream(client, url, format!("proxy-{index}"), due, shared, STREAM_PROMPT).await;
                        }
                        (Side::Direct, Some(account)) => {
                            direct_stream(direct, account, due, shared, STREAM_PROMPT).await;
                        }
                        (Side::Direct, None) => {}
                    }
                }
            })
            .await;
            let recorders = lock(&shared);
            (recorders.first.clone(), recorders.gaps.clone(), offered)
        }
    };
    let _ = run(Side::Proxy, Duration::from_secs(1)).await;
    // The two sides take turns, as in the non-streamed runs.
    let (mut direct_first, mut direct_gaps) = (Recorder::new(), Recorder::new());
    let (mut proxy_first, mut proxy_gaps) = (Recorder::new(), Recorder::new());
    let mut offered_sum = 0.0;
    for _ in 0..SLICES {
        let (first, gaps, _) = run(Side::Direct, duration / SLICES).await;
        direct_first.merge(&first);
        direct_gaps.merge(&gaps);
        let (first, gaps, offered) = run(Side::Proxy, duration / SLICES).await;
        proxy_first.merge(&first);
        proxy_gaps.merge(&gaps);
        offered_sum += offered;
    }
    let offered = offered_sum / f64::from(SLICES);
    drop(server);
    drop(sim);
    Ok(StreamPoint {
        rate: offered,
        chunk_delay_ms,
        direct_first,
        proxy_first,
        direct_gaps,
        proxy_gaps,
    })
}

/// Resident memory of the server with `count` slow streams open.
struct MemoryPoint {
    count: usize,
    opened: usize,
    /// Streams that never showed content, by why.
    failures: BTreeMap<String, usize>,
    idle_rss: u64,
    loaded_rss: u64,
    peak_rss: u64,
    sim_rss: u64,
}

/// The prompt of the memory phase's streams (repeated; the simulator's answer repeats it).
const SLOW_PROMPT: &str = "a slow answer, one character a second, for as long as the benchmark needs it to stay open. ";

async fn memory_run(count: usize) -> BenchResult<MemoryPoint> {
    // One character a second: the streams stay open for minutes. At one event a second the
    // tear pause does not matter: the simulator's own 1 ms.
    let (sim, upstream) = start_sim(1_000, 1, 1_000).await?;
    // HTTP/2 upstream (as with the real HTTPS upstream, which negotiates it): thousands of
    // streams share a few connections instead of needing a descriptor each.
    let (server, base) = start_server(&upstream, &[("HAILUO_UPSTREAM__HTTP2_PRIOR_KNOWLEDGE", "true")]).await?;
    let url = format!("{base}/v1/chat/completions");
    let client = http_client()?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss, _) = server.memory()?;

    let opened = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(BTreeMap::<String, usize>::new()));
    let local = tokio::task::LocalSet::new();
    let mut streams = tokio::task::JoinSet::new();
    let result = local
        .run_until(async {
            for i in 0..count {
                let client = client.clone();
                let url = url.clone();
                let opened = Arc::clone(&opened);
                let failures = Arc::clone(&failures);
                streams.spawn_local(async move {
                    let failed = |why: String| *lock(&failures).entry(why).or_default() += 1;
                    // The answer repeats the prompt, one character a second: about 5 minutes,
                    // longer than the measurement takes even when some streams fail.
                    let body =
                        json!({"stream": true, "messages": [{"role": "user", "content": SLOW_PROMPT.repeat(3)}]});
                    let response = match client
                        .post(&url)
                        .bearer_auth(format!("slow-{i}"))
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(response) if response.status().is_success() => response,
                        Ok(response) => return failed(format!("status {}", response.status())),
                        Err(error) => return failed(format!("request: {error}")),
                    };
                    let mut body = response.bytes_stream();
                    let mut counted = false;
                    while let Some(chunk) = body.next().await {
                        match chunk {
                            Ok(chunk) if !counted && chunk.windows(7).any(|w| w == b"content") => {
                                counted = true;
                                opened.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(error) => return failed(format!("body: {error}")),
                        }
                    }
                    if !counted {
                        failed("ended before any content".to_owned());
                    }
                });
                // About 1,000 new streams a second. At 2,000 a second the simulator's HTTP/2
                // server reads the request bodies too slowly and its flood guard (h2's
                // `too_many_data_frames`) closes the shared connection; the server retries,
                // but some streams used up their attempts.
                if i % 100 == 99 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            // Until every stream shows content or has failed; failures are reported.
            let failed = || lock(&failures).values().sum::<usize>();
            let deadline = Instant::now() + Duration::from_secs(180);
            while opened.load(Ordering::Relaxed) + failed() < count && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // Let the allocator settle with every stream flowing.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let memory = server.memory();
            let (sim_rss, _) = sim.memory()?;
            streams.abort_all();
            let (loaded_rss, peak_rss) = memory?;
            BenchResult::Ok((loaded_rss, peak_rss, sim_rss))
        })
        .await;
    let (loaded_rss, peak_rss, sim_rss) = result?;
    let opened = opened.load(Ordering::Relaxed);
    let failures = lock(&failures).clone();
    eprintln!(
        "{opened}/{count} streams: idle {} MB, loaded {} MB, peak {} MB; failed: {failures:?}",
        idle_rss / 1_000_000,
        loaded_rss / 1_000_000,
        peak_rss / 1_000_000
    );
    drop(server);
    drop(sim);
    Ok(MemoryPoint {
        count,
        opened,
        failures,
        idle_rss,
        loaded_rss,
        peak_rss,
        sim_rss,
    })
}

/// Cold start: from spawning the process to the first answered `/ping`, several times.
struct ColdPoint {
    runs: Vec<Duration>,
    cpu: Vec<Duration>,
}

async fn cold_start() -> BenchResult<ColdPoint> {
    let client = reqwest::Client::builder().no_proxy().build()?;
    let mut runs = Vec::new();
    let mut cpu = Vec::new();
    for _ in 0..10 {
        let port = free_port()?;
        let started = Instant::now();
        let mut command = Command::new(env!("CARGO_BIN_EXE_hailuo-free-api"));
        let child = command
            .env_clear()
            .env("HAILUO_SERVER__HOST", "127.0.0.1")
            .env("HAILUO_SERVER__PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let proc = Proc { child };
        let url = format!("http://127.0.0.1:{port}/ping");
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err("the server did not start".into());
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        runs.push(started.elapsed());
        cpu.push(proc.cpu().unwrap_or_default());
        drop(proc);
    }
    Ok(ColdPoint { runs, cpu })
}

// ---------------------------------------------------------------------------------------------
// Report

struct Report {
    options: Options,
    nofile: u64,
    cold: Option<ColdPoint>,
    latency: Vec<LatencyPoint>,
    /// Closed-loop throughput through the proxy (32 in flight).
    ceiling: Option<f64>,
    streams: Option<StreamPoint>,
    dialects: Vec<DialectPoint>,
    memory: Vec<MemoryPoint>,
}

impl Report {
    fn new(options: &Options, nofile: u64) -> Self {
        Self {
            options: options.clone(),
            nofile,
            cold: None,
            latency: Vec::new(),
            ceiling: None,
            streams: None,
            dialects: Vec::new(),
            memory: Vec::new(),
        }
    }

    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmark results\n");
        let _ = writeln!(
            out,
            "Written by `cargo bench --bench gateway` (`bench/run.sh` runs it and the soak test). \
             Every figure below comes from one run on the machine described; nothing here is asserted by a test.\n"
        );
        let _ = writeln!(out, "## Machine\n");
        let _ = writeln!(out, "{}", machine());
        let _ = writeln!(out, "- open files (soft limit after raising): {}", self.nofile);
        let _ = writeln!(
            out,
            "- run: `cargo bench --bench gateway -- --seconds {}{}{}`\n",
            self.options.seconds,
            self.options
                .only
                .as_ref()
                .map(|only| format!(" --only {only}"))
                .unwrap_or_default(),
            match self.options.tear_pause_us {
                0 => String::new(),
                us => format!(" --tear-pause-us {us}"),
            }
        );
        let _ = writeln!(
            out,
            "The load generator is single-threaded and open-loop (latency counts from when a request was due). \
             The server runs with its embedded defaults (info logs, metrics on) pointed at `hailuo-sim` in open mode; \
             all three processes share the machine's cores. {}\n",
            tear_note(self.options.tear_pause_us)
        );
        if !self.latency.is_empty() {
            let _ = writeln!(out, "## 1. Non-streamed chat: latency added by the proxy\n");
            let _ = writeln!(
                out,
                "Direct: the same adapter sends the same prompt straight to the simulator and reads the whole answer. \
                 Proxy: an OpenAI client asks the server, which does that. Added = proxy − direct, per percentile. \
                 {} s per side and rate, in {SLICES} turns each (direct, then proxy, and again), so that bursts of \
                 noise from other work on the machine fall on both sides; {ACCOUNTS} accounts.\n",
                self.options.seconds
            );
            let _ = writeln!(
                out,
                "| rate | offered req/s | direct p50 | direct p99 | proxy p50 | proxy p99 | **added p50** | **added p99** | errors (direct/proxy) |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
            for point in &self.latency {
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | **{:.3} ms** | **{:.3} ms** | {}/{} |",
                    point.label,
                    point.rate,
                    point.direct.p(0.5),
                    point.direct.p(0.99),
                    point.proxy.p(0.5),
                    point.proxy.p(0.99),
                    point.proxy.p(0.5) - point.direct.p(0.5),
                    point.proxy.p(0.99) - point.direct.p(0.99),
                    point.direct.errors,
                    point.proxy.errors
                );
            }
            let _ = writeln!(
                out,
                "\nCPU time per answer (user + system, from `/proc/<pid>/stat` around every turn), in µs: what each \
                 process spends on one answer on each side. The proxy side's extra is the server's column plus the \
                 difference in the other two.\n"
            );
            let _ = writeln!(
                out,
                "| rate | direct: client | direct: simulator | proxy: client | proxy: **server** | proxy: simulator |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for point in &self.latency {
                let cpu = point.cpu;
                let _ = writeln!(
                    out,
                    "| {} | {:.0} | {:.0} | {:.0} | **{:.0}** | {:.0} |",
                    point.label, cpu.direct_client, cpu.direct_sim, cpu.proxy_client, cpu.proxy_server, cpu.proxy_sim
                );
            }
            if let Some(ceiling) = self.ceiling {
                let _ = writeln!(
                    out,
                    "\nClosed loop (32 requests always in flight) the proxy answered {ceiling:.0} req/s. \"max sustained\" is \
                     the highest open-loop rate, in steps of 100 from 1,000, that it kept up with for 3 s (all offered and \
                     answered, p99 under 25 ms)."
                );
            }
            let _ = writeln!(out);
        }
        if let Some(streams) = &self.streams {
            let _ = writeln!(out, "## 2. Streams: first token and gaps between chunks\n");
            let _ = writeln!(
                out,
                "{:.0} streams/s for {} s per side, in {SLICES} alternating turns each; the simulator sends 3 characters every {} ms (about 20 events per answer).\n",
                streams.rate, self.options.seconds, streams.chunk_delay_ms
            );
            let _ = writeln!(
                out,
                "| measure | direct p50 | direct p99 | proxy p50 | proxy p99 | **added p50** | **added p99** |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|");
            for (name, direct, proxy) in [
                ("first token", &streams.direct_first, &streams.proxy_first),
                ("gap between chunks", &streams.direct_gaps, &streams.proxy_gaps),
            ] {
                let _ = writeln!(
                    out,
                    "| {name} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | **{:.3} ms** | **{:.3} ms** |",
                    direct.p(0.5),
                    direct.p(0.99),
                    proxy.p(0.5),
                    proxy.p(0.99),
                    proxy.p(0.5) - direct.p(0.5),
                    proxy.p(0.99) - direct.p(0.99)
                );
            }
            let _ = writeln!(
                out,
                "\nErrors: direct {}, proxy {}.\n",
                streams.direct_first.errors, streams.proxy_first.errors
            );
        }
        if !self.dialects.is_empty() {
            render_dialects(&mut out, &self.dialects, self.options.seconds);
        }
        if !self.memory.is_empty() {
            let _ = writeln!(out, "## 3. Resident memory with concurrent slow streams\n");
            let _ = writeln!(
                out,
                "Each stream is its own HTTP/1.1 client connection and its own account; the simulator sends one character \
                 a second. The server reaches the simulator over HTTP/2 (`upstream.http2_prior_knowledge`), as it does the \
                 real HTTPS upstream, which negotiates HTTP/2. RSS is read from `/proc/<pid>/status` once every stream has \
                 shown content or failed (each answer lasts about 5 minutes, so none has ended by then). Peak RSS includes \
                 the ramp-up, when requests still waiting for their first token hold larger state.\n"
            );
            let _ = writeln!(
                out,
                "| streams | streaming | idle RSS | RSS with streams | peak RSS | **bytes per stream** | simulator RSS |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|---|");
            for point in &self.memory {
                let per_stream = point.loaded_rss.saturating_sub(point.idle_rss) / (point.opened.max(1) as u64);
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.1} MB | **{:.1} MB** | {:.1} MB | **{}** | {:.1} MB |",
                    point.count,
                    point.opened,
                    point.idle_rss as f64 / 1e6,
                    point.loaded_rss as f64 / 1e6,
                    point.peak_rss as f64 / 1e6,
                    per_stream,
                    point.sim_rss as f64 / 1e6
                );
            }
            for point in self.memory.iter().filter(|point| !point.failures.is_empty()) {
                let _ = writeln!(out, "Failed of {}: {:?}", point.count, point.failures);
            }
            let _ = writeln!(out);
        }
        if let Some(cold) = &self.cold {
            let mut runs = cold.runs.clone();
            runs.sort();
            let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
            let _ = writeln!(out, "## 4. Cold start to the first answered `/ping`\n");
            let _ = writeln!(
                out,
                "From spawning the release binary (embedded defaults, in-memory store) to the first 200 from `/ping`, \
                 polled every 0.5 ms; {} runs.\n",
                runs.len()
            );
            let _ = writeln!(
                out,
                "| min | median | max | CPU time of the process at that moment (median) |\n|---|---|---|---|"
            );
            let mut cpu = cold.cpu.clone();
            cpu.sort();
            let _ = writeln!(
                out,
                "| {:.1} ms | **{:.1} ms** | {:.1} ms | {:.0} ms |\n",
                runs.first().map(ms).unwrap_or_default(),
                runs.get(runs.len() / 2).map(ms).unwrap_or_default(),
                runs.last().map(ms).unwrap_or_default(),
                cpu.get(cpu.len() / 2).map(ms).unwrap_or_default()
            );
        }
        out
    }
}

/// The CPU model, core count, memory and kernel of this machine.
fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .map(|rest| rest.trim().to_owned())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "- CPU: {model}, {cores} cores available\n- memory: {memory}\n- kernel: Linux {}\n- date: {}",
        kernel.trim(),
        httpdate::fmt_http_date(std::time::SystemTime::now())
    )
}
