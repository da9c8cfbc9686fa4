//! The chat use case: hear the prompt's speech (each audio part becomes the text of its
//! transcript), pick an idle account among the client's tokens, make sure it has a device,
//! send the prompt, retry transient failures and skip refused accounts, and hand back the
//! answer as a stream that frees the account the moment it ends or is dropped.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};

use crate::domain::chat::{
    AccountToken, AnswerDelta, AttachmentError, ChatPrompt, ClientId, ContentPart, ConversationId, PartPosition,
};
use crate::domain::ports::{
    AnswerStream, AttachmentSource, ChatProvider, ProviderError, Refusal, Session, SessionStore,
};

use super::accounts::AccountLease;
use super::conversations::ConversationTracker;
use super::now_ms;
use super::runner::{AccountRunner, RunnerError};
use super::transcription::{TranscriptionError, TranscriptionService};
use crate::domain::metrics::instruments;

/// Why a chat failed, as a client needs to know it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChatError {
    /// The run on the client's accounts failed.
    #[error(transparent)]
    Run(#[from] RunnerError),
    /// The prompt itself is unusable.
    #[error("{0}")]
    InvalidRequest(String),
    /// An attachment could not be fetched (bad URL, unreachable, refused address, ...), or a
    /// message carries more attachments than allowed.
    #[error("{0}")]
    InvalidAttachment(String),
    /// An attachment is larger than the limit, or the request's attachments together are (or
    /// than the upstream takes).
    #[error("{0}")]
    AttachmentTooLarge(String),
    /// The upstream does not take the type of an attached file (its reason given).
    #[error("the upstream does not take this type of file: {0}")]
    UnsupportedAttachment(String),
    /// The upstream filtered the conversation's content (its reason given).
    #[error("the upstream refused the content of `messages`: {0}")]
    ContentFiltered(String),
    /// The prompt is longer than the upstream takes (its reason given).
    #[error("`messages` are longer than the upstream takes: {0}")]
    PromptTooLong(String),
    /// The conversation to continue does not exist, or is not the caller's (the same answer
    /// for both, so that one client cannot learn another's conversation ids).
    #[error(
        "the conversation given as `conversation_id` was not found for this caller: start a new \
         one by leaving `conversation_id` out"
    )]
    ConversationNotFound,
    /// The session store failed; details are logged, not shown.
    #[error("internal error")]
    SessionStore,
    /// An audio part could not be heard: not decodable audio, too long, or no transcription
    /// on this upstream (never a failure of the accounts, which is [`ChatError::Run`]).
    #[error("{error}")]
    Audio {
        /// Where the part is.
        at: PartPosition,
        /// Why it could not be heard.
        error: TranscriptionError,
    },
    /// The prompt carries more audio parts than a request may.
    #[error(
        "the messages carry {count} `input_audio` parts; a request may carry at most {max} \
         (`files.max_per_message`)"
    )]
    TooManyAudioParts {
        /// How many it carries.
        count: usize,
        /// The most a request may carry.
        max: usize,
    },
}

impl ChatError {
    /// The failure to hear the audio part at `at`: the runner's failures stay the runner's.
    fn audio(at: PartPosition, error: TranscriptionError) -> Self {
        match error {
            TranscriptionError::Run(error) => ChatError::Run(error),
            error => ChatError::Audio { at, error },
        }
    }
}

/// An upstream failure as chat reads it: an unknown conversation, a failed attachment and the
/// refusals about the prompt or its files are the client's to hear about, every other failure
/// is the runner's shared meaning.
impl From<ProviderError> for ChatError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::ConversationNotFound { .. } => ChatError::ConversationNotFound,
            ProviderError::Attachment(error) => error.into(),
            ProviderError::Refused { message, reason } => match reason {
                Refusal::ContentFiltered => ChatError::ContentFiltered(message),
                Refusal::TextTooLong => ChatError::PromptTooLong(message),
                Refusal::UnsupportedFile => ChatError::UnsupportedAttachment(message),
                Refusal::FileTooLarge => {
                    ChatError::AttachmentTooLarge(format!("an attachment is larger than the upstream takes: {message}"))
                }
                Refusal::Unrecognised
                | Refusal::Protocol
                | Refusal::UnknownVoice
                | Refusal::InvalidAudio
                | Refusal::AudioTooLong => RunnerError::from(ProviderError::Refused { message, reason }).into(),
            },
            error => RunnerError::from(error).into(),
        }
    }
}

