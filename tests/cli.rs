//! The server's command line and its first run: `--help` and `--version` answer and exit 0,
//! an unknown flag is a usage error (exit 2), a missing file or an unknown setting stops the
//! server at start with a message naming it, and a port in use with one line saying so; a start
//! says in one line what the server runs with, serves every documented metric at once, and an
//! undecodable upload logs one warning.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Runs the server binary with `args`, without any `HAILUO_*` setting from the outside.
fn server(args: &[&str]) -> Output {
    server_with(&[], args)
}

/// Runs the server binary with `args` and, of the `HAILUO_*` variables, only `env`.
fn server_with(env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_hailuo-free-api"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HAILUO_") {
            command.env_remove(name);
        }
    }
    command
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the server binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_describes_the_config_option_and_exits_0() {
    let output = server(&["--help"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("Usage:"), "{stdout}");
    assert!(stdout.contains("--config <PATH>"), "{stdout}");
    assert!(
        stdout.contains("HAILUO_CONFIG"),
        "the variable it falls back to: {stdout}"
    );
    assert!(stdout.contains("--version"), "{stdout}");
}

#[test]
fn version_prints_the_package_version_and_exits_0() {
    let output = server(&["--version"]);
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", text(&output.stderr));
    assert_eq!(stdout.trim(), format!("hailuo-free-api {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn an_unknown_flag_is_a_usage_error_with_exit_2() {
    let output = server(&["--no-such-flag"]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
    assert!(stderr.contains("Usage:"), "{stderr}");
}

#[test]
fn a_missing_config_file_stops_the_server_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent.toml");
    let missing = missing.to_str().expect("a UTF-8 path");
    let output = server(&["--config", missing]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert_ne!(output.status.code(), Some(2), "not a usage error: {stderr}");
    assert!(stderr.contains("reading the configuration"), "{stderr}");
    assert!(stderr.contains(missing), "names the file: {stderr}");
}

#[test]
fn a_bad_value_in_the_config_file_stops_the_server_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[upstream]\nbase_url = \"not a url\"\n").unwrap();
    let output = server(&["--config", file.to_str().expect("a UTF-8 path")]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("upstream.base_url"), "{stderr}");
}

#[test]
fn hailuo_config_names_the_file_when_no_option_does() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("from-env.toml");
    let missing = missing.to_str().expect("a UTF-8 path");
    let output = server_with(&[("HAILUO_CONFIG", missing)], &[]);
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains(missing), "names the file: {stderr}");
}

#[test]
fn a_port_in_use_stops_the_server_with_one_line_saying_so() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = server_with(
        &[("HAILUO_SERVER__HOST", "127.0.0.1"), ("HAILUO_SERVER__PORT", &port)],
        &[],
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, no backtrace: {stderr}");
    assert!(
        stderr.starts_with(&format!("hailuo-free-api: port {port} is in use on 127.0.0.1")),
        "{stderr}"
    );
    assert!(stderr.contains("HAILUO_SERVER__PORT"), "{stderr}");
}

