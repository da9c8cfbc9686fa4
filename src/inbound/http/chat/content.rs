//! The reading of a message's content parts: text and refusals as text, images and documents
//! as attachments (a document by data URL under its client's `filename`; by `file_id`
//! refused, there being no Files API), and speech decoded from base64, to be heard.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use poem::http::StatusCode;
use serde_json::{Map, Value};

use crate::domain::chat::{ContentPart, SpokenAudio};
use crate::inbound::http::error::{ApiError, ErrorCode, ErrorType};

use super::read::{ReadLimits, missing, non_empty, one_of, require_string, take, take_string_at, wrong_type};

/// Base64 as clients send it: padded or not.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, LENIENT);
const BASE64_URL_SAFE: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, LENIENT);

/// The `detail` an image may ask for.
const IMAGE_DETAILS: &[&str] = &["auto", "low", "high"];
/// The formats an `input_audio` part may name: OpenAI's, and the others the transcription
/// decodes.
const AUDIO_FORMATS: &[&str] = &["wav", "mp3", "mpeg", "mpga", "m4a", "ogg", "opus", "flac", "webm"];
/// The types a content part may have.
const PART_TYPES: &[&str] = &["text", "image_url", "input_audio", "file", "refusal"];
/// Reads the content part at `path`.
pub(super) fn read_part(part: Value, path: &str, limits: &ReadLimits) -> Result<ContentPart, ApiError> {
    let Value::Object(mut part) = part else {
        return Err(wrong_type(path, "an object with a `type`"));
    };
    let kind = one_of(part.get("type"), &format!("{path}.type"), PART_TYPES)?;
    let field = |name: &str| format!("{path}.{name}");
    match kind {
        "text" => Ok(ContentPart::Text(require_string(&mut part, "text", &field("text"))?)),
        "refusal" => Ok(ContentPart::Text(require_string(
            &mut part,
            "refusal",
            &field("refusal"),
        )?)),
        "image_url" => read_image(take(&mut part, "image_url"), &field("image_url")),
        "input_audio" => read_audio(take(&mut part, "input_audio"), &field("input_audio"), limits),
        _ => read_file(&mut part, path),
    }
}

/// Reads an `image_url`: the URL as a string, or `{"url", "detail"}`.
fn read_image(image: Option<Value>, path: &str) -> Result<ContentPart, ApiError> {
    let url = match image {
        None => return Err(missing(path)),
        Some(Value::String(url)) => non_empty(url, path)?,
        Some(Value::Object(mut image)) => {
            if image.get("detail").is_some_and(|detail| !detail.is_null()) {
                one_of(image.get("detail"), &format!("{path}.detail"), IMAGE_DETAILS)?;
            }
            let url_path = format!("{path}.url");
            non_empty(require_string(&mut image, "url", &url_path)?, &url_path)?
        }
        Some(_) => return Err(wrong_type(path, "a URL, or an object with a `url`")),
    };
    Ok(ContentPart::Image { url })
}

/// Reads an `input_audio`: `{"data": "<base64>", "format": "wav"}`, decoded.
fn read_audio(audio: Option<Value>, path: &str, limits: &ReadLimits) -> Result<ContentPart, ApiError> {
    let mut audio = match audio {
        None => return Err(missing(path)),
        Some(Value::Object(audio)) => audio,
        Some(_) => return Err(wrong_type(path, "an object with `data` and `format`")),
    };
    let format = one_of(audio.get("format"), &format!("{path}.format"), AUDIO_FORMATS)?;
    let data_path = format!("{path}.data");
    let data = non_empty(require_string(&mut audio, "data", &data_path)?, &data_path)?;
    let bytes = decode_audio(&data, &data_path, limits)?;
    Ok(ContentPart::Audio(SpokenAudio {
        bytes,
        format: format.to_owned(),
    }))
}

