//! The server binary as a child process against an in-test simulator, with its memory read
//! from `/proc/<pid>/status`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hailuo_sim::{SimConfig, Simulator};

/// How much the server's peak resident memory may grow over its idle size in one case:
/// generous, so that only a real leak or an unbounded allocation trips it.
pub const MEMORY_BUDGET: u64 = 200 * 1024 * 1024;

/// A running server binary and its simulator; the server is killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// `127.0.0.1:PORT`, for raw sockets.
    pub socket: String,
    /// The simulated upstream it talks to.
    pub sim: Simulator,
    /// A client for the tests' requests (no proxy, no pooling surprises).
    pub client: reqwest::Client,
    log: PathBuf,
    idle_rss: u64,
    _dir: tempfile::TempDir,
}

impl Server {
    /// The server with its embedded defaults (memory store), pointed at a fresh simulator.
    pub async fn start() -> Self {
        Self::start_with(SimConfig::default(), &[]).await
    }

    /// The server with `env` settings added, against a simulator built from `sim_config`.
    pub async fn start_with(sim_config: SimConfig, env: &[(&str, &str)]) -> Self {
        let sim = Simulator::start(sim_config).await.unwrap();
        Self::start_against(sim, env).await
    }

    /// The server with `env` settings added, against `sim` (a clone of a simulator that may
    /// outlive this server, for restarts).
    pub async fn start_against(sim: Simulator, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        // A free port: bind one, note it, let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = command(&sim, port, env, &log).spawn().unwrap();
        let mut server = Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            socket: format!("127.0.0.1:{port}"),
            sim,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            log,
            idle_rss: 0,
            _dir: dir,
        };
        server.wait_ready().await;
        server.idle_rss = server.rss();
        server
    }

    /// `address` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.client.get(self.url("/ping")).send().await {
                if response.status().is_success() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the server exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the server never answered /ping:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
    }

    /// The server's resident memory now, in bytes.
    pub fn rss(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// The server's peak resident memory since it started, in bytes.
    pub fn peak_rss(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// Panics when the server died, or its peak resident memory grew past [`MEMORY_BUDGET`]
    /// over its idle size.
    pub fn assert_memory_bounded(&mut self, case: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{case}: the server died ({status}):\n{}", self.log());
        }
        let grown = self.peak_rss().saturating_sub(self.idle_rss);
        assert!(
            grown <= MEMORY_BUDGET,
            "{case}: the server's peak resident memory grew by {} MB (idle {} MB)",
            grown / (1024 * 1024),
            self.idle_rss / (1024 * 1024)
        );
    }

    /// Panics unless `GET /ping` answers 200 within `within`.
    pub async fn assert_pings_within(&self, within: Duration, case: &str) {
        let started = Instant::now();
        let answer = tokio::time::timeout(within, self.client.get(self.url("/ping")).send()).await;
        match answer {
            Ok(Ok(response)) => assert_eq!(response.status(), 200, "{case}: /ping answered {}", response.status()),
            Ok(Err(error)) => panic!("{case}: /ping failed: {error}\n{}", self.log()),
            Err(_) => panic!(
                "{case}: /ping did not answer within {within:?} ({:?})",
                started.elapsed()
            ),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary's command: loopback, port `port`, upstream `sim`, quick retries and
/// sweeps, `env` on top, its output to `log`.
fn command(sim: &Simulator, port: u16, env: &[(&str, &str)], log: &std::path::Path) -> Command {
    let log_file = std::fs::File::create(log).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hailuo-free-api"));
    command
        .env_remove("HAILUO_CONFIG")
        .env("HAILUO_SERVER__HOST", "127.0.0.1")
        .env("HAILUO_SERVER__PORT", port.to_string())
        .env("HAILUO_UPSTREAM__BASE_URL", sim.base_url())
        .env("HAILUO_UPSTREAM__RETRY_DELAY_MS", "20")
        .env("HAILUO_SESSION__SWEEP_INTERVAL_MS", "50")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file);
    command
}

/// Runs the server binary with `env` against `sim` until it exits by itself (within 30 s),
/// for settings it must refuse at start; returns whether it succeeded and what it printed.
pub fn run_to_exit(sim: &Simulator, env: &[(&str, &str)]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("server.log");
    let mut child = command(sim, 0, env, &log).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the server did not exit:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), std::fs::read_to_string(&log).unwrap_or_default())
}
