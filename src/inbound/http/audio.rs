//! `POST /v1/audio/speech` and `POST /v1/audio/transcriptions`: OpenAI's audio endpoints,
//! spoken and heard by a Hailuo account.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::multipart::Upload;
use poem_openapi::types::{Example, ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, Multipart, Object, OpenApi};
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::audio::{SpeechFormat, SpeechModel, Transcript};
use crate::domain::service::{SpeechOrder, SpeechService, TranscriptionError, TranscriptionService};

use super::ApiTags;
use super::auth::HailuoTokens;
use super::choice::{Choice, Choices, MaybeChoice};
use super::error::{ApiError, ErrorCode, ErrorResponse, ErrorType, docs};
use super::openapi::{self, Success};
use super::text::{Text, white_space};

/// The audio resources.
pub struct AudioApi {
    speech: Arc<SpeechService>,
    transcription: Arc<TranscriptionService>,
    max_upload_bytes: usize,
}

impl AudioApi {
    /// The resources over the audio use cases; uploads over `max_upload_bytes` get 413.
    pub fn new(speech: Arc<SpeechService>, transcription: Arc<TranscriptionService>, max_upload_bytes: usize) -> Self {
        Self {
            speech,
            transcription,
            max_upload_bytes,
        }
    }
}

/// A voice id: one or more characters, none of them white space.
const VOICE_ID: &str = concat!("^[^", white_space!(), "]+$");

/// A speech request (OpenAI's format).
#[derive(Debug, Object)]
#[oai(example)]
pub struct SpeechRequestDto {
    /// `tts-1` or `tts-1-hd` select the voice table; any other name uses `tts-1`'s.
    #[oai(nullable)]
    pub model: Option<Text>,
    /// The text to speak: 1 to 4,096 characters, not all of them white space.
    #[oai(validator(
        min_length = 1,
        max_length = 4096,
        pattern = r"[^\t\n\x0B\f\r \x85\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    ))]
    pub input: Text,
    /// The voice.
    pub voice: Voice,
    /// `mp3` (default: the upstream's MP3 as it is), `wav` (16-bit PCM), `pcm` (raw 16-bit
    /// little-endian mono at 24 kHz) or `flac`. OpenAI's `opus` and `aac` are not supported.
    pub response_format: MaybeChoice<SpeechFormat>,
    /// 0.25 to 4.0 (default 1.0); the pitch is kept.
    #[oai(nullable, validator(minimum(value = "0.25"), maximum(value = "4.0")))]
    pub speed: Option<f64>,
}

impl Example for SpeechRequestDto {
    fn example() -> Self {
        Self {
            model: Some(Text::from("tts-1")),
            input: Text::from("今天天气真好，我们去公园散步吧。"),
            voice: Voice("alloy".into()),
            response_format: MaybeChoice(Some(SpeechFormat::Mp3)),
            speed: Some(1.0),
        }
    }
}

impl Choices for SpeechFormat {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("mp3", SpeechFormat::Mp3),
        ("wav", SpeechFormat::Wav),
        ("pcm", SpeechFormat::Pcm),
        ("flac", SpeechFormat::Flac),
    ];
    const REFUSAL: &'static str = " (`opus` and `aac` are not supported)";
}

/// The OpenAI voice names the voice tables map (`audio.voices`, `audio.voices_hd`).
const OPENAI_VOICES: [&str; 6] = ["alloy", "echo", "fable", "onyx", "nova", "shimmer"];

/// A voice: an OpenAI voice name, mapped to a Hailuo voice by the model's voice table, or a
/// Hailuo voice id used as it is. Either way a string without white space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voice(pub String);

