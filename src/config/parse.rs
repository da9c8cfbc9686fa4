//! The value types of [`Settings`](super::Settings) that are parsed from text: durations in a
//! key's own unit or as `"90s"`, the upstream's URL, the store's URL, the log format and the
//! browser origins allowed to read answers.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use url::Url;

/// Where devices and pending conversations are kept: `store.url`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `memory`: kept in the process, forgotten at exit.
    Memory,
    /// `sqlite://PATH`: a SQLite database at `PATH` (relative to the working folder, or
    /// absolute as in `sqlite:///var/lib/hailuo/hailuo.db`).
    Sqlite(PathBuf),
    /// `postgres://...` (or `postgresql://`): a PostgreSQL database. The composition root
    /// decides whether this build has an adapter for it.
    Postgres(Url),
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text == "memory" {
            return Ok(Self::Memory);
        }
        if let Some(path) = text.strip_prefix("sqlite://") {
            return if path.is_empty() {
                Err("`sqlite://` names no database file; give one, e.g. \"sqlite://data/hailuo.db\"".to_owned())
            } else {
                Ok(Self::Sqlite(PathBuf::from(path)))
            };
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Url::parse(text)
                .map(Self::Postgres)
                .map_err(|error| format!("not a PostgreSQL URL: {error}"));
        }
        // Only the scheme is repeated: the rest of a URL may hold a password.
        let shown = text.split_once("://").map_or(text, |(scheme, _)| scheme);
        Err(format!(
            "expected \"memory\", \"sqlite://PATH\" or \"postgres://...\", found {shown:?}"
        ))
    }
}

/// Shows a PostgreSQL URL without its password.
impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&without_password(url)).finish(),
        }
    }
}

/// As it is written (`memory`, `sqlite://data/hailuo.db`), a PostgreSQL URL without its
/// password.
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            Self::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            Self::Postgres(url) => f.write_str(&without_password(url)),
        }
    }
}

/// `url` with its password, if it has one, replaced by `<redacted>`.
pub fn without_password(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have a password, which this one has.
        let _ = shown.set_password(Some("<redacted>"));
    }
    shown.into()
}

impl<'de> Deserialize<'de> for StoreUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// How log lines are written: `log.format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, coloured only when written to a terminal.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// An `http://` or `https://` URL (`upstream.base_url`).
///
/// # Errors
/// When the text is not an absolute URL with one of those schemes.
pub fn http_url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let text = String::deserialize(deserializer)?;
    let url = Url::parse(text.trim()).map_err(|error| {
        de::Error::custom(format!(
            "{text:?} is not a URL ({error}); e.g. \"https://hailuoai.com\""
        ))
    })?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        scheme => Err(de::Error::custom(format!(
            "expected an http:// or https:// URL, found the scheme {scheme:?}"
        ))),
    }
}

/// A duration given as a whole number of seconds, or as text such as `"90s"` or `"5m"`.
///
/// # Errors
/// When the value is neither.
pub fn secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor(Unit::Seconds))
}

/// As [`secs`], for a key that may be left out.
///
/// # Errors
/// As [`secs`].
pub fn optional_secs<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    secs(deserializer).map(Some)
}

/// A duration given as a whole number of milliseconds, or as text such as `"250ms"` or `"2s"`.
///
/// # Errors
/// When the value is neither.
pub fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor(Unit::Milliseconds))
}

/// The unit a duration key's bare numbers are counted in (its name's `_secs` or `_ms`).
#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Milliseconds,
}

impl Unit {
    fn of(self, count: u64) -> Duration {
        match self {
            Unit::Seconds => Duration::from_secs(count),
            Unit::Milliseconds => Duration::from_millis(count),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Seconds => "seconds",
            Unit::Milliseconds => "milliseconds",
        }
    }
}

struct DurationVisitor(Unit);

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a whole number of {} or a duration such as \"90s\", \"5m\" or \"1h 30m\"",
            self.0.name()
        )
    }

    fn visit_u64<E: de::Error>(self, count: u64) -> Result<Duration, E> {
        Ok(self.0.of(count))
    }

    fn visit_i64<E: de::Error>(self, count: i64) -> Result<Duration, E> {
        u64::try_from(count)
            .map(|count| self.0.of(count))
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(count), &self))
    }

    fn visit_u128<E: de::Error>(self, count: u128) -> Result<Duration, E> {
        u64::try_from(count)
            .map(|count| self.0.of(count))
            .map_err(|_| E::custom(format!("{count} {} is too long", self.0.name())))
    }

    fn visit_i128<E: de::Error>(self, count: i128) -> Result<Duration, E> {
        u64::try_from(count)
            .map(|count| self.0.of(count))
            .map_err(|_| E::custom(format!("{count} {} is not a duration", self.0.name())))
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        let text = text.trim();
        if let Ok(count) = text.parse::<u64>() {
            return Ok(self.0.of(count));
        }
        humantime::parse_duration(text).map_err(|error| {
            E::custom(format!(
                "{text:?} is not a duration ({error}); give a whole number of {} or a duration such as \
                 \"90s\", \"5m\" or \"1h 30m\"",
                self.0.name()
            ))
        })
    }
}

/// A list given as a TOML/JSON sequence or as one comma-separated string (what an
/// environment variable gives): items trimmed, empties dropped.
///
/// # Errors
/// When the value is neither a list of strings nor a string.
pub fn list_or_comma_separated<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
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

/// The browser origins whose pages may read the server's answers (`server.cors_origins`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin: `*` (alone or anywhere in the list).
    Any,
    /// Only these, each as a browser sends it in `Origin`: `scheme://host[:port]`, in lower
    /// case, without the scheme's default port. Empty: no other origin.
    Listed(Vec<String>),
}

impl CorsOrigins {
    /// Whether a page of `origin` (an `Origin` header's value) may read the answers.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Listed(origins) => origins.iter().any(|listed| listed == origin),
        }
    }
}

/// `origin` as a browser writes it in an `Origin` header, or why it is not an origin.
fn browser_origin(origin: &str) -> Result<String, String> {
    let url = Url::parse(origin).map_err(|error| format!("{origin:?} is not an origin ({error})"))?;
    let bare = url.username().is_empty()
        && url.password().is_none()
        && matches!(url.path(), "" | "/")
        && url.query().is_none()
        && url.fragment().is_none();
    let Some(host) = url.host_str().filter(|_| bare) else {
        return Err(format!(
            "{origin:?} is not an origin: give a scheme, a host and perhaps a port, as in \
             \"https://chat.example.com\" or \"http://localhost:3000\", or \"*\" for any"
        ));
    };
    Ok(match url.port() {
        // `Url` has already dropped the scheme's default port.
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// Reads `server.cors_origins`: a list (or a comma-separated string) of origins, `*` for any.
///
/// # Errors
/// When an item is neither `*` nor an origin.
pub fn cors_origins<'de, D: Deserializer<'de>>(deserializer: D) -> Result<CorsOrigins, D::Error> {
    let items = list_or_comma_separated(deserializer)?;
    if items.iter().any(|item| item == "*") {
        return Ok(CorsOrigins::Any);
    }
    items
        .iter()
        .map(|item| browser_origin(item))
        .collect::<Result<Vec<_>, _>>()
        .map(CorsOrigins::Listed)
        .map_err(de::Error::custom)
}
