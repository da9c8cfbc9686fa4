//! One typed [`Settings`], read with figment from the embedded defaults, an optional file and
//! `HAILUO_*` environment variables; the upstream profile lives here too. Every value is
//! parsed at load (durations, URLs, the store, the log format): a bad one stops the server
//! at start, naming its key. Adapters are chosen from these settings in `startup.rs`.

mod error;
mod keys;
mod parse;
mod profile;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::Deserialize;
use url::Url;

pub use error::{ConfigError, InvalidSettings};
pub use keys::{UnknownKey, is_other_variable};
pub use parse::{CorsOrigins, LogFormat, StoreUrl};
pub use profile::{AnswerPolling, Dialect, Placeholder, Profile, ProfileValue, QueryValue, RefusalTexts};

use crate::domain::audio::{AudioLimits, VoiceTable};

/// The defaults compiled into the binary: `config/default.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// Everything the server can be configured with. Every settings struct denies unknown
/// fields: that is how a key given by mistake stops the start, and how the keys are known.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where and how the server listens.
    pub server: ServerSettings,
    /// The Hailuo upstream.
    pub upstream: UpstreamSettings,
    /// Account scheduling.
    pub accounts: AccountSettings,
    /// Client API keys and the server's own token pool.
    pub auth: AuthSettings,
    /// Upstream conversation cleanup.
    pub session: SessionSettings,
    /// Where devices and pending conversations are kept.
    pub store: StoreSettings,
    /// Attachments (documents and images in chat).
    pub files: FileSettings,
    /// Speech and transcription.
    pub audio: AudioSettings,
    /// Logging.
    pub log: LogSettings,
}

/// Where and how the server listens.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Listen address.
    pub host: String,
    /// Listen port; 0 picks a free one.
    pub port: u16,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A request body must have arrived whole within this of its head
    /// (`server.body_timeout_secs`).
    #[serde(rename = "body_timeout_secs", deserialize_with = "parse::secs")]
    pub body_timeout: Duration,
    /// After `body_rate_grace`, a body arriving slower than this on average (bytes per
    /// second since its head) is cut off; 0 checks no rate.
    pub min_body_bytes_per_sec: u64,
    /// How long a body may take before its rate is checked (`server.body_rate_grace_secs`).
    #[serde(rename = "body_rate_grace_secs", deserialize_with = "parse::secs")]
    pub body_rate_grace: Duration,
    /// How long a shutdown lets requests in flight finish (`server.shutdown_grace_secs`).
    #[serde(rename = "shutdown_grace_secs", deserialize_with = "parse::secs")]
    pub shutdown_grace: Duration,
    /// Upstream work items running at once.
    pub max_in_flight: usize,
    /// Requests waiting for a slot; one more gets 503.
    pub max_queued: usize,
    /// Threads running requests; 0: one per core.
    pub worker_threads: usize,
    /// The browser origins whose pages may read the answers (`server.cors_origins`).
    #[serde(deserialize_with = "parse::cors_origins")]
    pub cors_origins: CorsOrigins,
}

/// The Hailuo upstream and how to talk to it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// Which front door of the upstream is spoken (`upstream.dialect`).
    pub dialect: Dialect,
    /// Base URL of the web API (`http://` or `https://`); the dialect's host when not set.
    #[serde(deserialize_with = "parse::http_url")]
    pub base_url: Url,
    /// The response head (and a chat's first chunk) must arrive within this
    /// (`upstream.first_byte_timeout_secs`).
    #[serde(rename = "first_byte_timeout_secs", deserialize_with = "parse::secs")]
    pub first_byte_timeout: Duration,
    /// Idle timeout: no byte for this long ends a call (`upstream.idle_timeout_secs`, or its
    /// other name `upstream.timeout_secs`, which wins when set and not 0).
    #[serde(rename = "idle_timeout_secs", deserialize_with = "parse::secs")]
    pub idle_timeout: Duration,
    /// `upstream.timeout_secs`, the other name of `idle_timeout_secs`: applied to
    /// `idle_timeout` at load when set and not 0.
    #[serde(rename = "timeout_secs", default, deserialize_with = "parse::optional_secs")]
    idle_timeout_alias: Option<Duration>,
    /// After a chat's response head timed out, how long the request is still listened to in
    /// the background, so that a conversation the upstream makes late is learnt and deleted
    /// (`upstream.late_answer_wait_secs`; zero: not at all).
    #[serde(rename = "late_answer_wait_secs", deserialize_with = "parse::secs")]
    pub late_answer_wait: Duration,
    /// Connect timeout (`upstream.connect_timeout_secs`).
    #[serde(rename = "connect_timeout_secs", deserialize_with = "parse::secs")]
    pub connect_timeout: Duration,
    /// Retries after a transient failure.
    pub retries: u32,
    /// Pause before a retry (`upstream.retry_delay_ms`).
    #[serde(rename = "retry_delay_ms", deserialize_with = "parse::millis")]
    pub retry_delay: Duration,
    /// How long a registered device is reused (`upstream.device_ttl_secs`).
    #[serde(rename = "device_ttl_secs", deserialize_with = "parse::secs")]
    pub device_ttl: Duration,
    /// Speak HTTP/2 without negotiation (h2c) to a plain-HTTP upstream.
    pub http2_prior_knowledge: bool,
    /// The browser profile the upstream is told it talks to: the dialect's, with the
    /// configuration's overrides.
    pub profile: Profile,
}