impl Type for Voice {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let openai = MetaSchema {
            title: Some("OpenAI voice".into()),
            description: Some(
                "Mapped to a Hailuo voice by `audio.voices` (`tts-1`, and any other model) or \
                 `audio.voices_hd` (`tts-1-hd`).",
            ),
            enum_items: OPENAI_VOICES.iter().map(|voice| json!(voice)).collect(),
            ..MetaSchema::new("string")
        };
        let hailuo = MetaSchema {
            title: Some("Hailuo voice id".into()),
            description: Some(
                "Used as given: a voice of the web app (`male-botong`, `Guodegang_hailuo`) or a \
                 cloned one (`puv_...`); the upstream refuses an id it does not know.",
            ),
            pattern: Some(VOICE_ID.into()),
            ..MetaSchema::new("string")
        };
        MetaSchemaRef::Inline(Box::new(MetaSchema {
            example: Some(json!("alloy")),
            any_of: vec![
                MetaSchemaRef::Inline(Box::new(openai)),
                MetaSchemaRef::Inline(Box::new(hailuo)),
            ],
            ..MetaSchema::new("string")
        }))
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromJSON for Voice {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(voice)) if !voice.is_empty() && !voice.chars().any(char::is_whitespace) => {
                Ok(Voice(voice))
            }
            Some(Value::String(_)) => Err(ParseError::custom(
                "`voice` must be an OpenAI voice name or a Hailuo voice id: not empty, without white space",
            )),
            Some(other) => Err(ParseError::expected_type(other)),
            None => Err(ParseError::expected_input()),
        }
    }
}

impl ToJSON for Voice {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// Audio bytes, or an error.
pub enum AudioResponse {
    /// The audio and its MIME type.
    Audio(Vec<u8>, &'static str),
    /// A failure.
    Error(ApiError),
}

impl IntoResponse for AudioResponse {
    fn into_response(self) -> Response {
        match self {
            AudioResponse::Audio(bytes, content_type) => Response::builder()
                .status(StatusCode::OK)
                .content_type(content_type)
                .body(bytes),
            AudioResponse::Error(error) => error.into_response(),
        }
    }
}

impl ApiResponse for AudioResponse {
    const BAD_REQUEST_HANDLER: bool = true;

    fn meta() -> MetaResponses {
        Success::new("The audio, in the format asked for.")
            .media("audio/mpeg", openapi::binary())
            .media("audio/wav", openapi::binary())
            .media("audio/pcm", openapi::binary())
            .media("audio/flac", openapi::binary())
            .and_errors(docs::SPEECH)
    }

    fn register(registry: &mut Registry) {
        ErrorResponse::register(registry);
    }

    fn from_parse_request_error(error: poem::Error) -> Self {
        AudioResponse::Error(ApiError::from_parse_error(&error))
    }
}

/// A transcription request (OpenAI's multipart form).
#[derive(Debug, Multipart)]
pub struct TranscriptionForm {
    /// The audio: wav, mp3, mpeg, mpga, m4a, ogg (Vorbis or Opus), opus, flac, webm (Opus, as
    /// browsers record it); up to `audio.max_upload_bytes`.
    pub file: Upload,
    /// Any model name (`whisper-1`).
    pub model: Option<String>,
    /// Accepted; the upstream detects the language itself.
    pub language: Option<String>,
    /// Accepted and not used.
    pub prompt: Option<String>,
    /// Accepted and not used.
    pub temperature: Option<f64>,
    /// `json` (default), `text`, `verbose_json`, `srt` or `vtt`.
    pub response_format: Option<Choice<TranscriptFormat>>,
}

/// `{"text": ...}`.
#[derive(Debug, Object, Serialize)]
pub struct TranscriptionJson {
    /// The transcript.
    pub text: String,
}

/// `verbose_json`: the transcript with its duration and one segment spanning the audio.
#[derive(Debug, Object, Serialize)]
pub struct TranscriptionVerbose {
    /// Always `transcribe`.
    pub task: String,
    /// The language asked for, or `auto`.
    pub language: String,
    /// The audio's duration in seconds.
    pub duration: f64,
    /// The transcript.
    pub text: String,
    /// One segment spanning the whole audio.
    pub segments: Vec<TranscriptionSegment>,
}

/// A segment of a transcript.
#[derive(Debug, Object, Serialize)]
pub struct TranscriptionSegment {
    /// 0.
    pub id: u32,
    /// 0.
    pub seek: u32,
    /// Start, in seconds.
    pub start: f64,
    /// End, in seconds.
    pub end: f64,
    /// The text.
    pub text: String,
    /// Not known: empty.
    pub tokens: Vec<u32>,
    /// 0.
    pub temperature: f64,
    /// Not known: 0.
    pub avg_logprob: f64,
    /// Not known: 1.
    pub compression_ratio: f64,
    /// Not known: 0.
    pub no_speech_prob: f64,
}

/// The formats of a transcript.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TranscriptFormat {
    /// `{"text": ...}`.
    Json,
    /// The text alone.
    Text,
    /// The text with its duration and a segment.
    VerboseJson,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
}

impl Choices for TranscriptFormat {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("json", TranscriptFormat::Json),
        ("text", TranscriptFormat::Text),
        ("verbose_json", TranscriptFormat::VerboseJson),
        ("srt", TranscriptFormat::Srt),
        ("vtt", TranscriptFormat::Vtt),
    ];
    const REFUSAL: &'static str = "";
}

