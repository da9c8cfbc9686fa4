//! The complete answer of `POST /v1/chat/completions` (`stream: false`) in OpenAI's wire
//! format; a streamed answer's chunks are in [`super::sse`].

use poem_openapi::Object;
use poem_openapi::types::Example;
use serde::Serialize;

/// A complete answer (`stream: false`).
#[derive(Debug, Object, Serialize)]
#[oai(example)]
pub struct ChatCompletion {
    /// The upstream conversation id: send it back as `conversation_id` to continue.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: i64,
    /// The model named in the request.
    pub model: String,
    /// One choice.
    pub choices: Vec<CompletionChoice>,
    /// Token counts (o200k tokenizer).
    pub usage: Usage,
}

impl Example for ChatCompletion {
    fn example() -> Self {
        Self {
            id: "243612345678901234".into(),
            object: "chat.completion".into(),
            created: 1_735_689_600,
            model: "hailuo".into(),
            choices: vec![CompletionChoice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant".into(),
                    content: "The capital of France is Paris.".into(),
                },
                finish_reason: "stop".into(),
            }],
            usage: Usage {
                prompt_tokens: 21,
                completion_tokens: 8,
                total_tokens: 29,
            },
        }
    }
}

/// The one choice of a complete answer.
#[derive(Debug, Object, Serialize)]
pub struct CompletionChoice {
    /// Always 0.
    pub index: u32,
    /// The assistant's message.
    pub message: AssistantMessage,
    /// Always `stop`.
    pub finish_reason: String,
}

/// The assistant's message.
#[derive(Debug, Object, Serialize)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The answer.
    pub content: String,
}

/// Token counts.
#[derive(Debug, Clone, Copy, Object, Serialize)]
pub struct Usage {
    /// Tokens in the messages sent.
    pub prompt_tokens: u32,
    /// Tokens in the answer.
    pub completion_tokens: u32,
    /// The sum.
    pub total_tokens: u32,
}
