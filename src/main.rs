//! The `hailuo-free-api` server: read the configuration, set up logging, build and run.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hailuo_free_api::config::Settings;
use hailuo_free_api::outbound::telemetry;
use hailuo_free_api::startup::Application;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::load(config_path().as_deref()).context("reading the configuration")?;
    telemetry::init_logging(&settings.log);
    let app = Application::build(settings).await?;
    tracing::info!(addr = %app.addr(), "hailuo-free-api listening; docs at /docs");
    app.run_until(telemetry::shutdown_signal(), Duration::from_secs(30))
        .await?;
    Ok(())
}

/// `--config PATH`, else `HAILUO_CONFIG`.
fn config_path() -> Option<PathBuf> {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os("HAILUO_CONFIG").map(PathBuf::from)
}
