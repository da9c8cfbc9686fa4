//! Reading a `minimax-agent` answer by polling `get_chat_detail` (protocol §12.4): the
//! assistant's message grows while it is generated, and each poll that sees it grow yields
//! the new text as a delta. Polls come fast at first and back off, each pause twice the last
//! up to the profile's longest (a long answer costs about one poll a second); the
//! answer is complete when its message carries the profile's end marker, or when its content
//! has not changed for the settle time, and the stream ends there.

use futures::Stream;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{AgentClient, DETAIL_PATH, chat_id_value};
use crate::config::AnswerPolling;
use crate::domain::chat::{AnswerDelta, ConversationId};
use crate::domain::ports::{Account, ProviderError};

/// `msg_type` of the user's messages.
const USER_MESSAGE: i64 = 1;
/// `msg_type` of the assistant's messages.
const ASSISTANT_MESSAGE: i64 = 2;

/// What one poll saw of the answer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AnswerSeen {
    /// The assistant message's id, once it exists.
    pub message_id: String,
    /// Its content so far.
    pub content: String,
    /// Whether it carries a true end marker.
    pub ended: bool,
}

/// The answer to the last user message in a `get_chat_detail` payload: the first assistant
/// message after it (empty until there is one).
pub fn answer_in(detail: &Value, end_marker: &str) -> AnswerSeen {
    let messages = detail
        .get("messages")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    let msg_type = |message: &Value| message.get("msg_type").and_then(Value::as_i64);
    let after_user = messages
        .iter()
        .rposition(|message| msg_type(message) == Some(USER_MESSAGE))
        .map_or(0, |index| index + 1);
    let Some(answer) = messages[after_user..]
        .iter()
        .find(|message| msg_type(message) == Some(ASSISTANT_MESSAGE))
    else {
        return AnswerSeen::default();
    };
    let message_id = match answer.get("msg_id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        _ => String::new(),
    };
    let ended = !end_marker.is_empty()
        && match answer.get(end_marker) {
            Some(Value::Bool(flag)) => *flag,
            Some(Value::Number(number)) => number.as_f64().is_some_and(|n| n != 0.0),
            Some(Value::String(text)) => !text.is_empty() && text != "0" && text != "false",
            _ => false,
        };
    AnswerSeen {
        message_id,
        content: answer
            .get("msg_content")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        ended,
    }
}

/// The poll of one answer, from the message sent to the answer settled.
pub struct AnswerPoller {
    client: AgentClient,
    account: Account,
    conversation: ConversationId,
    polling: AnswerPolling,
    /// The content already yielded.
    shown: String,
    /// The pause before the next poll.
    pause: std::time::Duration,
    /// When the content last changed (or the message was sent).
    changed_at: Instant,
    /// By when some content must have appeared.
    first_deadline: Instant,
    /// Whether the opening delta (naming the conversation) has been yielded.
    opened: bool,
    /// Whether the final delta has been yielded.
    finished: bool,
    /// Polls made so far.
    polls: u32,
}

impl AnswerPoller {
    /// The poll of the answer in `conversation`, just sent on `account`.
    pub fn new(client: AgentClient, account: Account, conversation: ConversationId, polling: AnswerPolling) -> Self {
        let now = Instant::now();
        let first_deadline = now + client.core().first_byte_timeout();
        Self {
            pause: polling.first,
            client,
            account,
            conversation,
            polling,
            shown: String::new(),
            changed_at: now,
            first_deadline,
            opened: false,
            finished: false,
            polls: 0,
        }
    }

