//! Logging and tracing setup shared by every binary.
//!
//! Two independent pipelines hang off one subscriber:
//! - **logs**: `RUST_LOG` filters them; `CRUST_LOG_FORMAT` picks JSON (the
//!   default off a terminal) or text. A JSON line written inside a traced
//!   span carries `trace_id` and `span_id`.
//! - **traces**: every `info` (or higher) span of Crust's own crates, kept
//!   or dropped by the sampler (`OTEL_TRACES_SAMPLER`, `…_ARG`), never by
//!   `RUST_LOG`. Spans are exported over OTLP/HTTP when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is
//!   set (with `…_HEADERS`, `…_PROTOCOL` = `http/protobuf` or `http/json`,
//!   `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`). Without an
//!   endpoint spans are still made, so jobs and log lines get trace ids.
//!
//! The W3C trace context travels as a `traceparent` string, from the api
//! request that creates a job, through RabbitMQ, into the worker.

use std::collections::HashMap;
use std::io::IsTerminal;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{global, Context};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::{Event, Span, Subscriber};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{prelude::*, EnvFilter, Layer};

/// The crates whose spans are traced.
const TRACED_CRATES: [&str; 5] = [
    "crust_api",
    "crust_scheduler",
    "crust_worker",
    "crust_store",
    "crust_queue",
];

/// Keeps telemetry alive; call [`Guard::shutdown`] before exiting so
/// buffered spans are flushed.
#[must_use = "dropping the guard early loses telemetry"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Flushes and stops span export. Blocks until the exporter's thread
    /// has sent what it holds (bounded by the exporter's timeout).
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(err) = provider.shutdown() {
                eprintln!("telemetry: cannot flush spans: {err}");
            }
        }
    }
}

/// Installs the global subscriber for `service`. Safe to call twice (the
/// second call keeps the first subscriber).
pub fn init(service: &str) -> Guard {
    global::set_text_map_propagator(TraceContextPropagator::new());
    let json = match std::env::var("CRUST_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    // Each pipeline filters for itself: RUST_LOG decides which lines are
    // written, never which spans exist.
    let json_logs = json.then(|| {
        fmt::layer()
            .json()
            .event_format(WithTraceIds(fmt::format().json()))
            .with_writer(std::io::stderr)
            .with_filter(log_filter())
    });
    let text_logs = (!json).then(|| {
        fmt::layer()
            .with_writer(std::io::stderr)
            .with_filter(log_filter())
    });
    let (provider, exporting) = tracer_provider(service);
    let spans = TRACED_CRATES.iter().fold(Targets::new(), |targets, name| {
        targets.with_target(*name, LevelFilter::INFO)
    });
    let traces = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("crust"))
        .with_filter(spans);
    let installed = tracing_subscriber::registry()
        .with(json_logs)
        .with(text_logs)
        .with(traces)
        .try_init();
    if installed.is_err() {
        // Another subscriber (a test's) is in charge; leave it alone.
        let _ = provider.shutdown();
        return Guard { provider: None };
    }
    global::set_tracer_provider(provider.clone());
    if exporting {
        tracing::info!(service, "exporting spans over OTLP/HTTP");
    }
    Guard {
        provider: Some(provider),
    }
}

/// `RUST_LOG`, or `info` when it is unset or cannot be parsed.
fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Whether any OTLP endpoint for traces is configured.
fn endpoint_configured() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var(name).is_ok_and(|value| !value.trim().is_empty()))
}

