//! One typed [`Settings`], read with figment from the embedded defaults, an optional file and
//! `HAILUO_*` environment variables; the upstream profile lives here too.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Deserializer};

use crate::domain::audio::{AudioLimits, VoiceTable};
use crate::domain::ports::StoreError;
use crate::outbound::store::Stores;

/// The defaults compiled into the binary: `config/default.toml`.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// Everything the server can be configured with.
#[derive(Clone, Debug, Deserialize)]
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
pub struct ServerSettings {
    /// Listen address.
    pub host: String,
    /// Listen port; 0 picks a free one.
    pub port: u16,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// A request body must have arrived whole within this many seconds of its head.
    pub body_timeout_secs: u64,
    /// After `body_rate_grace_secs`, a body arriving slower than this on average (bytes per
    /// second since its head) is cut off; 0 checks no rate.
    pub min_body_bytes_per_sec: u64,
    /// Seconds a body may take before its rate is checked.
    pub body_rate_grace_secs: u64,
    /// How long a shutdown lets requests in flight finish.
    pub shutdown_grace_secs: u64,
    /// Upstream work items running at once.
    pub max_in_flight: usize,
    /// Requests waiting for a slot; one more gets 503.
    pub max_queued: usize,
    /// Threads running requests; 0: one per core.
    pub worker_threads: usize,
}

/// The Hailuo upstream and how to talk to it.
#[derive(Clone, Debug, Deserialize)]
pub struct UpstreamSettings {
    /// Base URL of the web API, without a trailing slash.
    pub base_url: String,
    /// The response head (and a chat's first chunk) must arrive within this.
    pub first_byte_timeout_secs: u64,
    /// Idle timeout: no byte for this long ends a call.
    pub idle_timeout_secs: u64,
    /// After a chat's response head timed out, how long the request is still listened to in
    /// the background, so that a conversation the upstream makes late is learnt and deleted.
    pub late_answer_wait_secs: u64,
    /// The former name of `idle_timeout_secs`, still accepted: when set (not 0) it wins.
    #[serde(default)]
    pub timeout_secs: u64,
    /// Connect timeout.
    pub connect_timeout_secs: u64,
    /// Retries after a transient failure.
    pub retries: u32,
    /// Pause before a retry.
    pub retry_delay_ms: u64,
    /// How long a registered device is reused.
    pub device_ttl_secs: u64,
    /// Speak HTTP/2 without negotiation (h2c) to a plain-HTTP upstream.
    pub http2_prior_knowledge: bool,
    /// The browser profile the upstream is told it talks to.
    pub profile: Profile,
}

