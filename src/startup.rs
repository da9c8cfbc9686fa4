//! The composition root as a library: builds the adapters the settings ask for (the store
//! `store.url` names among them), wires the use cases, binds the listener and serves.
//! `main.rs` and the tests both start here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::{Dialect, Settings, StoreSettings, StoreUrl};
use crate::domain::ports::{AttachmentSource, AudioCodec, ChatProvider, SpeechProvider, TranscriptionProvider};
use crate::domain::service::{
    AccountPool, AccountRunner, Admission, ChatService, CodecSlots, ConversationSweeper, ConversationTracker,
    CooldownPolicy, DeviceRegistry, LateConversationRecorder, RunPolicy, SpeechService, TranscriptionService,
};
use crate::inbound::http::{self, HttpState};
use crate::inbound::server;
use crate::outbound::attachments::AttachmentFetcher;
use crate::outbound::audio::SymphoniaLameCodec;
use crate::outbound::hailuo::HailuoClient;
use crate::outbound::hailuo::agent::AgentClient;
use crate::outbound::hailuo::request::BusyMarkers;
use crate::outbound::hailuo::speech::SpeechTiming;
use crate::outbound::store::{self, Stores};

/// The sweeper looks at most this often, whatever `session.sweep_interval_ms` says.
const MIN_SWEEP_INTERVAL: Duration = Duration::from_millis(10);

/// A built server, bound and ready to run.
pub struct Application {
    listener: tokio::net::TcpListener,
    addr: SocketAddr,
    state: HttpState,
    sweeper: Arc<ConversationSweeper>,
}

impl Application {
    /// Builds every adapter and binds `server.host:server.port` (port 0 picks a free one).
    ///
    /// # Errors
    /// When the settings do not fit together, the HTTP client or the stores cannot be
    /// built, or the address cannot be bound.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate().context("checking the settings")?;
        // Before any instrument is created; once per process.
        crate::outbound::telemetry::install_metrics();
        // Before any token is labelled: stable across restarts when the server has a secret.
        crate::domain::chat::init_fingerprint_key(settings.store.secret.as_deref());
        // The pool's tokens have their expiry gauge from start, not from their first request.
        for token in &settings.auth.tokens {
            crate::domain::token_expiry::observe(&crate::domain::chat::AccountToken::new(token.as_str()));
        }
        let (tokens, sessions) = open_stores(&settings.store).await?;
        let tracker = ConversationTracker::new();
        let hailuo = Arc::new(
            HailuoClient::new(&settings.upstream)
                .context("building the upstream HTTP client")?
                .with_speech_timing(SpeechTiming {
                    timeout: settings.audio.tts_timeout,
                    poll_interval: settings.audio.tts_poll_interval,
                })
                .with_busy_markers(BusyMarkers::new(&settings.accounts.busy_markers))
                .with_late_conversations(
                    LateConversationRecorder::new(Arc::clone(&sessions), Arc::clone(&tracker)),
                    settings.upstream.late_answer_wait,
                ),
        );
        let provider: Arc<dyn ChatProvider> = match settings.upstream.dialect {
            Dialect::MinimaxAgent => Arc::new(AgentClient::new(HailuoClient::clone(&hailuo))),
            Dialect::Hailuoai | Dialect::HailuoIntl => Arc::clone(&hailuo) as Arc<dyn ChatProvider>,
        };
        let dialect = settings.upstream.dialect;
        let devices = Arc::new(DeviceRegistry::new(
            tokens,
            Arc::clone(&provider),
            settings.upstream.device_ttl,
        ));
        let attachments: Arc<dyn AttachmentSource> =
            Arc::new(AttachmentFetcher::new(&settings.files).context("building the attachment fetcher")?);
        let runner = Arc::new(AccountRunner::new(
            Arc::clone(&devices),
            AccountPool::new(),
            Admission::new(settings.server.max_in_flight, settings.server.max_queued),
            RunPolicy {
                retries: settings.upstream.retries,
                retry_delay: settings.upstream.retry_delay,
                busy_wait: settings.accounts.busy_wait,
                release_wait: settings.accounts.release_wait,
                hangup_rest: settings.accounts.hangup_rest,
                cooldown: CooldownPolicy {
                    after: settings.accounts.cooldown_after,
                    rest: settings.accounts.cooldown,
                },
            },
        ));
        let codec: Arc<dyn AudioCodec> = Arc::new(SymphoniaLameCodec::new(settings.audio.limits()));
        let codec_slots = CodecSlots::new(settings.audio.concurrent_decodes());
        let speech = SpeechService::new(
            Arc::clone(&hailuo) as Arc<dyn SpeechProvider>,
            Arc::clone(&codec),
            Arc::clone(&codec_slots),
            Arc::clone(&runner),
            Arc::clone(&sessions),
            Arc::clone(&tracker),
            settings.audio.voice_table(),
        );
        let speech = Arc::new(if dialect.has_audio() {
            speech
        } else {
            speech.unavailable(format!(
                "the {dialect} upstream has no speech: /v1/audio/speech is not available"
            ))
        });
        let transcription = TranscriptionService::new(
            hailuo as Arc<dyn TranscriptionProvider>,
            codec,
            codec_slots,
            Arc::clone(&runner),
        );
        let transcription = Arc::new(if dialect.has_audio() {
            transcription
        } else {
            transcription.unavailable(format!(
                "the {dialect} upstream has no transcription: /v1/audio/transcriptions is not available"
            ))
        });
        // The chat hears its audio parts with the transcription, within the attachments' count.
        let chat = Arc::new(
            ChatService::new(
                Arc::clone(&provider),
                attachments,
                Arc::clone(&runner),
                Arc::clone(&sessions),
                Arc::clone(&tracker),
            )
            .with_transcription(Arc::clone(&transcription), settings.files.max_per_message),
        );
        let sweeper = Arc::new(ConversationSweeper::new(
            sessions,
            Arc::clone(&devices),
            provider,
            tracker,
            settings.session.idle_ttl,
            settings.session.sweep_interval.max(MIN_SWEEP_INTERVAL),
        ));
        let state = HttpState {
            chat,
            devices,
            speech,
            transcription,
            max_upload_bytes: settings.audio.max_upload_bytes,
            body_limits: settings.server.body_limits(),
            auth: Arc::new(http::auth::ClientAuth::new(
                &settings.auth.api_keys,
                &settings.auth.tokens,
                settings.accounts.max_tokens_per_request,
            )),
            cors_origins: settings.server.cors_origins.clone(),
        };
        let listener = listen(&settings.server.host, settings.server.port).await?;
        let addr = listener.local_addr().context("reading the bound address")?;
        // Load the tokenizer's tables in the background, off the first request's path.
        tokio::task::spawn_blocking(http::usage::warm_up);
        Ok(Self {
            listener,
            addr,
            state,
            sweeper,
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The OpenAPI document this server serves.
    pub fn openapi_json(&self) -> String {
        http::openapi_json(&self.state)
    }

    /// Serves until `shutdown` resolves, then lets requests in flight finish (at most
    /// `grace`) and stops the sweeper.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send,
        grace: Duration,
    ) -> std::io::Result<()> {
        let sweeper = tokio::spawn(Arc::clone(&self.sweeper).run());
        let result = server::serve(self.listener, http::endpoint(&self.state), shutdown, grace).await;
        // One last sweep, so what is due now is not left behind.
        if let Err(error) = self.sweeper.sweep().await {
            tracing::warn!(%error, "final sweep failed");
        }
        sweeper.abort();
        result
    }

    /// Serves until the process is stopped.
    ///
    /// # Errors
    /// When serving fails.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(std::future::pending(), Duration::from_secs(30)).await
    }
}

