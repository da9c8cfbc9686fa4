//! `hailuo-free-api doctor`, the real binary, against a simulator started by each test: every
//! step passes on a simulator that expects what the gateway sends; a simulator expecting
//! another profile, a dead token, an unreachable host, an upstream failing or breaking off each
//! fail a named step with their hint and exit 1; a conversation made is deleted whatever its
//! answer did; the token's expiry is printed; the token itself never is.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Stdio;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hailuo_free_api::config::Dialect;
use hailuo_sim::{Fault, SimConfig, Simulator};

/// What a run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The line of the report whose label is `label`.
    fn line(&self, label: &str) -> &str {
        self.stdout
            .lines()
            .find(|line| line.split("  ").next() == Some(label) || line.starts_with(&format!("{label} ")))
            .unwrap_or_else(|| panic!("no `{label}` line in:\n{}", self.stdout))
    }

    fn shows(&self, secret: &str) -> bool {
        self.stdout.contains(secret) || self.stderr.contains(secret)
    }
}

/// The steps' labels, in order.
const STEPS: [&str; 6] = ["reach", "register", "user info", "chat", "answer", "delete"];

/// Runs `hailuo-free-api doctor ARGS` with, of the `HAILUO_*` variables, only `env`.
async fn doctor(env: &[(&str, &str)], args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_hailuo-free-api"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HAILUO_") {
            command.env_remove(name);
        }
    }
    let output = command
        .arg("doctor")
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("the server binary runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A JWT-shaped token whose payload names `exp` (the header and signature are not read).
fn jwt_with_exp(exp: u64) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp},"user":{{"id":"doctor"}}}}"#)),
        URL_SAFE_NO_PAD.encode("not-a-real-signature")
    )
}

#[tokio::test]
async fn every_step_passes_on_the_simulator_and_the_token_never_shows() {
    const TOKEN: &str = "doctor-token-5f1e9a";
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let run = doctor(&[("HAILUO_TOKEN", TOKEN)], &["--base-url", &sim.base_url()]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    for step in STEPS {
        assert!(run.line(step).contains(" ok: "), "{step}:\n{}", run.stdout);
    }
    let answer = Simulator::answer_for("Hi\n");
    assert!(run.line("answer").contains(answer.trim()), "{}", run.stdout);
    assert!(
        run.line("register").contains("device id of 18 characters"),
        "{}",
        run.stdout
    );
    assert!(run.line("token").ends_with("no expiry in the token"), "{}", run.stdout);
    assert!(run.line("result").contains("all 6 steps passed"), "{}", run.stdout);
    assert!(!run.shows(TOKEN), "the token shows:\n{}{}", run.stdout, run.stderr);

    assert_eq!(sim.violations(), Vec::<String>::new(), "the doctor spoke the protocol");
    assert_eq!(sim.accounts().registrations(TOKEN), 1);
    assert_eq!(sim.accounts().user_info_calls(TOKEN), 1);
    assert_eq!(sim.conversations().chats().len(), 1);
    assert!(
        sim.conversations().live(TOKEN).is_empty(),
        "the conversation was deleted"
    );
    assert_eq!(sim.conversations().deleted().len(), 1);
}

#[tokio::test]
async fn a_simulator_expecting_another_version_code_fails_registration_with_the_profile_hint() {
    const TOKEN: &str = "doctor-token-drift-77c2";
    let mut profile = Dialect::Hailuoai.profile().unwrap();
    profile.values.insert("version_code".into(), "99999".into());
    let config = SimConfig {
        profile: Some(profile),
        ..SimConfig::default()
    };
    let sim = Simulator::start(config).await.unwrap();
    let run = doctor(&[], &["--token", TOKEN, "--base-url", &sim.base_url()]).await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.line("reach").contains(" ok: "), "{}", run.stdout);
    let register = run.line("register");
    assert!(register.contains("FAILED"), "{}", run.stdout);
    assert!(register.contains("参数错误"), "the upstream's message: {}", run.stdout);
    assert!(register.contains("[upstream.profile]"), "{}", run.stdout);
    for step in &STEPS[2..] {
        assert!(run.line(step).ends_with("skipped"), "{step}:\n{}", run.stdout);
    }
    assert!(
        run.line("result").contains("failed at register: the profile drifted"),
        "{}",
        run.stdout
    );
    assert!(!run.shows(TOKEN), "{}{}", run.stdout, run.stderr);
    assert_eq!(sim.conversations().chats().len(), 0, "nothing sent past the failure");

    // The doctor reads the settings as the server does: a config file naming the profile the
    // simulator expects passes every step.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("profile.toml");
    std::fs::write(&file, "[upstream.profile]\nversion_code = \"99999\"\n").unwrap();
    let config = file.to_str().expect("a UTF-8 path");
    let run = doctor(
        &[("HAILUO_TOKEN", TOKEN)],
        &["--config", config, "--base-url", &sim.base_url()],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.line("upstream").contains("version_code 99999"), "{}", run.stdout);
}

