//! Property tests of [`decode_data_url`]: any input is an answer or an error, never a panic;
//! `data:<mime>;base64,<b64(x)>` in every spelling clients use decodes to `x`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use proptest::prelude::*;

use super::*;

const MIMES: &[&str] = &["image/png", "image/jpeg", "application/pdf", "text/plain", "image/webp"];

/// `bytes` as base64 in one of the spellings clients send: either alphabet, padded or not,
/// wrapped at 76 characters or not, `+ / =` percent-encoded or not.
fn spell(bytes: &[u8], alphabet: u8, wrap: bool, escape: bool) -> String {
    let encoded = match alphabet % 4 {
        0 => STANDARD.encode(bytes),
        1 => STANDARD_NO_PAD.encode(bytes),
        2 => URL_SAFE.encode(bytes),
        _ => URL_SAFE_NO_PAD.encode(bytes),
    };
    let wrapped = if wrap {
        encoded
            .as_bytes()
            .chunks(76)
            .map(|line| String::from_utf8_lossy(line).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n")
    } else {
        encoded
    };
    if escape {
        wrapped.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
    } else {
        wrapped
    }
}

proptest! {

    #[test]
    fn any_text_decodes_or_fails_without_panicking(url in any::<String>(), limit in 0u64..4096) {
        let _ = decode_data_url(&url, limit);
    }

    #[test]
    fn any_text_after_the_scheme_decodes_or_fails_without_panicking(
        header in "[a-zA-Z0-9/;=+. -]{0,40}",
        base64 in any::<bool>(),
        data in any::<String>(),
    ) {
        let url = format!("data:{header}{},{data}", if base64 { ";base64" } else { "" });
        if let Ok(decoded) = decode_data_url(&url, 1 << 20) {
            prop_assert!(!decoded.bytes.is_empty());
        }
    }

    #[test]
    fn is_data_url_agrees_with_the_decoder(url in "\\PC{0,12}|[ \t]{0,2}[dD][aA][tT][aA]:\\PC{0,12}") {
        let refused = matches!(decode_data_url(&url, 1 << 20), Err(DataUrlError::NotDataUrl));
        prop_assert_eq!(is_data_url(&url), !refused);
    }

    #[test]
    fn base64_round_trips_in_every_spelling(
        bytes in proptest::collection::vec(any::<u8>(), 1..2048),
        mime in proptest::sample::select(MIMES),
        alphabet in any::<u8>(),
        wrap in any::<bool>(),
        escape in any::<bool>(),
    ) {
        let url = format!("data:{mime};base64,{}", spell(&bytes, alphabet, wrap, escape));
        let decoded = decode_data_url(&url, 4096).map_err(|e| TestCaseError::fail(format!("{url}: {e}")))?;
        prop_assert_eq!(decoded.bytes, bytes);
        prop_assert_eq!(decoded.mime.as_deref(), Some(mime));
    }

    #[test]
    fn percent_encoded_data_round_trips(bytes in proptest::collection::vec(any::<u8>(), 1..512)) {
        let escaped: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        let decoded = decode_data_url(&format!("data:text/plain,{escaped}"), 4096)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.bytes, bytes);
    }

    #[test]
    fn plain_text_data_round_trips(text in "\\PC{1,200}") {
        let url = format!("data:text/plain;charset=utf-8,{}", utf8_percent_encode(&text, NON_ALPHANUMERIC));
        let decoded = decode_data_url(&url, 4096).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.bytes, text.into_bytes());
    }

    #[test]
    fn data_over_the_limit_is_refused_and_data_within_it_is_not(
        bytes in proptest::collection::vec(any::<u8>(), 1..600),
        limit in 0u64..700,
        alphabet in any::<u8>(),
    ) {
        let url = format!("data:image/png;base64,{}", spell(&bytes, alphabet, false, false));
        let outcome = decode_data_url(&url, limit);
        if bytes.len() as u64 > limit {
            prop_assert_eq!(outcome, Err(DataUrlError::TooLarge { limit }));
        } else {
            prop_assert_eq!(outcome.map(|d| d.bytes), Ok(bytes));
        }
    }

    #[test]
    fn a_character_outside_base64_is_a_bad_base64_error(
        bytes in proptest::collection::vec(any::<u8>(), 1..300),
        bad in proptest::sample::select(&['!', '*', '#', '"', '~', '.', ':', '\u{e9}', '\u{6d77}'][..]),
        at in any::<proptest::sample::Index>(),
    ) {
        let mut data = STANDARD.encode(&bytes);
        let mut at = at.index(data.len() + 1);
        while !data.is_char_boundary(at) {
            at -= 1;
        }
        data.insert(at, bad);
        let outcome = decode_data_url(&format!("data:image/png;base64,{data}"), 4096);
        prop_assert!(matches!(outcome, Err(DataUrlError::BadBase64(_))), "{outcome:?}");
    }
}
