//! The project's own chat model: what a client asks for and what an account answers,
//! independent of both OpenAI's and Hailuo's wire formats.

use std::collections::HashSet;
use std::fmt;
use std::sync::OnceLock;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;

/// The process's key for [`AccountToken::fingerprint`].
static FINGERPRINT_KEY: OnceLock<[u8; 32]> = OnceLock::new();

/// Sets the key of [`AccountToken::fingerprint`] from the server secret, so labels stay the
/// same across restarts; without a secret (or if a fingerprint was taken before this call),
/// the key is random for this process. Only the first call has an effect.
pub fn init_fingerprint_key(secret: Option<&str>) {
    FINGERPRINT_KEY.get_or_init(|| match secret {
        Some(secret) => {
            use sha2::{Digest, Sha256};
            Sha256::digest(format!("hailuo-free-api fingerprint key:{secret}").as_bytes()).into()
        }
        None => rand::random(),
    });
}

/// One account token of the upstream web app (the `_token` JWT a user copies from the app).
///
/// Its `Debug` and `Display` never show the secret: only a short fingerprint does.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct AccountToken(String);

impl AccountToken {
    /// Wraps a token as given by the client.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The secret itself, for the one place that must send it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short label for logs and metrics (not the token): the first 4 bytes of an
    /// HMAC-SHA256 of the token under the process's key (see [`init_fingerprint_key`]), so
    /// it cannot be reversed or checked against a guessed token without that key.
    pub fn fingerprint(&self) -> String {
        use hmac::{Hmac, KeyInit, Mac};
        let key = FINGERPRINT_KEY.get_or_init(rand::random);
        // HMAC takes keys of any length: this cannot fail.
        let Ok(mut mac) = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key) else {
            return String::from("????????");
        };
        mac.update(self.0.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..4])
    }

    /// Parses an `Authorization: Bearer T1,T2` value into its tokens: split on commas,
    /// trimmed, empties dropped, duplicates removed (order kept). For a list the server was
    /// configured with; a client's list goes through [`AccountToken::parse_client_list`].
    pub fn parse_list(bearer: &str) -> Vec<AccountToken> {
        // A configured list is the operator's own: no cap, still linear.
        Self::parse_client_list(bearer, usize::MAX).unwrap_or_default()
    }

    /// [`AccountToken::parse_list`] for a list a client sent, which may name at most `max`
    /// tokens (counted before duplicates are removed). Linear in the header's length, and it
    /// stops at the first token past `max`: a huge header costs no more than its scan.
    ///
    /// # Errors
    /// [`TooManyTokens`] when the list names more than `max` tokens.
    pub fn parse_client_list(bearer: &str, max: usize) -> Result<Vec<AccountToken>, TooManyTokens> {
        let mut seen: HashSet<&str> = HashSet::new();
        let mut tokens: Vec<AccountToken> = Vec::new();
        for (count, part) in bearer.split(',').map(str::trim).filter(|t| !t.is_empty()).enumerate() {
            if count >= max {
                return Err(TooManyTokens { max });
            }
            if seen.insert(part) {
                tokens.push(AccountToken::new(part));
            }
        }
        Ok(tokens)
    }
}

/// A client's token list named more tokens than one request may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "too many tokens: `Authorization: Bearer TOKEN1,TOKEN2,...` may name at most {max} Hailuo tokens \
     per request (`accounts.max_tokens_per_request`)"
)]
pub struct TooManyTokens {
    /// The most a request may name.
    pub max: usize,
}

impl fmt::Debug for AccountToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountToken({})", self.fingerprint())
    }
}

impl fmt::Display for AccountToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "account#{}", self.fingerprint())
    }
}

/// Who a request comes from, for scoping what it may continue: with API keys on, an opaque
/// label of the API key presented (a digest, never the key); without keys, none (the client's
/// own account tokens scope it then).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientId(String);