#[tokio::test]
async fn a_dead_token_fails_registration_with_the_token_hint() {
    const TOKEN: &str = "doctor-token-dead-31b0";
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.accounts().kill_token(TOKEN);
    let run = doctor(&[("HAILUO_TOKEN", TOKEN)], &["--base-url", &sim.base_url()]).await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    let register = run.line("register");
    assert!(register.contains("FAILED"), "{}", run.stdout);
    assert!(register.contains("登录已失效"), "{}", run.stdout);
    assert!(register.contains("the token is dead or expired"), "{}", run.stdout);
    assert!(
        run.line("result")
            .contains("failed at register: the token is dead or expired"),
        "{}",
        run.stdout
    );
    assert!(run.line("delete").ends_with("skipped"), "{}", run.stdout);
    assert!(!run.shows(TOKEN), "{}{}", run.stdout, run.stderr);
}

#[tokio::test]
async fn an_unreachable_base_url_is_a_network_failure_at_the_first_step() {
    const TOKEN: &str = "doctor-token-offline-c4d8";
    // A loopback port nobody listens on: bind one, note it, let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base_url = format!("http://127.0.0.1:{port}");
    let run = doctor(&[("HAILUO_TOKEN", TOKEN)], &["--base-url", &base_url]).await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    let reach = run.line("reach");
    assert!(reach.contains("FAILED"), "{}", run.stdout);
    assert!(reach.to_lowercase().contains("connection refused"), "{}", run.stdout);
    assert!(reach.contains("network failure"), "{}", run.stdout);
    for step in &STEPS[1..] {
        assert!(run.line(step).ends_with("skipped"), "{step}:\n{}", run.stdout);
    }
    assert!(
        run.line("result").contains("failed at reach: the network"),
        "{}",
        run.stdout
    );
    assert!(!run.shows(TOKEN), "{}{}", run.stdout, run.stderr);
}

#[tokio::test]
async fn an_upstream_failing_on_its_side_fails_the_chat_step_as_down() {
    const TOKEN: &str = "doctor-token-5xx-19fa";
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.faults().inject(Fault::ServerError);
    let run = doctor(&[("HAILUO_TOKEN", TOKEN)], &["--base-url", &sim.base_url()]).await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.line("user info").contains(" ok: "), "{}", run.stdout);
    let chat = run.line("chat");
    assert!(chat.contains("FAILED") && chat.contains("HTTP 500"), "{}", run.stdout);
    assert!(
        run.line("result").contains("failed at chat: the upstream is down"),
        "{}",
        run.stdout
    );
    assert!(run.line("answer").ends_with("skipped"), "{}", run.stdout);
    assert!(
        run.line("delete").ends_with("skipped"),
        "no conversation was made: {}",
        run.stdout
    );
}

#[tokio::test]
async fn an_answer_broken_off_fails_its_step_and_its_conversation_is_still_deleted() {
    const TOKEN: &str = "doctor-token-cut-8e23";
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    sim.faults().inject(Fault::CutStream { after_events: 1 });
    let run = doctor(&[("HAILUO_TOKEN", TOKEN)], &["--base-url", &sim.base_url()]).await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.line("chat").contains(" ok: "), "{}", run.stdout);
    assert!(run.line("answer").contains("FAILED"), "{}", run.stdout);
    assert!(run.line("delete").contains(" ok: "), "{}", run.stdout);
    assert!(run.line("result").contains("failed at answer"), "{}", run.stdout);
    assert_eq!(sim.conversations().chats().len(), 1);
    assert!(sim.conversations().live(TOKEN).is_empty(), "nothing left upstream");
}

