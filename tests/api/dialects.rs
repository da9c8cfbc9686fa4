//! The upstream dialects: a simulator playing one refuses a gateway speaking another, and the
//! profile's overrides reach the wire.

use std::io::Write as _;

use hailuo_free_api::config::{Dialect, Settings};
use hailuo_sim::SimConfig;

use crate::helpers::*;

#[tokio::test]
async fn a_simulator_expecting_hailuo_intl_refuses_a_gateway_speaking_hailuoai() -> TestResult {
    assert_refused(Dialect::HailuoIntl, Dialect::Hailuoai).await
}

#[tokio::test]
async fn a_simulator_expecting_minimax_agent_refuses_a_gateway_speaking_hailuo_intl() -> TestResult {
    assert_refused(Dialect::MinimaxAgent, Dialect::HailuoIntl).await
}

/// A gateway speaking `spoken` to a simulator playing `expected`: refused, the query keys a
/// violation, no chat through.
async fn assert_refused(expected: Dialect, spoken: Dialect) -> TestResult {
    let app = spawn_app_with_sim(SimConfig::on(expected), |settings| {
        let other = Settings::defaults_on(spoken).expect("the embedded defaults parse");
        settings.upstream.dialect = other.upstream.dialect;
        settings.upstream.profile = other.upstream.profile;
    })
    .await;
    let response = app.chat("token-a", &ask("hi")).await;
    assert_ne!(response.status(), 200, "{}", response.text().await?);
    let violations = app.sim.violations();
    assert!(
        violations.iter().any(|violation| violation.contains("query keys")),
        "{violations:#?}"
    );
    assert!(app.last_chat().is_none(), "no chat got through");
    Ok(())
}

#[tokio::test]
async fn each_dialect_sends_its_own_origin_and_referer() -> TestResult {
    for (dialect, origin) in [
        (Dialect::Hailuoai, "https://hailuoai.com"),
        (Dialect::HailuoIntl, "https://www.hailuo.ai"),
        (Dialect::MinimaxAgent, "https://agent.minimaxi.com"),
    ] {
        let app = spawn_app_on(dialect).await;
        app.chat_ok("token-a", &ask("hi")).await;
        let record = app.last_chat().expect("the upstream got the chat");
        assert_eq!(record.referer, format!("{origin}/"), "{dialect}");
        app.assert_protocol_clean();
    }
    Ok(())
}

/// Settings loaded as the server loads them, from the embedded defaults and `file`.
fn load_with_file(text: &str) -> Settings {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(text.as_bytes()).expect("written");
    Settings::load(Some(file.path())).expect("the settings load")
}

#[tokio::test]
async fn a_profile_override_in_a_file_reaches_the_wire() -> TestResult {
    let loaded = load_with_file(
        r#"
[upstream]
dialect = "hailuo-intl"

[upstream.profile]
version_code = "22305"
query = ["device_platform", "biz_id", "app_id", "version_code", "lang", "uuid", "device_id",
         "os_name", "browser_name", "cpu_core_num", "browser_language", "browser_platform",
         "screen_width", "screen_height", "screen_dpr", "unix"]
screen_dpr = "2"

[upstream.profile.headers]
"X-Client-Build" = "2026.12"
"#,
    );
    assert_eq!(loaded.upstream.dialect, Dialect::HailuoIntl);
    assert_eq!(loaded.upstream.base_url.as_str(), "https://www.hailuo.ai/");
    let profile = loaded.upstream.profile.clone();
    assert_eq!(profile.value("version_code"), Some("22305"));
    assert_eq!(profile.value("biz_id"), Some("2"), "the dialect's other values stay");
    assert!(profile.headers.contains_key("User-Agent"), "and its headers");

    let expecting = SimConfig {
        profile: Some(profile.clone()),
        ..SimConfig::on(Dialect::HailuoIntl)
    };
    let app = spawn_app_with_sim(expecting.clone(), |settings| settings.upstream.profile = profile).await;
    app.chat_ok("token-a", &ask("hi")).await;
    app.assert_protocol_clean();

    // The same simulator sees the embedded profile as a violation: the override is what it checks.
    let unchanged = spawn_app_with_sim(expecting, |_| {}).await;
    let response = unchanged.chat("token-a", &ask("hi")).await;
    assert_ne!(response.status(), 200);
    assert!(!unchanged.sim.violations().is_empty());
    Ok(())
}

#[test]
fn an_unknown_dialect_fails_at_start_naming_its_key() {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(b"[upstream]\ndialect = \"hailuo-video\"\n")
        .expect("written");
    let error = Settings::load(Some(file.path()))
        .expect_err("an unknown dialect")
        .to_string();
    assert!(error.contains("`upstream.dialect`"), "{error}");
    assert!(error.contains("hailuo-intl"), "says what is accepted: {error}");
    assert!(error.contains("minimax-agent"), "says what is accepted: {error}");
}