/// The bytes of an `input_audio`'s `data`: base64, padded or not, whitespace ignored (or a
/// `data:` URL holding it), at most `limits.max_audio_bytes`.
fn decode_audio(data: &str, path: &str, limits: &ReadLimits) -> Result<Vec<u8>, ApiError> {
    let data = match data.strip_prefix("data:").and_then(|rest| rest.split_once(',')) {
        Some((_, encoded)) => encoded,
        None => data,
    };
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorType::InvalidRequestError,
            ErrorCode::FileTooLarge,
            format!(
                "`{path}` holds more than the limit of {} bytes of audio (`audio.max_upload_bytes`)",
                limits.max_audio_bytes
            ),
        )
        .with_param(path)
    };
    // Four characters carry three bytes: refused unread when it cannot fit.
    if data.len() / 4 > limits.max_audio_bytes / 3 + 1 {
        return Err(too_large());
    }
    let compact: Vec<u8> = data.bytes().filter(|byte| !byte.is_ascii_whitespace()).collect();
    let bytes = BASE64
        .decode(&compact)
        .or_else(|_| BASE64_URL_SAFE.decode(&compact))
        .map_err(|error| invalid_audio(path, &format!("is not base64 ({error})")))?;
    if bytes.is_empty() {
        return Err(invalid_audio(path, "holds no audio"));
    }
    if bytes.len() > limits.max_audio_bytes {
        return Err(too_large());
    }
    Ok(bytes)
}

fn invalid_audio(path: &str, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorType::InvalidRequestError,
        ErrorCode::InvalidAudio,
        format!("`{path}` {what}"),
    )
    .with_param(path)
}

/// Reads a file part at `path`: `file` (`{"file_data", "filename"}`; a `file_id` is refused)
/// or `file_url` (`{"url"}`), one of the two.
fn read_file(part: &mut Map<String, Value>, path: &str) -> Result<ContentPart, ApiError> {
    match (take(part, "file"), take(part, "file_url")) {
        (Some(_), Some(_)) => Err(ApiError::invalid_request(format!(
            "`{path}` has both `file` and `file_url`: give one of them"
        ))
        .with_param(path)),
        (Some(Value::Object(mut file)), None) => {
            let file_path = format!("{path}.file");
            if file.get("file_id").is_some_and(|id| !id.is_null()) {
                let id_path = format!("{file_path}.file_id");
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorType::InvalidRequestError,
                    ErrorCode::UnsupportedFileId,
                    format!(
                        "`{id_path}` names an uploaded file, but this gateway has no Files API to have \
                         uploaded it: send the document itself as `file_data` (a data URL) or by URL as \
                         `file_url`"
                    ),
                )
                .with_param(&id_path));
            }
            let name = take_string_at(&mut file, "filename", &format!("{file_path}.filename"))?;
            let data_path = format!("{file_path}.file_data");
            let data = non_empty(require_string(&mut file, "file_data", &data_path)?, &data_path)?;
            Ok(ContentPart::File {
                url: as_data_url(data),
                name,
            })
        }
        (Some(_), None) => Err(wrong_type(
            &format!("{path}.file"),
            "an object with `file_data` and `filename`",
        )),
        (None, Some(Value::Object(mut file))) => {
            let url_path = format!("{path}.file_url.url");
            let url = non_empty(require_string(&mut file, "url", &url_path)?, &url_path)?;
            Ok(ContentPart::File { url, name: None })
        }
        (None, Some(_)) => Err(wrong_type(&format!("{path}.file_url"), "an object with a `url`")),
        (None, None) => Err(ApiError::invalid_request(format!(
            "`{path}` needs `file` (`{{\"file_data\": \"data:...\", \"filename\": \"...\"}}`) or `file_url` \
             (`{{\"url\": \"https://...\"}}`)"
        ))
        .with_param(&format!("{path}.file"))),
    }
}

/// `file_data` as a data URL: given as one, or bare base64 wrapped into one (its type then
/// told by the file name or the bytes).
fn as_data_url(data: String) -> String {
    if data
        .trim_start()
        .get(..5)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("data:"))
    {
        data
    } else {
        format!("data:;base64,{data}")
    }
}
