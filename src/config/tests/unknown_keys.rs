//! A key no setting has stops the load, named with where it was set and the nearest known
//! key; the variables other programs read, and the entries of free-form maps, are not keys.

use std::path::Path;

use super::load_error;
use crate::config::{Settings, is_other_variable};

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn a_misspelt_variable_is_named_with_the_key_it_nearly_is() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_SERVER__PROT", "9000");
        assert_eq!(
            load_error(None),
            "unknown setting `server.prot` (from HAILUO_SERVER__PROT); did you mean `server.port`?"
        );
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn a_variable_with_single_underscores_is_told_the_double_underscore_separator() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_UPSTREAM_BASE_URL", "http://127.0.0.1:9000");
        assert_eq!(
            load_error(None),
            "unknown setting `upstream_base_url` (from HAILUO_UPSTREAM_BASE_URL); did you mean \
             `upstream.base_url` (HAILUO_UPSTREAM__BASE_URL)? A variable's name separates sections \
             and keys with a double underscore `__`"
        );
        jail.clear_env();
        jail.set_env("HAILUO_UPSTREAM_PROFILE__VERSION_CODE", "22300");
        let error = load_error(None);
        assert!(
            error.contains("did you mean `upstream.profile.version_code` (HAILUO_UPSTREAM__PROFILE__VERSION_CODE)?"),
            "{error}"
        );
        jail.clear_env();
        jail.set_env("HAILUO_AUDIO_VOICES_HD__ALLOY", "x");
        let error = load_error(None);
        assert!(error.contains("did you mean `audio.voices_hd.alloy`"), "{error}");
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn every_unknown_key_of_a_file_is_named_with_the_file_and_the_nearest_key() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "typos.toml",
            "[server]\nprot = 9000\n[servr]\nhost = \"::\"\n[upstream.profile.poll]\nfirst_mss = 5\n\
             [log]\nlevl = \"debug\"\n",
        )?;
        let error = load_error(Some("typos.toml"));
        let lines: Vec<&str> = error.lines().collect();
        assert_eq!(
            lines,
            [
                "unknown setting `log.levl` (in typos.toml); did you mean `log.level`?",
                "unknown setting `server.prot` (in typos.toml); did you mean `server.port`?",
                "unknown setting `servr.host` (in typos.toml); did you mean `server.host`?",
                "unknown setting `upstream.profile.poll.first_mss` (in typos.toml); did you mean \
                 `upstream.profile.poll.first_ms`?",
            ],
            "{error}"
        );
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn a_key_near_none_is_shown_its_neighbours() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_STORE__CONNECTION", "x");
        assert_eq!(
            load_error(None),
            "unknown setting `store.connection` (from HAILUO_STORE__CONNECTION); `[store]` has url, \
             secret, busy_timeout_ms"
        );
        jail.clear_env();
        jail.set_env("HAILUO_DATABASE", "x");
        let error = load_error(None);
        assert!(
            error.starts_with("unknown setting `database` (from HAILUO_DATABASE); the sections are server, upstream,"),
            "{error}"
        );
        jail.clear_env();
        jail.create_file("database.toml", "[database]\nurl = \"postgres://db\"\n")?;
        let error = load_error(Some("database.toml"));
        assert!(
            error.starts_with("unknown setting `database.url` (in database.toml); the sections are server,"),
            "{error}"
        );
        jail.set_env("HAILUO_AUDIO__MAX_UPLOAD", "1");
        let error = load_error(None);
        assert!(
            error.ends_with("did you mean `audio.max_upload_bytes`?"),
            "a key it begins: {error}"
        );
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn other_programs_variables_and_free_form_entries_are_not_unknown_keys() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_CONFIG", "elsewhere.toml");
        jail.set_env("HAILUO_TOKEN", "doctor-token");
        jail.set_env("HAILUO_SIM_PORT", "8100");
        jail.set_env("HAILUO_SIM_BIN", "/usr/local/bin/hailuo-sim");
        jail.set_env("REPLACE_AUDIO_MODEL", "voice-a");
        jail.set_env("OTEL_SERVICE_NAME", "gateway");
        jail.set_env("HAILUO_UPSTREAM__TIMEOUT_SECS", "30");
        jail.set_env("HAILUO_AUDIO__VOICES__CUSTOM", "voice-b");
        jail.set_env("HAILUO_UPSTREAM__PROFILE__HEADERS__X_NEW", "yes");
        jail.create_file(
            "free.toml",
            "[upstream.profile]\nnew_key = \"1\"\n[upstream.profile.headers]\n\"X-Any\" = \"2\"\n\
             [upstream.profile.poll]\nsettle_ms = 700\n[audio.voices_hd]\nanother = \"voice-c\"\n",
        )?;
        let settings = Settings::load(Some(Path::new("free.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(settings.upstream.profile.value("new_key"), Some("1"));
        assert_eq!(settings.upstream.profile.headers["X-Any"], "2");
        assert_eq!(settings.upstream.profile.headers["x_new"], "yes");
        assert_eq!(settings.audio.voices["custom"], "voice-b");
        assert_eq!(settings.audio.voices_hd["another"], "voice-c");
        assert_eq!(settings.upstream.idle_timeout.as_secs(), 30);
        Ok(())
    });
}

/// The `HAILUO_*` variables the code of this workspace reads itself (a command line's
/// `env = "..."`, `std::env::var("...")`), in `folder` and below.
fn variables_read(folder: &Path, found: &mut Vec<String>) {
    let reads = regex::Regex::new(r#"(?:env\s*=\s*|var(?:_os)?\(\s*)"(HAILUO_[A-Z0-9_]+)""#).unwrap();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            variables_read(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            found.extend(reads.captures_iter(&text).map(|capture| capture[1].to_owned()));
        }
    }
}

#[test]
fn every_variable_the_code_reads_itself_is_not_taken_for_a_setting() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for folder in ["src", "hailuo-sim/src", "benches", "tests"] {
        variables_read(&root.join(folder), &mut found);
    }
    found.sort();
    found.dedup();
    for expected in ["HAILUO_CONFIG", "HAILUO_TOKEN", "HAILUO_SIM_PORT", "HAILUO_SIM_BIN"] {
        assert!(
            found.iter().any(|name| name == expected),
            "{expected} not found in {found:?}"
        );
    }
    let taken: Vec<&String> = found.iter().filter(|name| !is_other_variable(name)).collect();
    assert!(
        taken.is_empty(),
        "read by the code but taken for settings (add them to keys::OTHER_VARIABLES): {taken:?}"
    );
}
