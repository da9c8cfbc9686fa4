//! The conversations the simulated upstream holds, the chat requests it accepted on them and
//! the assistant messages it answered (which `msg_tts` may speak).

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use super::turns::AgentTurn;
use crate::records::ChatRecord;

/// An assistant message the simulator answered: what `msg_tts` may speak.
#[derive(Clone, Debug)]
pub(crate) struct AssistantMessage {
    /// The token whose chat produced it.
    pub token: String,
    /// Its conversation.
    pub chat_id: String,
    /// Its complete content (the answer).
    pub content: String,
    /// When it was answered.
    pub answered: Instant,
}

/// Conversations and the chats on them.
#[derive(Default)]
pub(crate) struct ConversationBook {
    /// Accepted chat requests, in order.
    pub chats: Vec<ChatRecord>,
    /// Live conversations: id → owning token, in creation order.
    pub live: Vec<(String, String)>,
    /// Every conversation created: id → owning token, in creation order.
    pub created: Vec<(String, String)>,
    /// Deleted conversations, in deletion order.
    pub deleted: Vec<String>,
    /// DELETEs of a conversation that passed the protocol checks, answered or not.
    pub delete_requests: usize,
    /// Assistant messages answered, by `msgID`, for `msg_tts`.
    pub messages: HashMap<String, AssistantMessage>,
    /// The `minimax-agent` turns of each live conversation, in order.
    pub turns: HashMap<String, Vec<AgentTurn>>,
    /// `get_chat_detail` polls that passed the protocol checks.
    pub detail_polls: usize,
    /// `delete_chat` calls refused with `chat is running`.
    pub running_deletes: usize,
}

impl ConversationBook {
    /// The owner of a live conversation.
    pub fn owner(&self, chat_id: &str) -> Option<&str> {
        self.live
            .iter()
            .find(|(id, _)| id == chat_id)
            .map(|(_, token)| token.as_str())
    }

    /// Opens conversation `chat_id` for `token`.
    pub fn open(&mut self, chat_id: &str, token: &str) {
        self.live.push((chat_id.to_owned(), token.to_owned()));
        self.created.push((chat_id.to_owned(), token.to_owned()));
    }

    /// Ends conversation `chat_id`: from then on it is not live.
    pub fn remove(&mut self, chat_id: &str) {
        self.live.retain(|(id, _)| id != chat_id);
        self.turns.remove(chat_id);
    }

    /// A deletion its owner asked for: the conversation leaves the live ones and is recorded
    /// as deleted.
    pub fn delete(&mut self, chat_id: String) {
        self.remove(&chat_id);
        self.deleted.push(chat_id);
    }

    /// Drops the history a long run piles up: chat records, the created and deleted lists, and
    /// the answered messages nobody can name any more: those of a conversation that is gone
    /// (`msg_tts` refuses them anyway) and those answered before `stale_before`. A message of a
    /// live conversation, whose speech may be asked for or being polled, stays.
    pub fn forget_history(&mut self, stale_before: Instant) {
        self.chats = Vec::new();
        self.created = Vec::new();
        self.deleted = Vec::new();
        let live: HashSet<&str> = self.live.iter().map(|(id, _)| id.as_str()).collect();
        self.messages
            .retain(|_, message| live.contains(message.chat_id.as_str()) && message.answered >= stale_before);
    }
}
