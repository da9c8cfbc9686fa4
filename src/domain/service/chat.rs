//! The chat use case: pick an idle account among the client's tokens, make sure it has a
//! device, send the prompt, retry transient failures and skip refused accounts, and hand
//! back the answer as a stream that frees the account the moment it ends or is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use rand::Rng;

use crate::domain::chat::{AccountToken, AnswerDelta, Attachment, AttachmentError, ChatPrompt, ConversationId};
use crate::domain::ports::{AnswerStream, AttachmentSource, ChatProvider, ProviderError, SessionStore};

use super::accounts::{AccountLease, AccountPool};
use super::conversations::ConversationTracker;
use super::devices::{DeviceError, DeviceRegistry};
use super::now_ms;

/// Why a chat request failed, as a client needs to know it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ChatError {
    /// The request itself is unusable.
    #[error("{0}")]
    InvalidRequest(String),
    /// An attachment could not be fetched (bad URL, unreachable, refused address, ...).
    #[error("{0}")]
    InvalidAttachment(String),
    /// An attachment is larger than the limit.
    #[error("{0}")]
    AttachmentTooLarge(String),
    /// No account token was given.
    #[error("no Hailuo account token was given: send `Authorization: Bearer TOKEN[,TOKEN...]`")]
    NoAccounts,
    /// Every account stayed busy for the whole wait.
    #[error("every account token given is busy answering another request; try again later or pass more tokens")]
    AccountsBusy,
    /// The upstream refused every account token given.
    #[error("the upstream refused every account token given (expired or logged out?): {message}")]
    AccountsRejected {
        /// The upstream's last reason.
        message: String,
    },
    /// The upstream refused the request (content filtered, rate limited, ...).
    #[error("the upstream refused the request: {message}")]
    Refused {
        /// The upstream's reason.
        message: String,
    },
    /// The upstream could not be reached or failed, also after retrying.
    #[error("the upstream is unavailable: {message}")]
    Unavailable {
        /// What went wrong.
        message: String,
    },
    /// The upstream sent nothing for longer than the timeout, also after retrying.
    #[error("the upstream did not answer in time")]
    Timeout,
    /// Our own infrastructure failed (the store); details are logged, not shown.
    #[error("internal error")]
    Internal,
}

impl From<ProviderError> for ChatError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::AccountRejected { message } => ChatError::AccountsRejected { message },
            ProviderError::Refused { message } => ChatError::Refused { message },
            ProviderError::Unavailable { message } | ProviderError::BadResponse { message } => {
                ChatError::Unavailable { message }
            }
            ProviderError::Timeout => ChatError::Timeout,
        }
    }
}

/// How hard to try.
#[derive(Debug, Clone, Copy)]
pub struct ChatPolicy {
    /// Retries after a transient failure.
    pub retries: u32,
    /// Pause before each retry.
    pub retry_delay: Duration,
    /// How long to wait for an idle account.
    pub busy_wait: Duration,
}

/// The chat use case.
pub struct ChatService {
    provider: Arc<dyn ChatProvider>,
    attachments: Arc<dyn AttachmentSource>,
    devices: Arc<DeviceRegistry>,
    pool: Arc<AccountPool>,
    sessions: Arc<dyn SessionStore>,
    tracker: Arc<ConversationTracker>,
    policy: ChatPolicy,
}

/// How one attempt on one account failed.
enum AttemptError {
    /// The account is refused: skip it.
    Rejected(String),
    /// Worth retrying.
    Transient(ProviderError),
    /// Final: hand it to the client.
    Final(ChatError),
}

impl From<DeviceError> for AttemptError {
    fn from(error: DeviceError) -> Self {
        match error {
            DeviceError::Provider(error) => AttemptError::from(error),
            DeviceError::Store(error) => {
                tracing::error!(%error, "token store failed");
                AttemptError::Final(ChatError::Internal)
            }
        }
    }
}

impl From<ProviderError> for AttemptError {
    fn from(error: ProviderError) -> Self {
        match error {
            ProviderError::AccountRejected { message } => AttemptError::Rejected(message),
            error if error.is_transient() => AttemptError::Transient(error),
            error => AttemptError::Final(error.into()),
        }
    }
}

