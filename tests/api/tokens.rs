//! `/token/check`'s `expires_at` (a JWT's `exp`, absent for any other token) and the
//! `hailuo_account_token_expiry_days` gauge, by fingerprint, never the token.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hailuo_free_api::domain::chat::AccountToken;

use crate::helpers::{TestResult, ask, spawn_app};

/// A JWT-shaped token whose payload names `exp` and `id` (the simulator, in open mode, takes
/// any non-empty token; the signature is not read by anyone).
fn jwt(exp: i64, id: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(format!(r#"{{"exp":{exp},"user":{{"id":"{id}"}}}}"#)),
        URL_SAFE_NO_PAD.encode(format!("signature-of-{id}"))
    )
}

fn now_secs() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    i64::try_from(elapsed.as_secs()).unwrap()
}

#[tokio::test]
async fn a_jwt_token_check_answers_its_expiry_and_any_other_token_none() -> TestResult {
    let app = spawn_app().await;
    let token = jwt(4_102_444_800, "check-live");
    let live: serde_json::Value = app.check_token(&token).await.json().await?;
    assert_eq!(live, serde_json::json!({"live": true, "expires_at": 4_102_444_800_i64}));

    let dead_token = jwt(1_700_000_000, "check-dead");
    app.sim.accounts().kill_token(&dead_token);
    let dead: serde_json::Value = app.check_token(&dead_token).await.json().await?;
    assert_eq!(
        dead,
        serde_json::json!({"live": false, "expires_at": 1_700_000_000_i64}),
        "the expiry is the token's own, whatever the upstream says"
    );

    let plain: serde_json::Value = app.check_token("token-plain-8d1c").await.json().await?;
    assert_eq!(plain, serde_json::json!({"live": true}), "no expires_at field at all");
    app.assert_protocol_clean();
    Ok(())
}

#[tokio::test]
async fn the_expiry_gauge_counts_days_by_fingerprint_and_never_shows_the_token() -> TestResult {
    let app = spawn_app().await;
    let in_thirty_days = jwt(now_secs() + 30 * 86_400, "gauge-chat");
    app.chat_ok(&in_thirty_days, &ask("hello")).await;
    let label = format!(r#"account="{}""#, AccountToken::new(&in_thirty_days).fingerprint());
    let days = app
        .metric("hailuo_account_token_expiry_days", &label)
        .await
        .expect("a gauge for the account a request ran on");
    assert!((29.9..=30.0).contains(&days), "{days}");

    let expired = jwt(now_secs() - 2 * 86_400, "gauge-check");
    app.check_token(&expired).await;
    let label = format!(r#"account="{}""#, AccountToken::new(&expired).fingerprint());
    let days = app
        .metric("hailuo_account_token_expiry_days", &label)
        .await
        .expect("a gauge for a checked token");
    assert!((-2.01..=-1.99).contains(&days), "negative once passed: {days}");

    let body = app.get("/metrics").await.text().await?;
    for token in [&in_thirty_days, &expired] {
        assert!(!body.contains(token.as_str()), "a token shows in the metrics");
        let payload = token.split('.').nth(1).unwrap();
        assert!(!body.contains(payload), "a token's payload shows in the metrics");
    }
    Ok(())
}