impl ServerSettings {
    /// The limits a request body is read under.
    pub fn body_limits(&self) -> BodyLimits {
        BodyLimits {
            max_bytes: self.max_body_bytes,
            timeout: Duration::from_secs(self.body_timeout_secs),
            min_bytes_per_sec: self.min_body_bytes_per_sec,
            rate_grace: Duration::from_secs(self.body_rate_grace_secs),
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
    /// The idle timeout as a [`Duration`] (`timeout_secs` when the old name is set).
    pub fn idle_timeout(&self) -> Duration {
        let secs = if self.timeout_secs > 0 {
            self.timeout_secs
        } else {
            self.idle_timeout_secs
        };
        Duration::from_secs(secs)
    }

    /// The time allowed until the response head and a stream's first chunk.
    pub fn first_byte_timeout(&self) -> Duration {
        Duration::from_secs(self.first_byte_timeout_secs)
    }

    /// The connect timeout as a [`Duration`].
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }

    /// The pause before a retry as a [`Duration`].
    pub fn retry_delay(&self) -> Duration {
        Duration::from_millis(self.retry_delay_ms)
    }

    /// Builds the HTTP client for the upstream: timeouts, decompression, connection reuse.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn http_client(&self) -> Result<reqwest::Client, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout())
            .read_timeout(self.idle_timeout())
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

/// Every constant of the upstream protocol marked **profile**: the web app's identity.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Profile {
    /// `device_platform` query value.
    pub device_platform: String,
    /// `app_id` query value.
    pub app_id: String,
    /// `version_code` query value.
    pub version_code: String,
    /// `os_name` query value.
    pub os_name: String,
    /// `browser_name` query value.
    pub browser_name: String,
    /// `device_memory` query value.
    pub device_memory: String,
    /// `cpu_core_num` query value.
    pub cpu_core_num: String,
    /// `browser_language` query value.
    pub browser_language: String,
    /// `browser_platform` query value.
    pub browser_platform: String,
    /// `screen_width` query value.
    pub screen_width: String,
    /// `screen_height` query value.
    pub screen_height: String,
    /// Salt of the `Yy` signature.
    pub salt: String,
    /// The web app's origin, sent as `Origin` and in `Referer`.
    pub origin: String,
    /// Sentry release in `Baggage`.
    pub sentry_release: String,
    /// Sentry public key in `Baggage`.
    pub sentry_public_key: String,
    /// Sentry environment in `Baggage`.
    pub sentry_environment: String,
    /// Browser fingerprint headers, sent as they are.
    pub headers: BTreeMap<String, String>,
}

/// Account scheduling.
#[derive(Clone, Debug, Deserialize)]
pub struct AccountSettings {
    /// How long a request waits for a free account before 429.
    pub busy_wait_secs: u64,
    /// Refusals in a row after which a token rests.
    pub cooldown_after: u32,
    /// How long a refused token rests.
    pub cooldown_secs: u64,
    /// The most Hailuo tokens one client request may name in `Authorization`.
    pub max_tokens_per_request: usize,
}

/// Client API keys and the server's own Hailuo token pool. Its `Debug` shows counts only.
#[derive(Clone, Default, Deserialize)]
pub struct AuthSettings {
    /// Keys clients present as `Bearer`; empty = the bearer value is the client's token list.
    #[serde(deserialize_with = "list_or_comma_separated")]
    pub api_keys: Vec<String>,
    /// The server's Hailuo tokens, used for requests that present an API key.
    #[serde(deserialize_with = "list_or_comma_separated")]
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

/// A list given as a TOML/JSON sequence or as one comma-separated string (what an
/// environment variable gives): items trimmed, empties dropped.
fn list_or_comma_separated<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrString {
        List(Vec<String>),
        Text(String),
        // An environment value that looks like a number is given to us as one.
        Integer(i128),
    }
    let items = match ListOrString::deserialize(deserializer)? {
        ListOrString::List(items) => items,
        ListOrString::Text(text) => text.split(',').map(str::to_owned).collect(),
        ListOrString::Integer(number) => vec![number.to_string()],
    };
    Ok(items
        .into_iter()
        .map(|item| item.trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect())
}

/// Settings that parse but cannot work together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSettings {
    /// API keys without a token pool would refuse every request.
    #[error(
        "`auth.api_keys` is set but `auth.tokens` is empty: requests with an API key run on the \
         server's own Hailuo tokens; set HAILUO_AUTH__TOKENS (or unset the API keys)"
    )]
    KeysWithoutTokens,
    /// A zero bound would refuse every request.
    #[error("`server.max_in_flight` must be at least 1")]
    NoInFlight,
    /// A zero deadline would refuse every request body.
    #[error("`server.body_timeout_secs` must be at least 1")]
    NoBodyTime,
    /// A zero cap would refuse every client's token list.
    #[error("`accounts.max_tokens_per_request` must be at least 1")]
    NoClientTokens,
}

/// Upstream conversation cleanup.
#[derive(Clone, Debug, Deserialize)]
pub struct SessionSettings {
    /// Idle time after which a conversation is deleted; 0 = right after the answer.
    pub idle_ttl_secs: u64,
    /// How often the sweeper looks for due conversations.
    pub sweep_interval_ms: u64,
}

/// Where devices and pending conversations are kept.
#[derive(Clone, Deserialize)]
pub struct StoreSettings {
    /// `memory`, or `sqlite://PATH` (the file and its folders are created when missing).
    pub url: String,
    /// The server secret protecting the tokens in SQLite; unset, a random key is kept in
    /// `<db>.key` next to the database.
    #[serde(default)]
    pub secret: Option<String>,
    /// How long an SQLite write waits for another one to finish, in milliseconds.
    pub busy_timeout_ms: u64,
}

impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("busy_timeout_ms", &self.busy_timeout_ms)
            .finish()
    }
}

impl StoreSettings {
    /// Builds the token and session stores `url` names.
    ///
    /// # Errors
    /// [`StoreError`] for an unknown URL, or when the SQLite database or its key cannot be
    /// opened (a key other than the one the database was written with included).
    pub async fn connect(&self) -> Result<Stores, StoreError> {
        crate::outbound::store::connect(self).await
    }
}

