//! Leaving no trace: every conversation the proxy creates upstream is recorded in the
//! [`SessionStore`] before its answer is streamed, and the [`ConversationSweeper`] deletes it
//! once idle for `session.idle_ttl_secs`, retrying failed deletions later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use crate::domain::chat::{AccountToken, ConversationId};
use crate::domain::metrics::instruments;
use crate::domain::ports::{ChatProvider, LateConversations, ProviderError, Session, SessionStore, StoreError};

use super::devices::{DeviceError, DeviceRegistry};
use super::now_ms;

/// The conversations answering right now (never deleted mid-answer), and the sweeper's
/// wake-up calls.
#[derive(Debug, Default)]
pub struct ConversationTracker {
    answering: Mutex<HashMap<ConversationId, usize>>,
    /// An answer ended: its conversation is due now if the idle time is 0.
    ended: Notify,
    /// A conversation is due now.
    due: Notify,
}

impl ConversationTracker {
    /// An empty tracker.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn answering(&self) -> std::sync::MutexGuard<'_, HashMap<ConversationId, usize>> {
        self.answering.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks `conversation` as answering.
    pub fn begin(&self, conversation: &ConversationId) {
        *self.answering().entry(conversation.clone()).or_default() += 1;
    }

    /// Marks one answer of `conversation` as ended, and wakes the sweeper if it deletes
    /// conversations as soon as their answer ends.
    pub fn end(&self, conversation: &ConversationId) {
        {
            let mut answering = self.answering();
            if let Some(count) = answering.get_mut(conversation) {
                *count -= 1;
                if *count == 0 {
                    answering.remove(conversation);
                }
            }
        }
        self.ended.notify_one();
    }

    /// Wakes the sweeper (a conversation became due).
    pub fn wake(&self) {
        self.due.notify_one();
    }

    /// Whether `conversation` is answering now.
    pub fn is_answering(&self, conversation: &ConversationId) -> bool {
        self.answering().contains_key(conversation)
    }

    /// How many conversations are answering now.
    pub fn answering_count(&self) -> usize {
        self.answering().len()
    }
}

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    /// Conversations deleted upstream.
    pub deleted: usize,
    /// Deletions that failed and will be retried.
    pub deferred: usize,
    /// Conversations given up (their account is refused: nobody can delete them any more).
    pub abandoned: usize,
}

/// Deletes idle conversations upstream, in the background.
pub struct ConversationSweeper {
    sessions: Arc<dyn SessionStore>,
    devices: Arc<DeviceRegistry>,
    provider: Arc<dyn ChatProvider>,
    tracker: Arc<ConversationTracker>,
    idle_ttl: Duration,
    interval: Duration,
}

/// Conversations deleted at once per sweep, at most.
const SWEEP_BATCH: usize = 256;
/// Deletions running at once.
const DELETE_CONCURRENCY: usize = 8;
/// The longest pause between retries of a failed deletion.
const MAX_RETRY_PAUSE_MS: i64 = 300_000;

impl ConversationSweeper {
    /// A sweeper deleting conversations idle longer than `idle_ttl`, looking every `interval`
    /// (and whenever an answer ends).
    pub fn new(
        sessions: Arc<dyn SessionStore>,
        devices: Arc<DeviceRegistry>,
        provider: Arc<dyn ChatProvider>,
        tracker: Arc<ConversationTracker>,
        idle_ttl: Duration,
        interval: Duration,
    ) -> Self {
        Self {
            sessions,
            devices,
            provider,
            tracker,
            idle_ttl,
            interval,
        }
    }

    /// Sweeps until the task is dropped: every `interval`, when a conversation becomes due,
    /// and, when the idle time is 0, whenever an answer ends. With an idle time, the
    /// conversation of an answer that just ended is not due yet, so sweeping then (up to
    /// once per answer) would only make every answer pay for a look at the store.
    pub async fn run(self: Arc<Self>) {
        let sweep_when_answers_end = self.idle_ttl.is_zero();
        loop {
            match self.sweep().await {
                Ok(report) if report != SweepReport::default() => {
                    tracing::debug!(?report, "swept upstream conversations");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "could not read the conversations to delete"),
            }
            tokio::select! {
                () = tokio::time::sleep(self.interval) => {}
                () = self.tracker.due.notified() => {}
                () = self.tracker.ended.notified(), if sweep_when_answers_end => {}
            }
        }
    }

