//! The `Yy` request signature (protocol §2): MD5 over the URI-encoded full URI, a digest of
//! what the request carries, the timestamp and the profile's salt.

use md5::{Digest, Md5};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// What JavaScript's `encodeURIComponent` leaves alone: `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// How many leading bytes of a voice message the voice signature covers.
const VOICE_SIGNED_PREFIX: usize = 1024;

/// The lowercase hex MD5 of `data`.
pub fn md5_hex(data: impl AsRef<[u8]>) -> String {
    let digest = Md5::digest(data.as_ref());
    hex::encode(&digest[..])
}

/// Percent-encodes `text` exactly as JavaScript's `encodeURIComponent` does (UTF-8,
/// uppercase hex, every byte but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`).
pub fn encode_uri_component(text: &str) -> String {
    utf8_percent_encode(text, URI_COMPONENT).to_string()
}

/// `text` as a query value: [`encode_uri_component`], with `'` written `%27` too, as a URL
/// parser writes it in a query anyway (the WHATWG query set, which `url` and browsers follow);
/// so that the URI signed is the URI sent.
pub fn encode_query_value(text: &str) -> String {
    encode_uri_component(text).replace('\'', "%27")
}

/// The signature of a JSON request: `md5hex(enc(fullUri) + "_" + body + md5hex(unix) + salt)`,
/// where a request without a body (`None`) signs `{}`.
pub fn sign_json(full_uri: &str, body: Option<&str>, unix: &str, salt: &str) -> String {
    let body = body.unwrap_or("{}");
    md5_hex(format!(
        "{}_{body}{}{salt}",
        encode_uri_component(full_uri),
        md5_hex(unix)
    ))
}

/// The `minimax-agent` headers of a JSON call stamped `unix` (Unix milliseconds): `x-timestamp`,
/// its Unix seconds, and `x-signature = md5hex(x-timestamp + token + body)`, where a call
/// without a body (`None`) signs `{}`.
pub fn sign_agent_body(unix: &str, token: &str, body: Option<&str>) -> (String, String) {
    let timestamp = unix.strip_suffix("000").unwrap_or(unix).to_owned();
    let signature = md5_hex(format!("{timestamp}{token}{}", body.unwrap_or("{}")));
    (timestamp, signature)
}

/// The signature of a chat message (`POST /v4/api/chat/msg`): the digests of the character
/// id, the message without any `\r` or `\n`, the chat id and the form (`""` when absent).
pub fn sign_chat(
    full_uri: &str,
    character_id: &str,
    msg_content: &str,
    chat_id: &str,
    form: Option<&str>,
    unix: &str,
    salt: &str,
) -> String {
    let flat_content: String = msg_content.chars().filter(|c| !matches!(c, '\r' | '\n')).collect();
    md5_hex(format!(
        "{}_{}{}{}{}{}{salt}",
        encode_uri_component(full_uri),
        md5_hex(character_id),
        md5_hex(flat_content),
        md5_hex(chat_id),
        md5_hex(form.unwrap_or("")),
        md5_hex(unix),
    ))
}