impl ClientId {
    /// Wraps a label made by the authentication adapter (or read back from a store).
    pub fn new(label: impl Into<String>) -> Self {
        Self(label.into())
    }

    /// The label.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The upstream's id of a conversation (Hailuo `chatID`): 18 or more ASCII digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationId(String);

impl ConversationId {
    /// Accepts `id` when it is 18 or more ASCII digits, as the upstream issues them.
    pub fn parse(id: &str) -> Option<Self> {
        let id = id.trim();
        (id.len() >= 18 && id.bytes().all(|b| b.is_ascii_digit())).then(|| Self(id.to_owned()))
    }

    /// Wraps an id the upstream gave us without checking its shape.
    pub fn from_upstream(id: impl Into<String>) -> Self {
        Self(id.into())
    }

    /// The `n`th of a run of well-formed ids, for tests.
    #[cfg(test)]
    pub(crate) fn nth(n: u64) -> Self {
        Self(format!("{:018}", 243_600_000_000_000_000 + n))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One part of a message's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ContentPart {
    /// Plain text.
    Text(String),
    /// An image to look at: an `http(s)` URL or a `data:` URL.
    Image { url: String },
    /// A document to read: an `http(s)` URL or a `data:` URL, and the file name the client
    /// gave it, if any.
    File { url: String, name: Option<String> },
    /// Speech to hear: the chat use case replaces it with the text of its transcript.
    Audio(SpokenAudio),
}

impl ContentPart {
    /// Whether this part is an attachment (image or file) rather than text or speech.
    pub fn is_attachment(&self) -> bool {
        matches!(self, ContentPart::Image { .. } | ContentPart::File { .. })
    }
}

/// Audio a client sent inside a message, to be transcribed.
#[derive(Clone, PartialEq, Eq)]
pub struct SpokenAudio {
    /// The encoded audio, as sent.
    pub bytes: Vec<u8>,
    /// Its format as the client named it (`wav`, `mp3`, ...): a hint for the decoder.
    pub format: String,
}

impl fmt::Debug for SpokenAudio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpokenAudio")
            .field("bytes", &self.bytes.len())
            .field("format", &self.format)
            .finish()
    }
}

/// Where a part is in a prompt: the index of its message, and its index in that message's
/// parts (the same indices as in the client's request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartPosition {
    /// The message's index.
    pub message: usize,
    /// The part's index in the message.
    pub part: usize,
}

/// An attachment to open: where it is, and the file name the client gave it, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentRef<'a> {
    /// An `http(s)` URL or a `data:` URL.
    pub url: &'a str,
    /// The client's file name for it.
    pub name: Option<&'a str>,
}

impl<'a> AttachmentRef<'a> {
    /// An attachment known by its URL alone.
    pub fn url(url: &'a str) -> Self {
        Self { url, name: None }
    }
}

/// One message of a conversation, as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ... as given (lowercase by convention).
    pub role: String,
    /// The content, in order.
    pub parts: Vec<ContentPart>,
}

impl ChatMessage {
    /// A message with a single text part.
    pub fn text(role: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            parts: vec![ContentPart::Text(text.into())],
        }
    }

    /// The text parts, in order.
    pub fn texts(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            ContentPart::Text(text) => Some(text.as_str()),
            _ => None,
        })
    }

    /// Whether any part is an attachment.
    pub fn has_attachment(&self) -> bool {
        self.parts.iter().any(ContentPart::is_attachment)
    }
}

/// What the client asks: a list of messages, optionally continuing an upstream conversation.
/// The files the last message attaches travel beside it, as [`Attachment`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatPrompt {
    /// The messages, oldest first; never empty.
    pub messages: Vec<ChatMessage>,
    /// The conversation to continue, or `None` for a new one.
    pub conversation: Option<ConversationId>,
    /// Who asks (with API keys on): a conversation is continued only by the client that
    /// created it.
    pub client: Option<ClientId>,
}

