//! The `hailuo-free-api` server: read the command line and the configuration, set up
//! telemetry, build and run, then flush the telemetry. `doctor` checks the upstream instead.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use hailuo_free_api::config::Settings;
use hailuo_free_api::inbound::cli::doctor::{self, DoctorArgs};
use hailuo_free_api::outbound::telemetry;
use hailuo_free_api::startup::Application;

#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

/// jemalloc, configured at build time (`.cargo/config.toml`) to return freed memory at once:
/// many open streams then hold far less than with glibc's allocator (`bench/RESULTS.md`,
/// "Allocators compared").
#[cfg(all(not(feature = "dhat-heap"), not(target_env = "msvc")))]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// OpenAI-compatible API gateway to the Hailuo AI web app.
///
/// Settings come from the defaults built in (config/default.toml), then the file given with
/// --config, then HAILUO_<SECTION>__<KEY> environment variables (docs/configuration.md).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// A TOML file with any of the keys of config/default.toml.
    #[arg(long, value_name = "PATH", env = "HAILUO_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run each step a request needs against the configured upstream and say, for a step
    /// that fails, what most likely broke (exit status 0 when every step passed, 1 otherwise).
    Doctor(DoctorArgs),
}

/// Runs the command; an error that stops it is one line on stderr (each context with its
/// cause, no backtrace) and exit status 1.
fn main() -> ExitCode {
    match run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("hailuo-free-api: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::try_parse().unwrap_or_else(|error| usage_error(error));
    let dialect = match &cli.command {
        Some(Command::Doctor(args)) => args.dialect(),
        None => None,
    };
    let mut settings = Settings::load_on(cli.config.as_deref(), dialect).context("reading the configuration")?;
    if let Some(Command::Doctor(args)) = cli.command {
        args.apply(&mut settings);
        return doctor::run(&settings, &args);
    }
    #[cfg(feature = "dhat-heap")]
    let _profiler = dhat::Profiler::new_heap();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if settings.server.worker_threads > 0 {
        runtime.worker_threads(settings.server.worker_threads);
    }
    let runtime = runtime.enable_all().build().context("starting the async runtime")?;
    // On a worker, not on this thread: `block_on` would run the accept loop here, so that each
    // new connection woke this thread from a worker and its task was handed back to a worker
    // through the runtime's shared queue (two wake-ups between threads per connection).
    runtime.block_on(async {
        tokio::spawn(serve(settings))
            .await
            .context("the server's task failed")?
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let telemetry = telemetry::init(&settings.log);
    // Every stream holds a client connection (and an upstream one over HTTP/1.1): raise the
    // soft limit on open files as far as the hard limit allows.
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open files limit"),
    }
    let grace = settings.server.shutdown_grace;
    let app = Application::build(settings).await?;
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    tracing::info!(addr = %app.addr(), workers, "hailuo-free-api listening; docs at /docs; metrics at /metrics");
    let served = app.run_until(telemetry::shutdown_signal(), grace).await;
    // Exporting may block on the network: off the async workers.
    if tokio::task::spawn_blocking(move || telemetry.shutdown()).await.is_err() {
        eprintln!("flushing telemetry failed");
    }
    served?;
    Ok(())
}

/// Prints a command-line error and exits, as clap does (help and version to stdout with 0,
/// usage errors to stderr with 2), but with every value given on the command line that could
/// be a token hidden: a token typed without `--token` would otherwise be echoed back.
fn usage_error(error: clap::Error) -> ! {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        error.exit();
    }
    let mut text = error.render().to_string();
    for arg in std::env::args().skip(1) {
        let value = arg.split_once('=').map_or(arg.as_str(), |(_, value)| value);
        if value.len() >= MIN_HIDDEN_LEN && !value.starts_with('-') {
            text = text.replace(value, "<hidden>");
        }
    }
    eprint!("{text}");
    std::process::exit(2)
}

/// Command-line values this long or longer are hidden from usage errors (tokens are far
/// longer; flags and subcommand names are shorter).
const MIN_HIDDEN_LEN: usize = 12;
