//! The `minimax-agent` dialect's chat (protocol §12.4): [`AgentClient`] implements the
//! domain's [`ChatProvider`] over the shared core of [`HailuoClient`] (its query, signing,
//! device registration and OSS uploads), with JSON `matrix` endpoints: a message is sent by
//! `send_msg`, its answer read by polling `get_chat_detail` ([`poll`]) and the conversation
//! removed by `delete_chat`.

pub mod poll;

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::HailuoClient;
use super::chat::ChatFields;
use super::files::UploadedFile;
use super::request::{self, CallFailure, Caller};
use crate::config::AnswerPolling;
use crate::domain::chat::{AccountToken, Attachment, ChatPrompt, ConversationId};
use crate::domain::ports::{Account, AnswerStream, ChatProvider, Device, ProviderError};

/// Sends a chat message.
pub const SEND_PATH: &str = "/matrix/api/v1/chat/send_msg";
/// Reads a conversation's messages.
pub const DETAIL_PATH: &str = "/matrix/api/v1/chat/get_chat_detail";
/// Deletes a conversation.
pub const DELETE_PATH: &str = "/matrix/api/v1/chat/delete_chat";
/// `file_type` of an attached image.
const IMAGE_FILE_TYPE: u8 = 2;
/// `file_type` of an attached document.
const DOCUMENT_FILE_TYPE: u8 = 6;
/// What `delete_chat` answers while the conversation's answer is still being generated.
pub const CHAT_RUNNING: &str = "chat is running";
/// How many times `delete_chat` is asked while it answers [`CHAT_RUNNING`].
const DELETE_TRIES: u32 = 4;
/// The pause between two of those tries.
const DELETE_PAUSE: Duration = Duration::from_millis(250);

/// The client of the MiniMax Agent web app: cheap to clone.
#[derive(Clone)]
pub struct AgentClient {
    core: HailuoClient,
    polling: AnswerPolling,
}

impl AgentClient {
    /// The agent's chat over `core`, which speaks the `minimax-agent` profile; its answers
    /// are polled as the profile's `[upstream.profile.poll]` says.
    pub fn new(core: HailuoClient) -> Self {
        let polling = core.profile().poll.clone();
        Self { core, polling }
    }

    /// Sends a matrix JSON call on `account`'s device and reads its `base_resp` envelope.
    ///
    /// # Errors
    /// As [`HailuoClient::call_json`].
    pub async fn matrix(&self, path: &str, account: &Account, body: &Value) -> Result<Value, CallFailure> {
        let call = self
            .core
            .call(Method::POST, path, Caller::Device(&account.device), &account.token);
        self.core.call_json(call, &account.token, Some(body)).await
    }

    /// Sends a message: `send_msg` from the page of the conversation it continues, listened
    /// to in the background when its answer is late (it may make a conversation yet).
    async fn send_message(
        &self,
        account: &Account,
        body: &Value,
        conversation: Option<&ConversationId>,
    ) -> Result<Value, CallFailure> {
        let mut call = self
            .core
            .call(Method::POST, SEND_PATH, Caller::Device(&account.device), &account.token);
        if let Some(conversation) = conversation {
            call = call.in_conversation(conversation);
        }
        self.core
            .call_json_chat(call, &account.token, body, conversation_in)
            .await
    }

    /// A refusal of a matrix call as the domain reads it (busy markers and refusal texts
    /// included).
    fn refused(&self, failure: CallFailure) -> ProviderError {
        self.core.read_refusal(failure.into_refused())
    }

    /// Sends `prompt` (its attachments uploaded first) and returns its polled answer; every
    /// refusal on the way, the uploads' included, read as the other dialects read theirs.
    async fn send_prompt(
        &self,
        account: &Account,
        prompt: &ChatPrompt,
        attachments: Vec<Attachment>,
    ) -> Result<AnswerStream, ProviderError> {
        self.open_answer(account, prompt, attachments)
            .await
            .map_err(|error| self.core.read_refusal(error))
    }

    /// Uploads the attachments, sends the message and starts polling its answer.
    async fn open_answer(
        &self,
        account: &Account,
        prompt: &ChatPrompt,
        attachments: Vec<Attachment>,
    ) -> Result<AnswerStream, ProviderError> {
        request::check_token(&account.token)?;
        let text = ChatFields::from_prompt(prompt).msg_content;
        let files = if attachments.is_empty() {
            Vec::new()
        } else {
            self.core.upload_attachments(account, attachments).await?
        };
        let body = send_body(&text, prompt.conversation.as_ref(), &files);
        tracing::debug!(account = %account.token, "sending an agent chat message");
        // Refused before any content: as on the other dialects, about the account.
        let sent = self
            .send_message(account, &body, prompt.conversation.as_ref())
            .await
            .map_err(CallFailure::into_account_rejected)?;
        let Some(conversation) = conversation_in(&sent) else {
            return Err(ProviderError::BadResponse {
                message: "send_msg answered no chat_id".to_owned(),
            });
        };
        let poller = poll::AnswerPoller::new(self.clone(), account.clone(), conversation, self.polling.clone());
        Ok(poller.into_stream().boxed())
    }