impl ChatPrompt {
    /// A prompt of `messages` starting a new conversation.
    pub fn new(messages: Vec<ChatMessage>) -> Self {
        Self {
            messages,
            conversation: None,
            client: None,
        }
    }

    /// The attachments of the last message (images and files), in order.
    pub fn attachments(&self) -> Vec<AttachmentRef<'_>> {
        self.messages
            .last()
            .map(|message| {
                message
                    .parts
                    .iter()
                    .filter_map(|part| match part {
                        ContentPart::Image { url } => Some(AttachmentRef::url(url)),
                        ContentPart::File { url, name } => Some(AttachmentRef {
                            url,
                            name: name.as_deref(),
                        }),
                        ContentPart::Text(_) | ContentPart::Audio(_) => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where the audio parts are, in every message, in order.
    pub fn audio_positions(&self) -> Vec<PartPosition> {
        self.messages
            .iter()
            .enumerate()
            .flat_map(|(message, m)| {
                m.parts
                    .iter()
                    .enumerate()
                    .filter(|(_, part)| matches!(part, ContentPart::Audio(_)))
                    .map(move |(part, _)| PartPosition { message, part })
            })
            .collect()
    }
}

/// A piece of the answer as the upstream produces it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerDelta {
    /// The conversation this answer belongs to (known from the first event on).
    pub conversation: ConversationId,
    /// The upstream id of the assistant message (needed to speak it).
    pub message_id: String,
    /// New text since the previous delta; may be empty on the last one, and is empty on an
    /// opening one that only names the conversation (made upstream before any content).
    pub text: String,
    /// Whether this is the last piece of the answer.
    pub finished: bool,
}

/// A web source the upstream consulted while answering (web search).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebSource {
    /// The page's address.
    pub url: String,
    /// The upstream's summary or title of the page.
    pub detail: String,
}

/// The content of an attachment as it arrives, piece by piece, in order; an error ends it
/// (the download broke, or passed a limit).
pub type AttachmentContent = BoxStream<'static, Result<Bytes, AttachmentError>>;

/// A file the client attached, opened: named and typed, its content still arriving. It is
/// read once, straight into its upload, so that memory holds a few pieces of it, never the
/// whole file.
pub struct Attachment {
    /// `<uuid>.<ext>`: the name it is uploaded under.
    pub file_name: String,
    /// Its MIME type (`image/png`, `application/pdf`, ...).
    pub mime: String,
    /// Its exact length when known before the content arrives (declared by the server that
    /// serves it, or a data URL's), else `None`.
    pub length: Option<u64>,
    /// Its content.
    pub content: AttachmentContent,
}

impl Attachment {
    /// An attachment whose content is already in memory (a decoded data URL).
    pub fn in_memory(file_name: String, mime: String, bytes: Bytes) -> Self {
        Self {
            file_name,
            mime,
            length: u64::try_from(bytes.len()).ok(),
            content: futures::stream::once(async move { Ok(bytes) }).boxed(),
        }
    }

    /// Whether the upstream treats it as an image (`image/*`) rather than a document.
    pub fn is_image(&self) -> bool {
        self.mime.starts_with("image/")
    }
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attachment")
            .field("file_name", &self.file_name)
            .field("mime", &self.mime)
            .field("length", &self.length)
            .finish_non_exhaustive()
    }
}

/// Why an attachment could not be fetched: the client's fault, never the upstream's.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum AttachmentError {
    /// A bad URL, scheme or data URL, an unreachable host, a status of 400 or more, an
    /// address the server may not fetch from (the message names the URL), or more
    /// attachments than a message may carry.
    #[error("{0}")]
    Invalid(String),
    /// Larger than a configured limit: one file's, or the request's total; the message
    /// names the URL and the limit.
    #[error("{0}")]
    TooLarge(String),
}

#[cfg(test)]
#[path = "chat_props.rs"]
mod props;
