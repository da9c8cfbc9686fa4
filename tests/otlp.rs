//! OTLP trace export, end to end: an in-test OTLP/HTTP receiver, the server exporting to it
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`), a chat that continues the caller's `traceparent`.
//! Its own test binary: the variables and the global tracer are process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "api/helpers.rs"]
mod helpers;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hailuo_free_api::config::Settings;
use hailuo_free_api::outbound::telemetry;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Response, Route, handler, post};
use prost::Message;

use helpers::{ask, eventually, spawn_app};

const TOKEN: &str = "otlp-secret-token-91c2";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

type Received = Arc<Mutex<Vec<Span>>>;

#[handler]
fn traces(body: Vec<u8>, received: Data<&Received>) -> Response {
    let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP trace export");
    let spans = request
        .resource_spans
        .into_iter()
        .flat_map(|resource| resource.scope_spans)
        .flat_map(|scope| scope.spans);
    received.lock().unwrap().extend(spans);
    protobuf_ok(ExportTraceServiceResponse::default().encode_to_vec())
}

#[handler]
fn other_signals() -> Response {
    protobuf_ok(Vec::new())
}

fn protobuf_ok(body: Vec<u8>) -> Response {
    Response::builder().content_type("application/x-protobuf").body(body)
}

/// Starts the receiver; its base URL.
async fn start_receiver(received: Received) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let app = Route::new()
        .at("/v1/traces", post(traces))
        .at("/v1/metrics", post(other_signals))
        .at("/v1/logs", post(other_signals))
        .data(received);
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}")
}

fn string_attribute<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key == key)
        .and_then(|attribute| match attribute.value.as_ref()?.value.as_ref()? {
            AnyValue::StringValue(value) => Some(value.as_str()),
            _ => None,
        })
}

fn attribute_values(span: &Span) -> Vec<String> {
    span.attributes
        .iter()
        .filter_map(|attribute| attribute.value.as_ref()?.value.as_ref())
        .map(|value| format!("{value:?}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_continues_the_callers_trace_down_to_the_upstream_calls() {
    let received = Received::default();
    let endpoint = start_receiver(Arc::clone(&received)).await;
    // SAFETY: the only test of this binary, set before anything reads the environment.
    unsafe {
        std::env::set_var("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint);
        std::env::set_var("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
        std::env::set_var("OTEL_BSP_SCHEDULE_DELAY", "100");
        std::env::set_var("OTEL_SERVICE_NAME", "hailuo-free-api-test");
    }
    let guard = telemetry::init(&Settings::defaults().unwrap().log);
    let app = spawn_app().await;

    let response = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01"))
        .json(&ask("trace me"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap();
    let guard = tokio::task::spawn_blocking(move || {
        guard.flush();
        guard
    })
    .await
    .unwrap();

    let server_span = |spans: &[Span]| {
        spans
            .iter()
            .find(|span| {
                span.kind == SpanKind::Server as i32
                    && hex::encode(&span.parent_span_id) == PARENT_SPAN_ID
                    && string_attribute(span, "url.path") == Some("/v1/chat/completions")
            })
            .cloned()
    };
    let exported = eventually(Duration::from_secs(10), || async {
        let spans = received.lock().unwrap();
        server_span(&spans).is_some_and(|server| {
            spans
                .iter()
                .any(|span| span.kind == SpanKind::Client as i32 && span.parent_span_id == server.span_id)
        })
    })
    .await;
    let spans = received.lock().unwrap().clone();
    assert!(exported, "no server span with an upstream child: {spans:#?}");

    let server = server_span(&spans).unwrap();
    assert_eq!(hex::encode(&server.trace_id), TRACE_ID);
    assert_eq!(string_attribute(&server, "http.route"), Some("/v1/chat/completions"));
    let upstream: Vec<&Span> = spans
        .iter()
        .filter(|span| span.kind == SpanKind::Client as i32 && span.parent_span_id == server.span_id)
        .collect();
    assert!(upstream.iter().all(|span| hex::encode(&span.trace_id) == TRACE_ID));
    let chat_call = upstream
        .iter()
        .find(|span| string_attribute(span, "url.path") == Some("/v4/api/chat/msg"))
        .unwrap_or_else(|| panic!("no chat call among {upstream:#?}"));
    let fingerprint = hailuo_free_api::domain::chat::AccountToken::new(TOKEN).fingerprint();
    assert_eq!(string_attribute(chat_call, "account"), Some(fingerprint.as_str()));
    for span in &spans {
        assert!(
            attribute_values(span).iter().all(|value| !value.contains(TOKEN)),
            "a token leaked into {span:#?}"
        );
    }
    drop(app);
    tokio::task::spawn_blocking(move || guard.shutdown()).await.unwrap();
}
