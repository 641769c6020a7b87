//! One trace per job across processes: the api request that creates a job
//! is the parent of the worker's job span, which is the parent of each task
//! span; a retry starts a new trace linked to the first.

use std::sync::OnceLock;

use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::json;
use tracing_subscriber::prelude::*;

use crate::helpers::{start, Options};

/// Installs (once per process) a subscriber that records every span.
fn recorded() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
        exporter
    })
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn job_spans(job: &str) -> Vec<SpanData> {
    recorded()
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|span| span.name == "job" && attribute(span, "job.id").as_deref() == Some(job))
        .collect()
}

async fn wait_for_job_span(job: &str, attempt: i64) -> SpanData {
    let deadline = tokio::time::Instant::now() + crate::helpers::DEADLINE;
    loop {
        if let Some(span) = job_spans(job)
            .into_iter()
            .find(|span| attribute(span, "attempt") == Some(attempt.to_string()))
        {
            return span;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no job span for job {job} attempt {attempt}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_job_s_trace_runs_from_the_api_request_through_the_worker_to_each_task() {
    let spans = recorded();
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "traced", "tasks": [
            {"name": "first", "kind": "log", "params": {"message": "one"}},
            {"name": "second", "kind": "log", "params": {"message": "two"}}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_status(&job, "ok").await;
    let job_span = wait_for_job_span(&job, 1).await;
    let all = spans.get_finished_spans().unwrap();
    let trace_id = job_span.span_context.trace_id();

    let request = all
        .iter()
        .find(|span| span.span_context.span_id() == job_span.parent_span_id)
        .expect("the job span's parent was recorded");
    assert_eq!(request.name, "request");
    assert_eq!(attribute(request, "route").as_deref(), Some("/job"));
    assert_eq!(attribute(request, "method").as_deref(), Some("POST"));
    assert_eq!(
        request.span_context.trace_id(),
        trace_id,
        "one trace from api to worker"
    );

    let tasks: Vec<&SpanData> = all
        .iter()
        .filter(|span| {
            span.name == "task" && span.parent_span_id == job_span.span_context.span_id()
        })
        .collect();
    let mut names: Vec<String> = tasks
        .iter()
        .filter_map(|span| attribute(span, "task.name"))
        .collect();
    names.sort();
    assert_eq!(names, ["first", "second"]);
    assert!(tasks
        .iter()
        .all(|span| span.span_context.trace_id() == trace_id));
}

#[tokio::test]
async fn a_retried_run_starts_a_new_trace_linked_to_the_first() {
    recorded();
    let system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "retried", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let job = system
        .job(&workflow, json!({"startAt": "2999-01-01T00:00:00Z"}))
        .await;
    let path = format!("/job/{job}");
    // Run 1 is taken by hand and given back, as after a lost worker.
    for status in ["running", "queued"] {
        let (code, body) = system
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({"status": status})),
            )
            .await;
        assert_eq!(code, reqwest::StatusCode::OK, "{body}");
    }
    let mut system = system;
    system.start_worker(1_000, 10).await;
    let (code, _) = system
        .call(reqwest::Method::POST, &path, Some(json!({"startAt": ""})))
        .await;
    assert_eq!(code, reqwest::StatusCode::OK);
    system.wait_status(&job, "ok").await;
    let retry = wait_for_job_span(&job, 2).await;
    assert_eq!(
        retry.parent_span_id,
        SpanId::INVALID,
        "a retry is the root of its own trace"
    );
    let all = recorded().get_finished_spans().unwrap();
    let origin = all
        .iter()
        .find(|span| {
            span.name == "request"
                && attribute(span, "route").as_deref() == Some("/job")
                && retry
                    .links
                    .iter()
                    .any(|link| link.span_context.span_id() == span.span_context.span_id())
        })
        .expect("the retry links to the request that created the job");
    assert_ne!(
        origin.span_context.trace_id(),
        retry.span_context.trace_id()
    );
}
