//! Speech (protocol §8): the chat repeats the text verbatim, the account's voice is set, the
//! spoken audio of that answer is polled until ready, and its MP3 parts are downloaded.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::Method;
use reqwest::header::REFERER;
use serde::Deserialize;
use serde_json::json;

use super::HailuoClient;
use super::answer::read_to_end;
use super::request::{Caller, transport_error};
use crate::domain::audio::SpeechRequest;
use crate::domain::chat::{ChatMessage, ChatPrompt, ConversationId};
use crate::domain::ports::{Account, ProviderError, SpeechOutcome, SpeechProvider};

/// Selects the account's voice.
pub const VOICE_CONFIG_PATH: &str = "/v1/api/chat/update_robot_custom_config";
/// The spoken audio of an assistant message.
pub const MESSAGE_TTS_PATH: &str = "/v1/api/chat/msg_tts";
/// The `requestStatus` from which the audio is ready.
const READY_STATUS: i64 = 2;
/// How long the rest of the spoken chat answer is read after its final event.
const ANSWER_END_WAIT: Duration = Duration::from_secs(5);
/// Time allowed to download one part of the audio.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for the audio, and how often to ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeechTiming {
    /// Give up after this long.
    pub timeout: Duration,
    /// Pause between polls.
    pub poll_interval: Duration,
}

impl Default for SpeechTiming {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
        }
    }
}

/// The reference client's prompt asking the chat to repeat `text` verbatim, with newlines
/// turned into `。` and bracket-like characters into spaces (they derail the repetition).
pub fn repeat_prompt(text: &str) -> String {
    const BRACKETS: &str = "()（）【】[]{}「」『』〖〗《》<>〈〉#";
    let cleaned: String = text
        .replace("\r\n", "\n")
        .chars()
        .map(|c| match c {
            '\n' | '\r' => '。',
            c if BRACKETS.contains(c) => ' ',
            c => c,
        })
        .collect();
    format!(
        "user:完整复述以下内容，不要进行任何修改，也不需要进行任何解释。\n{cleaned}\nassistant:好的，我将开始完整复述：\n"
    )
}

/// The payload of `msg_tts`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageTts {
    #[serde(default)]
    request_status: i64,
    #[serde(default)]
    result: Vec<String>,
}

impl HailuoClient {
    /// Sets the account-wide voice.
    async fn select_voice(&self, account: &Account, voice: &str) -> Result<(), ProviderError> {
        let call = self.call(
            Method::POST,
            VOICE_CONFIG_PATH,
            Caller::Device(&account.device),
            &account.token,
        );
        let body = json!({"robotID": "1", "config": {"robotVoiceID": voice}});
        self.call_json(call, &account.token, Some(&body))
            .await
            .map_err(|failure| failure.into_refused())?;
        Ok(())
    }

    /// Polls `msg_tts` until the audio is ready (pausing between polls) and returns its URLs.
    async fn await_audio(
        &self,
        account: &Account,
        message_id: &str,
        voice: &str,
    ) -> Result<Vec<String>, ProviderError> {
        let deadline = tokio::time::Instant::now() + self.speech.timeout;
        let path = format!(
            "{MESSAGE_TTS_PATH}?msgID={}&timbre={}",
            super::signing::encode_query_value(message_id),
            super::signing::encode_query_value(voice)
        );
        loop {
            let call = self.call(Method::GET, &path, Caller::Device(&account.device), &account.token);
            let payload = self
                .call_json(call, &account.token, None)
                .await
                .map_err(|failure| failure.into_refused())?;
            let tts: MessageTts = serde_json::from_value(payload).map_err(|error| ProviderError::BadResponse {
                message: format!("msg_tts answered an unexpected payload: {error}"),
            })?;
            if tts.request_status >= READY_STATUS {
                if tts.result.is_empty() {
                    return Err(ProviderError::refused("the upstream produced no audio for this text"));
                }
                return Ok(tts.result);
            }
            if tokio::time::Instant::now() + self.speech.poll_interval > deadline {
                return Err(ProviderError::GaveUp {
                    message: format!(
                        "the spoken audio was not ready within {} s",
                        self.speech.timeout.as_secs()
                    ),
                });
            }
            tokio::time::sleep(self.speech.poll_interval).await;
        }
    }

    /// Downloads the audio parts in order and joins them.
    async fn download_audio(&self, urls: &[String]) -> Result<Vec<u8>, ProviderError> {
        let referer = format!("{}/", self.profile().origin.trim_end_matches('/'));
        let mut audio = Vec::new();
        for url in urls {
            let response = self
                .http()
                .get(url)
                .header(REFERER, &referer)
                .timeout(DOWNLOAD_TIMEOUT)
                .send()
                .await
                .map_err(transport_error)?;
            let status = response.status();
            if !status.is_success() {
                return Err(ProviderError::Unavailable {
                    message: format!("downloading the spoken audio answered HTTP {}", status.as_u16()),
                });
            }
            audio.extend_from_slice(&response.bytes().await.map_err(transport_error)?);
        }
        Ok(audio)
    }

    /// The whole flow after the chat: voice, polling, download.
    async fn speak_message(&self, account: &Account, message_id: &str, voice: &str) -> Result<Vec<u8>, ProviderError> {
        self.select_voice(account, voice).await?;
        let urls = self.await_audio(account, message_id, voice).await?;
        self.download_audio(&urls).await
    }
}

#[async_trait]
impl SpeechProvider for HailuoClient {
    async fn speak(&self, account: &Account, request: &SpeechRequest) -> SpeechOutcome {
        let prompt = ChatPrompt::new(vec![ChatMessage::text("user", repeat_prompt(&request.text))]);
        let mut answer = match self.send_prompt(account, &prompt).await {
            Ok(answer) => answer,
            Err(error) => {
                return SpeechOutcome {
                    conversation: None,
                    audio: Err(error),
                };
            }
        };
        let mut conversation: Option<ConversationId> = None;
        let mut message_id = String::new();
        while let Some(delta) = answer.next().await {
            match delta {
                Ok(delta) => {
                    conversation = Some(delta.conversation);
                    message_id = delta.message_id;
                    if delta.finished {
                        break;
                    }
                }
                Err(error) => {
                    return SpeechOutcome {
                        conversation,
                        audio: Err(error),
                    };
                }
            }
        }
        let audio = if message_id.is_empty() {
            Err(ProviderError::BadResponse {
                message: "the answer to speak carries no msgID".to_owned(),
            })
        } else {
            // The chat's response is read to its end meanwhile: the account is busy upstream
            // until it has ended, and the caller holds the account until the audio is here.
            let (audio, ()) = tokio::join!(
                self.speak_message(account, &message_id, &request.voice),
                read_to_end(answer, ANSWER_END_WAIT)
            );
            audio.map_err(|error| self.read_refusal(error))
        };
        SpeechOutcome { conversation, audio }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repeat_prompt_cleans_newlines_and_brackets() {
        assert_eq!(
            repeat_prompt("第一行\n(注)【重点】#标签"),
            "user:完整复述以下内容，不要进行任何修改，也不需要进行任何解释。\n第一行。 注  重点  标签\nassistant:好的，我将开始完整复述：\n"
        );
    }
}