#[test]
fn an_unknown_setting_stops_the_start_naming_it_and_the_nearest_known_key() {
    let output = server_with(&[("HAILUO_SERVER__PROT", "9000")], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown setting `server.prot` (from HAILUO_SERVER__PROT); did you mean `server.port`?"),
        "{stderr}"
    );

    let output = server_with(&[("HAILUO_UPSTREAM_BASE_URL", "http://127.0.0.1:9")], &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("did you mean `upstream.base_url` (HAILUO_UPSTREAM__BASE_URL)?"),
        "{stderr}"
    );
    assert!(stderr.contains("double underscore"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.toml");
    std::fs::write(&file, "[upstream.profile.poll]\nsettle = 500\n").unwrap();
    let output = server(&["--config", file.to_str().expect("a UTF-8 path")]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("unknown setting `upstream.profile.poll.settle` (in "),
        "{stderr}"
    );
    assert!(
        stderr.contains("did you mean `upstream.profile.poll.settle_ms`?"),
        "{stderr}"
    );
}

#[test]
fn the_variables_of_doctor_and_the_simulator_do_not_stop_the_start() {
    let output = server_with(
        &[
            ("HAILUO_TOKEN", "doctor-token"),
            ("HAILUO_SIM_PORT", "8100"),
            ("HAILUO_SERVER__PORT", "not-a-port"),
        ],
        &[],
    );
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("unknown setting"), "{stderr}");
    assert!(stderr.contains("`server.port`"), "only the bad port stops it: {stderr}");
}

/// A server started from the binary on a free port, its log read as it comes; killed when
/// dropped.
struct Started {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    addr: String,
}

impl Started {
    /// Starts the server with, of the `HAILUO_*` variables, only `env` (and a free port on
    /// the loopback, an upstream nobody answers), and waits for its line saying it listens.
    fn new(env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_hailuo-free-api"));
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HAILUO_") || name == "RUST_LOG" {
                command.env_remove(name);
            }
        }
        let mut child = command
            .envs([
                ("HAILUO_SERVER__HOST", "127.0.0.1"),
                ("HAILUO_SERVER__PORT", "0"),
                ("HAILUO_UPSTREAM__BASE_URL", "http://127.0.0.1:9/"),
            ])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the server binary runs");
        let lines = Arc::new(Mutex::new(Vec::new()));
        for output in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = Arc::clone(&lines);
            std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        let mut started = Self {
            child,
            lines,
            addr: String::new(),
        };
        let listening = started.wait_for(|line| line.contains(" listening"));
        let addr = listening
            .split_whitespace()
            .find_map(|field| field.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no address in {listening}"));
        started.addr = addr.to_owned();
        started
    }

    /// Every line logged so far.
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// The first line logged that `wanted` accepts, waiting for it.
    fn wait_for(&self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(line) = self.lines().into_iter().find(|line| wanted(line)) {
                return line;
            }
            assert!(Instant::now() < deadline, "not logged:\n{}", self.lines().join("\n"));
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The body of `GET path`.
    fn get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        body.to_owned()
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A JWT-shaped token whose payload names `exp`, in a year (the signature is not read).
fn token_with_expiry(name: &str) -> String {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 365 * 86_400;
    format!(
        "{}.{}.{}",
        engine.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        engine.encode(format!(r#"{{"exp":{exp},"user":{{"id":"{name}"}}}}"#)),
        engine.encode("signature")
    )
}

#[test]
fn the_start_says_in_one_line_what_the_server_runs_with_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("first-run.db");
    let store = format!("sqlite://{}", database.display());
    let secrets = [
        "sk-first-run-key-one",
        "sk-first-run-key-two",
        "pool-token-first-run-a",
        "pool-token-first-run-b",
        "pool-token-first-run-c",
        "store-secret-first-run",
    ];
    let started = Started::new(&[
        ("HAILUO_STORE__URL", &store),
        ("HAILUO_STORE__SECRET", secrets[5]),
        ("HAILUO_AUTH__API_KEYS", &secrets[..2].join(",")),
        ("HAILUO_AUTH__TOKENS", &secrets[2..5].join(",")),
        ("HAILUO_UPSTREAM__DIALECT", "hailuo-intl"),
    ]);
    let lines = started.lines();
    let info: Vec<&String> = lines.iter().filter(|line| line.contains(" INFO ")).collect();
    assert_eq!(info.len(), 1, "one line at start: {lines:#?}");
    let line = info[0];
    for field in [
        &format!("addr={}", started.addr),
        "upstream=http://127.0.0.1:9/",
        "dialect=hailuo-intl",
        &format!("store={store}"),
        "api_keys=on",
        "pool_tokens=3",
    ] {
        assert!(line.contains(field), "no {field} in {line}");
    }
    assert!(started.addr.starts_with("127.0.0.1:"), "{line}");
    for secret in secrets {
        assert!(
            !lines.iter().any(|line| line.contains(secret)),
            "{secret} logged: {lines:#?}"
        );
    }

    let started = Started::new(&[]);
    let line = started.wait_for(|line| line.contains(" listening"));
    for field in ["store=memory", "api_keys=off", "pool_tokens=0", "dialect=hailuoai"] {
        assert!(line.contains(field), "no {field} in {line}");
    }
}

/// The metrics of the table in docs/operations.md, each with what its "at start" column says.
fn documented_metrics() -> Vec<(String, String)> {
    let document = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md")).unwrap();
    let section = document
        .split("\n### Metrics\n")
        .nth(1)
        .expect("a Metrics section")
        .split("\n## ")
        .next()
        .unwrap();
    section
        .lines()
        .filter(|line| line.starts_with("| `"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            (cells[0].trim_matches('`').to_owned(), cells[cells.len() - 1].to_owned())
        })
        .collect()
}

/// The samples of `family` in Prometheus text: each line's labels and value.
fn samples<'a>(metrics: &'a str, family: &str) -> Vec<(&'a str, f64)> {
    metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let name = series.split('{').next()?;
            let own = name == family
                || ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|suffix| name.strip_suffix(suffix) == Some(family));
            own.then(|| (series, value.parse().unwrap()))
        })
        .collect()
}

