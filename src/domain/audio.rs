//! The project's own audio model: what to speak and in which voice.

/// Text to speak in an upstream voice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeechRequest {
    /// The text, as the client gave it.
    pub text: String,
    /// The upstream voice id (already mapped from OpenAI names).
    pub voice: String,
}
