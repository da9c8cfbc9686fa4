//! The web app's identity the simulator holds requests to: the gateway's own [`Profile`], as
//! its embedded defaults (`config/default.toml`'s `[upstream.profile]`) give it, so that the
//! profile is defined once for the adapter that sends it and the simulator that checks it.

pub use hailuo_free_api::config::Profile;
use hailuo_free_api::config::Settings;

/// The embedded configuration's profile (it is compiled in and covered by a config test; an
/// empty profile stands in should it ever fail, and then every request reports violations).
pub(crate) fn default_profile() -> Profile {
    match Settings::defaults() {
        Ok(settings) => settings.upstream.profile,
        Err(err) => {
            tracing::error!(error = %err, "hailuo-sim: the embedded default profile does not parse");
            Profile::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_profile_is_the_embedded_one_with_the_protocol_constants() {
        let profile = default_profile();
        assert_eq!(profile.app_id, "3001");
        assert_eq!(profile.salt, "ooui");
        assert_eq!(profile.origin, "https://hailuoai.com");
        assert!(profile.headers.contains_key("User-Agent"));
    }
}
