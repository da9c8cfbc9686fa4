//! Logging (human-readable or JSON) and the shutdown signal.

use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;

/// Installs the global subscriber: `RUST_LOG` when set, else `log.level`; `log.format`
/// `json` for JSON lines, anything else for text.
pub fn init_logging(settings: &LogSettings) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let installed = if settings.format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if installed.is_err() {
        eprintln!("a logger was already installed; keeping it");
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("interrupted; shutting down"),
        () = terminate => tracing::info!("terminated; shutting down"),
    }
}
