//! The refusals a test makes the simulated upstream send: each a reason the upstream gives for
//! not doing what a request asks, on the call that asks it. The protocol knows the upstream
//! refuses such requests but not its limits (how long a text, which voices, which files), so
//! the simulator refuses when told to, with a code of its own and the upstream's kind of text;
//! a busy account is its own rule ([`BusyReply`]).

/// The call a refusal is the answer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefusedCall {
    /// A chat message (`/v4/api/chat/msg`, the agent's `send_msg`).
    Chat,
    /// `update_robot_custom_config`.
    VoiceConfig,
    /// `policy_callback`.
    FileCallback,
    /// A voice message (`phone_msg`).
    Voice,
}

/// A refusal for the next request of the call it is about (any token), after the request has
/// passed every protocol check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A chat message: `1500003 输入内容过长，请缩短后重试` (an error event before any content;
    /// on `minimax-agent`, `send_msg`'s `base_resp`).
    TextTooLong,
    /// A chat message: HTTP 429 with the envelope `1000429 请求过于频繁，请稍后再试` (on
    /// `minimax-agent`, its `base_resp`), before any stream.
    RateLimited,
    /// `update_robot_custom_config`: `1200011 音色不存在`.
    UnknownVoice,
    /// `policy_callback`: `1300003 不支持的文件类型`.
    FileTypeRefused,
    /// `policy_callback`: `1300004 文件过大`.
    FileTooLarge,
    /// A voice message: an `asr_chunk` with `1200040 音频格式错误`.
    AudioRefused,
    /// A voice message: an `asr_chunk` with `1200042 音频时长超过限制`.
    AudioTooLong,
}

impl Refusal {
    /// The call it answers.
    pub(crate) fn call(self) -> RefusedCall {
        match self {
            Refusal::TextTooLong | Refusal::RateLimited => RefusedCall::Chat,
            Refusal::UnknownVoice => RefusedCall::VoiceConfig,
            Refusal::FileTypeRefused | Refusal::FileTooLarge => RefusedCall::FileCallback,
            Refusal::AudioRefused | Refusal::AudioTooLong => RefusedCall::Voice,
        }
    }

    /// Its code.
    pub(crate) fn code(self) -> i64 {
        match self {
            Refusal::TextTooLong => 1_500_003,
            Refusal::RateLimited => 1_000_429,
            Refusal::UnknownVoice => 1_200_011,
            Refusal::FileTypeRefused => 1_300_003,
            Refusal::FileTooLarge => 1_300_004,
            Refusal::AudioRefused => 1_200_040,
            Refusal::AudioTooLong => 1_200_042,
        }
    }

    /// Its message.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refusal::TextTooLong => "输入内容过长，请缩短后重试",
            Refusal::RateLimited => "请求过于频繁，请稍后再试",
            Refusal::UnknownVoice => "音色不存在",
            Refusal::FileTypeRefused => "不支持的文件类型",
            Refusal::FileTooLarge => "文件过大",
            Refusal::AudioRefused => "音频格式错误",
            Refusal::AudioTooLong => "音频时长超过限制",
        }
    }

    /// Whether it comes with HTTP 429 rather than 200.
    pub(crate) fn too_many_requests(self) -> bool {
        self == Refusal::RateLimited
    }
}

/// How a busy account's request is refused (protocol §6): in which form, with which code and
/// message. The upstream's busy codes are not publicly known and public clients have seen
/// several messages, so a test may play each.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusyReply {
    /// The form of the refusal.
    pub form: BusyForm,
    /// Its code (`statusInfo.code`, or a voice event's `status_code`).
    pub code: i64,
    /// Its message.
    pub message: String,
}

/// The form a busy refusal takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BusyForm {
    /// An error event, the only one of its stream (a voice message's `asr_chunk`).
    #[default]
    Event,
    /// A JSON envelope instead of a stream, HTTP 200.
    Envelope,
    /// The envelope with HTTP 429.
    TooManyRequests,
    /// The envelope with HTTP 503.
    ServerError,
}

/// The code of the simulator's busy refusal.
pub const BUSY_CODE: i64 = 1_200_009;

impl Default for BusyReply {
    /// An error event `1200009 上一条回复还未结束`.
    fn default() -> Self {
        Self {
            form: BusyForm::Event,
            code: BUSY_CODE,
            message: "上一条回复还未结束".to_owned(),
        }
    }
}
