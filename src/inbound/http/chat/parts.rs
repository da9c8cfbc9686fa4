//! The content parts of a chat request's messages, documented: text, refusals, images,
//! speech and documents, told apart by their `type`, each with a real example (a tiny PNG, a
//! PDF, a short WAV, all as data URLs, so that the examples can be sent as they are).

use poem_openapi::types::Example;
use poem_openapi::{Enum, Object, Union};
use serde_json::json;

use super::schema::{FilePartDoc, ImageUrlDoc};

/// The examples' image: a 1×1 PNG as a data URL.
pub(super) const EXAMPLE_PNG: &str = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// The examples' document: a PDF without pages as a data URL.
pub(super) const EXAMPLE_PDF: &str = "data:application/pdf;base64,JVBERi0xLjQKMSAwIG9iajw8L1R5cGUvQ2F0YWxvZy9QYWdlcyAyIDAgUj4+ZW5kb2JqCjIgMCBvYmo8PC9UeXBlL1BhZ2VzL0tpZHNbXS9Db3VudCAwPj5lbmRvYmoKdHJhaWxlcjw8L1Jvb3QgMSAwIFI+PgolJUVPRgo=";

/// The examples' audio: 50 ms of silence as a WAV (8 kHz, 8-bit mono), in base64.
pub(super) fn example_wav() -> String {
    use base64::Engine as _;
    const SAMPLES: u32 = 400;
    let mut wav = b"RIFF".to_vec();
    wav.extend_from_slice(&(36 + SAMPLES).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16_u32.to_le_bytes()); // the format chunk's size
    wav.extend_from_slice(&1_u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1_u16.to_le_bytes()); // mono
    wav.extend_from_slice(&8_000_u32.to_le_bytes()); // samples per second
    wav.extend_from_slice(&8_000_u32.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&1_u16.to_le_bytes()); // bytes per frame
    wav.extend_from_slice(&8_u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&SAMPLES.to_le_bytes());
    wav.resize(wav.len() + SAMPLES as usize, 0x80);
    base64::engine::general_purpose::STANDARD.encode(wav)
}

/// One part of a message's content, told by its `type`. Unknown fields of a part are ignored.
#[derive(Debug, Union)]
#[oai(rename = "ContentPart", discriminator_name = "type", one_of)]
pub enum PartDoc {
    /// Text.
    #[oai(mapping = "text")]
    Text(TextPartDoc),
    /// An image, when in the last message.
    #[oai(mapping = "image_url")]
    Image(ImagePartDoc),
    /// Speech, transcribed into the text of the message, in its place.
    #[oai(mapping = "input_audio")]
    Audio(AudioPartDoc),
    /// A document, when in the last message.
    #[oai(mapping = "file")]
    File(FilePartDoc),
    /// An assistant's refusal, read as its text.
    #[oai(mapping = "refusal")]
    Refusal(RefusalPartDoc),
}

/// `{"type": "text", "text": "..."}`
#[derive(Debug, Object)]
#[oai(rename = "TextPart", example)]
pub struct TextPartDoc {
    /// The text.
    pub text: String,
}

impl Example for TextPartDoc {
    fn example() -> Self {
        Self {
            text: "What is in this picture?".into(),
        }
    }
}

/// `{"type": "refusal", "refusal": "..."}`
#[derive(Debug, Object)]
#[oai(rename = "RefusalPart", example)]
pub struct RefusalPartDoc {
    /// The refusal's text.
    pub refusal: String,
}

impl Example for RefusalPartDoc {
    fn example() -> Self {
        Self {
            refusal: "I cannot help with that.".into(),
        }
    }
}

/// `{"type": "image_url", "image_url": {"url": "https://..."}}`, or the URL alone as a string.
#[derive(Debug, Object)]
#[oai(rename = "ImagePart", example)]
pub struct ImagePartDoc {
    /// Where the image is.
    pub image_url: ImageUrlDoc,
}

impl Example for ImagePartDoc {
    fn example() -> Self {
        Self {
            image_url: ImageUrlDoc(json!(EXAMPLE_PNG)),
        }
    }
}