/// Attachments: what the server fetches for clients.
#[derive(Clone, Debug, Deserialize)]
pub struct FileSettings {
    /// Largest attachment accepted, in bytes.
    pub max_bytes: u64,
    /// Most attachments one message may carry.
    pub max_per_message: usize,
    /// Most bytes the attachments of one request may add up to.
    pub max_total_bytes: u64,
    /// Time allowed for one download's answer to begin, and again for its body.
    pub download_timeout_secs: u64,
    /// Whether client URLs may reach loopback, private, link-local and other internal addresses.
    pub allow_private_networks: bool,
}

impl FileSettings {
    /// The download timeout as a [`Duration`].
    pub fn download_timeout(&self) -> Duration {
        Duration::from_secs(self.download_timeout_secs)
    }
}

/// Speech and transcription.
#[derive(Clone, Debug, Deserialize)]
pub struct AudioSettings {
    /// How long to wait for the upstream's audio.
    pub tts_timeout_secs: u64,
    /// Pause between polls of the upstream's audio.
    pub tts_poll_interval_ms: u64,
    /// Largest transcription upload.
    pub max_upload_bytes: usize,
    /// The longest audio decoded (an upload, or the upstream's speech); longer gets 413.
    pub max_duration_secs: u64,
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
            max_duration: Duration::from_secs(self.max_duration_secs),
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
pub struct LogSettings {
    /// Default level filter.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Settings {
    /// Reads the embedded defaults, then `file` when given, then `HAILUO_*` variables.
    ///
    /// # Errors
    /// When the file cannot be read or a value has the wrong type.
    pub fn load(file: Option<&Path>) -> Result<Self, Box<figment::Error>> {
        let mut figment = Figment::from(Toml::string(DEFAULT_CONFIG));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let mut settings: Settings = figment
            .merge(Env::prefixed("HAILUO_").split("__").ignore(&["config"]))
            .extract()
            .map_err(Box::new)?;
        if let Ok(replacements) = std::env::var("REPLACE_AUDIO_MODEL") {
            settings.audio.replace_voices(&replacements);
        }
        settings
            .validate()
            .map_err(|error| Box::new(figment::Error::from(error.to_string())))?;
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
        if self.server.body_timeout_secs == 0 {
            return Err(InvalidSettings::NoBodyTime);
        }
        if self.accounts.max_tokens_per_request == 0 {
            return Err(InvalidSettings::NoClientTokens);
        }
        Ok(())
    }