impl From<AttachmentError> for ChatError {
    fn from(error: AttachmentError) -> Self {
        match error {
            AttachmentError::Invalid(message) => ChatError::InvalidAttachment(message),
            AttachmentError::TooLarge(message) => ChatError::AttachmentTooLarge(message),
        }
    }
}

/// The chat use case.
pub struct ChatService {
    provider: Arc<dyn ChatProvider>,
    attachments: Arc<dyn AttachmentSource>,
    runner: Arc<AccountRunner>,
    sessions: Arc<dyn SessionStore>,
    tracker: Arc<ConversationTracker>,
    hearing: Option<Hearing>,
}

/// How the audio parts of a prompt are heard.
struct Hearing {
    transcription: Arc<TranscriptionService>,
    /// The most audio parts one request may carry.
    max_parts: usize,
}

impl ChatService {
    /// The use case over its ports and shared state.
    pub fn new(
        provider: Arc<dyn ChatProvider>,
        attachments: Arc<dyn AttachmentSource>,
        runner: Arc<AccountRunner>,
        sessions: Arc<dyn SessionStore>,
        tracker: Arc<ConversationTracker>,
    ) -> Self {
        Self {
            provider,
            attachments,
            runner,
            sessions,
            tracker,
            hearing: None,
        }
    }

    /// The use case hearing audio parts with `transcription`, at most `max_parts` per
    /// request; without it, an audio part is refused.
    #[must_use]
    pub fn with_transcription(mut self, transcription: Arc<TranscriptionService>, max_parts: usize) -> Self {
        self.hearing = Some(Hearing {
            transcription,
            max_parts,
        });
        self
    }

    /// The prompt with each audio part replaced, in its place, by the text of its transcript
    /// (empty for silence), heard on one of `tokens` part after part; a prompt without audio
    /// is given back as it is.
    ///
    /// # Errors
    /// [`ChatError::TooManyAudioParts`] before anything is heard; [`ChatError::Audio`] for a
    /// part that is not decodable audio, lasts too long, or cannot be heard on this upstream;
    /// the account errors of the transcription as [`ChatError::Run`].
    pub async fn hear(&self, tokens: &[AccountToken], mut prompt: ChatPrompt) -> Result<ChatPrompt, ChatError> {
        let positions = prompt.audio_positions();
        let Some(first) = positions.first().copied() else {
            return Ok(prompt);
        };
        let Some(hearing) = &self.hearing else {
            return Err(ChatError::audio(
                first,
                TranscriptionError::Unavailable("this server does not transcribe audio".into()),
            ));
        };
        if positions.len() > hearing.max_parts {
            return Err(ChatError::TooManyAudioParts {
                count: positions.len(),
                max: hearing.max_parts,
            });
        }
        for at in positions {
            let Some(part) = prompt
                .messages
                .get_mut(at.message)
                .and_then(|message| message.parts.get_mut(at.part))
            else {
                continue;
            };
            let ContentPart::Audio(audio) = std::mem::replace(part, ContentPart::Text(String::new())) else {
                continue;
            };
            let file_name = format!("audio.{}", audio.format);
            let transcript = hearing
                .transcription
                .transcribe(tokens, audio.bytes, Some(file_name))
                .await
                .map_err(|error| ChatError::audio(at, error))?;
            *part = ContentPart::Text(transcript.text);
        }
        Ok(prompt)
    }

