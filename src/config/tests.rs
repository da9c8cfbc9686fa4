//! The settings' loading, precedence and parsing, with their error messages.

mod unknown_keys;

use std::path::PathBuf;

use super::*;

/// The error `Settings::load` gives for the current environment and `file`, as text.
pub(super) fn load_error(file: Option<&str>) -> String {
    match Settings::load(file.map(Path::new)) {
        Ok(_) => String::from("<loaded>"),
        Err(error) => error.to_string(),
    }
}

#[test]
fn the_embedded_defaults_parse_and_match_the_protocol_profile() -> Result<(), Box<figment::Error>> {
    let settings = Settings::defaults()?;
    assert_eq!(settings.server.port, 8000);
    assert_eq!(settings.upstream.base_url.as_str(), "https://hailuoai.com/");
    assert_eq!(settings.upstream.dialect, Dialect::Hailuoai);
    assert_eq!(settings.upstream.profile.value("app_id"), Some("3001"));
    assert_eq!(settings.upstream.profile.value("version_code"), Some("22200"));
    assert_eq!(settings.upstream.profile.salt, "ooui");
    assert_eq!(settings.upstream.device_ttl, Duration::from_secs(10_800));
    assert!(settings.upstream.profile.headers.contains_key("User-Agent"));
    assert_eq!(settings.store.url, StoreUrl::Memory);
    assert_eq!(settings.store.busy_timeout, Duration::from_millis(5000));
    assert_eq!(settings.log.format, LogFormat::Text);
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
    settings.server.body_timeout = Duration::ZERO;
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
        assert_eq!(settings.upstream.profile.value("version_code"), Some("22300"));
        assert_eq!(
            settings.upstream.profile.value("app_id"),
            Some("3001"),
            "untouched keys keep their defaults"
        );
        assert_eq!(settings.session.idle_ttl, Duration::ZERO);
        assert_eq!(settings.store.url, StoreUrl::Sqlite(PathBuf::from("data/hailuo.db")));
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
fn timeout_secs_is_another_name_for_the_idle_timeout_and_wins_when_set() {
    figment::Jail::expect_with(|jail| {
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(settings.upstream.idle_timeout, Duration::from_secs(120));
        assert_eq!(settings.upstream.first_byte_timeout, Duration::from_secs(60));
        jail.set_env("HAILUO_UPSTREAM__TIMEOUT_SECS", "7");
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(settings.upstream.idle_timeout, Duration::from_secs(7));

        jail.create_file("idle.toml", "[upstream]\nidle_timeout_secs = 30\n")?;
        let settings = Settings::load(Some(Path::new("idle.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(
            settings.upstream.idle_timeout,
            Duration::from_secs(7),
            "the other name wins over the key itself"
        );
        jail.set_env("HAILUO_UPSTREAM__TIMEOUT_SECS", "0");
        let settings = Settings::load(Some(Path::new("idle.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(
            settings.upstream.idle_timeout,
            Duration::from_secs(30),
            "0 counts as unset"
        );
        jail.set_env("HAILUO_UPSTREAM__TIMEOUT_SECS", "soon");
        let error = Settings::load(None).map(|_| ()).expect_err("a bad value is refused");
        assert!(error.to_string().contains("upstream.timeout_secs"), "{error}");
        Ok(())
    });
}

#[test]
fn a_missing_config_file_is_an_error() {
    assert!(Settings::load(Some(Path::new("/nonexistent/hailuo.toml"))).is_err());
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn durations_take_the_keys_unit_or_a_duration_text() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "durations.toml",
            "[session]\nidle_ttl_secs = \"5m\"\nsweep_interval_ms = 100\n[upstream]\nretry_delay_ms = \"2s\"\n",
        )?;
        jail.set_env("HAILUO_UPSTREAM__CONNECT_TIMEOUT_SECS", "15");
        jail.set_env("HAILUO_AUDIO__TTS_POLL_INTERVAL_MS", "1s 500ms");
        jail.set_env("HAILUO_ACCOUNTS__BUSY_WAIT_SECS", "90s");
        let settings = Settings::load(Some(Path::new("durations.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(settings.session.idle_ttl, Duration::from_secs(300));
        assert_eq!(
            settings.session.sweep_interval,
            Duration::from_millis(100),
            "a bare number is in the key's unit"
        );
        assert_eq!(settings.upstream.retry_delay, Duration::from_secs(2));
        assert_eq!(settings.upstream.connect_timeout, Duration::from_secs(15));
        assert_eq!(settings.audio.tts_poll_interval, Duration::from_millis(1500));
        assert_eq!(settings.accounts.busy_wait, Duration::from_secs(90));
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn a_bad_duration_fails_naming_its_key() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_SESSION__IDLE_TTL_SECS", "ten minutes");
        let error = load_error(None);
        assert!(error.contains("`session.idle_ttl_secs`"), "{error}");
        assert!(
            error.contains("HAILUO_SESSION__IDLE_TTL_SECS"),
            "names the variable: {error}"
        );
        jail.clear_env();
        jail.create_file("negative.toml", "[upstream]\nretry_delay_ms = -5\n")?;
        let error = load_error(Some("negative.toml"));
        assert!(error.contains("`upstream.retry_delay_ms`"), "{error}");
        assert!(error.contains("negative.toml"), "names the file: {error}");
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn a_bad_store_url_fails_naming_its_key_without_repeating_it() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_STORE__URL", "redis://user:hunter2@cache:6379");
        let error = load_error(None);
        assert!(error.contains("`store.url`"), "{error}");
        assert!(error.contains("sqlite://PATH"), "says what is accepted: {error}");
        assert!(!error.contains("hunter2"), "the URL's password is not shown: {error}");
        jail.set_env("HAILUO_STORE__URL", "sqlite://");
        let error = load_error(None);
        assert!(error.contains("`store.url`"), "{error}");
        Ok(())
    });
}

#[test]
fn store_urls_parse_into_memory_sqlite_or_postgres() {
    assert_eq!("memory".parse(), Ok(StoreUrl::Memory));
    assert_eq!(
        "sqlite://data/hailuo.db".parse(),
        Ok(StoreUrl::Sqlite(PathBuf::from("data/hailuo.db")))
    );
    assert_eq!(
        "sqlite:///var/lib/h.db".parse(),
        Ok(StoreUrl::Sqlite(PathBuf::from("/var/lib/h.db")))
    );
    assert!("sqlite://".parse::<StoreUrl>().is_err());
    assert!("Memory".parse::<StoreUrl>().is_err());
    let postgres: StoreUrl = "postgres://hailuo:hunter2@db/hailuo".parse().unwrap();
    assert!(matches!(&postgres, StoreUrl::Postgres(url) if url.host_str() == Some("db")));
    let shown = format!("{postgres:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!("postgresql://db/hailuo".parse::<StoreUrl>().is_ok());
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn a_bad_log_format_fails_naming_its_key() {
    figment::Jail::expect_with(|jail| {
        jail.create_file("log.toml", "[log]\nformat = \"xml\"\n")?;
        let error = load_error(Some("log.toml"));
        assert!(error.contains("`log.format`"), "{error}");
        assert!(error.contains("json"), "says what is accepted: {error}");
        jail.set_env("HAILUO_LOG__FORMAT", "json");
        let settings = Settings::load(Some(Path::new("log.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(settings.log.format, LogFormat::Json);
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn a_bad_upstream_base_url_fails_naming_its_key() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_UPSTREAM__BASE_URL", "hailuoai.com");
        let error = load_error(None);
        assert!(error.contains("`upstream.base_url`"), "{error}");
        jail.set_env("HAILUO_UPSTREAM__BASE_URL", "ftp://hailuoai.com");
        let error = load_error(None);
        assert!(error.contains("`upstream.base_url`"), "{error}");
        assert!(error.contains("https://"), "says what is accepted: {error}");
        jail.set_env("HAILUO_UPSTREAM__BASE_URL", "http://127.0.0.1:9000");
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(settings.upstream.base_url.port(), Some(9000));
        Ok(())
    });
}

/// Every key path of `value` into `keys`, and every table's into `tables`, their parts joined
/// by dots (`upstream.profile.headers.User-Agent`).
fn key_paths(prefix: &str, value: &figment::value::Value, keys: &mut Vec<String>, tables: &mut Vec<String>) {
    match value.as_dict() {
        Some(dict) => {
            if !prefix.is_empty() {
                tables.push(prefix.to_owned());
            }
            for (key, value) in dict {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                key_paths(&path, value, keys, tables);
            }
        }
        None => keys.push(prefix.to_owned()),
    }
}

#[test]
fn every_key_of_the_default_config_is_documented() {
    let document = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md"))
        .expect("docs/configuration.md");
    let (mut keys, mut tables) = (Vec::new(), Vec::new());
    for dialect in Dialect::ALL {
        let defaults: figment::value::Value = Figment::from(Toml::string(DEFAULT_CONFIG))
            .join(Toml::string(dialect.embedded()))
            .extract()
            .unwrap();
        key_paths("", &defaults, &mut keys, &mut tables);
    }
    keys.sort();
    keys.dedup();
    tables.sort();
    tables.dedup();
    assert!(keys.len() > 80, "walked {} keys", keys.len());
    let mut missing: Vec<String> = tables
        .iter()
        .map(|table| format!("`[{table}]`"))
        .filter(|table| !document.contains(table))
        .collect();
    for path in &keys {
        if !document.contains(&format!("`{path}`")) {
            missing.push(format!("`{path}`"));
        }
        // Keys an environment variable can spell: their variable is documented too.
        if path
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
        {
            let variable = format!("HAILUO_{}", path.to_ascii_uppercase().replace('.', "__"));
            if !document.contains(&format!("`{variable}`")) {
                missing.push(format!("`{variable}`"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "docs/configuration.md does not document these tables and keys of config/default.toml and config/dialects: {}",
        missing.join(", ")
    );
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn the_dialect_brings_its_profile_and_host_which_the_configuration_overrides() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_UPSTREAM__DIALECT", "hailuo-intl");
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(settings.upstream.dialect, Dialect::HailuoIntl);
        assert_eq!(settings.upstream.base_url.as_str(), "https://www.hailuo.ai/");
        assert_eq!(settings.upstream.profile.origin, "https://www.hailuo.ai");
        assert_eq!(settings.upstream.profile.value("biz_id"), Some("2"));
        assert_eq!(settings.upstream.profile.query.len(), 15);

        jail.create_file(
            "intl.toml",
            "[upstream]\nbase_url = \"http://127.0.0.1:9000\"\n[upstream.profile]\nlang = \"fr\"\n\
             [upstream.profile.headers]\n\"X-New\" = \"1\"\n",
        )?;
        // A number from the environment is the query value as written.
        jail.set_env("HAILUO_UPSTREAM__PROFILE__VERSION_CODE", "22301");
        let settings = Settings::load(Some(Path::new("intl.toml"))).map_err(|e| e.to_string())?;
        assert_eq!(settings.upstream.base_url.port(), Some(9000));
        let profile = &settings.upstream.profile;
        assert_eq!(profile.value("lang"), Some("fr"));
        assert_eq!(profile.value("version_code"), Some("22301"));
        assert_eq!(profile.headers.get("X-New").map(String::as_str), Some("1"));
        assert!(profile.headers.contains_key("User-Agent"), "the dialect's headers stay");
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn a_bad_dialect_or_a_query_key_without_a_value_fails_naming_its_key() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_UPSTREAM__DIALECT", "hailuo");
        let error = load_error(None);
        assert!(error.contains("`upstream.dialect`"), "{error}");
        assert!(
            error.contains("HAILUO_UPSTREAM__DIALECT"),
            "names the variable: {error}"
        );
        assert!(error.contains("hailuoai") && error.contains("hailuo-intl"), "{error}");

        jail.set_env("HAILUO_UPSTREAM__DIALECT", "hailuoai");
        jail.set_env("HAILUO_UPSTREAM__PROFILE__QUERY", "device_platform,uuid,new_key,unix");
        let error = load_error(None);
        assert!(error.contains("`upstream.profile.new_key`"), "{error}");
        jail.set_env("HAILUO_UPSTREAM__PROFILE__NEW_KEY", "1");
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(
            settings.upstream.profile.query,
            ["device_platform", "uuid", "new_key", "unix"]
        );

        jail.set_env("HAILUO_UPSTREAM__PROFILE__QUERY", "uuid,token,unix");
        let error = load_error(None);
        assert!(error.contains("`token`") && error.contains("hailuoai"), "{error}");
        Ok(())
    });
}

#[test]
fn every_dialect_profile_parses_and_fills_its_query() {
    for dialect in Dialect::ALL {
        let settings = Settings::defaults_on(dialect).unwrap();
        assert_eq!(settings.upstream.dialect, dialect);
        assert_eq!(settings.validate(), Ok(()), "{dialect}");
        let profile = dialect.profile().unwrap();
        assert_eq!(profile.query, settings.upstream.profile.query, "{dialect}");
        assert_eq!(profile.query.first().map(String::as_str), Some("device_platform"));
        // The agent's query repeats the token after everything else (§12.4).
        let last = if dialect == Dialect::MinimaxAgent {
            "token"
        } else {
            "unix"
        };
        assert_eq!(profile.query.last().map(String::as_str), Some(last), "{dialect}");
    }
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn the_agent_brings_its_host_and_polling_which_the_environment_overrides() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("HAILUO_UPSTREAM__DIALECT", "minimax-agent");
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(settings.upstream.base_url.as_str(), "https://agent.minimaxi.com/");
        let poll = &settings.upstream.profile.poll;
        assert_eq!(poll.first, Duration::from_millis(50));
        assert_eq!(poll.max, Duration::from_secs(1));
        assert_eq!(poll.settle, Duration::from_secs(2));
        assert_eq!(poll.end_marker, "");
        assert!(!settings.upstream.dialect.has_audio());

        jail.set_env("HAILUO_UPSTREAM__PROFILE__POLL__SETTLE_MS", "750");
        jail.set_env("HAILUO_UPSTREAM__PROFILE__POLL__END_MARKER", "is_end");
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(settings.upstream.profile.poll.settle, Duration::from_millis(750));
        assert_eq!(settings.upstream.profile.poll.end_marker, "is_end");
        assert_eq!(
            settings.upstream.profile.poll.first,
            Duration::from_millis(50),
            "the rest stays"
        );
        Ok(())
    });
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail decides the closure's error type
fn cors_origins_are_any_by_default_and_a_list_of_origins_written_as_browsers_send_them() {
    figment::Jail::expect_with(|jail| {
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(settings.server.cors_origins, CorsOrigins::Any);

        jail.set_env(
            "HAILUO_SERVER__CORS_ORIGINS",
            "https://Chat.Example.com/, http://localhost:3000,https://a.example:443",
        );
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        let expected = ["https://chat.example.com", "http://localhost:3000", "https://a.example"];
        assert_eq!(
            settings.server.cors_origins,
            CorsOrigins::Listed(expected.iter().map(|origin| (*origin).to_owned()).collect())
        );
        assert!(settings.server.cors_origins.allows("http://localhost:3000"));
        assert!(!settings.server.cors_origins.allows("http://localhost:3001"));

        jail.set_env("HAILUO_SERVER__CORS_ORIGINS", "https://a.example,*");
        let settings = Settings::load(None).map_err(|e| e.to_string())?;
        assert_eq!(settings.server.cors_origins, CorsOrigins::Any);

        for wrong in ["chat.example.com", "https://a.example/app", "https://user@a.example"] {
            jail.set_env("HAILUO_SERVER__CORS_ORIGINS", wrong);
            let error = Settings::load(None).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(error.contains("cors_origins"), "{wrong}: {error}");
        }
        Ok(())
    });
}