    /// The embedded defaults alone, ignoring the environment (for tests and tools).
    ///
    /// # Errors
    /// Only if the embedded defaults were broken.
    pub fn defaults() -> Result<Self, Box<figment::Error>> {
        Figment::from(Toml::string(DEFAULT_CONFIG)).extract().map_err(Box::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_parse_and_match_the_protocol_profile() -> Result<(), Box<figment::Error>> {
        let settings = Settings::defaults()?;
        assert_eq!(settings.server.port, 8000);
        assert_eq!(settings.upstream.base_url, "https://hailuoai.com");
        assert_eq!(settings.upstream.profile.app_id, "3001");
        assert_eq!(settings.upstream.profile.version_code, "22200");
        assert_eq!(settings.upstream.profile.salt, "ooui");
        assert_eq!(settings.upstream.device_ttl_secs, 10_800);
        assert!(settings.upstream.profile.headers.contains_key("User-Agent"));
        assert_eq!(settings.store.url, "memory");
        assert_eq!(settings.store.secret, None);
        assert_eq!(settings.accounts.max_tokens_per_request, 64);
        let body = settings.server.body_limits();
        assert_eq!(body.max_bytes, 104_857_600);
        assert_eq!(body.timeout, Duration::from_secs(300));
        assert_eq!(body.min_bytes_per_sec, 1024);
        assert_eq!(body.rate_grace, Duration::from_secs(10));
        Ok(())
    }

    #[test]
    fn a_zero_body_deadline_or_token_cap_is_refused() -> Result<(), Box<figment::Error>> {
        let mut settings = Settings::defaults()?;
        settings.server.body_timeout_secs = 0;
        assert_eq!(settings.validate(), Err(InvalidSettings::NoBodyTime));
        let mut settings = Settings::defaults()?;
        settings.accounts.max_tokens_per_request = 0;
        assert_eq!(settings.validate(), Err(InvalidSettings::NoClientTokens));
        Ok(())
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
    fn a_file_overrides_the_defaults_and_the_environment_overrides_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "custom.toml",
                "[server]\nport = 9100\n[upstream]\nretries = 7\n[upstream.profile]\nversion_code = \"22300\"\n",
            )?;
            jail.set_env("HAILUO_SERVER__PORT", "9200");
            jail.set_env("HAILUO_SESSION__IDLE_TTL_SECS", "0");
            jail.set_env("HAILUO_CONFIG", "ignored-here.toml");
            jail.set_env("HAILUO_STORE__URL", "sqlite://data/hailuo.db");
            jail.set_env("HAILUO_STORE__SECRET", "s3cret");
            let settings = Settings::load(Some(Path::new("custom.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(settings.server.port, 9200, "the environment wins over the file");
            assert_eq!(settings.upstream.retries, 7, "the file wins over the defaults");
            assert_eq!(settings.upstream.profile.version_code, "22300");
            assert_eq!(
                settings.upstream.profile.app_id, "3001",
                "untouched keys keep their defaults"
            );
            assert_eq!(settings.session.idle_ttl_secs, 0);
            assert_eq!(settings.store.url, "sqlite://data/hailuo.db");
            assert_eq!(settings.store.secret.as_deref(), Some("s3cret"));
            assert!(!format!("{settings:?}").contains("s3cret"), "the secret is not logged");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
    fn replace_audio_model_overrides_the_standard_voices_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REPLACE_AUDIO_MODEL", "voice-a, ,voice-c");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            let table = settings.audio.voice_table();
            assert_eq!(table.standard["alloy"], "voice-a");
            assert_eq!(
                table.standard["echo"], "Podcast_girl",
                "an empty slot keeps the default"
            );
            assert_eq!(table.standard["fable"], "voice-c");
            assert_eq!(table.standard["shimmer"], "xiaoyi_mix_hailuo");
            assert_eq!(table.hd["alloy"], "xiaomo_sft", "the HD table is untouched");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
    fn api_keys_and_tokens_come_from_a_toml_list_or_a_comma_separated_variable() {
        figment::Jail::expect_with(|jail| {
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert!(settings.auth.api_keys.is_empty(), "no keys by default");
            assert!(settings.auth.tokens.is_empty());

            jail.create_file("keys.toml", "[auth]\napi_keys = [\"sk-file\"]\ntokens = [\"t-file\"]\n")?;
            let settings = Settings::load(Some(Path::new("keys.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(settings.auth.api_keys, ["sk-file"]);
            assert_eq!(settings.auth.tokens, ["t-file"]);

            jail.set_env("HAILUO_AUTH__API_KEYS", "sk-a, sk-b,,");
            jail.set_env("HAILUO_AUTH__TOKENS", "t1,t2");
            let settings = Settings::load(Some(Path::new("keys.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                settings.auth.api_keys,
                ["sk-a", "sk-b"],
                "the environment wins, split on commas"
            );
            assert_eq!(settings.auth.tokens, ["t1", "t2"]);
            let shown = format!("{settings:?}");
            for secret in ["sk-a", "sk-b", "t1", "t2"] {
                assert!(!shown.contains(secret), "{secret} shows in Debug");
            }
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
    fn api_keys_without_a_token_pool_do_not_start() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HAILUO_AUTH__API_KEYS", "sk-a");
            let error = Settings::load(None)
                .map(|_| ())
                .expect_err("keys without tokens are refused");
            assert!(error.to_string().contains("auth.tokens"), "{error}");
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
    fn the_old_timeout_name_still_sets_the_idle_timeout() {
        figment::Jail::expect_with(|jail| {
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.upstream.idle_timeout(), Duration::from_secs(120));
            assert_eq!(settings.upstream.first_byte_timeout(), Duration::from_secs(60));
            jail.set_env("HAILUO_UPSTREAM__TIMEOUT_SECS", "7");
            let settings = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(settings.upstream.idle_timeout(), Duration::from_secs(7));
            Ok(())
        });
    }

    #[test]
    fn a_missing_config_file_is_an_error() {
        assert!(Settings::load(Some(Path::new("/nonexistent/hailuo.toml"))).is_err());
    }
}