    /// Answers `prompt` on one of `tokens`, its audio heard first ([`Self::hear`]). Resolves
    /// once the first piece of the answer has arrived, so every failure before it is a proper
    /// error.
    ///
    /// # Errors
    /// See [`ChatError`]: no tokens, an audio part not heard, the server overloaded, an
    /// attachment refused (more than
    /// a message may carry, unreachable, past a file's limit or the request's total), all
    /// accounts busy past the wait, all refused, the request refused, the upstream unavailable
    /// or silent after the retries.
    pub async fn chat(&self, tokens: &[AccountToken], prompt: ChatPrompt) -> Result<Answer, ChatError> {
        if tokens.is_empty() {
            return Err(RunnerError::NoAccounts.into());
        }
        if prompt.messages.is_empty() {
            return Err(ChatError::InvalidRequest("`messages` must not be empty".into()));
        }
        let prompt = self.hear(tokens, prompt).await?;
        let has_text = prompt
            .messages
            .iter()
            .flat_map(|m| m.texts())
            .any(|t| !t.trim().is_empty());
        if !has_text && prompt.attachments().is_empty() {
            return Err(ChatError::InvalidRequest(
                "`messages` hold no text and no attachment: there is nothing to answer".into(),
            ));
        }
        // Downloads are work the admission gate counts: the slot is taken before any starts,
        // so that at most `server.max_in_flight` requests download at once, each within its
        // budget. All are opened (status, declared size, type) before an account is taken and
        // before anything is sent: an attachment refused then sends nothing. Their bodies are
        // read later, straight into their uploads; the first attempt takes them.
        let admitted = self.runner.admit().await?;
        let first_attachments = Mutex::new(Some(self.attachments.open(&prompt.attachments()).await?));
        let mut candidates = tokens.to_vec();
        // A continued conversation lives in one account: use it when the client gave it us.
        let continuing = match &prompt.conversation {
            Some(conversation) => {
                let guard = Activity::begin(self, conversation.clone(), None, prompt.client.clone());
                let session = self.sessions.find(conversation).await.map_err(|error| {
                    tracing::error!(%error, "session store failed");
                    ChatError::SessionStore
                })?;
                if let Some(token) = continuable(session, prompt.client.as_ref(), tokens)? {
                    candidates = vec![token];
                }
                Some(guard)
            }
            None => None,
        };
        let provider = &self.provider;
        let prompt = &prompt;
        let first_attachments = &first_attachments;
        let ((first, rest, opened), lease) = self
            .runner
            .run_admitted::<ChatError, _, _, _>(admitted, &candidates, |account| async move {
                // Each attempt reads the attachments once; a retry opens them again.
                let ready = first_attachments.lock().ok().and_then(|mut slot| slot.take());
                let attachments = match ready {
                    Some(attachments) => attachments,
                    None => self
                        .attachments
                        .open(&prompt.attachments())
                        .await
                        .map_err(ProviderError::Attachment)?,
                };
                let mut stream = provider.send(&account, prompt, attachments).await?;
                // The conversation once made upstream (an empty opening piece names it): it
                // is recorded at once, so that it is deleted even if this attempt fails.
                let mut opened = None;
                loop {
                    // A stream that fails before its first piece reached anyone is worth a retry.
                    match stream.next().await {
                        Some(Ok(piece)) if piece.text.is_empty() && !piece.finished => {
                            if opened.is_none() {
                                opened = Some(
                                    self.opened(&piece.conversation, &account.token, prompt.client.as_ref())
                                        .await,
                                );
                            }
                        }
                        Some(Ok(first)) => return Ok((first, stream, opened)),
                        Some(Err(error)) => return Err(error),
                        None => {
                            return Err(ProviderError::Unavailable {
                                message: "the answer ended before it began".into(),
                            });
                        }
                    }
                }
            })
            .await?;
        let continuing = match (opened, continuing) {
            (Some(opened), Some(continued)) if continued.conversation != opened.conversation => Some(opened),
            (Some(opened), None) => Some(opened),
            (_, continued) => continued,
        };
        Ok(self
            .answer(lease, first, rest, continuing, prompt.client.as_ref())
            .await)
    }