impl ChatService {
    /// The use case over its ports and shared state.
    pub fn new(
        provider: Arc<dyn ChatProvider>,
        attachments: Arc<dyn AttachmentSource>,
        devices: Arc<DeviceRegistry>,
        pool: Arc<AccountPool>,
        sessions: Arc<dyn SessionStore>,
        tracker: Arc<ConversationTracker>,
        policy: ChatPolicy,
    ) -> Self {
        Self {
            provider,
            attachments,
            devices,
            pool,
            sessions,
            tracker,
            policy,
        }
    }

    /// The account pool (for gauges).
    pub fn pool(&self) -> &Arc<AccountPool> {
        &self.pool
    }

    /// Answers `prompt` on one of `tokens`. Resolves once the first piece of the answer has
    /// arrived, so every failure before it is a proper error.
    ///
    /// # Errors
    /// See [`ChatError`]: no tokens, all busy past the wait, all refused, the request refused,
    /// the upstream unavailable or silent after the retries.
    pub async fn chat(&self, tokens: &[AccountToken], mut prompt: ChatPrompt) -> Result<Answer, ChatError> {
        if tokens.is_empty() {
            return Err(ChatError::NoAccounts);
        }
        if prompt.messages.is_empty() {
            return Err(ChatError::InvalidRequest("`messages` must not be empty".into()));
        }
        let has_text = prompt
            .messages
            .iter()
            .flat_map(|m| m.texts())
            .any(|t| !t.trim().is_empty());
        if !has_text && prompt.attachment_urls().is_empty() {
            return Err(ChatError::InvalidRequest(
                "`messages` hold no text and no attachment: there is nothing to answer".into(),
            ));
        }
        // Fetched before an account is taken (downloads are not the account's work), and all
        // of them before anything is sent: a failing attachment sends nothing.
        if prompt.attachments.is_empty() {
            prompt.attachments = self.fetch_attachments(&prompt).await?;
        }
        let mut candidates = tokens.to_vec();
        // A continued conversation lives in one account: use it when the client gave it us.
        let continuing = match &prompt.conversation {
            Some(conversation) => {
                let guard = Activity::begin(self, conversation.clone(), None);
                let owner = self.sessions.find(conversation).await.map_err(|error| {
                    tracing::error!(%error, "session store failed");
                    ChatError::Internal
                })?;
                if let Some(owner) = owner.filter(|session| candidates.contains(&session.token)) {
                    candidates = vec![owner.token];
                }
                Some(guard)
            }
            None => None,
        };
        // Spread requests over the tokens given, as the reference picks one at random.
        let offset = rand::rng().random_range(0..candidates.len());
        candidates.rotate_left(offset);

        let mut failures = 0;
        let mut last_failed: Option<AccountToken> = None;
        let mut last_rejection = String::new();
        loop {
            if candidates.is_empty() {
                return Err(ChatError::AccountsRejected {
                    message: last_rejection,
                });
            }
            let ordered = prefer_others(&candidates, last_failed.as_ref());
            let lease = self
                .pool
                .lease(&ordered, self.policy.busy_wait)
                .await
                .ok_or(ChatError::AccountsBusy)?;
            let token = lease.token().clone();
            let error = match self.attempt(&token, &prompt).await {
                Ok((first, rest)) => return Ok(self.answer(lease, first, rest, continuing).await),
                Err(error) => error,
            };
            drop(lease);
            match error {
                AttemptError::Rejected(message) => {
                    tracing::warn!(account = %token, %message, "the upstream refused an account; trying the next");
                    if let Err(error) = self.devices.forget(&token).await {
                        tracing::warn!(%error, "could not forget a device");
                    }
                    candidates.retain(|candidate| candidate != &token);
                    last_rejection = message;
                }
                AttemptError::Transient(error) => {
                    failures += 1;
                    if failures > self.policy.retries {
                        return Err(error.into());
                    }
                    tracing::warn!(account = %token, %error, attempt = failures, "transient upstream failure; retrying");
                    last_failed = Some(token);
                    tokio::time::sleep(self.policy.retry_delay).await;
                }
                AttemptError::Final(error) => return Err(error),
            }
        }
    }

