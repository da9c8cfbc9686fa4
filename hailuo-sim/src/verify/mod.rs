//! The simulator's own request checks: the `Yy` signature, the profile query string and the
//! browser headers of protocol sections 1 and 2. Written independently of the outbound adapter,
//! so that a mistake there shows up here as a violation instead of being shared.

use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest, Md5};
use poem::Request;

use crate::config::Profile;

/// How far `unix` may be from the simulator's clock, in milliseconds.
const UNIX_TOLERANCE_MS: u128 = 10 * 60 * 1000;

/// Why a request is refused: the envelope code and message the upstream answers, and the
/// protocol violation to record (none for a legitimate refusal such as a dead token).
#[derive(Clone, Debug)]
pub(crate) struct Rejection {
    /// Non-zero `statusInfo.code`.
    pub code: i64,
    /// `statusInfo.message`, Chinese like the upstream's.
    pub message: &'static str,
    /// What the client did wrong, when it did something wrong.
    pub violation: Option<String>,
}

impl Rejection {
    /// A refusal caused by a protocol violation.
    pub fn violation(code: i64, message: &'static str, what: impl Into<String>) -> Self {
        Self {
            code,
            message,
            violation: Some(what.into()),
        }
    }

    /// A request without a usable `Token` header.
    pub fn not_logged_in(what: impl Into<String>) -> Self {
        Self::violation(1001, "用户未登录", what)
    }

    /// A wrong `Yy` signature.
    pub fn bad_signature(what: impl Into<String>) -> Self {
        Self::violation(1002, "签名错误", what)
    }

    /// A `uuid`/`device_id` pair this token never registered.
    pub fn unknown_device(what: impl Into<String>) -> Self {
        Self::violation(1003, "设备未注册", what)
    }

    /// A device the upstream itself forgot: the legitimate `设备未注册`, not a violation.
    pub fn device_forgotten() -> Self {
        Self {
            code: 1003,
            message: "设备未注册",
            violation: None,
        }
    }

    /// A dead token: the legitimate "logged out" answer, not a violation.
    pub fn logged_out() -> Self {
        Self {
            code: 1004,
            message: "登录已失效，请重新登录",
            violation: None,
        }
    }

    /// A malformed query, header or body.
    pub fn bad_parameter(what: impl Into<String>) -> Self {
        Self::violation(1005, "参数错误", what)
    }
}

/// Lowercase hex MD5 of the UTF-8 bytes of `text`.
pub(crate) fn md5hex(text: impl AsRef<[u8]>) -> String {
    hex::encode(Md5::digest(text.as_ref()))
}

/// JavaScript's `encodeURIComponent`: every byte but `A-Z a-z 0-9 - _ . ! ~ * ' ( )` becomes
/// `%XX` with uppercase hex.
pub(crate) fn encode_uri_component(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        let kept = byte.is_ascii_alphanumeric()
            || matches!(byte, b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')');
        if kept {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The string a JSON request signs: `enc(fullUri) + "_" + body + md5hex(unix) + salt`, where
/// an absent body signs `{}`.
pub(crate) fn json_signed_string(full_uri: &str, body: &str, unix: &str, salt: &str) -> String {
    let body = if body.is_empty() { "{}" } else { body };
    format!("{}_{}{}{}", encode_uri_component(full_uri), body, md5hex(unix), salt)
}

/// `Yy` of a JSON request.
pub(crate) fn json_signature(full_uri: &str, body: &str, unix: &str, salt: &str) -> String {
    md5hex(json_signed_string(full_uri, body, unix, salt))
}

/// The signed fields of a chat message (protocol §2).
pub(crate) struct ChatSignedFields<'a> {
    /// `characterID`.
    pub character_id: &'a str,
    /// `msgContent`, as sent (line breaks are removed here).
    pub msg_content: &'a str,
    /// `chatID`.
    pub chat_id: &'a str,
    /// `form`, when sent.
    pub form: Option<&'a str>,
}

/// `Yy` of a chat message.
pub(crate) fn chat_signature(full_uri: &str, fields: &ChatSignedFields<'_>, unix: &str, salt: &str) -> String {
    let content: String = fields
        .msg_content
        .chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .collect();
    md5hex(format!(
        "{}_{}{}{}{}{}{}",
        encode_uri_component(full_uri),
        md5hex(fields.character_id),
        md5hex(content),
        md5hex(fields.chat_id),
        md5hex(fields.form.unwrap_or("")),
        md5hex(unix),
        salt
    ))
}

/// The signed fields of a voice message (protocol §2).
pub(crate) struct VoiceSignedFields<'a> {
    /// `characterID`.
    pub character_id: &'a str,
    /// `chatID`.
    pub chat_id: &'a str,
    /// The uploaded audio (only its first [`VOICE_SIGNED_BYTES`] bytes are signed).
    pub voice: &'a [u8],
}