    /// Answers `prompt` on one of `tokens` and reads the whole answer. Nothing reaches the
    /// client before the answer is complete, so an answer that breaks off mid-way (the
    /// upstream failed or went silent) is asked for again, as a failure before the first piece
    /// is, up to the runner's retries; the broken attempt's conversation is recorded for
    /// deletion like any other.
    ///
    /// # Errors
    /// As [`Self::chat`], and the answer's own error once the retries are spent.
    pub async fn complete(&self, tokens: &[AccountToken], prompt: ChatPrompt) -> Result<Completion, ChatError> {
        if tokens.is_empty() {
            return Err(RunnerError::NoAccounts.into());
        }
        // Heard once: the attempts below send the same text.
        let prompt = self.hear(tokens, prompt).await?;
        let policy = *self.runner.policy();
        let mut failures = 0;
        loop {
            let answer = self.chat(tokens, prompt.clone()).await?;
            let conversation = answer.conversation().clone();
            match answer.collect_text().await {
                Ok(text) => return Ok(Completion { conversation, text }),
                Err(error @ ChatError::Run(RunnerError::Unavailable { .. } | RunnerError::Timeout))
                    if failures < policy.retries =>
                {
                    failures += 1;
                    tracing::warn!(%error, attempt = failures, "an answer broke off before it was complete; asking again");
                    instruments().retries.add(1, &[]);
                    tokio::time::sleep(policy.retry_delay).await;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Records a conversation just made upstream and marks it answering; dropping the
    /// returned activity hands it to the sweeper.
    async fn opened(&self, conversation: &ConversationId, token: &AccountToken, client: Option<&ClientId>) -> Activity {
        let activity = Activity::begin(self, conversation.clone(), Some(token.clone()), client.cloned());
        if let Err(error) = self.sessions.record(conversation, token, client, now_ms()).await {
            tracing::error!(%error, %conversation, "could not record a conversation; it may stay upstream");
        }
        activity
    }

    /// Records the conversation (before anything is streamed) unless already recorded, and
    /// wraps the answer.
    async fn answer(
        &self,
        lease: AccountLease,
        first: AnswerDelta,
        rest: AnswerStream,
        continuing: Option<Activity>,
        client: Option<&ClientId>,
    ) -> Answer {
        let conversation = first.conversation.clone();
        let token = lease.token().clone();
        // A conversation made by this attempt was recorded when the upstream named it.
        let recorded = continuing
            .as_ref()
            .is_some_and(|activity| activity.conversation == conversation && activity.token.as_ref() == Some(&token));
        if !recorded && let Err(error) = self.sessions.record(&conversation, &token, client, now_ms()).await {
            tracing::error!(%error, %conversation, "could not record a conversation; it may stay upstream");
        }
        let activity = match continuing {
            Some(activity) if activity.conversation == conversation => activity.with_token(token),
            _ => Activity::begin(self, conversation.clone(), Some(token), client.cloned()),
        };
        let done = first.finished;
        let mut answer = Answer {
            conversation,
            message_id: first.message_id.clone(),
            first: Some(first),
            rest,
            lease: Some(lease),
            activity: Some(activity),
            done: false,
            release_wait: self.runner.policy().release_wait,
            hangup_rest: self.runner.policy().hangup_rest,
        };
        if done {
            answer.finish();
        }
        answer
    }
}

/// The account a conversation given as `conversation_id` is continued on (`None`: any of the
/// caller's, the upstream decides), for a caller
/// `client` (with API keys on) holding `tokens`: a conversation this server made is continued
/// only by the client that made it (with keys), or with its account among the tokens given
/// (without); one it does not know is refused with keys on (their pool is shared, so only what
/// a key made is its own) and otherwise left to the upstream, which knows its accounts'
/// conversations. Every refusal is the same [`ChatError::ConversationNotFound`], so that
/// nobody learns whether another client's conversation exists.
fn continuable(
    session: Option<Session>,
    client: Option<&ClientId>,
    tokens: &[AccountToken],
) -> Result<Option<AccountToken>, ChatError> {
    let allowed = match (&session, client) {
        (Some(session), Some(client)) => session.owner.as_ref() == Some(client) && tokens.contains(&session.token),
        (Some(session), None) => tokens.contains(&session.token),
        (None, Some(_)) => false,
        (None, None) => true,
    };
    match session {
        _ if !allowed => Err(ChatError::ConversationNotFound),
        session => Ok(session.map(|session| session.token)),
    }
}

/// A whole answer, read to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The upstream conversation that answered.
    pub conversation: ConversationId,
    /// The answer's text.
    pub text: String,
}

/// A conversation answering now: tracked so the sweeper leaves it alone, and on drop
/// recorded as used and released to the sweeper.
struct Activity {
    conversation: ConversationId,
    token: Option<AccountToken>,
    client: Option<ClientId>,
    sessions: Arc<dyn SessionStore>,
    tracker: Arc<ConversationTracker>,
}

impl Activity {
    fn begin(
        service: &ChatService,
        conversation: ConversationId,
        token: Option<AccountToken>,
        client: Option<ClientId>,
    ) -> Self {
        service.tracker.begin(&conversation);
        Self {
            conversation,
            token,
            client,
            sessions: Arc::clone(&service.sessions),
            tracker: Arc::clone(&service.tracker),
        }
    }

    fn with_token(mut self, token: AccountToken) -> Self {
        self.token = Some(token);
        self
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        let conversation = self.conversation.clone();
        let tracker = Arc::clone(&self.tracker);
        let (Some(token), Ok(runtime)) = (self.token.take(), tokio::runtime::Handle::try_current()) else {
            tracker.end(&conversation);
            return;
        };
        let sessions = Arc::clone(&self.sessions);
        let client = self.client.take();
        // The idle time counts from the answer's end: refresh it before the sweeper may look.
        runtime.spawn(async move {
            if let Err(error) = sessions.record(&conversation, &token, client.as_ref(), now_ms()).await {
                tracing::warn!(%error, %conversation, "could not refresh a conversation's last use");
            }
            tracker.end(&conversation);
        });
    }
}

/// An answer being streamed. Yields the deltas and ends at the last one; the account is freed
/// once the upstream's response has ended after it (at most `accounts.release_wait_ms`
/// later, read off the client's path), or `accounts.hangup_rest_ms` after the stream is
/// dropped before its end (a client gone away: the upstream notices the hang-up late).
pub struct Answer {
    conversation: ConversationId,
    message_id: String,
    first: Option<AnswerDelta>,
    rest: AnswerStream,
    lease: Option<AccountLease>,
    activity: Option<Activity>,
    done: bool,
    release_wait: std::time::Duration,
    hangup_rest: std::time::Duration,
}

impl Answer {
    /// The upstream conversation answering.
    pub fn conversation(&self) -> &ConversationId {
        &self.conversation
    }

    /// The upstream id of the assistant message.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The answer is over for the client: its account is freed when the upstream's response
    /// has ended (the rest of the stream read in the background), bounded.
    fn finish(&mut self) {
        self.done = true;
        self.activity = None;
        let mut rest = std::mem::replace(&mut self.rest, futures::stream::empty().boxed());
        if let Some(lease) = self.lease.take() {
            let ended = async move { while rest.next().await.is_some() {} };
            lease.release_when(ended, self.release_wait, self.hangup_rest);
        }
    }

    /// Reads the whole answer.
    ///
    /// # Errors
    /// The first error of the stream.
    pub async fn collect_text(mut self) -> Result<String, ChatError> {
        let mut text = String::new();
        while let Some(delta) = self.next().await {
            text.push_str(&delta?.text);
        }
        Ok(text)
    }
}

/// An answer dropped before its end hangs up on the upstream's response.
impl Drop for Answer {
    fn drop(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release_after(self.hangup_rest);
        }
    }
}

impl Stream for Answer {
    type Item = Result<AnswerDelta, ChatError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(first)));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.rest.poll_next_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(delta))) => {
                if delta.finished {
                    self.finish();
                }
                Poll::Ready(Some(Ok(delta)))
            }
            Poll::Ready(Some(Err(error))) => {
                self.finish();
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(None) => {
                self.finish();
                Poll::Ready(Some(Err(RunnerError::Unavailable {
                    message: "the answer stream ended before its last event".into(),
                }
                .into())))
            }
        }
    }
}
