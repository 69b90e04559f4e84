//! W3C trace context across hops: into and out of NATS headers and HTTP
//! headers, so that one trace follows an event from the request that brought
//! it to the requests that delivered it.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

struct NatsWriter<'a>(&'a mut async_nats::HeaderMap);

impl Injector for NatsWriter<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

struct NatsReader<'a>(&'a async_nats::HeaderMap);

impl Extractor for NatsReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(async_nats::HeaderValue::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

struct HttpReader<'a>(&'a axum::http::HeaderMap);

impl Extractor for HttpReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(axum::http::HeaderName::as_str).collect()
    }
}

struct TextReader<'a>(&'a str);

impl Extractor for TextReader<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Writes `span`'s trace context (`traceparent`, `tracestate`) into NATS headers.
pub fn inject_nats(span: &tracing::Span, headers: &mut async_nats::HeaderMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&context, &mut NatsWriter(headers));
    });
}

/// The trace context carried by NATS headers (empty when none).
#[must_use]
pub fn extract_nats(headers: Option<&async_nats::HeaderMap>) -> Context {
    match headers {
        Some(headers) => {
            opentelemetry::global::get_text_map_propagator(|p| p.extract(&NatsReader(headers)))
        }
        None => Context::new(),
    }
}

/// The trace context an HTTP caller sent (empty when none).
#[must_use]
pub fn extract_http(headers: &axum::http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HttpReader(headers)))
}

/// The context of a stored `traceparent` value.
#[must_use]
pub fn from_traceparent(traceparent: &str) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&TextReader(traceparent)))
}

/// Makes `parent` the parent of `span`, when it holds a valid remote span.
pub fn set_parent(span: &tracing::Span, parent: Context) {
    if parent.span().span_context().is_valid() {
        // Fails only when the span is already started or disabled: nothing to do then.
        span.set_parent(parent).ok();
    }
}

/// `span`'s trace id in hex, when traces are on.
#[must_use]
pub fn trace_id(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}

/// `span`'s W3C `traceparent`, when traces are on (kept in dead letters so a
/// replay joins the trace).
#[must_use]
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut headers = async_nats::HeaderMap::new();
    inject_nats(span, &mut headers);
    headers.get("traceparent").map(|v| v.as_str().to_owned())
}

/// Records `span`'s trace id in its `trace_id` field, so every log line
/// inside it carries the id.
pub fn record_trace_id(span: &tracing::Span) {
    if let Some(id) = trace_id(span) {
        span.record("trace_id", id.as_str());
    }
}