impl ServerSettings {
    /// The limits a request body is read under.
    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            max_bytes: self.max_body_bytes,
            timeout: self.body_timeout,
            min_bytes_per_sec: self.min_body_bytes_per_sec,
            rate_grace: self.body_rate_grace,
        }
    }
}

/// How much of a request body is read, and how fast it must arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BodyLimits {
    /// Largest body accepted, in bytes.
    pub max_bytes: usize,
    /// The whole body must have arrived within this of its head.
    pub timeout: Duration,
    /// The least average rate, in bytes per second, once `rate_grace` has passed; 0: none.
    pub min_bytes_per_sec: u64,
    /// How long a body may take before its rate is checked.
    pub rate_grace: Duration,
}

impl UpstreamSettings {
    /// Builds the HTTP client for the upstream: timeouts, decompression, connection reuse.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn http_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.idle_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true);
        let builder = if self.http2_prior_knowledge {
            builder.http2_prior_knowledge()
        } else {
            builder
        };
        builder.build()
    }
}

/// Account scheduling.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    /// How long a request waits for a free account before 429 (`accounts.busy_wait_secs`).
    #[serde(rename = "busy_wait_secs", deserialize_with = "parse::secs")]
    pub busy_wait: Duration,
    /// Refusals in a row after which a token rests.
    pub cooldown_after: u32,
    /// How long a refused token rests (`accounts.cooldown_secs`).
    #[serde(rename = "cooldown_secs", deserialize_with = "parse::secs")]
    pub cooldown: Duration,
    /// The most Hailuo tokens one client request may name in `Authorization`.
    pub max_tokens_per_request: usize,
    /// The upstream messages that say an account is still busy with another answer
    /// (substrings; `accounts.busy_markers`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub busy_markers: Vec<String>,
    /// How long an account stays held after an answer's final event while the upstream's
    /// response ends (`accounts.release_wait_ms`).
    #[serde(rename = "release_wait_ms", deserialize_with = "parse::millis")]
    pub release_wait: Duration,
    /// How long an account stays out of use after the gateway hung up on one of its streams
    /// (`accounts.hangup_rest_ms`).
    #[serde(rename = "hangup_rest_ms", deserialize_with = "parse::millis")]
    pub hangup_rest: Duration,
}

/// Client API keys and the server's own Hailuo token pool. Its `Debug` shows counts only.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// Keys clients present as `Bearer`; empty = the bearer value is the client's token list.
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub api_keys: Vec<String>,
    /// The server's Hailuo tokens, used for requests that present an API key.
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub tokens: Vec<String>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("api_keys", &format_args!("<{} redacted>", self.api_keys.len()))
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .finish()
    }
}

/// Upstream conversation cleanup.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Idle time after which a conversation is deleted; zero: right after the answer
    /// (`session.idle_ttl_secs`).
    #[serde(rename = "idle_ttl_secs", deserialize_with = "parse::secs")]
    pub idle_ttl: Duration,
    /// How often the sweeper looks for due conversations (`session.sweep_interval_ms`).
    #[serde(rename = "sweep_interval_ms", deserialize_with = "parse::millis")]
    pub sweep_interval: Duration,
}

/// Where devices and pending conversations are kept.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `memory`, `sqlite://PATH` (the file and its folders are created when missing) or
    /// `postgres://...`.
    pub url: StoreUrl,
    /// The server secret protecting the tokens in SQLite; unset, a random key is kept in
    /// `<db>.key` next to the database.
    #[serde(default)]
    pub secret: Option<String>,
    /// How long an SQLite write waits for another one to finish (`store.busy_timeout_ms`).
    #[serde(rename = "busy_timeout_ms", deserialize_with = "parse::millis")]
    pub busy_timeout: Duration,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}

