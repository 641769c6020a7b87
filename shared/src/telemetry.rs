//! Logging and tracing setup shared by every binary: `RUST_LOG` filters,
//! `CRUST_LOG_FORMAT` picks JSON (the default off a terminal) or text, and
//! spans are exported over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set. The W3C trace context travels as a `traceparent` string, from the
//! api request that creates a job, through RabbitMQ, into the worker.

use std::collections::HashMap;
use std::io::IsTerminal;

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{global, Context};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{fmt, prelude::*, EnvFilter, Layer, Registry};

/// Keeps telemetry alive; call [`Guard::shutdown`] before exiting so
/// buffered spans are flushed.
#[must_use = "dropping the guard early loses telemetry"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    /// Flushes and stops span export.
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
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("CRUST_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        fmt::layer().json().with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    };
    let provider = otlp_provider(service);
    let traces = provider
        .as_ref()
        .map(|provider| tracing_opentelemetry::layer().with_tracer(provider.tracer("crust")));
    let installed = tracing_subscriber::registry()
        .with(logs)
        .with(traces)
        .with(filter)
        .try_init();
    if installed.is_ok() && provider.is_some() {
        tracing::info!(service, "exporting spans over OTLP");
    }
    Guard { provider }
}

fn otlp_provider(service: &str) -> Option<SdkTracerProvider> {
    std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT")?;
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("telemetry: OTLP export disabled: {err}");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    global::set_tracer_provider(provider.clone());
    Some(provider)
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
