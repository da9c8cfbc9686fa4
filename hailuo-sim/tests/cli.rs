//! The `hailuo-sim` binary's command line: usage and version exit 0, a bad flag or value is
//! clap's error with exit code 2, on `--port 0` it names the port it listens on, a port in use
//! is one line and exit code 1, and logs to a pipe carry no colour codes.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn hailuo_sim(args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_hailuo-sim")).args(args).output()
}

#[test]
fn help_prints_the_usage_and_every_option() -> TestResult {
    let output = hailuo_sim(&["--help"])?;
    assert_eq!(output.status.code(), Some(0));
    let usage = String::from_utf8(output.stdout)?;
    assert!(usage.contains("Usage: hailuo-sim"), "{usage}");
    for option in [
        "--host",
        "--port",
        "--chunk-delay-ms",
        "--chunk-chars",
        "--tear-pause-us",
        "--version",
    ] {
        assert!(usage.contains(option), "{option} missing from {usage}");
    }
    assert!(usage.contains("[default: 8100]"), "{usage}");
    Ok(())
}

#[test]
fn version_prints_the_crate_version() -> TestResult {
    let output = hailuo_sim(&["--version"])?;
    assert_eq!(output.status.code(), Some(0));
    let version = String::from_utf8(output.stdout)?;
    assert_eq!(version.trim(), format!("hailuo-sim {}", env!("CARGO_PKG_VERSION")));
    Ok(())
}

/// Runs `hailuo-sim` with `args`, which it must refuse as clap does (exit code 2); its stderr.
fn refused(args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = hailuo_sim(args)?;
    assert_eq!(output.status.code(), Some(2), "{args:?}");
    Ok(String::from_utf8(output.stderr)?)
}

#[test]
fn an_unknown_flag_is_refused_with_exit_code_2() -> TestResult {
    let error = refused(&["--no-such-flag"])?;
    assert!(error.contains("unexpected argument '--no-such-flag'"), "{error}");
    Ok(())
}

#[test]
fn a_bad_value_is_refused_with_exit_code_2() -> TestResult {
    for args in [["--port", "eighty"], ["--chunk-chars", "0"], ["--host", "localhost:1"]] {
        let error = refused(&args)?;
        assert!(error.contains("invalid value"), "{args:?}: {error}");
    }
    Ok(())
}

#[test]
fn on_port_zero_it_names_the_port_it_listens_on() -> TestResult {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hailuo-sim"))
        .args(["--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut line = String::new();
    let read = match child.stdout.take() {
        Some(stdout) => BufReader::new(stdout).read_line(&mut line),
        None => Ok(0),
    };
    child.kill()?;
    child.wait()?;
    read?;
    let port = line
        .trim()
        .strip_prefix("hailuo-sim listening on http://127.0.0.1:")
        .ok_or_else(|| format!("unexpected first line {line:?}"))?;
    assert_ne!(port.parse::<u16>()?, 0, "{line}");
    Ok(())
}

#[test]
fn a_port_in_use_is_said_in_one_line_with_exit_code_1() -> TestResult {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = taken.local_addr()?.port().to_string();
    let output = hailuo_sim(&["--port", &port])?;
    let error = String::from_utf8(output.stderr)?;
    assert_eq!(output.status.code(), Some(1), "{error}");
    assert_eq!(error.lines().count(), 1, "{error}");
    assert!(
        error.starts_with(&format!("hailuo-sim: port {port} is in use")),
        "{error}"
    );
    assert!(!error.contains("Os {"), "{error}");
    Ok(())
}

#[test]
fn logs_to_a_pipe_have_no_colour_codes() -> TestResult {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hailuo-sim"))
        .args(["--port", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    // The server logs that it listens as soon as it starts; the reader is left behind if it
    // never does, and the child killed either way.
    let (sent, received) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let read = BufReader::new(stderr).read_line(&mut line).map(|_| line);
        let _ = sent.send(read);
    });
    let line = received.recv_timeout(Duration::from_secs(30));
    child.kill()?;
    child.wait()?;
    let line = line??;
    assert!(line.contains("INFO"), "{line:?}");
    assert!(!line.contains('\u{1b}'), "colour codes in {line:?}");
    Ok(())
}
