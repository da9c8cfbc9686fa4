//! The composition root as a library: builds the adapters the settings ask for, wires the
//! use cases, binds the listener and serves. `main.rs` and the tests both start here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Settings;
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
use crate::outbound::hailuo::speech::SpeechTiming;

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
        let (tokens, sessions) = settings.store.connect().await.context("opening the stores")?;
        let tracker = ConversationTracker::new();
        let hailuo = Arc::new(
            HailuoClient::new(&settings.upstream)
                .context("building the upstream HTTP client")?
                .with_speech_timing(SpeechTiming {
                    timeout: Duration::from_secs(settings.audio.tts_timeout_secs),
                    poll_interval: Duration::from_millis(settings.audio.tts_poll_interval_ms),
                })
                .with_late_conversations(
                    LateConversationRecorder::new(Arc::clone(&sessions), Arc::clone(&tracker)),
                    Duration::from_secs(settings.upstream.late_answer_wait_secs),
                ),
        );
        let provider: Arc<dyn ChatProvider> = Arc::clone(&hailuo) as Arc<dyn ChatProvider>;
        let devices = Arc::new(DeviceRegistry::new(
            tokens,
            Arc::clone(&provider),
            Duration::from_secs(settings.upstream.device_ttl_secs),
        ));
        let attachments: Arc<dyn AttachmentSource> =
            Arc::new(AttachmentFetcher::new(&settings.files).context("building the attachment fetcher")?);
        let runner = Arc::new(AccountRunner::new(
            Arc::clone(&devices),
            AccountPool::new(),
            Admission::new(settings.server.max_in_flight, settings.server.max_queued),
            RunPolicy {
                retries: settings.upstream.retries,
                retry_delay: settings.upstream.retry_delay(),
                busy_wait: Duration::from_secs(settings.accounts.busy_wait_secs),
                cooldown: CooldownPolicy {
                    after: settings.accounts.cooldown_after,
                    rest: Duration::from_secs(settings.accounts.cooldown_secs),
                },
            },
        ));
        let chat = Arc::new(ChatService::new(
            Arc::clone(&provider),
            attachments,
            Arc::clone(&runner),
            Arc::clone(&sessions),
            Arc::clone(&tracker),
        ));
        let codec: Arc<dyn AudioCodec> = Arc::new(SymphoniaLameCodec::new(settings.audio.limits()));
        let codec_slots = CodecSlots::new(settings.audio.concurrent_decodes());
        let speech = Arc::new(SpeechService::new(
            Arc::clone(&hailuo) as Arc<dyn SpeechProvider>,
            Arc::clone(&codec),
            Arc::clone(&codec_slots),
            Arc::clone(&runner),
            Arc::clone(&sessions),
            Arc::clone(&tracker),
            settings.audio.voice_table(),
        ));
        let transcription = Arc::new(TranscriptionService::new(
            hailuo as Arc<dyn TranscriptionProvider>,
            codec,
            codec_slots,
            Arc::clone(&runner),
        ));
        let sweeper = Arc::new(ConversationSweeper::new(
            sessions,
            Arc::clone(&devices),
            provider,
            tracker,
            Duration::from_secs(settings.session.idle_ttl_secs),
            Duration::from_millis(settings.session.sweep_interval_ms.max(10)),
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
        };
        let bind = format!("{}:{}", settings.server.host, settings.server.port);
        let listener = tokio::net::TcpListener::bind(bind.as_str())
            .await
            .with_context(|| format!("binding {bind}"))?;
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
