//! The gateway's metric instruments, through the vendor-neutral OpenTelemetry metrics API.
//! The SDK and its exporters (Prometheus text, OTLP) are installed by
//! `outbound::telemetry`; without them every instrument is a no-op. Account labels are
//! always [`AccountToken::fingerprint`](crate::domain::chat::AccountToken::fingerprint).

use std::sync::OnceLock;

use opentelemetry::global;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter, UpDownCounter};

/// The instrumentation scope of every instrument.
pub const SCOPE: &str = "hailuo-free-api";

/// Bucket bounds (seconds) for latencies, from a few milliseconds to minutes.
const LATENCY_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Every instrument the gateway records.
pub struct Instruments {
    /// HTTP requests answered, by `http.route`, `http.request.method`, `http.response.status_code`.
    pub requests: Counter<u64>,
    /// HTTP request latency (seconds), by the same labels: until the answer is ready, for a
    /// stream until its end.
    pub request_duration: Histogram<f64>,
    /// Upstream call latency until the response head (seconds), by `url.path` and status.
    pub upstream_duration: Histogram<f64>,
    /// From the request's arrival to the first streamed text (seconds).
    pub time_to_first_token: Histogram<f64>,
    /// Streamed answers being sent right now.
    pub active_streams: UpDownCounter<i64>,
    /// Accounts answering a request right now.
    pub accounts_busy: Gauge<u64>,
    /// Time spent waiting for an idle account (seconds).
    pub account_wait: Histogram<f64>,
    /// Retries after a transient upstream failure.
    pub retries: Counter<u64>,
    /// Accounts the upstream refused, by `account` (the fingerprint).
    pub token_failures: Counter<u64>,
    /// 1 while a token rests after repeated refusals, 0 after, by `account` (the fingerprint).
    pub account_cooldown: Gauge<u64>,
    /// Days until a token's JWT `exp` (negative once passed), by `account` (the fingerprint);
    /// only tokens that carry an expiry.
    pub token_expiry_days: Gauge<f64>,
    /// Upstream work items running now (admitted requests).
    pub in_flight: Gauge<u64>,
    /// Requests waiting for an upstream work slot.
    pub queued: Gauge<u64>,
    /// Requests turned away because the server was overloaded.
    pub overloaded: Counter<u64>,
    /// Upstream conversations waiting to be deleted.
    pub conversations_pending: Gauge<u64>,
    /// Upstream conversation deletions that failed (deferred or abandoned).
    pub deletions_failed: Counter<u64>,
    /// Stored conversations set aside because their record cannot be read (damaged, or
    /// written under another store key): never deleted upstream by this server.
    pub sessions_unreadable: Counter<u64>,
}

/// The instruments, created on first use from the global meter provider. Install the
/// provider before the first call (`Application::build` does), or they stay no-ops.
pub fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| Instruments::new(&global::meter(SCOPE)))
}

impl Instruments {
    /// Every instrument, created on `meter`.
    pub fn new(meter: &Meter) -> Self {
        let latency = |name: &'static str, description: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(description)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        Instruments {
            requests: meter
                .u64_counter("http.server.requests")
                .with_description("HTTP requests answered")
                .build(),
            request_duration: latency(
                "http.server.request.duration",
                "HTTP request latency: until the answer is ready, for a stream until its end",
            ),
            upstream_duration: latency(
                "hailuo.upstream.duration",
                "Upstream call latency until the response head",
            ),
            time_to_first_token: latency("hailuo.chat.time_to_first_token", "Time to the first streamed text"),
            active_streams: meter
                .i64_up_down_counter("hailuo.chat.active_streams")
                .with_description("Streamed answers being sent")
                .build(),
            accounts_busy: meter
                .u64_gauge("hailuo.accounts.busy")
                .with_description("Accounts answering a request")
                .build(),
            account_wait: latency("hailuo.accounts.wait", "Time spent waiting for an idle account"),
            retries: meter
                .u64_counter("hailuo.upstream.retries")
                .with_description("Retries after a transient upstream failure")
                .build(),
            token_failures: meter
                .u64_counter("hailuo.accounts.rejected")
                .with_description("Accounts the upstream refused, by fingerprint")
                .build(),
            account_cooldown: meter
                .u64_gauge("hailuo.accounts.cooldown")
                .with_description("1 while a refused account rests, by fingerprint")
                .build(),
            token_expiry_days: meter
                .f64_gauge("hailuo.account.token_expiry_days")
                .with_description("Days until the account token's JWT expiry (negative once passed), by fingerprint")
                .build(),
            in_flight: meter
                .u64_gauge("hailuo.upstream.in_flight")
                .with_description("Upstream work items running")
                .build(),
            queued: meter
                .u64_gauge("hailuo.upstream.queued")
                .with_description("Requests waiting for an upstream work slot")
                .build(),
            overloaded: meter
                .u64_counter("hailuo.requests.overloaded")
                .with_description("Requests turned away because the server was overloaded")
                .build(),
            conversations_pending: meter
                .u64_gauge("hailuo.conversations.pending_deletion")
                .with_description("Upstream conversations waiting to be deleted")
                .build(),
            deletions_failed: meter
                .u64_counter("hailuo.conversations.deletions_failed")
                .with_description("Upstream conversation deletions that failed")
                .build(),
            sessions_unreadable: meter
                .u64_counter("hailuo.conversations.unreadable")
                .with_description("Stored conversations set aside because their record cannot be read")
                .build(),
        }
    }

    /// Records a zero, without labels, on every instrument that is shown before anything
    /// happened: what an exporter then holds is each one's series as it stands at start. Not
    /// the token expiry, which has no value before a token is seen (a zero would read as a
    /// token expiring today).
    pub fn record_zeros(&self) {
        let Self {
            requests,
            request_duration,
            upstream_duration,
            time_to_first_token,
            active_streams,
            accounts_busy,
            account_wait,
            retries,
            token_failures,
            account_cooldown,
            token_expiry_days: _,
            in_flight,
            queued,
            overloaded,
            conversations_pending,
            deletions_failed,
            sessions_unreadable,
        } = self;
        for counter in [
            requests,
            retries,
            token_failures,
            overloaded,
            deletions_failed,
            sessions_unreadable,
        ] {
            counter.add(0, &[]);
        }
        for histogram in [request_duration, upstream_duration, time_to_first_token, account_wait] {
            histogram.record(0.0, &[]);
        }
        for gauge in [
            accounts_busy,
            account_cooldown,
            in_flight,
            queued,
            conversations_pending,
        ] {
            gauge.record(0, &[]);
        }
        active_streams.add(0, &[]);
    }
}