/// Listens on `host:port`.
///
/// # Errors
/// When the address cannot be bound: a port in use says so in those words, with the key that
/// moves it.
async fn listen(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let bind = format!("{host}:{port}");
    tokio::net::TcpListener::bind(bind.as_str())
        .await
        .map_err(|error| match error.kind() {
            std::io::ErrorKind::AddrInUse => anyhow::anyhow!(
                "port {port} is in use on {host}: stop what listens there or choose another with \
                 server.port (HAILUO_SERVER__PORT)"
            ),
            _ => anyhow::Error::new(error).context(format!("cannot listen on {bind}")),
        })
}

/// The token and session stores `store.url` names.
///
/// # Errors
/// When this build has no adapter for the URL's kind, or the database or its key cannot be
/// opened.
pub async fn open_stores(settings: &StoreSettings) -> anyhow::Result<Stores> {
    match &settings.url {
        StoreUrl::Memory => Ok(store::in_memory()),
        StoreUrl::Sqlite(path) => store::open_sqlite(path, settings.secret.as_deref(), settings.busy_timeout)
            .await
            .context("opening the stores"),
        StoreUrl::Postgres(_) => anyhow::bail!(
            "`store.url`: postgres:// stores are not supported by this build; use \"memory\" or \"sqlite://PATH\""
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_postgres_store_is_refused_at_start_naming_its_key() {
        let mut settings = Settings::defaults().unwrap().store;
        settings.url = "postgres://hailuo:hunter2@db/hailuo".parse().unwrap();
        let Err(error) = open_stores(&settings).await else {
            panic!("no PostgreSQL adapter is built");
        };
        let shown = format!("{error:#}");
        assert!(shown.contains("store.url"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn memory_and_sqlite_urls_open_their_stores() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let mut settings = Settings::defaults().unwrap().store;
        let (_, sessions) = open_stores(&settings).await?;
        assert_eq!(sessions.pending().await?, 0);
        settings.url = StoreUrl::Sqlite(dir.path().join("nested/hailuo.db"));
        let (_, sessions) = open_stores(&settings).await?;
        assert_eq!(sessions.pending().await?, 0);
        assert!(
            dir.path().join("nested/hailuo.db.key").exists(),
            "a key file without a secret"
        );
        Ok(())
    }
}
