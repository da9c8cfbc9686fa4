//! The simulator's deterministic replies, which tests compare with what the gateway returns:
//! the answer to a prompt and the transcript of a voice message.

use std::time::Duration;

/// The answer to a chat message: `海螺收到：` and the message.
pub(crate) fn answer_for(msg_content: &str) -> String {
    format!("海螺收到：{msg_content}")
}

/// The transcript heard in decodable, non-silent audio of `duration`:
/// `（<seconds with one decimal> 秒的语音）`.
pub(crate) fn transcript_for(duration: Duration) -> String {
    format!("（{:.1} 秒的语音）", duration.as_secs_f64())
}