    /// Deletes every conversation that is due now.
    ///
    /// # Errors
    /// [`StoreError`] when the store cannot be read; a failed deletion is deferred, not an error.
    pub async fn sweep(&self) -> Result<SweepReport, StoreError> {
        let now = now_ms();
        let ttl_ms = i64::try_from(self.idle_ttl.as_millis()).unwrap_or(i64::MAX);
        let due = self.sessions.due(now.saturating_sub(ttl_ms), now, SWEEP_BATCH).await?;
        let outcomes: Vec<Outcome> = futures::stream::iter(due)
            .filter(|session| std::future::ready(!self.tracker.is_answering(&session.conversation)))
            .map(|session| async move { self.delete(session).await })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect()
            .await;
        let mut report = SweepReport::default();
        for outcome in outcomes {
            match outcome {
                Outcome::Deleted => report.deleted += 1,
                Outcome::Deferred => report.deferred += 1,
                Outcome::Abandoned => report.abandoned += 1,
            }
        }
        let metrics = instruments();
        metrics.deletions_failed.add(
            u64::try_from(report.deferred + report.abandoned).unwrap_or(u64::MAX),
            &[],
        );
        if let Ok(pending) = self.sessions.pending().await {
            metrics.conversations_pending.record(pending, &[]);
        }
        Ok(report)
    }

    async fn delete(&self, session: Session) -> Outcome {
        let conversation = &session.conversation;
        let provider = &self.provider;
        let result = self
            .devices
            .with_account(&session.token, |account| async move {
                provider.delete_conversation(&account, conversation).await
            })
            .await;
        let outcome = match result {
            Ok(()) => Outcome::Deleted,
            // Gone already (deleted in the web app, or by an earlier try whose answer was lost).
            Err(DeviceError::Provider(ProviderError::ConversationNotFound { .. })) => Outcome::Deleted,
            Err(DeviceError::Provider(ProviderError::AccountRejected { message })) => {
                tracing::warn!(%conversation, account = %session.token, %message,
                    "the account is refused: its conversation cannot be deleted");
                Outcome::Abandoned
            }
            Err(error) => {
                tracing::warn!(%conversation, account = %session.token, %error, failures = session.failures + 1,
                    "could not delete a conversation; will retry");
                Outcome::Deferred
            }
        };
        let stored = match outcome {
            Outcome::Deferred => {
                let pause = 1_000_i64
                    .saturating_mul(1 << session.failures.min(9))
                    .min(MAX_RETRY_PAUSE_MS);
                self.sessions.defer(conversation, now_ms() + pause).await
            }
            Outcome::Deleted | Outcome::Abandoned => self.sessions.remove(conversation).await,
        };
        if let Err(error) = stored {
            tracing::warn!(%conversation, %error, "could not update the conversation record");
        }
        outcome
    }
}

/// Records the conversations adapters learn of late (see [`LateConversations`]) as due for
/// deletion at once, and wakes the sweeper.
pub struct LateConversationRecorder {
    sessions: Arc<dyn SessionStore>,
    tracker: Arc<ConversationTracker>,
}

impl LateConversationRecorder {
    /// A recorder into `sessions`, waking `tracker`'s sweeper.
    pub fn new(sessions: Arc<dyn SessionStore>, tracker: Arc<ConversationTracker>) -> Arc<Self> {
        Arc::new(Self { sessions, tracker })
    }
}

impl LateConversations for LateConversationRecorder {
    fn made(&self, token: &AccountToken, conversation: &ConversationId) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(%conversation, "no runtime to record a late conversation; it may stay upstream");
            return;
        };
        let (sessions, tracker) = (Arc::clone(&self.sessions), Arc::clone(&self.tracker));
        let (token, conversation) = (token.clone(), conversation.clone());
        runtime.spawn(async move {
            tracing::warn!(%conversation, account = %token, "the upstream answered a request given up; deleting its conversation");
            // Due at once: nobody received this answer.
            if let Err(error) = sessions.record(&conversation, &token, None, 0).await {
                tracing::error!(%error, %conversation, "could not record a conversation; it may stay upstream");
            }
            tracker.wake();
        });
    }
}

