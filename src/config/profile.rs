//! The upstream's dialects and the profile each brings: the host, origin, headers and the query
//! string as an ordered list of keys whose values are literals of the profile or placeholders
//! filled per call. The profiles are embedded (`config/dialects/*.toml`); `[upstream.profile]`
//! in a file or the environment overrides any part of the chosen one.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Toml};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::parse;

/// Which front door of the upstream the gateway speaks: `upstream.dialect`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// `hailuoai`: `hailuoai.com`, the reference client's door.
    #[default]
    Hailuoai,
    /// `hailuo-intl`: `www.hailuo.ai`, the same chat with another host, origin and query.
    HailuoIntl,
    /// `minimax-agent`: `agent.minimaxi.com`, JSON chat whose answer is read by polling.
    MinimaxAgent,
}

impl Dialect {
    /// Every dialect, in the order the documentation lists them.
    pub const ALL: [Dialect; 3] = [Dialect::Hailuoai, Dialect::HailuoIntl, Dialect::MinimaxAgent];

    /// The name `upstream.dialect` takes.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Hailuoai => "hailuoai",
            Dialect::HailuoIntl => "hailuo-intl",
            Dialect::MinimaxAgent => "minimax-agent",
        }
    }

    /// The dialect's embedded `[upstream]` defaults: `base_url` and `[upstream.profile]`.
    pub fn embedded(self) -> &'static str {
        match self {
            Dialect::Hailuoai => include_str!("../../config/dialects/hailuoai.toml"),
            Dialect::HailuoIntl => include_str!("../../config/dialects/hailuo-intl.toml"),
            Dialect::MinimaxAgent => include_str!("../../config/dialects/minimax-agent.toml"),
        }
    }

    /// The dialect's embedded profile, without any override.
    ///
    /// # Errors
    /// Only if the embedded profile were broken (a test parses every one).
    pub fn profile(self) -> Result<Profile, Box<figment::Error>> {
        Figment::from(Toml::string(self.embedded()))
            .extract_inner("upstream.profile")
            .map_err(Box::new)
    }

    /// Whether this dialect's adapter fills `placeholder` in the query.
    pub fn fills(self, placeholder: Placeholder) -> bool {
        match self {
            Dialect::Hailuoai | Dialect::HailuoIntl => {
                matches!(
                    placeholder,
                    Placeholder::Uuid | Placeholder::DeviceId | Placeholder::Unix
                )
            }
            Dialect::MinimaxAgent => true,
        }
    }

    /// Whether the dialect has the upstream's speech and voice messages (protocol §8, §9).
    pub fn has_audio(self) -> bool {
        match self {
            Dialect::Hailuoai | Dialect::HailuoIntl => true,
            Dialect::MinimaxAgent => false,
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A query value filled per call rather than written in the profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placeholder {
    /// `uuid`: the user id of the account's device (the new one on registration).
    Uuid,
    /// `device_id`: the registered device's id; left out, with its key, on registration.
    DeviceId,
    /// `user_id`: the account's user id.
    UserId,
    /// `unix`: the call's timestamp.
    Unix,
    /// `token`: the account token, as in its header.
    Token,
}

impl Placeholder {
    /// The placeholder a query key names, when it names one.
    pub fn named(key: &str) -> Option<Self> {
        Some(match key {
            "uuid" => Placeholder::Uuid,
            "device_id" => Placeholder::DeviceId,
            "user_id" => Placeholder::UserId,
            "unix" => Placeholder::Unix,
            "token" => Placeholder::Token,
            _ => return None,
        })
    }
}

/// The value of one query key: written in the profile, or filled per call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryValue<'a> {
    /// The profile's own value, sent as it is.
    Literal(&'a str),
    /// Filled per call.
    Placeholder(Placeholder),
}

/// Every constant of the upstream protocol marked **profile**: the web app's identity in one
/// dialect (its embedded defaults, then the user's `[upstream.profile]`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Profile {
    /// The query string's keys, in order. A placeholder name (`uuid`, `device_id`, `user_id`,
    /// `unix`, `token`) is filled per call; any other key sends the profile's value of the same
    /// name (`upstream.profile.<key>`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub query: Vec<String>,
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
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How a polled answer is read (`[upstream.profile.poll]`; the `minimax-agent` dialect).
    #[serde(default)]
    pub poll: AnswerPolling,
    /// The texts by which the upstream says what is wrong with a request
    /// (`[upstream.profile.refusals]`).
    #[serde(default)]
    pub refusals: RefusalTexts,
    /// The literal query values: every other key of `[upstream.profile]` (`version_code`, ...).
    #[serde(flatten)]
    pub values: BTreeMap<String, ProfileValue>,
}

impl Profile {
    /// The literal value of `key`, when the profile has one.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(ProfileValue::as_str)
    }

    /// The query's keys in order with their values.
    ///
    /// # Errors
    /// The first key that is neither a placeholder nor given a value.
    pub fn query_pairs(&self) -> Result<Vec<(&str, QueryValue<'_>)>, String> {
        self.query
            .iter()
            .map(|key| match Placeholder::named(key) {
                Some(placeholder) => Ok((key.as_str(), QueryValue::Placeholder(placeholder))),
                None => self
                    .value(key)
                    .map(|value| (key.as_str(), QueryValue::Literal(value)))
                    .ok_or_else(|| key.clone()),
            })
            .collect()
    }
}

