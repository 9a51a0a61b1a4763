//! Logs and traces of a process: `tracing` events on stderr as text or JSON lines, and,
//! when `[observability] otlp_endpoint` is set, spans exported over OTLP/gRPC (tonic)
//! through the OpenTelemetry SDK's batch processor. Also the W3C trace-context helpers that
//! carry a request's trace from a follower to the leader it forwards a command to.
//!
//! Telemetry never decides anything: a slow or absent collector loses spans (the queue is
//! bounded), never a request.

use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::config::{LogFormat, ObservabilityConfig};

/// How long an export call to the collector may take.
const OTLP_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long stopping waits for the last spans to leave.
const OTLP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The installed telemetry. Call [`Telemetry::shutdown`] before the process exits, or the
/// spans of its last seconds are lost.
#[must_use]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the spans still queued (bounded by a few seconds) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown_with_timeout(OTLP_SHUTDOWN_TIMEOUT) {
                eprintln!("warning: the last spans may not have reached the otlp collector: {error}");
            }
        }
    }
}

/// Installs the global subscriber: the `KYSO_LOG` filter (default `info`), log lines on
/// stderr in the configured format (`json` also when `force_json`), and the OTLP exporter
/// when configured. `instance` names this process in exported spans
/// (`service.instance.id`). An OTLP exporter needs a Tokio runtime: call this inside one
/// when `otlp_endpoint` is set.
pub fn init(observability: &ObservabilityConfig, force_json: bool, instance: &str) -> anyhow::Result<Telemetry> {
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    let provider = match &observability.otlp_endpoint {
        Some(endpoint) => Some(otlp_provider(observability, endpoint, instance)?),
        None => None,
    };
    let json = force_json || observability.log_format == LogFormat::Json;
    // Each output has its own filter: KYSO_LOG quietens the logs, not the traces.
    let log_filter = tracing_subscriber::EnvFilter::try_from_env("KYSO_LOG").unwrap_or_else(|_| "info".into());
    let logs = if json {
        tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(log_filter).boxed()
    } else {
        tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(log_filter).boxed()
    };
    let traced = tracing_subscriber::filter::Targets::new()
        .with_target("kyso", tracing::Level::INFO)
        .with_target("kyso_cluster", tracing::Level::INFO);
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("kyso")).with_filter(traced));
    tracing_subscriber::registry().with(logs).with(traces).try_init()?;
    if let Some(endpoint) = &observability.otlp_endpoint {
        tracing::info!(%endpoint, "exporting traces over otlp");
    }
    Ok(Telemetry { provider })
}

fn otlp_provider(observability: &ObservabilityConfig, endpoint: &str, instance: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig as _;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(OTLP_EXPORT_TIMEOUT)
        .build()
        .map_err(|error| anyhow::anyhow!("cannot build the otlp exporter for {endpoint}: {error}"))?;
    let batches = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(observability.otlp_export_interval_milliseconds))
        .with_max_queue_size(observability.otlp_queued_spans_max)
        .build();
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(observability.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new("service.instance.id", instance.to_string()))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter).with_batch_config(batches).build())
        .with_resource(resource)
        .build())
}

/// Writes the current span's trace context (`traceparent`, `tracestate`) into an outgoing
/// call's metadata, so the node that answers continues the same trace.
pub fn inject_current_context(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut MetadataInjector(metadata)));
}

/// Makes `span` a child of the trace context an incoming call carries, if any.
pub fn continue_trace_from(span: &tracing::Span, headers: &http::HeaderMap) {
    if headers.get("traceparent").is_none() {
        return;
    }
    let context = opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)));
    // Fails only when no OpenTelemetry layer is installed: then there is no trace to join.
    let _ = span.set_parent(context);
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (tonic::metadata::MetadataKey::from_bytes(key.as_bytes()), tonic::metadata::MetadataValue::try_from(&value)) {
            self.0.insert(key, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}