/// How many leading bytes of `voiceBytes` the voice signature covers.
pub(crate) const VOICE_SIGNED_BYTES: usize = 1024;

/// `Yy` of a voice message:
/// `md5hex(enc(fullUri) + "_" + md5hex(characterID) + md5hex(chatID) + md5hex(head) + md5hex(unix) + salt)`
/// where `head` is the first 1,024 bytes of the audio.
pub(crate) fn voice_signature(full_uri: &str, fields: &VoiceSignedFields<'_>, unix: &str, salt: &str) -> String {
    let head = &fields.voice[..fields.voice.len().min(VOICE_SIGNED_BYTES)];
    md5hex(format!(
        "{}_{}{}{}{}{}",
        encode_uri_component(full_uri),
        md5hex(fields.character_id),
        md5hex(fields.chat_id),
        md5hex(head),
        md5hex(unix),
        salt
    ))
}

/// Splits off a path's own query: its first pairs must be exactly `own` keys, in order, with
/// non-empty values; what follows (after the joining `&`) is the common query.
pub(crate) fn strip_own_query<'q>(query: &'q str, own: &[&str]) -> Result<&'q str, Rejection> {
    let mut rest = query;
    for key in own {
        let (pair, tail) = rest.split_once('&').unwrap_or((rest, ""));
        match pair.split_once('=') {
            Some((sent, value)) if sent == *key && !value.is_empty() => rest = tail,
            _ => {
                return Err(Rejection::bad_parameter(format!(
                    "query {query:?} does not start with the path's own {own:?} (then the common query after &)"
                )));
            }
        }
    }
    Ok(rest)
}

/// The value of `key` in a query string, as sent.
pub(crate) fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(name, value)| (name == key).then_some(value))
}

/// What a request's query string says, once checked against the profile.
#[derive(Clone, Debug)]
pub(crate) struct ProfileQuery {
    /// `uuid`: the device's user id.
    pub uuid: String,
    /// `device_id`, absent only on device registration.
    pub device_id: Option<String>,
    /// `unix`, as sent.
    pub unix: String,
}

/// Checks that `query` is exactly the profile's keys, in order and with the profile's values,
/// with `device_id` present unless `registering`.
pub(crate) fn check_profile_query(
    query: &str,
    profile: &Profile,
    registering: bool,
) -> Result<ProfileQuery, Rejection> {
    let fixed = |key: &str| -> Option<&str> {
        Some(match key {
            "device_platform" => &profile.device_platform,
            "app_id" => &profile.app_id,
            "version_code" => &profile.version_code,
            "os_name" => &profile.os_name,
            "browser_name" => &profile.browser_name,
            "device_memory" => &profile.device_memory,
            "cpu_core_num" => &profile.cpu_core_num,
            "browser_language" => &profile.browser_language,
            "browser_platform" => &profile.browser_platform,
            "screen_width" => &profile.screen_width,
            "screen_height" => &profile.screen_height,
            _ => return None,
        })
    };
    let mut expected_keys = vec!["device_platform", "app_id", "version_code", "uuid"];
    if !registering {
        expected_keys.push("device_id");
    }
    expected_keys.extend([
        "os_name",
        "browser_name",
        "device_memory",
        "cpu_core_num",
        "browser_language",
        "browser_platform",
        "screen_width",
        "screen_height",
        "unix",
    ]);

    let pairs: Vec<(&str, &str)> = if query.is_empty() {
        Vec::new()
    } else {
        query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .collect()
    };
    let sent_keys: Vec<&str> = pairs.iter().map(|(key, _)| *key).collect();
    if sent_keys != expected_keys {
        return Err(Rejection::bad_parameter(format!(
            "query keys {sent_keys:?}, expected exactly {expected_keys:?}"
        )));
    }

    let mut parsed = ProfileQuery {
        uuid: String::new(),
        device_id: None,
        unix: String::new(),
    };
    for (key, value) in pairs {
        match key {
            "uuid" => parsed.uuid = value.to_owned(),
            "device_id" => parsed.device_id = Some(value.to_owned()),
            "unix" => parsed.unix = value.to_owned(),
            _ => {
                if let Some(expected) = fixed(key)
                    && value != expected
                {
                    return Err(Rejection::bad_parameter(format!(
                        "query {key}={value:?}, the profile says {expected:?}"
                    )));
                }
            }
        }
    }
    if parsed.uuid.is_empty() {
        return Err(Rejection::bad_parameter("query uuid is empty"));
    }
    if parsed.device_id.as_deref() == Some("") {
        return Err(Rejection::bad_parameter("query device_id is empty"));
    }
    check_unix(&parsed.unix)?;
    Ok(parsed)
}