/// How an answer that is read by polling (`minimax-agent`) is polled and judged complete:
/// the first poll `first` after the message is sent, then each pause twice the last, up to
/// `max` (and never past the moment the answer would settle). The answer is
/// complete when its message carries a true `end_marker` field, or when its content has not
/// changed for `settle`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct AnswerPolling {
    /// The pause before the first poll (`upstream.profile.poll.first_ms`).
    #[serde(rename = "first_ms", deserialize_with = "parse::millis")]
    pub first: Duration,
    /// The longest pause between two polls (`upstream.profile.poll.max_ms`).
    #[serde(rename = "max_ms", deserialize_with = "parse::millis")]
    pub max: Duration,
    /// Content unchanged this long means the answer is complete
    /// (`upstream.profile.poll.settle_ms`).
    #[serde(rename = "settle_ms", deserialize_with = "parse::millis")]
    pub settle: Duration,
    /// The assistant message's field that says it is complete, when the upstream has one
    /// (`upstream.profile.poll.end_marker`; empty: none, the settle time decides).
    pub end_marker: String,
}

impl Default for AnswerPolling {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(50),
            max: Duration::from_secs(1),
            settle: Duration::from_secs(2),
            end_marker: String::new(),
        }
    }
}

/// The texts by which the upstream says what is wrong with a request or an account, one list
/// per kind of refusal (`[upstream.profile.refusals]`): a refusal whose message contains one of
/// a list's texts, compared without regard to case, is of that kind. The upstream's codes for
/// them are not publicly known, and its wording may change: hence settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct RefusalTexts {
    /// The content was filtered (`content_filtered`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub content_filtered: Vec<String>,
    /// The text is longer than the upstream takes (`text_too_long`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub text_too_long: Vec<String>,
    /// The voice is not one the upstream knows (`unknown_voice`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub unknown_voice: Vec<String>,
    /// The upstream does not take the file's type (`unsupported_file`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub unsupported_file: Vec<String>,
    /// The file is larger than the upstream takes (`file_too_large`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub file_too_large: Vec<String>,
    /// The upstream cannot use the audio (`invalid_audio`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub invalid_audio: Vec<String>,
    /// The audio lasts longer than the upstream takes (`audio_too_long`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub audio_too_long: Vec<String>,
    /// The account sent too many requests (`rate_limited`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub rate_limited: Vec<String>,
    /// The upstream refused what the gateway sent, not what the client asked (`protocol`).
    #[serde(deserialize_with = "parse::list_or_comma_separated")]
    pub protocol: Vec<String>,
}

/// A literal of the profile: text, or a number or boolean (what an environment variable such as
/// `HAILUO_UPSTREAM__PROFILE__VERSION_CODE=22201` gives), kept as the text it is written as.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProfileValue(String);

impl ProfileValue {
    /// The value as sent.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for ProfileValue {
    fn from(text: &str) -> Self {
        Self(text.to_owned())
    }
}

impl<'de> Deserialize<'de> for ProfileValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ProfileValueVisitor)
    }
}

struct ProfileValueVisitor;

impl Visitor<'_> for ProfileValueVisitor {
    type Value = ProfileValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a query value: text, a number or a boolean")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<ProfileValue, E> {
        Ok(ProfileValue(text.to_owned()))
    }

    fn visit_u64<E: de::Error>(self, number: u64) -> Result<ProfileValue, E> {
        Ok(ProfileValue(number.to_string()))
    }

    fn visit_i64<E: de::Error>(self, number: i64) -> Result<ProfileValue, E> {
        Ok(ProfileValue(number.to_string()))
    }

    fn visit_u128<E: de::Error>(self, number: u128) -> Result<ProfileValue, E> {
        Ok(ProfileValue(number.to_string()))
    }

    fn visit_i128<E: de::Error>(self, number: i128) -> Result<ProfileValue, E> {
        Ok(ProfileValue(number.to_string()))
    }

    fn visit_f64<E: de::Error>(self, number: f64) -> Result<ProfileValue, E> {
        Ok(ProfileValue(number.to_string()))
    }

    fn visit_bool<E: de::Error>(self, flag: bool) -> Result<ProfileValue, E> {
        Ok(ProfileValue(flag.to_string()))
    }
}
