//! Sending a chat message (protocol §5): the multipart request signed with the chat formula,
//! and the answer read as an event stream.

use futures::StreamExt;
use reqwest::Method;
use reqwest::multipart::Form;

use super::HailuoClient;
use super::answer::decode_answer;
use super::files::chat_form;
use super::prompt::{ATTACHMENT_FOCUS, build_msg_content};
use super::request::{self, Caller};
use super::signing::sign_chat;
use crate::domain::chat::{Attachment, ChatPrompt};
use crate::domain::ports::{Account, AnswerStream, ProviderError};

/// Sends a chat message.
pub const CHAT_PATH: &str = "/v4/api/chat/msg";
/// The web app's only character.
pub const CHARACTER_ID: &str = "1";
/// The `chatID` of a new conversation.
pub const NEW_CHAT_ID: &str = "0";
/// Web search off.
const SEARCH_MODE: &str = "0";

/// The text fields of a chat message, before signing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatFields {
    /// The prompt text (protocol §5.1).
    pub msg_content: String,
    /// `0` or the conversation to continue.
    pub chat_id: String,
    /// The attachments' JSON array text (protocol §7), when there are any.
    pub form: Option<String>,
}

impl ChatFields {
    /// The fields of `prompt`, without the attachments' form.
    pub fn from_prompt(prompt: &ChatPrompt) -> Self {
        let mut msg_content = build_msg_content(prompt);
        // Files without a word: the upstream wants text, so ask it to look at the files.
        if msg_content.trim().is_empty() && !prompt.attachment_urls().is_empty() {
            msg_content = ATTACHMENT_FOCUS.to_owned();
        }
        Self {
            msg_content,
            chat_id: prompt
                .conversation
                .as_ref()
                .map_or_else(|| NEW_CHAT_ID.to_owned(), |id| id.as_str().to_owned()),
            form: None,
        }
    }

    /// The multipart form, in the web app's order; fields with an empty value are left out.
    pub fn multipart(&self) -> Form {
        let fields = [
            ("characterID", CHARACTER_ID),
            ("msgContent", self.msg_content.as_str()),
            ("chatID", self.chat_id.as_str()),
            ("searchMode", SEARCH_MODE),
            ("form", self.form.as_deref().unwrap_or("")),
        ];
        fields
            .into_iter()
            .filter(|(_, value)| !value.is_empty())
            .fold(Form::new(), |form, (name, value)| form.text(name, value.to_owned()))
    }
}

impl HailuoClient {
    /// Sends `prompt` on `account` and returns its answer stream once the upstream accepts.
    ///
    /// # Errors
    /// [`ProviderError::AccountRejected`] for an HTTP status below 500 or a JSON envelope with
    /// a non-zero code instead of a stream; [`ProviderError::Unavailable`] or
    /// [`ProviderError::Timeout`] when the upstream cannot be reached or answers 5xx;
    /// [`ProviderError::BadResponse`] for any other answer that is not an event stream.
    pub async fn send_prompt(&self, account: &Account, prompt: &ChatPrompt) -> Result<AnswerStream, ProviderError> {
        self.send_prompt_with(account, prompt, Vec::new()).await
    }

    /// As [`Self::send_prompt`], with `attachments` uploaded first (protocol §7) and listed in
    /// the message's form.
    ///
    /// # Errors
    /// As [`Self::send_prompt`], and those of [`Self::upload_attachments`].
    pub async fn send_prompt_with(
        &self,
        account: &Account,
        prompt: &ChatPrompt,
        attachments: Vec<Attachment>,
    ) -> Result<AnswerStream, ProviderError> {
        let answer = self
            .open_answer(account, prompt, attachments)
            .await
            .map_err(|error| self.read_refusal(error))?;
        // A refusal comes as an error event as well as an envelope: both are read alike.
        let client = self.clone();
        Ok(answer
            .map(move |delta| delta.map_err(|error| client.read_refusal(error)))
            .boxed())
    }

    /// Uploads the attachments, sends the message and opens its answer stream.
    async fn open_answer(
        &self,
        account: &Account,
        prompt: &ChatPrompt,
        attachments: Vec<Attachment>,
    ) -> Result<AnswerStream, ProviderError> {
        request::check_token(&account.token)?;
        let mut fields = ChatFields::from_prompt(prompt);
        if !attachments.is_empty() {
            let files = self.upload_attachments(account, attachments).await?;
            fields.form = Some(chat_form(&files, &fields.msg_content));
        }
        let mut call = self
            .call(Method::POST, CHAT_PATH, Caller::Device(&account.device), &account.token)
            .streaming();
        if let Some(conversation) = &prompt.conversation {
            call = call.in_conversation(conversation);
        }
        let signature = sign_chat(
            call.full_uri(),
            CHARACTER_ID,
            &fields.msg_content,
            &fields.chat_id,
            fields.form.as_deref(),
            call.unix(),
            &self.profile().salt,
        );
        tracing::debug!(uri = %call.full_uri(), account = %account.token, "sending a chat message");
        let request = self
            .request(&call, &account.token, &signature)
            .multipart(fields.multipart());
        let response = self.send_chat_timed(&call, &account.token, request).await?;

        let response = request::expect_event_stream(response, "the chat").await?;
        Ok(decode_answer(self.timed_body(response), std::convert::identity))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::chat::{ChatMessage, ConversationId};

    #[test]
    fn a_new_conversation_is_chat_zero_without_a_form() {
        let prompt = ChatPrompt::new(vec![ChatMessage::text("user", "你好")]);
        let fields = ChatFields::from_prompt(&prompt);
        assert_eq!(
            fields,
            ChatFields {
                msg_content: "你好\n".into(),
                chat_id: "0".into(),
                form: None
            }
        );
    }

    #[test]
    fn files_without_text_ask_the_upstream_to_look_at_them() {
        let prompt = ChatPrompt::new(vec![ChatMessage {
            role: "user".into(),
            parts: vec![crate::domain::chat::ContentPart::Image { url: "data:,x".into() }],
        }]);
        assert_eq!(ChatFields::from_prompt(&prompt).msg_content, ATTACHMENT_FOCUS);
    }

    #[test]
    fn a_continued_conversation_sends_its_id() {
        let prompt = ChatPrompt {
            conversation: ConversationId::parse("243612345678901234"),
            ..ChatPrompt::new(vec![ChatMessage::text("user", "again")])
        };
        assert_eq!(ChatFields::from_prompt(&prompt).chat_id, "243612345678901234");
    }
}
