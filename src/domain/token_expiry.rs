//! When an account token expires, as the token itself says: the `exp` claim of the JWT the
//! web app issues as `_token`, read without verifying the signature. The gateway holds no key
//! and the upstream alone judges a token; the expiry is a forecast for operators (the
//! `/token/check` answer, the `hailuo.account.token_expiry_days` gauge, `doctor`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use opentelemetry::KeyValue;

use super::chat::AccountToken;
use super::metrics::instruments;

/// A token longer than this is not read (a JWT of the web app is a few hundred bytes).
const MAX_TOKEN_LEN: usize = 8 * 1024;
/// The expiries remembered; past this many tokens the memory starts afresh.
const MAX_REMEMBERED: usize = 4096;
/// Seconds in a day.
const DAY_SECS: f64 = 86_400.0;

/// base64url, with or without its `=` padding (JWTs leave it out; some encoders keep it).
const BASE64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The `exp` claim of `token` (Unix seconds) when it is a JWT that has one: three
/// dot-separated parts whose second is base64url of a JSON object with a numeric `exp`.
/// Anything else, a token that is not a JWT included, is `None`. Nothing is verified.
pub fn expires_at(token: &str) -> Option<i64> {
    let claims = claims(token)?;
    let exp = claims.as_object()?.get("exp")?;
    // NumericDate may carry a fraction of a second.
    exp.as_i64()
        .or_else(|| exp.as_f64().filter(|s| s.is_finite()).map(|s| s.floor() as i64))
}