    /// Deletes `conversation`, asking again while its answer is still being generated.
    async fn delete_chat(&self, account: &Account, conversation: &ConversationId) -> Result<(), ProviderError> {
        let body = json!({ "chat_id": chat_id_value(conversation.as_str()) });
        let mut tries = 0;
        loop {
            tries += 1;
            match self.matrix(DELETE_PATH, account, &body).await {
                Ok(_) => return Ok(()),
                Err(CallFailure::Envelope { message, .. })
                    if message.contains(CHAT_RUNNING) && tries < DELETE_TRIES =>
                {
                    tokio::time::sleep(DELETE_PAUSE).await;
                }
                Err(failure) => return Err(self.refused(failure)),
            }
        }
    }

    /// The shared core.
    pub fn core(&self) -> &HailuoClient {
        &self.core
    }
}

/// The conversation a `send_msg` answer names (`chat_id`, a number or text).
fn conversation_in(sent: &Value) -> Option<ConversationId> {
    match sent.get("chat_id")? {
        Value::Number(id) => Some(ConversationId::from_upstream(id.to_string())),
        Value::String(id) if !id.is_empty() => Some(ConversationId::from_upstream(id.clone())),
        _ => None,
    }
}

/// A conversation id as the matrix endpoints take it: a number when it is one.
fn chat_id_value(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |number| json!(number))
}

/// The `send_msg` body of `text` (continuing `conversation` when given) with `files` attached.
pub fn send_body(text: &str, conversation: Option<&ConversationId>, files: &[UploadedFile]) -> Value {
    let attachments: Vec<Value> = files
        .iter()
        .map(|file| {
            let file_type = if file.is_image {
                IMAGE_FILE_TYPE
            } else {
                DOCUMENT_FILE_TYPE
            };
            json!({"file_type": file_type, "file_id": file.file_id, "file_name": file.file_name})
        })
        .collect();
    let mut body = json!({
        "msg_type": 1,
        "text": text,
        "chat_type": 1,
        "attachments": attachments,
        "selected_mcp_tools": [],
        "backend_config": {},
        "sub_agent_ids": [],
    });
    if let Some(conversation) = conversation {
        body["chat_id"] = chat_id_value(conversation.as_str());
    }
    body
}

#[async_trait]
impl ChatProvider for AgentClient {
    async fn register_device(&self, token: &AccountToken) -> Result<Device, ProviderError> {
        self.core.register(token).await
    }

    async fn is_alive(&self, account: &Account) -> Result<bool, ProviderError> {
        self.core.check_alive(account).await
    }

    async fn send(
        &self,
        account: &Account,
        prompt: &ChatPrompt,
        attachments: Vec<Attachment>,
    ) -> Result<AnswerStream, ProviderError> {
        self.send_prompt(account, prompt, attachments).await
    }

    async fn delete_conversation(&self, account: &Account, conversation: &ConversationId) -> Result<(), ProviderError> {
        self.delete_chat(account, conversation).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_new_message_has_no_chat_id_and_a_continued_one_names_it_as_a_number() {
        let body = send_body("你好\n", None, &[]);
        assert_eq!(body["msg_type"], 1);
        assert_eq!(body["text"], "你好\n");
        assert!(body.get("chat_id").is_none());
        assert_eq!(body["attachments"], json!([]));
        let conversation = ConversationId::parse("243612345678901234").unwrap();
        let continued = send_body("again", Some(&conversation), &[]);
        assert_eq!(continued["chat_id"], json!(243_612_345_678_901_234_u64));
    }

    #[test]
    fn attachments_name_their_type_id_and_name() {
        let files = [
            UploadedFile {
                file_name: "a.png".into(),
                file_id: "11".into(),
                is_image: true,
            },
            UploadedFile {
                file_name: "b.pdf".into(),
                file_id: "12".into(),
                is_image: false,
            },
        ];
        let body = send_body("look", None, &files);
        assert_eq!(
            body["attachments"],
            json!([
                {"file_type": 2, "file_id": "11", "file_name": "a.png"},
                {"file_type": 6, "file_id": "12", "file_name": "b.pdf"}
            ])
        );
    }
}