/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`, else `OTEL_EXPORTER_OTLP_PROTOCOL`.
fn configured_protocol() -> Option<String> {
    [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok())
}

/// Why this build cannot export as configured, if it cannot: it speaks
/// OTLP over plain HTTP (protobuf or JSON), not gRPC and not TLS; a
/// collector next to the process does those.
fn unsupported() -> Option<String> {
    if let Some(protocol) =
        configured_protocol().filter(|p| !matches!(p.trim(), "" | "http/protobuf" | "http/json"))
    {
        return Some(format!(
            "OTLP protocol {protocol:?} is not supported by this build (use http/protobuf or http/json)"
        ));
    }
    let endpoint = [
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ]
    .iter()
    .find_map(|name| {
        std::env::var(name)
            .ok()
            .filter(|value| !value.trim().is_empty())
    })?;
    endpoint
        .trim()
        .to_ascii_lowercase()
        .starts_with("https:")
        .then(|| {
            format!(
                "OTLP endpoint {endpoint:?} uses TLS, which this build does not speak; \
             send to a collector over http:// (see deploy/otel)"
            )
        })
}

/// The provider every span goes through, and whether it exports.
///
/// Export uses the SDK's batch processor, which runs on a thread of its
/// own outside any Tokio runtime; so the exporter uses the *blocking*
/// reqwest client (built by the OTLP crate on a thread of its own). The
/// async client would need a Tokio reactor on that thread and panicked
/// there, exporting nothing. The sampler comes from `OTEL_TRACES_SAMPLER`
/// (default: parent-based, always on).
fn tracer_provider(service: &str) -> (SdkTracerProvider, bool) {
    let mut resource = Resource::builder();
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|name| !name.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES")
            .is_ok_and(|attributes| attributes.contains("service.name="));
    if !named {
        resource = resource.with_service_name(service.to_owned());
    }
    let builder = SdkTracerProvider::builder().with_resource(resource.build());
    if !endpoint_configured() {
        return (builder.build(), false);
    }
    if let Some(reason) = unsupported() {
        eprintln!("telemetry: {reason}; spans are not exported");
        return (builder.build(), false);
    }
    // OTLP's default is protobuf; the crate would pick JSON because this
    // build can also speak it, so the choice is made here.
    let protocol = match configured_protocol().as_deref().map(str::trim) {
        Some("http/json") => Protocol::HttpJson,
        _ => Protocol::HttpBinary,
    };
    match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .build()
    {
        Ok(exporter) => (builder.with_batch_exporter(exporter).build(), true),
        Err(err) => {
            eprintln!("telemetry: OTLP export disabled: {err}");
            (builder.build(), false)
        }
    }
}

/// Puts `trace_id` and `span_id` of the current span first in each JSON
/// log line, so a log search leads to the trace and back.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        // The span current for the whole subscriber, not just for the log
        // layer: with RUST_LOG=warn the request span is traced but not
        // logged, and its ids still belong on the line.
        let ids = current_ids();
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match (ids, line.strip_prefix('{')) {
            (Some((trace_id, span_id)), Some(rest)) => {
                write!(
                    writer,
                    "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}"
                )
            }
            _ => writer.write_str(&line),
        }
    }
}

/// The trace and span id of the current span, if it is traced.
fn current_ids() -> Option<(String, String)> {
    let span = Span::current();
    if span.is_none() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| {
        (
            span_context.trace_id().to_string(),
            span_context.span_id().to_string(),
        )
    })
}

/// The `traceparent` of the current span, if it is being traced.
pub fn current_traceparent() -> Option<String> {
    let context = Span::current().context();
    if !context.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut carrier));
    carrier.remove("traceparent")
}

fn context_of(traceparent: &str) -> Option<Context> {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    context.span().span_context().is_valid().then_some(context)
}

/// Makes `span` a child of the remote span `traceparent` names.
pub fn set_parent(span: &Span, traceparent: &str) {
    if let Some(context) = context_of(traceparent) {
        let _ = span.set_parent(context);
    }
}

/// Links `span` (the root of a new trace) to the remote span
/// `traceparent` names, e.g. a retry to the run it replaces.
pub fn add_link(span: &Span, traceparent: &str) {
    if let Some(context) = context_of(traceparent) {
        span.add_link(context.span().span_context().clone());
    }
}