#[test]
fn every_documented_metric_is_served_from_start_at_zero() {
    let documented = documented_metrics();
    assert!(documented.len() >= 17, "{documented:?}");
    let pool = [token_with_expiry("first"), token_with_expiry("second")];
    let started = Started::new(&[
        ("HAILUO_AUTH__API_KEYS", "sk-metrics"),
        ("HAILUO_AUTH__TOKENS", &pool.join(",")),
    ]);
    let metrics = started.get("/metrics");
    for (family, at_start) in &documented {
        assert!(
            metrics.contains(&format!("# TYPE {family} ")),
            "{family} is not served at start:\n{metrics}"
        );
        let samples = samples(&metrics, family);
        assert!(!samples.is_empty(), "{family} has no series:\n{metrics}");
        if at_start == "0" {
            for (series, value) in &samples {
                assert_eq!(*value, 0.0, "{series} at start");
                assert!(!series.contains("account="), "{series} at start");
            }
        } else {
            assert_eq!(samples.len(), pool.len(), "one series per pool token: {samples:?}");
            for (series, value) in &samples {
                assert!(series.contains("account=\""), "{series}");
                assert!((364.0..=366.0).contains(value), "{series} {value}");
            }
        }
    }
    for token in &pool {
        assert!(!metrics.contains(token.as_str()), "a token in the metrics");
    }
}

#[tokio::test]
async fn an_undecodable_upload_logs_one_warning_of_ours_and_nothing_of_the_decoder() {
    let started = Started::new(&[]);
    let client = reqwest::Client::new();
    // Bytes no container claims, and an ID3 tag followed by junk the decoder skips.
    let uploads: [(&str, Vec<u8>); 2] = [
        ("noise.mp3", b"not audio at all ".repeat(200)),
        (
            "tagged.mp3",
            [
                &b"ID3\x04\x00\x00\x00\x00\x00\x00"[..],
                &b"junk after the tag, RIFF WAVE fLaC OggS".repeat(20),
            ]
            .concat(),
        ),
    ];
    for (name, bytes) in uploads {
        let form = reqwest::multipart::Form::new()
            .text("model", "whisper-1")
            .part("file", reqwest::multipart::Part::bytes(bytes).file_name(name));
        let response = client
            .post(format!("http://{}/v1/audio/transcriptions", started.addr))
            .bearer_auth("upload-token")
            .multipart(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
    }
    let requests = |lines: &[String]| {
        lines
            .iter()
            .filter(|line| line.contains("path=/v1/audio/transcriptions"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while requests(&started.lines()) < 2 {
        assert!(Instant::now() < deadline, "{:#?}", started.lines());
        std::thread::sleep(Duration::from_millis(20));
    }
    let lines = started.lines();
    let warnings: Vec<&String> = lines.iter().filter(|line| line.contains(" WARN ")).collect();
    assert_eq!(warnings.len(), 2, "one warning per upload: {lines:#?}");
    for warning in warnings {
        assert!(warning.contains("not decodable audio"), "{warning}");
        assert!(warning.contains("reason="), "{warning}");
    }
    assert!(
        !lines
            .iter()
            .any(|line| line.contains("symphonia") || line.contains(" ERROR ")),
        "{lines:#?}"
    );
}