#[tokio::test]
async fn a_jwt_token_has_its_expiry_printed_and_never_itself() {
    // 2100-01-01T00:00:00Z.
    let token = jwt_with_exp(4_102_444_800);
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let run = doctor(&[], &["--token", &token, "--base-url", &sim.base_url()]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let line = run.line("token");
    assert!(line.contains("expires 2100-01-01T00:00:00Z ("), "{}", run.stdout);
    assert!(line.ends_with(" days left)"), "{}", run.stdout);
    assert!(!run.shows(&token), "{}{}", run.stdout, run.stderr);
    // Nor the parts of it that are secret.
    let signature = token.rsplit('.').next().unwrap();
    assert!(!run.shows(signature), "{}{}", run.stdout, run.stderr);
}

#[tokio::test]
async fn a_missing_token_is_a_usage_error_and_help_hides_the_variable_s_value() {
    let run = doctor(&[], &[]).await;
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("--token"), "{}", run.stderr);

    const TOKEN: &str = "doctor-token-help-0e6a";
    let run = doctor(&[("HAILUO_TOKEN", TOKEN)], &["--help"]).await;
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("HAILUO_TOKEN"), "{}", run.stdout);
    assert!(!run.shows(TOKEN), "{}", run.stdout);
}

#[tokio::test]
async fn a_token_typed_without_its_option_is_not_echoed_by_the_usage_error() {
    const TOKEN: &str = "doctor-token-stray-9d41c7";
    let run = doctor(&[], &[TOKEN]).await;
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("unexpected argument"), "{}", run.stderr);
    assert!(!run.shows(TOKEN), "{}", run.stderr);
    let run = doctor(&[], &["--token", TOKEN, "--base-url", "ftp://x"]).await;
    assert_eq!(run.code, Some(2), "{}{}", run.stdout, run.stderr);
    assert!(!run.shows(TOKEN), "{}", run.stderr);
}

#[tokio::test]
async fn every_dialect_passes_on_a_simulator_speaking_it_and_fails_on_one_speaking_another() {
    const TOKEN: &str = "doctor-token-dialects-3b9d";
    for dialect in Dialect::ALL {
        let sim = Simulator::start(SimConfig::on(dialect)).await.unwrap();
        let run = doctor(
            &[("HAILUO_TOKEN", TOKEN)],
            &["--dialect", dialect.name(), "--base-url", &sim.base_url()],
        )
        .await;
        assert_eq!(run.code, Some(0), "{}: {}{}", dialect.name(), run.stdout, run.stderr);
        assert!(
            run.line("upstream").contains(&format!("({} dialect", dialect.name())),
            "{}",
            run.stdout
        );
        assert_eq!(
            sim.violations(),
            Vec::<String>::new(),
            "{} spoken cleanly",
            dialect.name()
        );
        assert_eq!(sim.conversations().deleted().len(), 1);
    }

    let intl = Simulator::start(SimConfig::on(Dialect::HailuoIntl)).await.unwrap();
    let run = doctor(
        &[("HAILUO_TOKEN", TOKEN)],
        &["--dialect", "hailuoai", "--base-url", &intl.base_url()],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(run.line("register").contains("FAILED"), "{}", run.stdout);
    assert!(run.line("result").contains("the profile drifted"), "{}", run.stdout);

    let run = doctor(&[("HAILUO_TOKEN", TOKEN)], &["--dialect", "klingon"]).await;
    assert_eq!(run.code, Some(2), "a usage error: {}", run.stderr);
    assert!(run.stderr.contains("hailuoai, hailuo-intl"), "{}", run.stderr);
}

#[tokio::test]
async fn an_unknown_setting_stops_the_doctor_as_it_stops_the_server() {
    const TOKEN: &str = "doctor-token-unknown-setting";
    let run = doctor(
        &[
            ("HAILUO_TOKEN", TOKEN),
            ("HAILUO_UPSTREAM__BASE_ULR", "http://127.0.0.1:9"),
        ],
        &[],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains(
            "unknown setting `upstream.base_ulr` (from HAILUO_UPSTREAM__BASE_ULR); did you mean `upstream.base_url`?"
        ),
        "{}",
        run.stderr
    );
    assert!(!run.shows(TOKEN), "{}{}", run.stdout, run.stderr);
}
