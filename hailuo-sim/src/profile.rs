//! The web app's identity the simulator holds requests to: the gateway's own [`Profile`] of a
//! [`Dialect`], as its embedded profile (`config/dialects/<dialect>.toml`) gives it, so that
//! the profile is defined once for the adapter that sends it and the simulator that checks it.

pub use hailuo_free_api::config::{Dialect, Profile};

/// The embedded profile of `dialect` (it is compiled in and covered by a config test; an empty
/// profile stands in should it ever fail, and then every request reports violations).
pub(crate) fn dialect_profile(dialect: Dialect) -> Profile {
    match dialect.profile() {
        Ok(profile) => profile,
        Err(err) => {
            tracing::error!(error = %err, %dialect, "hailuo-sim: the embedded profile does not parse");
            Profile::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_dialect_has_its_embedded_profile_with_the_protocol_constants() {
        let profile = dialect_profile(Dialect::Hailuoai);
        assert_eq!(profile.value("app_id"), Some("3001"));
        assert_eq!(profile.salt, "ooui");
        assert_eq!(profile.origin, "https://hailuoai.com");
        assert!(profile.headers.contains_key("User-Agent"));
        let intl = dialect_profile(Dialect::HailuoIntl);
        assert_eq!(intl.origin, "https://www.hailuo.ai");
        assert_eq!(intl.value("biz_id"), Some("2"));
        assert!(!intl.query.iter().any(|key| key == "device_memory"));
    }
}
