//! The processes of the offline trial: the two binaries the README starts, each killed when
//! the test ends, the block of examples run beside them, and where the simulator's
//! executable comes from.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime};

use hailuo_free_api::config::Settings;
use serde_json::Value;

use crate::text::{fenced, launches, offline_section, option_value, readme_port};

/// How long one block of examples may take before the test gives up on it.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a binary may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The address both binaries listen on.
pub const LOOPBACK: &str = "127.0.0.1";

/// The two binaries of the README's launch block, running in a directory of their own.
pub struct OfflineTrial {
    /// Where the examples run and write their files.
    pub dir: tempfile::TempDir,
    /// The port the README's calls name, and the one the server listens on instead.
    readme_port: u16,
    port: u16,
    sim: Running,
    server: Running,
}

impl OfflineTrial {
    /// Starts the simulator and the server as the README's launch block says.
    pub fn start() -> Self {
        let section = offline_section();
        let launches = launches(fenced(section, "## Try it offline", "sh"));
        let [sim_launch, server_launch] = launches.as_slice() else {
            panic!("the launch block has two commands, the simulator's and the server's: {launches:?}");
        };
        assert_eq!(sim_launch.package.as_deref(), Some("hailuo-sim"), "{sim_launch:?}");
        assert_eq!(server_launch.package, None, "{server_launch:?}");
        let readme_port = readme_port(section);
        let default_port = Settings::defaults().unwrap().server.port;
        assert_eq!(readme_port, default_port, "the README calls the server's default port");

        let dir = tempfile::tempdir().unwrap();
        let sim_port = option_value(&sim_launch.args, "--port");
        let args: Vec<String> = sim_launch
            .args
            .iter()
            .map(|arg| if *arg == sim_port { "0".to_owned() } else { arg.clone() })
            .collect();
        let (sim, sim_addr) = Running::sim(&args, &dir.path().join("sim.log"));

        let port = free_port();
        let mut server = Command::new(env!("CARGO_BIN_EXE_hailuo-free-api"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HAILUO_") {
                server.env_remove(name);
            }
        }
        for (name, value) in &server_launch.env {
            server.env(
                name,
                value.replace(&format!(":{sim_port}"), &format!(":{}", sim_addr.port())),
            );
        }
        server
            .env("HAILUO_SERVER__HOST", LOOPBACK)
            .env("HAILUO_SERVER__PORT", port.to_string());
        let server = Running::spawn(server, &dir.path().join("server.log"));
        server.wait_listening(SocketAddr::new(LOOPBACK.parse().unwrap(), port));
        Self {
            dir,
            readme_port,
            port,
            sim,
            server,
        }
    }

    /// `text` with the README's server port replaced by the one the server listens on.
    pub fn rewrite(&self, text: &str) -> String {
        text.replace(
            &format!("{LOOPBACK}:{}", self.readme_port),
            &format!("{LOOPBACK}:{}", self.port),
        )
    }

    /// Runs `command` in the trial's directory (at most [`BLOCK_TIMEOUT`]): its status, stdout
    /// and stderr.
    pub fn run(&self, mut command: Command) -> (std::process::ExitStatus, String, String) {
        let mut child = command
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = drain(child.stdout.take().unwrap());
        let stderr = drain(child.stderr.take().unwrap());
        let deadline = Instant::now() + BLOCK_TIMEOUT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the README's examples ran for {BLOCK_TIMEOUT:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (status, stdout.join().unwrap(), stderr.join().unwrap())
    }

    /// What the two binaries logged.
    pub fn logs(&self) -> String {
        format!(
            "--- hailuo-sim:\n{}\n--- hailuo-free-api:\n{}",
            self.sim.log(),
            self.server.log()
        )
    }

    /// Panics when the simulator logged a protocol violation.
    pub fn assert_no_violation(&self) {
        let log = self.sim.log();
        assert!(!log.contains("protocol violation"), "{log}");
    }
}