/// Where an image is.
#[derive(Debug, Object)]
#[oai(rename = "ImageUrlObject", example, skip_serializing_if_is_none)]
pub struct ImageUrlObjectDoc {
    /// An `http(s)` URL or a `data:image/...;base64,...` URL.
    #[oai(validator(min_length = 1))]
    pub url: String,
    /// Accepted and not used.
    #[oai(nullable)]
    pub detail: Option<ImageDetailDoc>,
}

impl Example for ImageUrlObjectDoc {
    fn example() -> Self {
        Self {
            url: EXAMPLE_PNG.into(),
            detail: Some(ImageDetailDoc::Auto),
        }
    }
}

/// How closely to look at an image (accepted and not used).
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename = "ImageDetail", rename_all = "lowercase")]
pub enum ImageDetailDoc {
    /// The default.
    Auto,
    /// Low detail.
    Low,
    /// High detail.
    High,
}

/// `{"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}`
#[derive(Debug, Object)]
#[oai(rename = "AudioPart", example)]
pub struct AudioPartDoc {
    /// The audio.
    pub input_audio: InputAudioDoc,
}

impl Example for AudioPartDoc {
    fn example() -> Self {
        Self {
            input_audio: InputAudioDoc::example(),
        }
    }
}

/// Speech to transcribe: up to `audio.max_upload_bytes` of audio lasting at most
/// `audio.max_duration_secs`, as for `/v1/audio/transcriptions`.
#[derive(Debug, Object)]
#[oai(rename = "InputAudio", example)]
pub struct InputAudioDoc {
    /// The encoded audio, in base64.
    #[oai(validator(min_length = 1, pattern = r"^[A-Za-z0-9+/]+={0,2}$"))]
    pub data: String,
    /// Its format (`wav` and `mp3` are OpenAI's; the others as the transcription takes them).
    pub format: AudioFormatDoc,
}

impl Example for InputAudioDoc {
    fn example() -> Self {
        Self {
            data: example_wav(),
            format: AudioFormatDoc::Wav,
        }
    }
}

/// The format of an `input_audio` part.
#[derive(Debug, Clone, Copy, Enum)]
#[oai(rename = "AudioFormat", rename_all = "lowercase")]
pub enum AudioFormatDoc {
    /// WAV.
    Wav,
    /// MP3.
    Mp3,
    /// MPEG audio.
    Mpeg,
    /// MPEG audio.
    Mpga,
    /// AAC in MP4.
    M4a,
    /// Ogg (Vorbis or Opus).
    Ogg,
    /// Opus.
    Opus,
    /// FLAC.
    Flac,
    /// WebM (Opus).
    Webm,
}

/// A document by data URL: `{"file_data": "data:application/pdf;base64,...", "filename": "report.pdf"}`.
/// A `file_id` is refused (400 `unsupported_file_id`): there is no Files API to have uploaded it.
#[derive(Debug, Object)]
#[oai(rename = "FileData", example, skip_serializing_if_is_none)]
pub struct FileDataDoc {
    /// A `data:<mime>;base64,<data>` URL (bare base64 is read too, its type from `filename`
    /// or from the bytes).
    #[oai(validator(min_length = 1))]
    pub file_data: String,
    /// The name the upstream gets the file under (made a bare, safe name with an extension
    /// that fits its type); without it, `<uuid>.<ext>`.
    #[oai(nullable)]
    pub filename: Option<String>,
}

impl Example for FileDataDoc {
    fn example() -> Self {
        Self {
            file_data: EXAMPLE_PDF.into(),
            filename: Some("report.pdf".into()),
        }
    }
}

/// A document by URL: `{"url": "https://..."}`.
#[derive(Debug, Object)]
#[oai(rename = "FileUrl", example)]
pub struct FileUrlDoc {
    /// An `http(s)` URL or a `data:<mime>;base64,<data>` URL.
    #[oai(validator(min_length = 1))]
    pub url: String,
}

impl Example for FileUrlDoc {
    fn example() -> Self {
        Self {
            url: EXAMPLE_PDF.into(),
        }
    }
}
