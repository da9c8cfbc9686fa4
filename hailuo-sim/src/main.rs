//! `hailuo-sim`: serves the simulated Hailuo upstream in open mode (any non-empty token)
//! until Ctrl-C; `hailuo-sim --help` lists the options. Its first line on stdout is
//! `hailuo-sim listening on http://HOST:PORT`; logs go to stderr (coloured only on a
//! terminal). When it cannot listen it says why in one line and exits with status 1.

use std::io::{self, IsTerminal};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::LazyLock;
use std::time::Duration;

use clap::Parser;
use hailuo_sim::{Dialect, SimConfig, Simulator};

/// The library's defaults, which the command line's defaults show.
static DEFAULTS: LazyLock<Defaults> = LazyLock::new(Defaults::new);

/// [`SimConfig::default`]'s pace, in the command line's units.
struct Defaults {
    chunk_delay_ms: String,
    chunk_chars: String,
    tear_pause_us: String,
    busy_after_end_ms: String,
    busy_after_hangup_ms: String,
}

impl Defaults {
    fn new() -> Self {
        let config = SimConfig::default();
        Self {
            chunk_delay_ms: config.chunk_delay.as_millis().to_string(),
            chunk_chars: config.chunk_chars.to_string(),
            tear_pause_us: config.tear_pause.as_micros().to_string(),
            busy_after_end_ms: config.busy_after_end.as_millis().to_string(),
            busy_after_hangup_ms: config.busy_after_hangup.as_millis().to_string(),
        }
    }
}

/// A simulated Hailuo upstream that enforces the web protocol the gateway speaks and answers
/// every chat deterministically (`海螺收到：<prompt>`). Open mode: any non-empty token is
/// logged in. Point the gateway at it with `HAILUO_UPSTREAM__BASE_URL=http://HOST:PORT`.
#[derive(Debug, Parser)]
#[command(name = "hailuo-sim", version)]
struct Cli {
    /// The address to listen on.
    #[arg(long, env = "HAILUO_SIM_HOST", default_value = "127.0.0.1")]
    host: IpAddr,
    /// The port to listen on (0 picks a free one; the line printed at start names it).
    #[arg(long, env = "HAILUO_SIM_PORT", default_value_t = 8100)]
    port: u16,
    /// Pause between the events of an answer, in milliseconds.
    #[arg(long, env = "HAILUO_SIM_CHUNK_DELAY_MS", default_value = DEFAULTS.chunk_delay_ms.as_str())]
    chunk_delay_ms: u64,
    /// Characters added to the answer per event (at least 1).
    #[arg(
        long,
        env = "HAILUO_SIM_CHUNK_CHARS",
        default_value = DEFAULTS.chunk_chars.as_str(),
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    chunk_chars: u32,
    /// Pause between the two writes of a torn event, in microseconds (0 only yields).
    #[arg(long, env = "HAILUO_SIM_TEAR_PAUSE_US", default_value = DEFAULTS.tear_pause_us.as_str())]
    tear_pause_us: u64,
    /// The upstream dialect to play and enforce: its host's query, origin and headers
    /// (point the gateway's `HAILUO_UPSTREAM__DIALECT` at the same one).
    #[arg(
        long,
        env = "HAILUO_SIM_DIALECT",
        default_value = Dialect::default().name(),
        value_parser = dialect_parser()
    )]
    dialect: Dialect,
    /// How long an account stays busy after one of its streams has ended, in milliseconds
    /// (a chat or voice message sent then is refused with code 1200009).
    #[arg(long, env = "HAILUO_SIM_BUSY_AFTER_END_MS", default_value = DEFAULTS.busy_after_end_ms.as_str())]
    busy_after_end_ms: u64,
    /// How long an account stays busy after a client hung up on one of its streams, counted
    /// from when the simulator noticed (at its next write), in milliseconds.
    #[arg(long, env = "HAILUO_SIM_BUSY_AFTER_HANGUP_MS", default_value = DEFAULTS.busy_after_hangup_ms.as_str())]
    busy_after_hangup_ms: u64,
}

/// Parses a dialect by the name `upstream.dialect` takes, listing the names in `--help`.
fn dialect_parser() -> impl clap::builder::TypedValueParser<Value = Dialect> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(Dialect::ALL.map(Dialect::name)).map(|name| {
        Dialect::ALL
            .into_iter()
            .find(|dialect| dialect.name() == name)
            .unwrap_or_default()
    })
}

impl Cli {
    /// The simulator's configuration with these options.
    fn config(&self) -> SimConfig {
        SimConfig {
            chunk_delay: Duration::from_millis(self.chunk_delay_ms),
            chunk_chars: usize::try_from(self.chunk_chars).unwrap_or(usize::MAX),
            tear_pause: Duration::from_micros(self.tear_pause_us),
            busy_after_end: Duration::from_millis(self.busy_after_end_ms),
            busy_after_hangup: Duration::from_millis(self.busy_after_hangup_ms),
            ..SimConfig::on(self.dialect)
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter("info")
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let addr = SocketAddr::new(cli.host, cli.port);
    let sim = match Simulator::start_on(cli.config(), addr).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("hailuo-sim: {}", bind_failure(addr, &error));
            return ExitCode::FAILURE;
        }
    };
    println!("hailuo-sim listening on {}", sim.base_url());
    // Standalone, nobody reads the records the tests inspect: forget them every second, so a
    // long benchmark neither grows the simulator nor pays for its growth. What a later call
    // may still name (a live conversation's messages, speech being polled) is kept.
    let forgetting = sim.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        loop {
            every.tick().await;
            forgetting.forget_history();
        }
    });
    let stopped = tokio::signal::ctrl_c().await;
    sim.shutdown();
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hailuo-sim: cannot wait for Ctrl-C: {error}");
            ExitCode::FAILURE
        }
    }
}

/// One line saying why the simulator cannot listen on `addr`.
fn bind_failure(addr: SocketAddr, error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::AddrInUse => format!(
            "port {} is in use on {}: stop what listens there or choose another with --port",
            addr.port(),
            addr.ip()
        ),
        io::ErrorKind::AddrNotAvailable => {
            format!("cannot listen on {addr}: {} is no address of this machine", addr.ip())
        }
        _ => format!("cannot listen on {addr}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn the_defaults_are_the_librarys() {
        let cli = Cli::parse_from(["hailuo-sim"]);
        let (config, default) = (cli.config(), SimConfig::default());
        assert_eq!(config.chunk_delay, default.chunk_delay);
        assert_eq!(config.chunk_chars, default.chunk_chars);
        assert_eq!(config.tear_pause, default.tear_pause);
        assert_eq!(config.dialect, default.dialect);
        assert_eq!(config.busy_after_end, default.busy_after_end);
        assert_eq!(config.busy_after_hangup, default.busy_after_hangup);
        assert_eq!((cli.host, cli.port), (IpAddr::from([127, 0, 0, 1]), 8100));
    }

    #[test]
    fn the_dialect_is_chosen_by_name() {
        let cli = Cli::parse_from(["hailuo-sim", "--dialect", "hailuo-intl"]);
        assert_eq!(cli.config().dialect, Dialect::HailuoIntl);
        assert_eq!(cli.config().expected_profile().origin, "https://www.hailuo.ai");
        assert!(Cli::try_parse_from(["hailuo-sim", "--dialect", "minimax"]).is_err());
    }
}