/// A free port: bind one, note it, let it go.
fn free_port() -> u16 {
    std::net::TcpListener::bind((LOOPBACK, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Reads `pipe` to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// A child process, killed when dropped, that logs to a file.
struct Running {
    child: Child,
    log: PathBuf,
}

impl Running {
    fn spawn(mut command: Command, log: &Path) -> Self {
        let file = File::create(log).unwrap();
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self {
            child,
            log: log.to_owned(),
        }
    }

    /// Starts `hailuo-sim` with `args`; it and the address its first line names.
    fn sim(args: &[String], log: &Path) -> (Self, SocketAddr) {
        let mut child = Command::new(sim_binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(log).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let running = Self {
            child,
            log: log.to_owned(),
        };
        let (sent, received) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = sent.send(line);
        });
        let line = received.recv_timeout(START_TIMEOUT).unwrap_or_default();
        let addr = line
            .trim()
            .strip_prefix("hailuo-sim listening on http://")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("hailuo-sim said {line:?}:\n{}", running.log()));
        (running, addr)
    }

    /// Waits until something accepts connections on `addr`.
    fn wait_listening(&self, addr: SocketAddr) {
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(Instant::now() < deadline, "nothing listens on {addr}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `hailuo-sim` executable (`HAILUO_SIM_BIN` names another).
///
/// Cargo hands a test the paths of its own package's binaries only, and `hailuo-sim` is
/// another workspace member's. `cargo test --workspace --all-targets` (the README's test
/// command, and CI's) builds it beside this test's executable, in the same profile's
/// directory: that one is run when it is newer than every file of the simulator's crate and
/// `Cargo.lock`, which costs nothing. Otherwise (`cargo test --test readme`, or a simulator
/// edited since) the test asks the cargo that runs it to build it, in the same profile and
/// target directory, and runs the executable that build reports, as the benchmark does: a
/// stale simulator is never run, and the common case pays no second cargo run (which would
/// resolve the simulator's features on its own and link another copy).
fn sim_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = std::env::var_os("HAILUO_SIM_BIN") {
        return PathBuf::from(path);
    }
    BINARY
        .get_or_init(|| {
            let profile_dir = std::env::current_exe()
                .unwrap()
                .parent()
                .and_then(Path::parent)
                .expect("the test runs from <target>/<profile>/deps")
                .to_owned();
            let beside = profile_dir.join(format!("hailuo-sim{}", std::env::consts::EXE_SUFFIX));
            if modified(&beside).is_some_and(|built| built >= newest_source()) {
                beside
            } else {
                build_sim(&profile_dir)
            }
        })
        .clone()
}

/// When the newest of the simulator crate's files and `Cargo.lock` was modified.
fn newest_source() -> SystemTime {
    fn newest_in(path: &Path) -> SystemTime {
        let own = modified(path).unwrap_or(SystemTime::UNIX_EPOCH);
        let Ok(entries) = std::fs::read_dir(path) else {
            return own;
        };
        entries
            .filter_map(Result::ok)
            .map(|entry| newest_in(&entry.path()))
            .fold(own, SystemTime::max)
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    newest_in(&root.join("hailuo-sim")).max(modified(&root.join("Cargo.lock")).unwrap_or(SystemTime::now()))
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|meta| meta.modified()).ok()
}

/// `cargo build -p hailuo-sim` in the profile whose directory is `profile_dir`; the
/// executable it reports.
fn build_sim(profile_dir: &Path) -> PathBuf {
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => "dev",
        Some(name) => name,
    };
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args([
            "build",
            "--quiet",
            "-p",
            "hailuo-sim",
            "--bin",
            "hailuo-sim",
            "--profile",
            profile,
        ])
        .args(["--message-format", "json", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"));
    // The target directory this test was built in, unless it was built for another target.
    let target_dir = profile_dir.parent().filter(|dir| dir.join("CACHEDIR.TAG").exists());
    if let Some(target_dir) = target_dir {
        cargo.arg("--target-dir").arg(target_dir);
    }
    let output = cargo.stderr(Stdio::inherit()).output().unwrap();
    assert!(output.status.success(), "`cargo build -p hailuo-sim` failed");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact" && message["target"]["name"] == "hailuo-sim")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .expect("`cargo build -p hailuo-sim` names the executable it built")
}
