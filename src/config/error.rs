//! Why settings cannot be used, each message naming the key at fault and where it was set.

use std::path::PathBuf;

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
    /// A zero deadline would refuse every request body (`server.body_timeout_secs`).
    #[error("`server.body_timeout_secs` must be more than zero")]
    NoBodyTime,
    /// A zero cap would refuse every client's token list.
    #[error("`accounts.max_tokens_per_request` must be at least 1")]
    NoClientTokens,
    /// A query key that is neither a placeholder nor given a value.
    #[error(
        "`upstream.profile.query` names `{key}`, which has no value: set `upstream.profile.{key}` \
         (or remove it from the query)"
    )]
    QueryKeyWithoutValue {
        /// The query key.
        key: String,
    },
    /// A placeholder the chosen dialect does not fill.
    #[error("`upstream.profile.query` names the placeholder `{key}`, which the `{dialect}` dialect does not fill")]
    PlaceholderNotFilled {
        /// The query key.
        key: String,
        /// The dialect of `upstream.dialect`.
        dialect: super::Dialect,
    },
}

/// The configuration cannot be used; every message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file given with `--config` (or `HAILUO_CONFIG`) cannot be read.
    #[error("cannot read the configuration file {}", path.display())]
    File {
        /// The file named.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// Values that are missing, of the wrong type or do not parse, one message each.
    #[error("{}", .0.join("\n"))]
    Values(Vec<String>),
    /// Keys no setting has, one message each, naming where each was set and the nearest
    /// known key.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    UnknownKeys(Vec<super::UnknownKey>),
    /// Values that parse but cannot work together.
    #[error(transparent)]
    Invalid(#[from] InvalidSettings),
}

impl ConfigError {
    /// Each of figment's errors as `` `section.key`: what is wrong (where it was set) ``.
    pub(super) fn from_figment(errors: figment::Error) -> Self {
        Self::Values(errors.into_iter().map(|error| describe(&error)).collect())
    }
}

fn describe(error: &figment::Error) -> String {
    let key = error.path.join(".");
    let origin = match (&error.metadata, &error.profile) {
        (Some(metadata), Some(profile)) => {
            let named = metadata.interpolate(profile, &error.path);
            if !error.path.is_empty() && named != format!("{profile}.{key}") {
                // Only the environment names its keys otherwise: give the variable's name.
                format!(" (set by {})", super::keys::variable_of(&error.path))
            } else if let Some(source) = &metadata.source {
                format!(" (in {source})")
            } else {
                format!(" (in {})", metadata.name)
            }
        }
        _ => String::new(),
    };
    if key.is_empty() {
        format!("{}{origin}", error.kind)
    } else {
        format!("`{key}`: {}{origin}", error.kind)
    }
}
