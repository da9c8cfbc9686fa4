//! The `Yy` request signature (protocol §2), computed independently of the adapter: JSON
//! requests, chat messages and voice messages.

use md5::{Digest, Md5};

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

#[cfg(test)]
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
}