/// Attachments: what the server fetches for clients.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// Largest attachment accepted, in bytes.
    pub max_bytes: u64,
    /// Most attachments one message may carry.
    pub max_per_message: usize,
    /// Most bytes the attachments of one request may add up to.
    pub max_total_bytes: u64,
    /// Time allowed for one download's answer to begin, and again for its body
    /// (`files.download_timeout_secs`).
    #[serde(rename = "download_timeout_secs", deserialize_with = "parse::secs")]
    pub download_timeout: Duration,
    /// Whether client URLs may reach loopback, private, link-local and other internal addresses.
    pub allow_private_networks: bool,
}

/// Speech and transcription.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSettings {
    /// How long to wait for the upstream's audio (`audio.tts_timeout_secs`).
    #[serde(rename = "tts_timeout_secs", deserialize_with = "parse::secs")]
    pub tts_timeout: Duration,
    /// Pause between polls of the upstream's audio (`audio.tts_poll_interval_ms`).
    #[serde(rename = "tts_poll_interval_ms", deserialize_with = "parse::millis")]
    pub tts_poll_interval: Duration,
    /// Largest transcription upload.
    pub max_upload_bytes: usize,
    /// The longest audio decoded (an upload, or the upstream's speech); longer gets 413
    /// (`audio.max_duration_secs`).
    #[serde(rename = "max_duration_secs", deserialize_with = "parse::secs")]
    pub max_duration: Duration,
    /// The most PCM one decode produces, at 4 bytes a sample; more gets 413.
    pub max_decoded_bytes: u64,
    /// Decodes (and encodes) running at once; 0: one per core.
    pub max_concurrent_decodes: usize,
    /// OpenAI voice → Hailuo voice for `tts-1`.
    pub voices: BTreeMap<String, String>,
    /// OpenAI voice → Hailuo voice for `tts-1-hd`.
    pub voices_hd: BTreeMap<String, String>,
}

/// The OpenAI voices, in the order `REPLACE_AUDIO_MODEL` lists their replacements.
pub const OPENAI_VOICES: [&str; 6] = ["alloy", "echo", "fable", "onyx", "nova", "shimmer"];

impl AudioSettings {
    /// The bounds of one decode.
    pub fn limits(&self) -> AudioLimits {
        AudioLimits {
            max_duration: self.max_duration,
            max_decoded_bytes: self.max_decoded_bytes,
        }
    }

    /// How many decodes may run at once: `max_concurrent_decodes`, or one per core for 0.
    pub fn concurrent_decodes(&self) -> usize {
        match self.max_concurrent_decodes {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            slots => slots,
        }
    }

    /// The voice tables, with OpenAI names in lowercase.
    pub fn voice_table(&self) -> VoiceTable {
        let lower = |table: &BTreeMap<String, String>| {
            table
                .iter()
                .map(|(name, voice)| (name.to_ascii_lowercase(), voice.clone()))
                .collect()
        };
        VoiceTable {
            standard: lower(&self.voices),
            hd: lower(&self.voices_hd),
        }
    }

    /// Applies `REPLACE_AUDIO_MODEL`: comma-separated ids replacing the `tts-1` targets of
    /// alloy, echo, fable, onyx, nova, shimmer in that order; empty slots keep theirs.
    pub fn replace_voices(&mut self, replacements: &str) {
        for (name, replacement) in OPENAI_VOICES.iter().zip(replacements.split(',')) {
            let replacement = replacement.trim();
            if !replacement.is_empty() {
                self.voices.insert((*name).to_owned(), replacement.to_owned());
            }
        }
    }
}

