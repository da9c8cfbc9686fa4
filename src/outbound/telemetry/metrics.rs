//! The metrics pipeline: one global OpenTelemetry meter provider per process, read by a
//! Prometheus registry (served at `GET /metrics`) and, when OTLP is configured, pushed by a
//! periodic OTLP exporter. A metric that has recorded nothing yet is served as its series at
//! start: one series without labels, at zero.

use std::sync::OnceLock;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::domain::metrics::{Instruments, SCOPE};

/// The installed provider, the registry its Prometheus reader fills, and every metric's
/// series at start.
struct Pipeline {
    provider: SdkMeterProvider,
    registry: Registry,
    at_start: Vec<MetricFamily>,
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
    Some(Pipeline {
        provider,
        registry,
        at_start: series_at_start(),
    })
}

/// Every metric's series before anything happened, as this exporter names and labels it:
/// the instruments on a provider of their own, each given one zero without labels, read
/// through a Prometheus registry of their own, with the histograms' one count taken back.
fn series_at_start() -> Vec<MetricFamily> {
    let registry = Registry::new();
    let Ok(reader) = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .without_target_info()
        .build()
    else {
        return Vec::new();
    };
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(super::resource())
        .build();
    Instruments::new(&provider.meter(SCOPE)).record_zeros();
    let mut families = registry.gather();
    for metric in families.iter_mut().flat_map(|family| family.mut_metric().iter_mut()) {
        if let Some(histogram) = metric.histogram.as_mut() {
            histogram.set_sample_count(0);
            histogram.set_sample_sum(0.0);
            for bucket in &mut histogram.bucket {
                bucket.set_cumulative_count(0);
            }
        }
    }
    families
}

/// Every metric in the Prometheus text format (empty before [`install_metrics`]); a metric
/// that has recorded nothing yet as its series at start.
pub fn prometheus_text() -> String {
    let Some(pipeline) = PIPELINE.get().and_then(Option::as_ref) else {
        return String::new();
    };
    let mut families = pipeline.registry.gather();
    let recorded: Vec<String> = families.iter().map(|family| family.name().to_owned()).collect();
    families.extend(
        pipeline
            .at_start
            .iter()
            .filter(|family| !recorded.iter().any(|name| name == family.name()))
            .cloned(),
    );
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut text = Vec::new();
    if let Err(error) = TextEncoder::new().encode(&families, &mut text) {
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