/// The account's user id the JWT `token` names in its payload's `user.id` (text or a number),
/// read without verifying anything; `None` when it is no JWT or names none.
pub fn user_id(token: &str) -> Option<String> {
    let claims = claims(token)?;
    match claims.get("user")?.get("id")? {
        serde_json::Value::String(id) if !id.is_empty() => Some(id.clone()),
        serde_json::Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

/// The payload of `token` when it is a JWT: three dot-separated parts whose second is
/// base64url of a JSON object.
fn claims(token: &str) -> Option<serde_json::Value> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let mut parts = token.split('.');
    let (Some(_header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    // A standard base64 payload (`+`, `/`) is no JWT, but costs nothing to accept.
    let bytes = BASE64URL
        .decode(payload)
        .or_else(|_| general_purpose::STANDARD_NO_PAD.decode(payload.trim_end_matches('=')))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims.is_object().then_some(claims)
}

/// Days from `now` (Unix seconds) until `expires_at`: negative once it has passed.
pub fn days_left(expires_at: i64, now: i64) -> f64 {
    (expires_at.saturating_sub(now)) as f64 / DAY_SECS
}

/// The current time in Unix seconds.
pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
}

/// What is remembered of one token: its expiry and its metric label.
#[derive(Clone)]
struct Known {
    expires_at: Option<i64>,
    account: Option<KeyValue>,
}

/// The expiry of `token` (read once per token, then remembered), recording the days left
/// in the `hailuo.account.token_expiry_days` gauge under the token's fingerprint when it
/// has one. The gateway calls this wherever it learns of a token: a token check, and each
/// account a request runs on.
pub fn observe(token: &AccountToken) -> Option<i64> {
    static KNOWN: OnceLock<Mutex<HashMap<AccountToken, Known>>> = OnceLock::new();
    let known = KNOWN.get_or_init(Mutex::default);
    let remembered = known
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .get(token)
        .cloned();
    let entry = remembered.unwrap_or_else(|| {
        let expires_at = expires_at(token.expose());
        let entry = Known {
            expires_at,
            // The fingerprint (an HMAC) only for tokens that have a gauge.
            account: expires_at.map(|_| KeyValue::new("account", token.fingerprint())),
        };
        let mut known = known.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if known.len() >= MAX_REMEMBERED {
            known.clear();
        }
        known.insert(token.clone(), entry.clone());
        entry
    });
    if let (Some(at), Some(account)) = (entry.expires_at, entry.account) {
        instruments()
            .token_expiry_days
            .record(days_left(at, now_secs()), &[account]);
    }
    entry.expires_at
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A JWT-shaped token of `claims` (the header and signature are not read).
    fn jwt(claims: &str) -> String {
        let engine = general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            engine.encode(r#"{"alg":"HS256","typ":"JWT"}"#),
            engine.encode(claims),
            engine.encode("signature")
        )
    }

    #[test]
    fn the_user_id_is_the_payloads_user_id_as_text() {
        assert_eq!(user_id(&jwt(r#"{"user":{"id":"3123"}}"#)).as_deref(), Some("3123"));
        assert_eq!(user_id(&jwt(r#"{"user":{"id":42},"exp":1}"#)).as_deref(), Some("42"));
        assert_eq!(user_id(&jwt(r#"{"user":{"id":""}}"#)), None);
        assert_eq!(user_id(&jwt(r#"{"exp":1}"#)), None);
        assert_eq!(user_id("token-a"), None);
    }

    #[test]
    fn a_token_that_is_not_a_jwt_has_no_expiry() {
        assert_eq!(expires_at("token-a"), None);
        assert_eq!(expires_at(""), None);
        assert_eq!(expires_at("a.b"), None, "two parts");
        assert_eq!(
            expires_at(&format!("{}.extra", jwt(r#"{"exp":1}"#))),
            None,
            "four parts"
        );
    }

    #[test]
    fn a_payload_that_is_not_base64url_json_has_no_expiry() {
        assert_eq!(expires_at("aGVhZA.***.c2ln"), None, "not base64");
        let not_json = general_purpose::URL_SAFE_NO_PAD.encode("exp=1700000000");
        assert_eq!(expires_at(&format!("aGVhZA.{not_json}.c2ln")), None, "not JSON");
        let array = general_purpose::URL_SAFE_NO_PAD.encode("[1700000000]");
        assert_eq!(expires_at(&format!("aGVhZA.{array}.c2ln")), None, "not an object");
    }

    #[test]
    fn claims_without_a_numeric_exp_have_no_expiry() {
        assert_eq!(expires_at(&jwt(r#"{"user":{"id":"1"},"iat":1700000000}"#)), None);
        assert_eq!(
            expires_at(&jwt(r#"{"exp":"1700000000"}"#)),
            None,
            "a string is no NumericDate"
        );
        assert_eq!(expires_at(&jwt(r#"{"exp":null}"#)), None);
    }

    #[test]
    fn the_exp_claim_is_the_expiry_in_unix_seconds() {
        assert_eq!(expires_at(&jwt(r#"{"exp":1798761600,"iat":1}"#)), Some(1_798_761_600));
        assert_eq!(expires_at(&jwt(r#"{"exp":1798761600.75}"#)), Some(1_798_761_600));
        // Padding kept, and characters of the URL-safe alphabet (`-`, `_`).
        let claims = r#"{"exp":1798761600,"name":"??>>"}"#;
        let padded = format!("aGVhZA.{}.c2ln", general_purpose::URL_SAFE.encode(claims));
        assert_eq!(expires_at(&padded), Some(1_798_761_600));
    }

    #[test]
    fn days_left_count_down_and_go_negative_once_passed() {
        assert!((days_left(86_400 * 3, 86_400) - 2.0).abs() < 1e-9);
        assert!((days_left(0, 43_200) + 0.5).abs() < 1e-9);
    }

    #[test]
    fn an_observed_token_keeps_its_expiry() {
        let token = AccountToken::new(jwt(r#"{"exp":1798761600}"#));
        assert_eq!(observe(&token), Some(1_798_761_600));
        assert_eq!(observe(&token), Some(1_798_761_600), "remembered");
        assert_eq!(observe(&AccountToken::new("plain")), None);
    }
}