/// Logging.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Default level filter.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Settings {
    /// Reads the embedded defaults, then `file` when given, then `HAILUO_*` variables.
    ///
    /// # Errors
    /// [`ConfigError`] when the file cannot be read, a value has the wrong type or does not
    /// parse, or the settings do not fit together; each message names its key.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_on(file, None)
    }

    /// As [`Settings::load`], with `dialect`, when given, over every layer's
    /// `upstream.dialect` (a command line's choice); its profile is then the one overridden.
    ///
    /// # Errors
    /// As [`Settings::load`].
    pub fn load_on(file: Option<&Path>, dialect: Option<Dialect>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(file) = file {
            std::fs::metadata(file).map_err(|source| ConfigError::File {
                path: file.to_owned(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(file));
        }
        let figment = figment.merge(keys::environment());
        let figment = match dialect {
            Some(dialect) => figment.merge(Serialized::default("upstream.dialect", dialect.name())),
            None => figment,
        };
        let figment = with_dialect_profile(figment)?;
        let mut settings: Settings = figment.extract().map_err(|error| {
            let unknown = keys::unknown_keys(&figment);
            if unknown.is_empty() {
                ConfigError::from_figment(error)
            } else {
                ConfigError::UnknownKeys(unknown)
            }
        })?;
        if let Some(timeout) = settings
            .upstream
            .idle_timeout_alias
            .filter(|timeout| !timeout.is_zero())
        {
            settings.upstream.idle_timeout = timeout;
        }
        if let Ok(replacements) = std::env::var("REPLACE_AUDIO_MODEL") {
            settings.audio.replace_voices(&replacements);
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks the settings that parse but cannot work together.
    ///
    /// # Errors
    /// [`InvalidSettings`] naming the keys at fault.
    pub fn validate(&self) -> Result<(), InvalidSettings> {
        if !self.auth.api_keys.is_empty() && self.auth.tokens.is_empty() {
            return Err(InvalidSettings::KeysWithoutTokens);
        }
        if self.server.max_in_flight == 0 {
            return Err(InvalidSettings::NoInFlight);
        }
        if self.server.body_timeout.is_zero() {
            return Err(InvalidSettings::NoBodyTime);
        }
        if self.accounts.max_tokens_per_request == 0 {
            return Err(InvalidSettings::NoClientTokens);
        }
        self.upstream.validate_query()
    }

    /// What the start's log line says of these settings: never a token, a key or a password.
    pub fn start_summary(&self) -> StartSummary {
        StartSummary {
            upstream: parse::without_password(&self.upstream.base_url),
            dialect: self.upstream.dialect,
            store: self.store.url.to_string(),
            api_keys: if self.auth.api_keys.is_empty() { "off" } else { "on" },
            pool_tokens: self.auth.tokens.len(),
        }
    }

    /// The embedded defaults alone, ignoring the environment (for tests and tools).
    ///
    /// # Errors
    /// Only if the embedded defaults were broken.
    pub fn defaults() -> Result<Self, Box<figment::Error>> {
        Self::defaults_on(Dialect::default())
    }

    /// The embedded defaults with `dialect` and its profile, ignoring the environment.
    ///
    /// # Errors
    /// Only if the embedded defaults were broken.
    pub fn defaults_on(dialect: Dialect) -> Result<Self, Box<figment::Error>> {
        Figment::from(Toml::string(DEFAULT_CONFIG))
            .merge(Serialized::default("upstream.dialect", dialect.name()))
            .join(Toml::string(dialect.embedded()))
            .extract()
            .map_err(Box::new)
    }
}

impl UpstreamSettings {
    /// Checks that every query key has a value: a literal of the profile, or a placeholder
    /// the dialect fills.
    ///
    /// # Errors
    /// [`InvalidSettings`] naming the key.
    pub fn validate_query(&self) -> Result<(), InvalidSettings> {
        let pairs = self
            .profile
            .query_pairs()
            .map_err(|key| InvalidSettings::QueryKeyWithoutValue { key })?;
        for (key, value) in pairs {
            if let QueryValue::Placeholder(placeholder) = value
                && !self.dialect.fills(placeholder)
            {
                return Err(InvalidSettings::PlaceholderNotFilled {
                    key: key.to_owned(),
                    dialect: self.dialect,
                });
            }
        }
        Ok(())
    }
}

/// What the server runs with, as its start's log line says it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartSummary {
    /// The upstream's base URL (a password in it masked).
    pub upstream: String,
    /// The dialect spoken.
    pub dialect: Dialect,
    /// The store: `memory`, `sqlite://PATH`, or a PostgreSQL URL with its password masked.
    pub store: String,
    /// `on` when clients must present an API key, `off` when they bring their own tokens.
    pub api_keys: &'static str,
    /// How many tokens the server's own pool holds.
    pub pool_tokens: usize,
}

/// The dialect named by `upstream.dialect`, read first.
#[derive(Deserialize)]
struct DialectChoice {
    upstream: ChosenDialect,
}

#[derive(Deserialize)]
struct ChosenDialect {
    #[serde(default)]
    dialect: Dialect,
}

/// Fills what the configuration leaves unset under `[upstream]` (`base_url`, any part of
/// `[upstream.profile]`) from the profile of the dialect it names.
fn with_dialect_profile(figment: Figment) -> Result<Figment, ConfigError> {
    let choice: DialectChoice = figment.extract().map_err(ConfigError::from_figment)?;
    Ok(figment.join(Toml::string(choice.upstream.dialect.embedded())))
}
