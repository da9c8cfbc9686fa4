//! The metrics pipeline: one global OpenTelemetry meter provider per process, read by a
//! Prometheus registry (served at `GET /metrics`) and, when OTLP is configured, pushed by a
//! periodic OTLP exporter.

use std::sync::OnceLock;

use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::{Encoder, Registry, TextEncoder};

/// The installed provider and the registry its Prometheus reader fills.
struct Pipeline {
    provider: SdkMeterProvider,
    registry: Registry,
}

static PIPELINE: OnceLock<Option<Pipeline>> = OnceLock::new();

/// Installs the global meter provider, once per process (later calls do nothing): several
/// applications built in one process (the tests) share it.
pub fn install_metrics() {
    PIPELINE.get_or_init(build);
}

fn build() -> Option<Pipeline> {
    let registry = Registry::new();
    let reader = match opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
    {
        Ok(reader) => reader,
        Err(error) => {
            eprintln!("metrics are off: {error}");
            return None;
        }
    };
    let mut builder = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(super::resource());
    if super::otlp_enabled() {
        match opentelemetry_otlp::MetricExporter::builder().build() {
            Ok(exporter) => builder = builder.with_periodic_exporter(exporter),
            Err(error) => eprintln!("OTLP metric export is off: {error}"),
        }
    }
    let provider = builder.build();
    opentelemetry::global::set_meter_provider(provider.clone());
    Some(Pipeline { provider, registry })
}

/// Every metric in the Prometheus text format (empty before [`install_metrics`]).
pub fn prometheus_text() -> String {
    let Some(pipeline) = PIPELINE.get().and_then(Option::as_ref) else {
        return String::new();
    };
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&pipeline.registry.gather(), &mut text) {
        tracing::warn!(%error, "encoding the metrics failed");
    }
    String::from_utf8(text).unwrap_or_default()
}

/// Pushes the metrics recorded so far to the OTLP exporter, if any.
pub(super) fn flush() {
    if let Some(Err(error)) = PIPELINE
        .get()
        .and_then(Option::as_ref)
        .map(|p| p.provider.force_flush())
    {
        eprintln!("flushing metrics failed: {error}");
    }
}

/// Flushes and stops the metric exporters.
pub(super) fn shutdown() {
    if let Some(Err(error)) = PIPELINE.get().and_then(Option::as_ref).map(|p| p.provider.shutdown()) {
        eprintln!("stopping the metric exporters failed: {error}");
    }
}
