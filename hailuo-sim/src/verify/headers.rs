//! The browser headers every request carries (protocol §1.1): `Origin`, `Referer`, the
//! profile's fingerprint headers, `Accept` on a stream, and the Sentry pair.

use poem::Request;

use super::rejection::Rejection;
use crate::profile::Profile;

/// Checks the browser headers: `Origin`, `Referer`, every profile header, the Sentry pair, and
/// `Accept` when the endpoint streams.
pub(crate) fn check_browser_headers(
    req: &Request,
    profile: &Profile,
    referer: &str,
    event_stream: bool,
) -> Result<(), Rejection> {
    expect_header(req, "Origin", &profile.origin)?;
    expect_header(req, "Referer", referer)?;
    for (name, value) in &profile.headers {
        expect_header(req, name, value)?;
    }
    if event_stream {
        let accept = req.header("Accept").unwrap_or("");
        if !accept.contains("text/event-stream") {
            return Err(Rejection::bad_parameter(format!(
                "header Accept={accept:?}, a streaming endpoint expects text/event-stream"
            )));
        }
    }
    check_sentry(req, profile)
}

fn expect_header(req: &Request, name: &str, expected: &str) -> Result<(), Rejection> {
    match req.header(name) {
        Some(value) if value == expected => Ok(()),
        Some(value) => Err(Rejection::bad_parameter(format!(
            "header {name}={value:?}, expected {expected:?}"
        ))),
        None => Err(Rejection::bad_parameter(format!(
            "header {name} missing, expected {expected:?}"
        ))),
    }
}

/// `Sentry-Trace: <32 hex>-<16 hex>-<0|1>`; `Baggage` names the profile's release and key and,
/// when it carries a trace id, the same one.
fn check_sentry(req: &Request, profile: &Profile) -> Result<(), Rejection> {
    let trace = req.header("Sentry-Trace").unwrap_or("");
    let parts: Vec<&str> = trace.split('-').collect();
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let well_formed = parts.len() == 3 && is_hex(parts[0], 32) && is_hex(parts[1], 16) && matches!(parts[2], "0" | "1");
    if !well_formed {
        return Err(Rejection::bad_parameter(format!(
            "header Sentry-Trace={trace:?}, expected <32 hex>-<16 hex>-<0|1>"
        )));
    }
    let baggage = req.header("Baggage").unwrap_or("");
    let entries: Vec<&str> = baggage.split(',').map(str::trim).collect();
    for expected in [
        format!("sentry-release={}", profile.sentry_release),
        format!("sentry-public_key={}", profile.sentry_public_key),
    ] {
        if !entries.contains(&expected.as_str()) {
            return Err(Rejection::bad_parameter(format!(
                "header Baggage={baggage:?} lacks {expected:?}"
            )));
        }
    }
    if let Some(trace_id) = entries.iter().find_map(|e| e.strip_prefix("sentry-trace_id="))
        && trace_id != parts[0]
    {
        return Err(Rejection::bad_parameter(format!(
            "Baggage trace id {trace_id} differs from Sentry-Trace {}",
            parts[0]
        )));
    }
    Ok(())
}

/// The `Sentry-Trace` trace id (its first 32 hex digits), for the freshness check.
pub(crate) fn sentry_trace_id(req: &Request) -> Option<String> {
    req.header("Sentry-Trace")
        .and_then(|t| t.split('-').next())
        .map(str::to_owned)
}
