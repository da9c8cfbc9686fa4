//! Transcription (protocol §9): the MP3 goes up as a voice message; the first `asr_chunk`
//! event holds the whole transcript, and the rest of the stream (the app's spoken reply) is
//! dropped unread.

use async_trait::async_trait;
use eventsource_stream::Eventsource;
use futures::StreamExt;
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use serde_json::Value;

use super::HailuoClient;
use super::chat::{CHARACTER_ID, NEW_CHAT_ID};
use super::request::{self, Caller};
use super::signing::sign_voice;
use crate::domain::ports::{Account, ProviderError, TranscriptionProvider};

/// Sends a voice message.
pub const VOICE_PATH: &str = "/v1/api/chat/phone_msg";
/// The event that carries the transcript.
const TRANSCRIPT_EVENT: &str = "asr_chunk";
/// No speech was heard.
const NO_SPEECH: i64 = 1_200_041;

/// One event of the voice answer.
#[derive(Debug, Deserialize)]
struct VoiceEvent {
    #[serde(default)]
    status_code: i64,
    #[serde(default)]
    err_message: String,
    #[serde(default)]
    data: Value,
}

/// What one event of the voice answer means.
#[derive(Debug, PartialEq, Eq)]
pub enum VoiceEventMeaning {
    /// The transcript: stop reading.
    Transcript(String),
    /// Nothing for us (the spoken reply, notices).
    Skip,
}

/// Reads one event of the voice answer.
///
/// # Errors
/// [`ProviderError::Refused`] with the upstream's message for a non-zero status (but
/// `1200041`, no speech heard, which is an empty transcript, and the known refusals such as
/// a busy account).
pub fn read_voice_event(event: &str, data: &str) -> Result<VoiceEventMeaning, ProviderError> {
    let Ok(parsed) = serde_json::from_str::<VoiceEvent>(data) else {
        return Ok(VoiceEventMeaning::Skip);
    };
    if parsed.status_code == NO_SPEECH {
        return Ok(VoiceEventMeaning::Transcript(String::new()));
    }
    if parsed.status_code != 0 {
        let message = if parsed.err_message.trim().is_empty() {
            format!("upstream error code {}", parsed.status_code)
        } else {
            parsed.err_message
        };
        return Err(request::known_refusal(&parsed.status_code.to_string(), &message)
            .unwrap_or_else(|| ProviderError::refused(message)));
    }
    if event == TRANSCRIPT_EVENT {
        let text = parsed.data.get("text").and_then(Value::as_str).unwrap_or_default();
        return Ok(VoiceEventMeaning::Transcript(text.to_owned()));
    }
    Ok(VoiceEventMeaning::Skip)
}

#[async_trait]
impl TranscriptionProvider for HailuoClient {
    async fn transcribe(&self, account: &Account, mp3: &[u8]) -> Result<String, ProviderError> {
        self.read_transcript(account, mp3)
            .await
            .map_err(|error| self.read_refusal(error))
    }
}

impl HailuoClient {
    /// Sends the voice message and reads its answer up to the transcript.
    async fn read_transcript(&self, account: &Account, mp3: &[u8]) -> Result<String, ProviderError> {
        request::check_token(&account.token)?;
        let call = self
            .call(
                Method::POST,
                VOICE_PATH,
                Caller::Device(&account.device),
                &account.token,
            )
            .streaming();
        let signature = sign_voice(
            call.full_uri(),
            CHARACTER_ID,
            NEW_CHAT_ID,
            mp3,
            call.unix(),
            &self.profile().salt,
        );
        let voice = Part::bytes(mp3.to_vec())
            .file_name("audio.mp3")
            .mime_str("audio/mp3")
            .map_err(request::transport_error)?;
        let form = Form::new()
            .text("chatID", NEW_CHAT_ID)
            .text("characterID", CHARACTER_ID)
            .text("playSpeedLevel", "1")
            .part("voiceBytes", voice);
        let request = self.request(&call, &account.token, &signature).multipart(form);
        let response = self
            .send_traced(&call, &account.token, request)
            .await
            .map_err(request::transport_error)?;
        let response = request::expect_event_stream(response, "the voice message").await?;
        let mut events = response.bytes_stream().eventsource();
        while let Some(event) = events.next().await {
            let event = event.map_err(|error| ProviderError::Unavailable {
                message: format!("the voice answer broke off: {error}"),
            })?;
            if let VoiceEventMeaning::Transcript(text) = read_voice_event(&event.event, &event.data)? {
                // Dropping the stream closes the connection: the spoken reply is not wanted.
                return Ok(text);
            }
        }
        Err(ProviderError::Unavailable {
            message: "the voice answer ended without a transcript".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_asr_chunk_is_the_transcript() {
        let data = r#"{"status_code":0,"err_message":"","data":{"text":"你好"}}"#;
        assert_eq!(
            read_voice_event("asr_chunk", data),
            Ok(VoiceEventMeaning::Transcript("你好".into()))
        );
        assert_eq!(read_voice_event("audio_chunk", data), Ok(VoiceEventMeaning::Skip));
    }

    #[test]
    fn no_speech_is_an_empty_transcript_and_other_codes_are_refusals() {
        let silent = r#"{"status_code":1200041,"err_message":"未识别到语音","data":{}}"#;
        assert_eq!(
            read_voice_event("asr_chunk", silent),
            Ok(VoiceEventMeaning::Transcript(String::new()))
        );
        let refused = r#"{"status_code":1500002,"err_message":"音频格式错误","data":{}}"#;
        assert_eq!(
            read_voice_event("asr_chunk", refused),
            Err(ProviderError::refused("音频格式错误"))
        );
        assert_eq!(read_voice_event("asr_chunk", "not json"), Ok(VoiceEventMeaning::Skip));
    }

    #[test]
    fn a_busy_account_is_told_apart_from_a_refused_request() {
        let busy = r#"{"status_code":1200009,"err_message":"上一条回复还未结束","data":{}}"#;
        assert_eq!(
            read_voice_event("asr_chunk", busy),
            Err(ProviderError::AccountBusy {
                message: "上一条回复还未结束".into()
            })
        );
    }
}
