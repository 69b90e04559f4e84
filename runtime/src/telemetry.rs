//! Logs and traces.
//!
//! Logs: human-readable by default, JSON with `--log-format json`; the level
//! comes from `RUST_LOG` (default `info`). Traces: OpenTelemetry, exported over
//! OTLP when the standard variables ask for it (`OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; `OTEL_EXPORTER_OTLP_PROTOCOL` `grpc` or
//! `http/protobuf`, the default), and not even built when they do not: no
//! endpoint, no cost.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// Keeps the trace pipeline alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Whether the environment asks for trace export.
#[must_use]
pub fn tracing_requested() -> bool {
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
    !disabled
        && (env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
            || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some())
}

fn build_provider(service_name: &str) -> anyhow::Result<SdkTracerProvider> {
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".to_owned());
    let exporter = match protocol.as_str() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?,
        "http/protobuf" => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()?,
        other => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported; use grpc or http/protobuf"
        ),
    };
    let mut resource = opentelemetry_sdk::Resource::builder();
    // OTEL_SERVICE_NAME, when set, wins over the service's own name.
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build())
}

/// Installs the global subscriber (logs, and traces when requested) and the
/// W3C trace-context propagator. A second call installs nothing more.
///
/// # Errors
///
/// When trace export is requested but cannot be set up.
pub fn init(format: LogFormat, service_name: &str) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(
        opentelemetry_sdk::propagation::TraceContextPropagator::new(),
    );
    let provider = if tracing_requested() {
        Some(build_provider(service_name)?)
    } else {
        None
    };
    let levels = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let fmt = match format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().flatten_event(true).boxed(),
    };
    // Without export, spans are of no use to anyone: the logs keep only
    // events. Every filter is the layer's own, so that when no layer wants
    // spans the per-message spans are never built at all (a global filter
    // that enables them would have the registry build each one for nobody).
    let exporting = provider.is_some();
    let fmt = fmt.with_filter(
        levels().and(tracing_subscriber::filter::filter_fn(move |meta| {
            exporting || meta.is_event()
        })),
    );
    let installed = match provider.as_ref() {
        Some(provider) => tracing_subscriber::registry()
            .with(fmt)
            .with(
                tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer("herald"))
                    .with_filter(levels()),
            )
            .try_init(),
        None => tracing_subscriber::registry().with(fmt).try_init(),
    };
    if installed.is_err() {
        // A subscriber installed earlier (a test's) keeps the job.
        return Ok(Telemetry::default());
    }
    Ok(Telemetry { provider })
}

/// Installs logs only (for tests and tools).
pub fn init_logs(format: LogFormat) {
    if let Err(error) = init(format, "herald") {
        eprintln!("herald: {error:#}");
    }
}

// === impl Telemetry ===

impl Telemetry {
    /// Whether spans are exported.
    #[must_use]
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }

    /// Flushes and stops the trace pipeline. Runs the blocking flush off the
    /// async workers.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let flushed = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            match flushed {
                Ok(Ok(())) => {}
                Ok(Err(error)) => eprintln!("herald: cannot flush traces: {error}"),
                Err(error) => eprintln!("herald: cannot flush traces: {error}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// The only test in this crate that installs the global subscriber.
    #[test]
    fn without_export_spans_are_never_built_and_logs_still_are() {
        super::init(super::LogFormat::Human, "herald-test").expect("installed");
        let span = tracing::info_span!("sender.process", messaging.system = "nats");
        assert!(span.is_disabled(), "a span nobody exports was built");
        assert!(tracing::event_enabled!(tracing::Level::INFO));
        assert!(!tracing::event_enabled!(tracing::Level::DEBUG));
    }
}
