//! `POST /v1/audio/speech` and `POST /v1/audio/transcriptions`: OpenAI's audio endpoints,
//! spoken and heard by a Hailuo account.

use std::sync::Arc;
use std::time::Duration;

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::types::multipart::Upload;
use poem_openapi::types::{Example, Type};
use poem_openapi::{ApiResponse, Multipart, Object, OpenApi};
use serde::Serialize;

use crate::domain::audio::{SpeechFormat, SpeechModel, Transcript};
use crate::domain::service::{SpeechOrder, SpeechService, TranscriptionError, TranscriptionService};

use super::ApiTags;
use super::auth::HailuoTokens;
use super::error::{ApiError, ErrorCode, ErrorResponse, ErrorType};
use super::openapi::{self, Success};
use super::text::Text;

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

/// A speech request (OpenAI's format).
#[derive(Debug, Object)]
#[oai(example)]
pub struct SpeechRequestDto {
    /// `tts-1` or `tts-1-hd` select the voice table; other names use `tts-1`'s.
    pub model: Option<Text>,
    /// The text to speak, 1 to 4,096 characters.
    pub input: Text,
    /// An OpenAI voice (`alloy`, `echo`, `fable`, `onyx`, `nova`, `shimmer`), mapped to a Hailuo
    /// voice, or a Hailuo voice id as it is (`male-botong`, `Guodegang_hailuo`, a cloned `puv_...`).
    pub voice: Text,
    /// `mp3` (default: the upstream's MP3 as it is), `wav` (16-bit PCM), `pcm` (raw 16-bit
    /// little-endian mono at 24 kHz) or `flac`. `opus` and `aac` are not supported.
    pub response_format: Option<Text>,
    /// 0.25 to 4.0 (default 1.0); the pitch is kept.
    pub speed: Option<f64>,
}

impl Example for SpeechRequestDto {
    fn example() -> Self {
        Self {
            model: Some(Text::from("tts-1")),
            input: Text::from("今天天气真好，我们去公园散步吧。"),
            voice: Text::from("alloy"),
            response_format: Some(Text::from("mp3")),
            speed: Some(1.0),
        }
    }
}

/// The formats `response_format` accepts.
const SPEECH_FORMATS: &str = "mp3, wav, pcm, flac";

fn speech_format(name: Option<&str>) -> Result<SpeechFormat, ApiError> {
    match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("mp3") => Ok(SpeechFormat::Mp3),
        Some("wav") => Ok(SpeechFormat::Wav),
        Some("pcm") => Ok(SpeechFormat::Pcm),
        Some("flac") => Ok(SpeechFormat::Flac),
        Some(other) => Err(ApiError::invalid_request(format!(
            "`response_format` {other:?} is not supported; use one of {SPEECH_FORMATS}"
        ))
        .with_param("response_format")),
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
            .and_errors()
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
    pub response_format: Option<String>,
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
enum TranscriptFormat {
    Json,
    Text,
    VerboseJson,
    Srt,
    Vtt,
}

fn transcript_format(name: Option<&str>) -> Result<TranscriptFormat, ApiError> {
    match name.map(|n| n.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("json") => Ok(TranscriptFormat::Json),
        Some("text") => Ok(TranscriptFormat::Text),
        Some("verbose_json") => Ok(TranscriptFormat::VerboseJson),
        Some("srt") => Ok(TranscriptFormat::Srt),
        Some("vtt") => Ok(TranscriptFormat::Vtt),
        Some(other) => Err(ApiError::invalid_request(format!(
            "`response_format` {other:?} is not supported; use one of json, text, verbose_json, srt, vtt"
        ))
        .with_param("response_format")),
    }
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
        .media("application/json; charset=utf-8", TranscriptionJson::schema_ref())
        .media("text/plain; charset=utf-8", String::schema_ref())
        .and_errors()
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
    #[oai(path = "/v1/audio/speech", method = "post")]
    async fn speech(&self, auth: HailuoTokens, request: Json<SpeechRequestDto>) -> AudioResponse {
        let request = request.0;
        let format = match speech_format(request.response_format.as_ref().map(|f| f.0.as_str())) {
            Ok(format) => format,
            Err(error) => return AudioResponse::Error(error),
        };
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
    #[oai(path = "/v1/audio/transcriptions", method = "post")]
    async fn transcriptions(&self, auth: HailuoTokens, form: TranscriptionForm) -> TranscriptionResponse {
        let format = match transcript_format(form.response_format.as_deref()) {
            Ok(format) => format,
            Err(error) => return TranscriptionResponse::Error(error),
        };
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