    /// The answer as a stream of deltas: an opening one naming the conversation, one per poll
    /// that saw the content grow, and a final one once it settled; then the stream ends.
    pub fn into_stream(self) -> impl Stream<Item = Result<AnswerDelta, ProviderError>> + Send + 'static {
        futures::stream::unfold(Some(self), |state| async move {
            let mut poller = state?;
            match poller.next_delta().await {
                Ok(Some(delta)) => Some((Ok(delta), Some(poller))),
                Ok(None) => {
                    tracing::debug!(polls = poller.polls, "an agent answer settled");
                    None
                }
                Err(error) => Some((Err(error), None)),
            }
        })
    }

    fn delta(&self, message_id: &str, text: String, finished: bool) -> AnswerDelta {
        AnswerDelta {
            conversation: self.conversation.clone(),
            message_id: message_id.to_owned(),
            text,
            finished,
        }
    }

    /// The next delta, polling until there is one; `None` once the final one was yielded.
    async fn next_delta(&mut self) -> Result<Option<AnswerDelta>, ProviderError> {
        if self.finished {
            return Ok(None);
        }
        if !self.opened {
            self.opened = true;
            return Ok(Some(self.delta("", String::new(), false)));
        }
        loop {
            let now = Instant::now();
            let settles_at = self.changed_at + self.polling.settle;
            let wake = if self.shown.is_empty() {
                now + self.pause
            } else {
                (now + self.pause).min(settles_at)
            };
            tokio::time::sleep_until(wake).await;
            let seen = self.poll().await?;
            let now = Instant::now();
            if seen.content != self.shown {
                let text = match seen.content.strip_prefix(self.shown.as_str()) {
                    Some(added) => added.to_owned(),
                    None => {
                        tracing::warn!("an agent answer changed what it had said; only what follows is streamed");
                        String::new()
                    }
                };
                self.shown = seen.content;
                self.changed_at = now;
                self.pause = (self.pause * 2).min(self.polling.max);
                self.finished = seen.ended;
                return Ok(Some(self.delta(&seen.message_id, text, seen.ended)));
            }
            if seen.ended || (!self.shown.is_empty() && now >= self.changed_at + self.polling.settle) {
                self.finished = true;
                return Ok(Some(self.delta(&seen.message_id, String::new(), true)));
            }
            if self.shown.is_empty() && now >= self.first_deadline {
                tracing::warn!("an agent answer showed no content in time");
                return Err(ProviderError::Timeout);
            }
            self.pause = (self.pause * 2).min(self.polling.max);
        }
    }

    /// One `get_chat_detail` poll.
    async fn poll(&mut self) -> Result<AnswerSeen, ProviderError> {
        self.polls += 1;
        let body = json!({ "chat_id": chat_id_value(self.conversation.as_str()) });
        let detail = self
            .client
            .matrix(DETAIL_PATH, &self.account, &body)
            .await
            .map_err(|failure| self.client.refused(failure))?;
        Ok(answer_in(&detail, &self.polling.end_marker))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_the_assistant_message_after_the_last_user_message() {
        let detail = json!({"messages": [
            {"msg_type": 1, "msg_content": "hi"},
            {"msg_type": 2, "msg_content": "old answer", "msg_id": 5},
            {"msg_type": 1, "msg_content": "again"},
            {"msg_type": 2, "msg_content": "new", "msg_id": "6", "done": true}
        ]});
        let seen = answer_in(&detail, "");
        assert_eq!(seen.content, "new");
        assert_eq!(seen.message_id, "6");
        assert!(!seen.ended, "no end marker named");
        assert!(answer_in(&detail, "done").ended);
        assert!(!answer_in(&detail, "finished").ended);
    }

    #[test]
    fn before_the_assistant_answers_there_is_nothing_to_show() {
        let detail = json!({"messages": [
            {"msg_type": 1, "msg_content": "hi"},
            {"msg_type": 2, "msg_content": "old answer"},
            {"msg_type": 1, "msg_content": "again"}
        ]});
        assert_eq!(answer_in(&detail, ""), AnswerSeen::default());
        assert_eq!(answer_in(&json!({}), ""), AnswerSeen::default());
    }

    #[test]
    fn an_end_marker_may_be_a_number_or_text() {
        let message = |marker: Value| json!({"messages": [{"msg_type": 2, "msg_content": "x", "end": marker}]});
        assert!(answer_in(&message(json!(1)), "end").ended);
        assert!(!answer_in(&message(json!(0)), "end").ended);
        assert!(answer_in(&message(json!("yes")), "end").ended);
        assert!(!answer_in(&message(json!("false")), "end").ended);
    }
}