/// `HH:MM:SS<sep>mmm`.
fn timestamp(duration: Duration, separator: char) -> String {
    let millis = duration.as_millis();
    let (hours, rest) = (millis / 3_600_000, millis % 3_600_000);
    let (minutes, rest) = (rest / 60_000, rest % 60_000);
    let (seconds, millis) = (rest / 1_000, rest % 1_000);
    format!("{hours:02}:{minutes:02}:{seconds:02}{separator}{millis:03}")
}

/// The transcript in `format`: its body and MIME type.
fn render_transcript(
    transcript: &Transcript,
    format: TranscriptFormat,
    language: Option<&str>,
) -> (String, &'static str) {
    let text = transcript.text.clone();
    let end = timestamp(transcript.duration, ',');
    match format {
        TranscriptFormat::Json => (
            serde_json::to_string(&TranscriptionJson { text }).unwrap_or_default(),
            "application/json; charset=utf-8",
        ),
        TranscriptFormat::Text => (text, "text/plain; charset=utf-8"),
        TranscriptFormat::Srt => (
            format!("1\n00:00:00,000 --> {end}\n{text}\n"),
            "text/plain; charset=utf-8",
        ),
        TranscriptFormat::Vtt => (
            format!(
                "WEBVTT\n\n00:00:00.000 --> {}\n{text}\n",
                timestamp(transcript.duration, '.')
            ),
            "text/vtt; charset=utf-8",
        ),
        TranscriptFormat::VerboseJson => {
            let duration = transcript.duration.as_secs_f64();
            let verbose = TranscriptionVerbose {
                task: "transcribe".into(),
                language: language.filter(|l| !l.trim().is_empty()).unwrap_or("auto").to_owned(),
                duration,
                text: text.clone(),
                segments: vec![TranscriptionSegment {
                    id: 0,
                    seek: 0,
                    start: 0.0,
                    end: duration,
                    text,
                    tokens: Vec::new(),
                    temperature: 0.0,
                    avg_logprob: 0.0,
                    compression_ratio: 1.0,
                    no_speech_prob: 0.0,
                }],
            };
            (
                serde_json::to_string(&verbose).unwrap_or_default(),
                "application/json; charset=utf-8",
            )
        }
    }
}

/// A transcript, or an error.
pub enum TranscriptionResponse {
    /// The body and its MIME type.
    Transcript(String, &'static str),
    /// A failure.
    Error(ApiError),
}

impl IntoResponse for TranscriptionResponse {
    fn into_response(self) -> Response {
        match self {
            TranscriptionResponse::Transcript(body, content_type) => Response::builder()
                .status(StatusCode::OK)
                .content_type(content_type)
                .body(body),
            TranscriptionResponse::Error(error) => error.into_response(),
        }
    }
}

impl ApiResponse for TranscriptionResponse {
    const BAD_REQUEST_HANDLER: bool = true;

    fn meta() -> MetaResponses {
        Success::new(
            "The transcript: `{\"text\"}` (json), the text alone (text), with its duration and a \
                segment (verbose_json), or subtitles (srt, vtt).",
        )
        .media(
            "application/json; charset=utf-8",
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                one_of: vec![TranscriptionJson::schema_ref(), TranscriptionVerbose::schema_ref()],
                ..MetaSchema::ANY
            })),
        )
        .media("text/plain; charset=utf-8", String::schema_ref())
        .media("text/vtt; charset=utf-8", String::schema_ref())
        .and_errors(docs::TRANSCRIPTION)
    }

    fn register(registry: &mut Registry) {
        TranscriptionJson::register(registry);
        TranscriptionVerbose::register(registry);
        ErrorResponse::register(registry);
    }

    fn from_parse_request_error(error: poem::Error) -> Self {
        TranscriptionResponse::Error(ApiError::from_parse_error(&error))
    }
}