enum Outcome {
    Deleted,
    Deferred,
    Abandoned,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::config::Settings;
    use crate::domain::chat::ClientId;
    use crate::outbound::hailuo::HailuoClient;
    use crate::outbound::store::{MemorySessionStore, MemoryTokenStore};

    /// The memory store, counting the sweeper's looks.
    #[derive(Default)]
    struct CountingStore {
        inner: MemorySessionStore,
        looks: AtomicUsize,
    }

    #[async_trait]
    impl SessionStore for CountingStore {
        async fn record(
            &self,
            conversation: &ConversationId,
            token: &AccountToken,
            owner: Option<&ClientId>,
            now_ms: i64,
        ) -> Result<(), StoreError> {
            self.inner.record(conversation, token, owner, now_ms).await
        }
        async fn find(&self, conversation: &ConversationId) -> Result<Option<Session>, StoreError> {
            self.inner.find(conversation).await
        }
        async fn due(&self, idle_before_ms: i64, now_ms: i64, limit: usize) -> Result<Vec<Session>, StoreError> {
            self.looks.fetch_add(1, Ordering::SeqCst);
            self.inner.due(idle_before_ms, now_ms, limit).await
        }
        async fn defer(&self, conversation: &ConversationId, retry_at_ms: i64) -> Result<(), StoreError> {
            self.inner.defer(conversation, retry_at_ms).await
        }
        async fn remove(&self, conversation: &ConversationId) -> Result<(), StoreError> {
            self.inner.remove(conversation).await
        }
        async fn pending(&self) -> Result<u64, StoreError> {
            self.inner.pending().await
        }
    }

    /// A sweeper looking only when woken (its interval is an hour), and its store.
    fn sweeper(idle_ttl: Duration) -> (Arc<ConversationSweeper>, Arc<CountingStore>, Arc<ConversationTracker>) {
        let mut upstream = Settings::defaults().unwrap().upstream;
        // Nothing is due in these tests, so nothing is sent: the address only has to parse.
        upstream.base_url = "http://127.0.0.1:9/".parse().unwrap();
        let provider: Arc<dyn ChatProvider> = Arc::new(HailuoClient::new(&upstream).unwrap());
        let devices = Arc::new(DeviceRegistry::new(
            Arc::new(MemoryTokenStore::default()),
            Arc::clone(&provider),
            Duration::from_secs(3600),
        ));
        let store = Arc::new(CountingStore::default());
        let tracker = ConversationTracker::new();
        let sweeper = ConversationSweeper::new(
            Arc::clone(&store) as Arc<dyn SessionStore>,
            devices,
            provider,
            Arc::clone(&tracker),
            idle_ttl,
            Duration::from_secs(3600),
        );
        (Arc::new(sweeper), store, tracker)
    }

    /// Lets the sweeper's task run, then reads how often it looked.
    async fn looks_after_a_pause(store: &CountingStore) -> usize {
        tokio::time::sleep(Duration::from_millis(50)).await;
        store.looks.load(Ordering::SeqCst)
    }

    fn answered(tracker: &ConversationTracker, n: u64) {
        let conversation = ConversationId::nth(n);
        tracker.begin(&conversation);
        tracker.end(&conversation);
    }

    #[tokio::test]
    async fn with_an_idle_time_ending_answers_do_not_wake_the_sweeper_but_a_due_conversation_does() {
        let (sweeper, store, tracker) = sweeper(Duration::from_secs(600));
        let task = tokio::spawn(Arc::clone(&sweeper).run());
        assert_eq!(looks_after_a_pause(&store).await, 1, "one look at start");
        for n in 0..100 {
            answered(&tracker, n);
            tokio::task::yield_now().await;
        }
        assert_eq!(looks_after_a_pause(&store).await, 1, "100 answers ended, none due yet");
        tracker.wake();
        assert_eq!(looks_after_a_pause(&store).await, 2);
        task.abort();
    }

    #[tokio::test]
    async fn with_no_idle_time_an_ending_answer_wakes_the_sweeper() {
        let (sweeper, store, tracker) = sweeper(Duration::ZERO);
        let task = tokio::spawn(Arc::clone(&sweeper).run());
        assert_eq!(looks_after_a_pause(&store).await, 1, "one look at start");
        answered(&tracker, 1);
        assert_eq!(looks_after_a_pause(&store).await, 2);
        tracker.wake();
        assert_eq!(looks_after_a_pause(&store).await, 3);
        task.abort();
    }
}