/// `unix`: 13 digits, whole seconds (ends in `000`), within ten minutes of now.
fn check_unix(unix: &str) -> Result<(), Rejection> {
    if unix.len() != 13 || !unix.bytes().all(|b| b.is_ascii_digit()) || !unix.ends_with("000") {
        return Err(Rejection::bad_parameter(format!(
            "query unix={unix:?} is not 13 digits of whole-second milliseconds"
        )));
    }
    let sent: u128 = unix
        .parse()
        .map_err(|_| Rejection::bad_parameter(format!("query unix={unix:?}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    if sent.abs_diff(now) > UNIX_TOLERANCE_MS {
        return Err(Rejection::bad_parameter(format!(
            "query unix={unix} is more than 10 minutes from now ({now})"
        )));
    }
    Ok(())
}

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

/// A `uuid` as the web app makes them: 36 characters, hex digits and dashes in 8-4-4-4-12.
pub(crate) fn is_dashed_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A conversation id: 18 or more digits.
pub(crate) fn is_conversation_id(text: &str) -> bool {
    text.len() >= 18 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_json_signature_matches_the_protocol_worked_example() {
        let full_uri = "/v1/api/user/info?device_platform=web&unix=1700000000000";
        let expected_string = format!(
            "%2Fv1%2Fapi%2Fuser%2Finfo%3Fdevice_platform%3Dweb%26unix%3D1700000000000_{{}}{}ooui",
            md5hex("1700000000000")
        );
        assert_eq!(
            json_signed_string(full_uri, "", "1700000000000", "ooui"),
            expected_string
        );
        assert_eq!(
            json_signature(full_uri, "", "1700000000000", "ooui"),
            md5hex(&expected_string)
        );
        assert_eq!(md5hex(""), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn encode_uri_component_keeps_only_the_javascript_unreserved_set() {
        assert_eq!(encode_uri_component("aZ09-_.!~*'()"), "aZ09-_.!~*'()");
        assert_eq!(
            encode_uri_component("/ ?&=+,;:@#$"),
            "%2F%20%3F%26%3D%2B%2C%3B%3A%40%23%24"
        );
        assert_eq!(encode_uri_component("海"), "%E6%B5%B7");
    }

    #[test]
    fn the_chat_signature_ignores_line_breaks_in_the_message() {
        let with_breaks = ChatSignedFields {
            character_id: "1",
            msg_content: "a\r\nb\n",
            chat_id: "0",
            form: None,
        };
        let without = ChatSignedFields {
            character_id: "1",
            msg_content: "ab",
            chat_id: "0",
            form: Some(""),
        };
        assert_eq!(
            chat_signature("/x", &with_breaks, "1", "ooui"),
            chat_signature("/x", &without, "1", "ooui")
        );
    }

    #[test]
    fn the_voice_signature_covers_only_the_first_1024_bytes() {
        let mut voice = vec![7_u8; 2000];
        let fields = |voice: &[u8]| {
            voice_signature(
                "/v1/api/chat/phone_msg?unix=1",
                &VoiceSignedFields {
                    character_id: "1",
                    chat_id: "0",
                    voice,
                },
                "1",
                "ooui",
            )
        };
        let original = fields(&voice);
        voice[1024] = 8;
        assert_eq!(fields(&voice), original);
        voice[1023] = 8;
        assert_ne!(fields(&voice), original);
        let expected = md5hex(format!(
            "{}_{}{}{}{}ooui",
            encode_uri_component("/v1/api/chat/phone_msg?unix=1"),
            md5hex("1"),
            md5hex("0"),
            md5hex([7_u8; 1024]),
            md5hex("1")
        ));
        assert_eq!(fields(&[7_u8; 1500]), expected);
    }

    #[test]
    fn a_path_query_comes_before_the_common_query() {
        let query = "msgID=1&timbre=male-botong&device_platform=web&unix=1";
        assert_eq!(
            strip_own_query(query, &["msgID", "timbre"]).unwrap(),
            "device_platform=web&unix=1"
        );
        assert!(strip_own_query("timbre=a&msgID=1&x=1", &["msgID", "timbre"]).is_err());
        assert!(strip_own_query("msgID=&timbre=a", &["msgID", "timbre"]).is_err());
        assert_eq!(query_value(query, "timbre"), Some("male-botong"));
    }

    #[test]
    fn dashed_uuids_and_conversation_ids_are_recognised() {
        assert!(is_dashed_uuid("0b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c8d"));
        assert!(!is_dashed_uuid("0b1c2d3e4f504a1b8c2d3e4f5a6b7c8d"));
        assert!(is_conversation_id("243612345678901234"));
        assert!(!is_conversation_id("0"));
    }
}