#[OpenApi(tag = "ApiTags::Audio")]
impl AudioApi {
    /// Create speech
    ///
    /// Speaks `input` with a Hailuo voice: the web app's chat repeats the text and its
    /// read-aloud feature speaks that answer (the conversation is deleted afterwards). The
    /// voice is an account-wide setting, so one speech runs on an account at a time.
    #[oai(path = "/v1/audio/speech", method = "post", operation_id = "createSpeech")]
    async fn speech(&self, auth: HailuoTokens, request: Json<SpeechRequestDto>) -> AudioResponse {
        let request = request.0;
        let format = request.response_format.0.unwrap_or(SpeechFormat::Mp3);
        let order = SpeechOrder {
            model: SpeechModel::from_name(request.model.as_ref().map_or("tts-1", |m| m.0.as_str())),
            input: request.input.0,
            voice: request.voice.0,
            format,
            #[allow(clippy::cast_possible_truncation)] // 0.25–4.0 is checked; f32 holds it
            speed: request.speed.unwrap_or(1.0) as f32,
        };
        match self.speech.speak(&auth.tokens(), order).await {
            Ok(audio) => AudioResponse::Audio(audio, format.content_type()),
            Err(error) => AudioResponse::Error(error.into()),
        }
    }

    /// Create transcription
    ///
    /// Transcribes an audio file with the web app's voice input. The file is converted to
    /// MP3 (44.1 kHz stereo) unless it is MP3 already. Silence gives an empty text.
    #[oai(
        path = "/v1/audio/transcriptions",
        method = "post",
        operation_id = "createTranscription"
    )]
    async fn transcriptions(&self, auth: HailuoTokens, form: TranscriptionForm) -> TranscriptionResponse {
        let format = form.response_format.map_or(TranscriptFormat::Json, |format| format.0);
        if form.file.size() > self.max_upload_bytes {
            return TranscriptionResponse::Error(
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorType::InvalidRequestError,
                    ErrorCode::FileTooLarge,
                    format!(
                        "the audio file is larger than the limit of {} bytes",
                        self.max_upload_bytes
                    ),
                )
                .with_param("file"),
            );
        }
        let file_name = form.file.file_name().map(str::to_owned);
        let audio = match form.file.into_vec().await {
            Ok(audio) => audio,
            Err(error) => {
                return TranscriptionResponse::Error(ApiError::invalid_request(format!(
                    "the audio file could not be read: {error}"
                )));
            }
        };
        if audio.is_empty() {
            return TranscriptionResponse::Error(ApiError::from(TranscriptionError::InvalidAudio(
                "the audio file is empty".into(),
            )));
        }
        match self.transcription.transcribe(&auth.tokens(), audio, file_name).await {
            Ok(transcript) => {
                let (body, content_type) = render_transcript(&transcript, format, form.language.as_deref());
                TranscriptionResponse::Transcript(body, content_type)
            }
            Err(error) => TranscriptionResponse::Error(error.into()),
        }
    }
}

#[cfg(test)]
#[path = "audio_props.rs"]
mod props;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_subtitle_shaped() {
        assert_eq!(timestamp(Duration::from_millis(3_723_456), ','), "01:02:03,456");
        assert_eq!(timestamp(Duration::from_millis(1_500), '.'), "00:00:01.500");
    }

    #[test]
    fn subtitles_span_the_whole_audio() {
        let transcript = Transcript {
            text: "你好".into(),
            duration: Duration::from_millis(2_250),
        };
        let (srt, _) = render_transcript(&transcript, TranscriptFormat::Srt, None);
        assert_eq!(srt, "1\n00:00:00,000 --> 00:00:02,250\n你好\n");
        let (vtt, content_type) = render_transcript(&transcript, TranscriptFormat::Vtt, None);
        assert_eq!(vtt, "WEBVTT\n\n00:00:00.000 --> 00:00:02.250\n你好\n");
        assert!(content_type.starts_with("text/vtt"));
    }
}