    /// Fetches the last message's attachments concurrently, in the order given.
    async fn fetch_attachments(&self, prompt: &ChatPrompt) -> Result<Vec<Attachment>, ChatError> {
        let fetches = prompt
            .attachment_urls()
            .into_iter()
            .map(|url| self.attachments.fetch(url));
        futures::future::try_join_all(fetches)
            .await
            .map_err(|error| match error {
                AttachmentError::Invalid(message) => ChatError::InvalidAttachment(message),
                AttachmentError::TooLarge(message) => ChatError::AttachmentTooLarge(message),
            })
    }

    /// One try on one leased account, up to the first piece of the answer.
    async fn attempt(
        &self,
        token: &AccountToken,
        prompt: &ChatPrompt,
    ) -> Result<(AnswerDelta, AnswerStream), AttemptError> {
        let account = self.devices.account(token).await?;
        let mut stream = self.provider.send(&account, prompt).await?;
        match stream.next().await {
            Some(Ok(first)) => Ok((first, stream)),
            Some(Err(error)) => Err(error.into()),
            None => Err(AttemptError::Transient(ProviderError::Unavailable {
                message: "the answer ended before it began".into(),
            })),
        }
    }

    /// Records the conversation (before anything is streamed) and wraps the answer.
    async fn answer(
        &self,
        lease: AccountLease,
        first: AnswerDelta,
        rest: AnswerStream,
        continuing: Option<Activity>,
    ) -> Answer {
        let conversation = first.conversation.clone();
        let token = lease.token().clone();
        if let Err(error) = self.sessions.record(&conversation, &token, now_ms()).await {
            tracing::error!(%error, %conversation, "could not record a conversation; it may stay upstream");
        }
        let activity = match continuing {
            Some(activity) if activity.conversation == conversation => activity.with_token(token),
            _ => Activity::begin(self, conversation.clone(), Some(token)),
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
        };
        if done {
            answer.finish();
        }
        answer
    }
}

/// `candidates` with `avoid` moved to the end.
fn prefer_others(candidates: &[AccountToken], avoid: Option<&AccountToken>) -> Vec<AccountToken> {
    let (mut others, avoided): (Vec<_>, Vec<_>) = candidates.iter().cloned().partition(|token| Some(token) != avoid);
    others.extend(avoided);
    others
}

/// A conversation answering now: tracked so the sweeper leaves it alone, and on drop
/// recorded as used and released to the sweeper.
struct Activity {
    conversation: ConversationId,
    token: Option<AccountToken>,
    sessions: Arc<dyn SessionStore>,
    tracker: Arc<ConversationTracker>,
}

impl Activity {
    fn begin(service: &ChatService, conversation: ConversationId, token: Option<AccountToken>) -> Self {
        service.tracker.begin(&conversation);
        Self {
            conversation,
            token,
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
        // The idle time counts from the answer's end: refresh it before the sweeper may look.
        runtime.spawn(async move {
            if let Err(error) = sessions.record(&conversation, &token, now_ms()).await {
                tracing::warn!(%error, %conversation, "could not refresh a conversation's last use");
            }
            tracker.end(&conversation);
        });
    }
}

/// An answer being streamed. Yields the deltas; the account is freed as soon as the last
/// one arrives, the stream fails, or the stream is dropped (a client gone away).
pub struct Answer {
    conversation: ConversationId,
    message_id: String,
    first: Option<AnswerDelta>,
    rest: AnswerStream,
    lease: Option<AccountLease>,
    activity: Option<Activity>,
    done: bool,
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

    fn finish(&mut self) {
        self.done = true;
        self.lease = None;
        self.activity = None;
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
                Poll::Ready(Some(Err(ChatError::Unavailable {
                    message: "the answer stream ended before its last event".into(),
                })))
            }
        }
    }
}
