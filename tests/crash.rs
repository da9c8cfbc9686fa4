//! Crash safety with SQLite: the real server binary is killed (SIGKILL) right after an answer,
//! restarted on the same database, and still deletes the conversation it had created, on the
//! device it had registered. Also the binary's runtime: `server.worker_threads`, and its
//! allocator (jemalloc, returning freed memory at once).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hailuo_sim::{SimConfig, Simulator};
use serde_json::json;

/// The server as a child process; killed when dropped, so a failing test leaves none behind.
struct ServerProcess {
    child: Child,
    address: String,
    log: PathBuf,
}

impl ServerProcess {
    fn start(sim: &Simulator, database: &Path, idle_ttl_secs: u64, log: PathBuf) -> Self {
        Self::start_with(sim, database, idle_ttl_secs, log, &[])
    }

    fn start_with(sim: &Simulator, database: &Path, idle_ttl_secs: u64, log: PathBuf, env: &[(&str, &str)]) -> Self {
        // A free port: bind one, note it, let it go.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hailuo-free-api"))
            .env_remove("HAILUO_CONFIG")
            .env("HAILUO_SERVER__HOST", "127.0.0.1")
            .env("HAILUO_SERVER__PORT", port.to_string())
            .env("HAILUO_UPSTREAM__BASE_URL", sim.base_url())
            .env("HAILUO_STORE__URL", format!("sqlite://{}", database.display()))
            .env("HAILUO_SESSION__IDLE_TTL_SECS", idle_ttl_secs.to_string())
            .env("HAILUO_SESSION__SWEEP_INTERVAL_MS", "50")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .unwrap();
        Self {
            child,
            address: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `GET /ping` answers.
    async fn wait_ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = client.get(format!("{}/ping", self.address)).send().await {
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

    /// SIGKILL on unix: no graceful shutdown, no final sweep.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn eventually(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    done()
}

/// A simulator, and the server started with `env` on a fresh SQLite database, answering
/// `/ping`. The directory holds the database and the log; keep it alive with the server.
async fn started_with(env: &[(&str, &str)]) -> (Simulator, tempfile::TempDir, ServerProcess) {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start_with(
        &sim,
        &dir.path().join("hailuo.db"),
        600,
        dir.path().join("server.log"),
        env,
    );
    server.wait_ready(&reqwest::Client::new()).await;
    (sim, dir, server)
}

#[tokio::test]
async fn a_conversation_created_before_a_crash_is_deleted_after_the_restart_on_the_same_device() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("hailuo.db");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let mut server = ServerProcess::start(&sim, &database, 3600, dir.path().join("first.log"));
    server.wait_ready(&client).await;
    let response = client
        .post(format!("{}/v1/chat/completions", server.address))
        .bearer_auth("crash-token")
        .json(&json!({"messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "chat failed: {body}\n{}", server.log());
    let live = sim.conversations().live("crash-token");
    assert_eq!(live.len(), 1, "one live conversation before the crash");
    assert_eq!(sim.accounts().registrations("crash-token"), 1);
    server.kill();
    drop(server);

    let mut restarted = ServerProcess::start(&sim, &database, 1, dir.path().join("second.log"));
    restarted.wait_ready(&client).await;
    let deleted = eventually(Duration::from_secs(15), || {
        sim.conversations().live("crash-token").is_empty()
    })
    .await;
    assert!(deleted, "the conversation outlived the restart:\n{}", restarted.log());
    assert_eq!(sim.conversations().deleted(), live, "the one created before the crash");
    assert_eq!(
        sim.accounts().registrations("crash-token"),
        1,
        "the device was reused, not registered again"
    );
    assert_eq!(sim.violations(), Vec::<String>::new());
    sim.shutdown();
}

#[tokio::test]
async fn the_server_runs_on_as_many_worker_threads_as_configured() {
    let (_sim, _dir, server) =
        started_with(&[("HAILUO_SERVER__WORKER_THREADS", "3"), ("HAILUO_LOG__FORMAT", "json")]).await;
    let answer = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", server.address))
        .bearer_auth("token-w")
        .json(&json!({"messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let log = server.log();
    let listening = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| {
            line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("listening"))
        })
        .unwrap_or_else(|| panic!("no listening line in:\n{log}"));
    // Three: unlike the usual one per core, so the setting is what made it.
    assert_eq!(listening["fields"]["workers"], 3, "{listening}");
}

/// The binary allocates with jemalloc, built to return freed memory at once
/// (`.cargo/config.toml`): asked to confirm its settings, jemalloc prints them at start.
#[cfg(all(unix, not(target_env = "msvc")))]
#[tokio::test]
async fn the_server_allocates_with_jemalloc_returning_freed_memory_at_once() {
    let (_sim, _dir, server) = started_with(&[("_RJEM_MALLOC_CONF", "confirm_conf:true")]).await;
    let log = server.log();
    let built_in = log
        .lines()
        .find(|line| line.starts_with("<jemalloc>: malloc_conf #1 (string specified via --with-malloc-conf)"))
        .unwrap_or_else(|| panic!("jemalloc did not report its built-in settings:\n{log}"));
    assert!(
        built_in.ends_with("\"dirty_decay_ms:0,muzzy_decay_ms:0\""),
        "{built_in}"
    );
    assert!(log.contains("<jemalloc>: -- Set conf value: dirty_decay_ms:0"), "{log}");
    assert!(log.contains("<jemalloc>: -- Set conf value: muzzy_decay_ms:0"), "{log}");
    // The text log, written to a file, has no terminal colour codes.
    assert!(log.contains("hailuo-free-api listening"), "{log}");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file:\n{log}");
}
