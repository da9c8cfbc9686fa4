//! The query string every request carries (protocol §1.2): the path's own pairs first, then
//! exactly the profile's keys in its order, with its literal values, the device's ids and a
//! fresh `unix`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::rejection::Rejection;
use hailuo_free_api::config::{Placeholder, QueryValue};

use crate::profile::Profile;

/// How far `unix` may be from the simulator's clock, in milliseconds.
const UNIX_TOLERANCE_MS: u128 = 10 * 60 * 1000;

/// Splits off a path's own query: its first pairs must be exactly `own` keys, in order, with
/// non-empty values; what follows (after the joining `&`) is the common query.
pub(crate) fn strip_own_query<'q>(query: &'q str, own: &[&str]) -> Result<&'q str, Rejection> {
    let mut rest = query;
    for key in own {
        let (pair, tail) = rest.split_once('&').unwrap_or((rest, ""));
        match pair.split_once('=') {
            Some((sent, value)) if sent == *key && !value.is_empty() => rest = tail,
            _ => {
                return Err(Rejection::bad_parameter(format!(
                    "query {query:?} does not start with the path's own {own:?} (then the common query after &)"
                )));
            }
        }
    }
    Ok(rest)
}

/// The value of `key` in a query string, as sent.
pub(crate) fn query_value<'q>(query: &'q str, key: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find_map(|(name, value)| (name == key).then_some(value))
}

/// What a request's query string says, once checked against the profile.
#[derive(Clone, Debug)]
pub(crate) struct ProfileQuery {
    /// `uuid`: the device's user id.
    pub uuid: String,
    /// `device_id`, absent only on device registration.
    pub device_id: Option<String>,
    /// `unix`, as sent.
    pub unix: String,
    /// `user_id`, when the profile's query has it.
    pub user_id: Option<String>,
    /// `token`, when the profile's query has it.
    pub token: Option<String>,
}

/// Checks that `query` is exactly the profile's keys, in its order and with its literal
/// values, with `device_id` present unless `registering`, and the per-call values well formed.
pub(crate) fn check_profile_query(
    query: &str,
    profile: &Profile,
    registering: bool,
) -> Result<ProfileQuery, Rejection> {
    let expected = profile
        .query_pairs()
        .map_err(|key| Rejection::bad_parameter(format!("the simulator's profile gives query key {key} no value")))?;
    let expected: Vec<(&str, QueryValue<'_>)> = expected
        .into_iter()
        .filter(|(_, value)| !(registering && *value == QueryValue::Placeholder(Placeholder::DeviceId)))
        .collect();
    let expected_keys: Vec<&str> = expected.iter().map(|(key, _)| *key).collect();

    let pairs: Vec<(&str, &str)> = if query.is_empty() {
        Vec::new()
    } else {
        query
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .collect()
    };
    let sent_keys: Vec<&str> = pairs.iter().map(|(key, _)| *key).collect();
    if sent_keys != expected_keys {
        return Err(Rejection::bad_parameter(format!(
            "query keys {sent_keys:?}, expected exactly {expected_keys:?}"
        )));
    }

    let mut parsed = ProfileQuery {
        uuid: String::new(),
        device_id: None,
        unix: String::new(),
        user_id: None,
        token: None,
    };
    for ((key, value), (_, wanted)) in pairs.into_iter().zip(expected) {
        match wanted {
            QueryValue::Literal(literal) => {
                if value != literal {
                    return Err(Rejection::bad_parameter(format!(
                        "query {key}={value:?}, the profile says {literal:?}"
                    )));
                }
            }
            QueryValue::Placeholder(Placeholder::Uuid) => parsed.uuid = value.to_owned(),
            QueryValue::Placeholder(Placeholder::DeviceId) => parsed.device_id = Some(value.to_owned()),
            QueryValue::Placeholder(Placeholder::Unix) => parsed.unix = value.to_owned(),
            QueryValue::Placeholder(placeholder @ (Placeholder::UserId | Placeholder::Token)) => {
                if value.is_empty() {
                    return Err(Rejection::bad_parameter(format!("query {key} is empty")));
                }
                let slot = if placeholder == Placeholder::UserId {
                    &mut parsed.user_id
                } else {
                    &mut parsed.token
                };
                *slot = Some(value.to_owned());
            }
        }
    }
    if parsed.uuid.is_empty() {
        return Err(Rejection::bad_parameter("query uuid is empty"));
    }
    if parsed.device_id.as_deref() == Some("") {
        return Err(Rejection::bad_parameter("query device_id is empty"));
    }
    check_unix(&parsed.unix)?;
    Ok(parsed)
}

/// `unix`: 13 digits, whole seconds (ends in `000`), within ten minutes of now.
fn check_unix(unix: &str) -> Result<(), Rejection> {
    if unix.len() != 13 || !unix.bytes().all(|b| b.is_ascii_digit()) || !unix.ends_with("000") {
        return Err(Rejection::bad_parameter(format!(
            "query unix={unix:?} is not 13 digits of whole-second milliseconds"
        )));
    }
    let sent: u128 = unix
        .parse()
        .map_err(|_| Rejection::bad_parameter(format!("query unix={unix:?}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    if sent.abs_diff(now) > UNIX_TOLERANCE_MS {
        return Err(Rejection::bad_parameter(format!(
            "query unix={unix} is more than 10 minutes from now ({now})"
        )));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_path_query_comes_before_the_common_query() {
        let query = "msgID=1&timbre=male-botong&device_platform=web&unix=1";
        assert_eq!(
            strip_own_query(query, &["msgID", "timbre"]).unwrap(),
            "device_platform=web&unix=1"
        );
        assert!(strip_own_query("timbre=a&msgID=1&x=1", &["msgID", "timbre"]).is_err());
        assert!(strip_own_query("msgID=&timbre=a", &["msgID", "timbre"]).is_err());
        assert_eq!(query_value(query, "timbre"), Some("male-botong"));
    }
}
