//! What the simulator records of the requests it accepted, for tests to read: chats, files
//! confirmed, speech asked for and voice messages heard.

use std::time::Duration;

/// One chat request that passed the protocol checks.
#[derive(Clone, Debug)]
pub struct ChatRecord {
    /// The `Token` it came with.
    pub token: String,
    /// The conversation id answered with (the requested one when no conversation was made).
    pub chat_id: String,
    /// The `chatID` field sent: `"0"` or the id of the conversation continued.
    pub requested_chat_id: String,
    /// The `msgContent` field, as sent.
    pub msg_content: String,
    /// The `form` field, when sent.
    pub form: Option<String>,
    /// The files the `form` attached, in form order (empty without a form).
    pub files: Vec<FormFile>,
    /// The `Referer` header.
    pub referer: String,
}

/// A file attached by a chat `form` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormFile {
    /// `formType`: 2 for an image, 6 for another file.
    pub form_type: u8,
    /// `fileID`, as `policy_callback` gave it.
    pub file_id: String,
    /// `content`: the file's name.
    pub file_name: String,
}

/// A file confirmed by `policy_callback`: uploaded to the simulated OSS, then given a `fileID`.
#[derive(Clone, Debug)]
pub struct SimFile {
    /// The `Token` that uploaded and confirmed it.
    pub token: String,
    /// Its `fileID`.
    pub file_id: String,
    /// `fileName`: the object's name inside the upload `dir`.
    pub file_name: String,
    /// `mimeType`, the same as the upload's `Content-Type`.
    pub mime: String,
    /// The bytes uploaded.
    pub bytes: Vec<u8>,
}

/// The first `msg_tts` poll of an assistant message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TtsRecord {
    /// The `Token` that asked.
    pub token: String,
    /// `msgID`.
    pub msg_id: String,
    /// `timbre`: the voice asked for.
    pub timbre: String,
    /// The text spoken: the assistant message's whole content
    /// ([`Simulator::answer_for`](crate::Simulator::answer_for) of the chat's `msgContent`).
    pub text: String,
}

/// A `phone_msg` upload that decoded as MP3.
#[derive(Clone, Debug)]
pub struct PhoneRecord {
    /// The `Token` that sent it.
    pub token: String,
    /// Size of `voiceBytes`.
    pub bytes_len: usize,
    /// Decoded length (without the encoder delay and padding when a LAME tag declares them).
    pub duration: Duration,
    /// Sample rate of the decoded audio.
    pub sample_rate: u32,
    /// Channel count of the decoded audio.
    pub channels: u16,
}
