//! Telemetry: logging (human-readable or JSON), OpenTelemetry traces and metrics, and the
//! shutdown signal.
//!
//! Traces go out over OTLP only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; the SDK itself
//! reads `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf` by default, or `grpc`),
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER` and the batch
//! processor's `OTEL_BSP_*`. Without the variable no exporter is installed and spans stay
//! plain `tracing` spans. Metrics are always kept for `GET /metrics` (Prometheus text) and
//! also pushed over OTLP when the variable is set.

mod metrics;

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogSettings};

pub use self::metrics::{install_metrics, prometheus_text};

/// The variable that turns OTLP export on.
const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The service name unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES` says otherwise.
const SERVICE_NAME: &str = "hailuo-free-api";

/// Keeps the exporters alive; [`TelemetryGuard::shutdown`] flushes them.
#[must_use = "dropping the guard does not flush: call shutdown() after the server stops"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// Exports the spans and metrics recorded so far (blocking: call it off the async
    /// workers, e.g. in `spawn_blocking`, when an exporter may need them).
    pub fn flush(&self) {
        if let Some(Err(error)) = self.tracer.as_ref().map(SdkTracerProvider::force_flush) {
            eprintln!("flushing spans failed: {error}");
        }
        metrics::flush();
    }

    /// Flushes and stops the exporters.
    pub fn shutdown(self) {
        if let Some(Err(error)) = self.tracer.as_ref().map(SdkTracerProvider::shutdown) {
            eprintln!("stopping the span exporter failed: {error}");
        }
        metrics::shutdown();
    }
}

/// Whether OTLP export is configured.
fn otlp_enabled() -> bool {
    std::env::var_os(OTLP_ENDPOINT).is_some_and(|value| !value.is_empty())
}

/// The resource every signal carries: the SDK's environment detectors (`OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`), with our service name unless one was given.
fn resource() -> Resource {
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attributes| attributes.contains("service.name="));
    let builder = Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name(SERVICE_NAME).build()
    }
}

/// The OTLP tracer provider, when configured and buildable.
fn tracer_provider() -> Option<SdkTracerProvider> {
    if !otlp_enabled() {
        return None;
    }
    match opentelemetry_otlp::SpanExporter::builder().build() {
        Ok(exporter) => Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(resource())
                .build(),
        ),
        Err(error) => {
            eprintln!("OTLP span export is off: {error}");
            None
        }
    }
}

/// Installs the global subscriber (`RUST_LOG` when set, else `log.level`; `log.format`
/// `json` for JSON lines, `text` for text), the metrics pipeline and, when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the OTLP span exporter. Call it once, inside the
/// Tokio runtime, before building the application.
pub fn init(settings: &LogSettings) -> TelemetryGuard {
    install_metrics();
    let tracer = tracer_provider();
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), &settings.level);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = match settings.format {
        LogFormat::Json => tracing_subscriber::fmt::layer().json().boxed(),
        // Colours for a person at a terminal; plain text for a file, a pipe or `docker logs`.
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(std::io::stdout().is_terminal())
            .boxed(),
    };
    // Spans are exported whatever the log level, but only ours: the HTTP stacks' own
    // spans (hyper, h2, the exporter's client) would only add noise, or loop.
    let otel = tracer.as_ref().map(|provider| {
        opentelemetry::global::set_tracer_provider(provider.clone());
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(SERVICE_NAME))
            .with_filter(Targets::new().with_target("hailuo_free_api", Level::INFO))
    });
    let installed = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(otel)
        .try_init();
    if installed.is_err() {
        eprintln!("a logger was already installed; keeping it");
    }
    TelemetryGuard { tracer }
}

/// The crates whose own log lines are off unless the filter names them: symphonia logs each
/// failed probe of an upload at `ERROR` (and junk it skips at `WARN`), where the
/// transcription logs one warning of its own.
const QUIET_CRATES: [&str; 1] = ["symphonia"];

/// The log filter: `RUST_LOG` when set and valid, else `level`; with [`QUIET_CRATES`] off
/// unless it names them.
fn log_filter(rust_log: Option<&str>, level: &str) -> EnvFilter {
    let (text, filter) = match rust_log.and_then(|text| EnvFilter::try_new(text).ok().map(|filter| (text, filter))) {
        Some(chosen) => chosen,
        None => (level, EnvFilter::new(level)),
    };
    QUIET_CRATES
        .iter()
        .filter(|name| !text.contains(*name))
        .filter_map(|name| format!("{name}=off").parse().ok())
        .fold(filter, EnvFilter::add_directive)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoder_s_own_log_is_off_unless_the_filter_names_it() {
        assert!(log_filter(None, "info").to_string().contains("symphonia=off"));
        assert!(log_filter(Some("debug"), "info").to_string().contains("symphonia=off"));
        let named = log_filter(Some("info,symphonia_core=warn"), "info").to_string();
        assert!(!named.contains("symphonia=off"), "{named}");
        let named = log_filter(None, "info,symphonia=debug").to_string();
        assert!(!named.contains("symphonia=off"), "{named}");
    }
}
