//! The server's command line: `--help` and `--version` answer and exit 0, an unknown flag is
//! a usage error (exit 2), `--config` naming a file that is not there stops the server at start
//! with a message naming the file, and a port in use stops it with one line saying so.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output, Stdio};

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
