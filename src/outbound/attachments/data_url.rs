//! `data:` URLs (RFC 2397): the MIME type they declare and the bytes they carry, base64 or
//! percent-encoded.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::naming;

/// Decoding config that accepts padded and unpadded input alike.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// A decoded data URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataUrl {
    /// The MIME type it declares (lowercase, without parameters), if a usable one.
    pub mime: Option<String>,
    /// The bytes it carries.
    pub bytes: Vec<u8>,
}

/// Why a data URL could not be decoded.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum DataUrlError {
    /// It does not start with `data:`.
    #[error("it is not a data URL")]
    NotDataUrl,
    /// No comma separates the header from the data.
    #[error("it has no comma between the media type and the data")]
    MissingComma,
    /// The data is empty.
    #[error("it carries no data")]
    Empty,
    /// The base64 data does not decode.
    #[error("its data is not valid base64 ({0})")]
    BadBase64(String),
    /// The decoded data is over the limit.
    #[error("it carries more than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
}

/// Decodes `url`, refusing more than `max_bytes` of data.
///
/// # Errors
/// See [`DataUrlError`].
pub fn decode_data_url(url: &str, max_bytes: u64) -> Result<DataUrl, DataUrlError> {
    let rest = strip_prefix_ignore_case(url.trim(), "data:").ok_or(DataUrlError::NotDataUrl)?;
    let (header, data) = rest.split_once(',').ok_or(DataUrlError::MissingComma)?;
    let mut params = header.split(';');
    let mime = params.next().and_then(naming::mime_essence);
    let is_base64 = params.any(|param| param.trim().eq_ignore_ascii_case("base64"));
    let bytes = if is_base64 {
        decode_base64(data, max_bytes)?
    } else {
        percent_encoding::percent_decode_str(data).collect()
    };
    if bytes.is_empty() {
        return Err(DataUrlError::Empty);
    }
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > max_bytes {
        return Err(DataUrlError::TooLarge { limit: max_bytes });
    }
    Ok(DataUrl { mime, bytes })
}

fn decode_base64(data: &str, max_bytes: u64) -> Result<Vec<u8>, DataUrlError> {
    // Some clients percent-encode `+`, `/` and `=`, or wrap lines: undo both.
    let unescaped: Vec<u8> = if data.contains('%') {
        percent_encoding::percent_decode_str(data).collect()
    } else {
        data.as_bytes().to_vec()
    };
    let compact: Vec<u8> = unescaped
        .into_iter()
        .filter(|byte| !byte.is_ascii_whitespace())
        .collect();
    // Valid base64 of n bytes is at least 4n/3 characters long: refuse before allocating.
    let least_decoded = u64::try_from(compact.len() / 4 * 3).unwrap_or(u64::MAX);
    if least_decoded.saturating_sub(2) > max_bytes {
        return Err(DataUrlError::TooLarge { limit: max_bytes });
    }
    STANDARD
        .decode(&compact)
        .or_else(|standard| URL_SAFE.decode(&compact).map_err(|_| standard))
        .map_err(|error| DataUrlError::BadBase64(error.to_string()))
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// Whether `url` is a data URL (by its scheme, in any case).
pub fn is_data_url(url: &str) -> bool {
    strip_prefix_ignore_case(url.trim_start(), "data:").is_some()
}

#[cfg(test)]
#[path = "data_url_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: u64 = 1024;

    #[test]
    fn a_base64_data_url_decodes_with_its_media_type() {
        let decoded = decode_data_url("data:image/png;base64,iVBORw0KGgo=", LIMIT).unwrap();
        assert_eq!(decoded.mime.as_deref(), Some("image/png"));
        assert_eq!(decoded.bytes, b"\x89PNG\r\n\x1a\n");
    }

    #[test]
    fn parameters_case_padding_and_line_breaks_do_not_matter() {
        let decoded = decode_data_url("DATA:Text/Plain;charset=UTF-8;BASE64,aGVs\nbG8", LIMIT).unwrap();
        assert_eq!(decoded.mime.as_deref(), Some("text/plain"));
        assert_eq!(decoded.bytes, b"hello");
    }

    #[test]
    fn percent_encoded_and_url_safe_base64_are_accepted() {
        assert_eq!(decode_data_url("data:;base64,Pz8%2F", LIMIT).unwrap().bytes, b"???");
        assert_eq!(decode_data_url("data:;base64,Pz8_", LIMIT).unwrap().bytes, b"???");
    }

    #[test]
    fn a_data_url_without_base64_is_percent_decoded() {
        let decoded = decode_data_url("data:text/csv,a%2Cb%0A1,2", LIMIT).unwrap();
        assert_eq!(decoded.mime.as_deref(), Some("text/csv"));
        assert_eq!(decoded.bytes, b"a,b\n1,2");
    }

    #[test]
    fn a_missing_or_unusable_media_type_is_left_to_the_caller() {
        assert_eq!(decode_data_url("data:,hi", LIMIT).unwrap().mime, None);
        assert_eq!(decode_data_url("data:;base64,aGk=", LIMIT).unwrap().mime, None);
        assert_eq!(decode_data_url("data:nonsense;base64,aGk=", LIMIT).unwrap().mime, None);
        assert_eq!(
            decode_data_url("data:application/octet-stream;base64,aGk=", LIMIT)
                .unwrap()
                .mime,
            None
        );
    }

    #[test]
    fn bad_data_urls_are_refused_with_the_reason() {
        assert_eq!(decode_data_url("https://x/", LIMIT), Err(DataUrlError::NotDataUrl));
        assert_eq!(
            decode_data_url("data:image/png;base64", LIMIT),
            Err(DataUrlError::MissingComma)
        );
        assert_eq!(
            decode_data_url("data:image/png;base64,", LIMIT),
            Err(DataUrlError::Empty)
        );
        assert_eq!(decode_data_url("data:text/plain,", LIMIT), Err(DataUrlError::Empty));
        assert!(matches!(
            decode_data_url("data:image/png;base64,!!not base64!!", LIMIT),
            Err(DataUrlError::BadBase64(_))
        ));
    }

    #[test]
    fn data_over_the_limit_is_too_large() {
        assert_eq!(
            decode_data_url("data:;base64,aGVsbG8=", 4),
            Err(DataUrlError::TooLarge { limit: 4 })
        );
        assert_eq!(
            decode_data_url("data:,hello", 4),
            Err(DataUrlError::TooLarge { limit: 4 })
        );
        assert_eq!(decode_data_url("data:;base64,aGVsbG8=", 5).unwrap().bytes, b"hello");
        let huge = format!("data:;base64,{}", "A".repeat(4096));
        assert_eq!(decode_data_url(&huge, 16), Err(DataUrlError::TooLarge { limit: 16 }));
    }
}
