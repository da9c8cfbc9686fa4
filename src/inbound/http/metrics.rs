//! Observability of the HTTP surface: [`RequestTelemetry`] gives every request a server span
//! (continuing the caller's W3C `traceparent`), one log line and its metrics; [`serve_metrics`]
//! serves the metrics as Prometheus text at `GET /metrics`.

use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use poem::http::HeaderMap;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, handler};
use tracing::Instrument;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::domain::metrics::instruments;

/// `GET /metrics`: every metric in the Prometheus text format.
#[handler]
pub fn serve_metrics() -> Response {
    Response::builder()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::outbound::telemetry::prometheus_text())
}

/// The middleware: a span, a log line and metrics per request. Neither the query string nor
/// any header (least of all `Authorization`) is recorded.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestTelemetry;

impl<E: Endpoint> Middleware<E> for RequestTelemetry {
    type Output = RequestTelemetryEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        RequestTelemetryEndpoint { inner }
    }
}

/// An endpoint wrapped by [`RequestTelemetry`].
pub struct RequestTelemetryEndpoint<E> {
    inner: E,
}

/// Reads the propagation headers of a request.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|name| name.as_str()).collect()
    }
}

impl<E: Endpoint> Endpoint for RequestTelemetryEndpoint<E> {
    type Output = Response;

    async fn call(&self, request: Request) -> poem::Result<Response> {
        let method = request.method().as_str().to_owned();
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            "HTTP request",
            otel.name = %format!("{method} {path}"),
            otel.kind = "server",
            otel.status_code = Empty,
            http.request.method = %method,
            url.path = %path,
            http.route = Empty,
            http.response.status_code = Empty,
            gen_ai.request.model = Empty,
            stream = Empty,
        );
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        // Fails only when no OpenTelemetry layer is installed: then there is nothing to continue.
        let _ = span.set_parent(parent);
        let started = Instant::now();
        let response = match self.inner.call(request).instrument(span.clone()).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        let latency = started.elapsed();
        let status = response.status().as_u16();
        // Unmatched paths share one label, so scanners cannot blow up the series count.
        let route = if status == 404 { "unmatched" } else { path.as_str() };
        span.record("http.route", route);
        span.record("http.response.status_code", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        let labels = [
            KeyValue::new("http.request.method", method.clone()),
            KeyValue::new("http.route", route.to_owned()),
            KeyValue::new("http.response.status_code", i64::from(status)),
        ];
        let metrics = instruments();
        metrics.requests.add(1, &labels);
        metrics.request_duration.record(latency.as_secs_f64(), &labels);
        span.in_scope(|| {
            tracing::info!(
                method = %method,
                path = %path,
                status,
                latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
                "request"
            );
        });
        Ok(response)
    }
}