/// The signature of a voice message (`POST /v1/api/chat/phone_msg`): the digests of the
/// character id, the chat id and the first 1024 bytes of the audio.
pub fn sign_voice(
    full_uri: &str,
    character_id: &str,
    chat_id: &str,
    voice_bytes: &[u8],
    unix: &str,
    salt: &str,
) -> String {
    let signed_audio = &voice_bytes[..voice_bytes.len().min(VOICE_SIGNED_PREFIX)];
    md5_hex(format!(
        "{}_{}{}{}{}{salt}",
        encode_uri_component(full_uri),
        md5_hex(character_id),
        md5_hex(chat_id),
        md5_hex(signed_audio),
        md5_hex(unix),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn md5_hex_is_lowercase_hex_of_the_utf8_bytes() {
        assert_eq!(md5_hex(""), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(md5_hex("1700000000000"), hex::encode(Md5::digest(b"1700000000000")));
    }

    #[test]
    fn the_worked_example_of_the_protocol_signs_as_documented() {
        let full_uri = "/v1/api/user/info?device_platform=web&unix=1700000000000";
        let signed_text = format!(
            "%2Fv1%2Fapi%2Fuser%2Finfo%3Fdevice_platform%3Dweb%26unix%3D1700000000000_{{}}{}ooui",
            hex::encode(Md5::digest(b"1700000000000"))
        );
        let expected = hex::encode(Md5::digest(signed_text.as_bytes()));
        assert_eq!(sign_json(full_uri, None, "1700000000000", "ooui"), expected);
        assert_eq!(sign_json(full_uri, Some("{}"), "1700000000000", "ooui"), expected);
    }

    #[test]
    fn the_agent_headers_are_the_seconds_and_the_digest_of_seconds_token_and_body() {
        let (timestamp, signature) = sign_agent_body("1700000000000", "jwt", Some(r#"{"chat_id":1}"#));
        assert_eq!(timestamp, "1700000000");
        assert_eq!(signature, hex::encode(Md5::digest(br#"1700000000jwt{"chat_id":1}"#)));
        assert_eq!(
            sign_agent_body("1700000000000", "jwt", None).1,
            hex::encode(Md5::digest(b"1700000000jwt{}"))
        );
    }

    #[test]
    fn a_json_body_is_signed_as_sent() {
        let body = r#"{"uuid":"abc"}"#;
        let expected = md5_hex(format!("%2Fp%3Fa%3D1_{body}{}salt", md5_hex("1000")));
        assert_eq!(sign_json("/p?a=1", Some(body), "1000", "salt"), expected);
    }

    #[test]
    fn encode_uri_component_matches_javascript() {
        // encodeURIComponent("中文 ~!*'()") in a browser.
        assert_eq!(encode_uri_component("中文 ~!*'()"), "%E4%B8%AD%E6%96%87%20~!*'()");
        assert_eq!(
            encode_uri_component("a-z_A.Z0-9?&=/#+,;:@$[]"),
            "a-z_A.Z0-9%3F%26%3D%2F%23%2B%2C%3B%3A%40%24%5B%5D"
        );
        assert_eq!(encode_uri_component("é\n%"), "%C3%A9%0A%25");
    }

    #[test]
    fn a_query_value_is_sent_as_it_is_signed() {
        let value = encode_query_value("puv_1'x (2)");
        assert_eq!(value, "puv_1%27x%20(2)");
        let sent = url::Url::parse(&format!("http://upstream/v1/api/chat/msg_tts?timbre={value}")).unwrap();
        assert_eq!(sent.query(), Some(format!("timbre={value}").as_str()));
    }

    #[test]
    fn the_chat_signature_ignores_line_breaks_in_the_message() {
        let unix = "1700000000000";
        let expected = md5_hex(format!(
            "{}_{}{}{}{}{}ooui",
            encode_uri_component("/v4/api/chat/msg?x=1"),
            md5_hex("1"),
            md5_hex("user:你好assistant:"),
            md5_hex("0"),
            md5_hex(""),
            md5_hex(unix),
        ));
        let signature = sign_chat(
            "/v4/api/chat/msg?x=1",
            "1",
            "user:你好\r\nassistant:\n",
            "0",
            None,
            unix,
            "ooui",
        );
        assert_eq!(signature, expected);
        let flat = sign_chat(
            "/v4/api/chat/msg?x=1",
            "1",
            "user:你好assistant:",
            "0",
            None,
            unix,
            "ooui",
        );
        assert_eq!(flat, expected);
        let with_form = sign_chat(
            "/v4/api/chat/msg?x=1",
            "1",
            "user:你好assistant:",
            "0",
            Some("[]"),
            unix,
            "ooui",
        );
        assert_ne!(with_form, expected);
    }

    #[test]
    fn the_voice_signature_covers_only_the_first_kilobyte() {
        let mut audio = vec![7_u8; 1024];
        let short = sign_voice("/v1/api/chat/phone_msg?x=1", "1", "0", &audio, "1000", "ooui");
        audio.extend_from_slice(&[9; 500]);
        let long = sign_voice("/v1/api/chat/phone_msg?x=1", "1", "0", &audio, "1000", "ooui");
        assert_eq!(short, long);
        let expected = md5_hex(format!(
            "{}_{}{}{}{}ooui",
            encode_uri_component("/v1/api/chat/phone_msg?x=1"),
            md5_hex("1"),
            md5_hex("0"),
            md5_hex([7_u8; 1024]),
            md5_hex("1000"),
        ));
        assert_eq!(short, expected);
    }
}
