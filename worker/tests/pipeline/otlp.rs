//! Traces reach a real collector: the api, scheduler and worker binaries
//! export over OTLP/HTTP to a receiver in this test, which decodes what
//! arrives with the OTLP protobuf (and JSON) types. One job is one trace,
//! from the api's request span through the worker's job and task spans,
//! even when the api logs only warnings; a retry after a killed worker is a
//! new trace linked to the first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use crust_model::auth::TokenKey;
use crust_model::Id;
use crust_testing::{amqp_url, TestDb};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message as _;
use serde_json::{json, Value};
use tokio::process::Child;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::helpers::{spawn_process, DEADLINE, SECRET};

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: HashMap<String, String>,
    /// (trace id, span id) of each link.
    links: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    /// (service, content type) of each export request.
    content_types: Arc<Mutex<Vec<(String, String)>>>,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|value| value.value.as_ref()) {
        Some(AnyValue::StringValue(text)) => text.clone(),
        Some(AnyValue::IntValue(number)) => number.to_string(),
        Some(AnyValue::BoolValue(flag)) => flag.to_string(),
        Some(AnyValue::DoubleValue(number)) => number.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(list: &[KeyValue]) -> HashMap<String, String> {
    list.iter()
        .map(|kv| (kv.key.clone(), text(kv.value.as_ref())))
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

async fn receive(State(collector): State<Collector>, headers: HeaderMap, body: Bytes) -> Vec<u8> {
    let content_type = headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request = if content_type.starts_with("application/json") {
        serde_json::from_slice::<ExportTraceServiceRequest>(&body).expect("OTLP/JSON decodes")
    } else {
        ExportTraceServiceRequest::decode(body).expect("OTLP protobuf decodes")
    };
    let mut spans = collector.spans.lock().unwrap();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|resource| attributes(&resource.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        collector
            .content_types
            .lock()
            .unwrap()
            .push((service.clone(), content_type.clone()));
        for scope in resource_spans.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    service: service.clone(),
                    name: span.name,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                    links: span
                        .links
                        .iter()
                        .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                        .collect(),
                });
            }
        }
    }
    // An empty ExportTraceServiceResponse.
    Vec::new()
}

impl Collector {
    async fn start() -> (Self, String) {
        let collector = Collector::default();
        let app = Router::new()
            .route("/v1/traces", post(receive))
            .with_state(collector.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (collector, url)
    }

    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until a span matching `what` has arrived.
    async fn wait_for(&self, description: &str, what: impl Fn(&Received) -> bool) -> Received {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            if let Some(span) = self.spans().into_iter().find(|span| what(span)) {
                return span;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the collector never got {description}; it got {:#?}",
                self.spans()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A sibling binary of this package's worker in the same target folder;
/// `cargo test --workspace` builds every binary before running tests.
fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_crust-worker")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or build the binaries first)",
        path.display()
    );
    path
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The three binaries as separate processes, exporting to a collector.
struct Cluster {
    db: TestDb,
    collector: Collector,
    otlp: String,
    api: String,
    token: String,
    client: reqwest::Client,
    processes: Vec<(String, Child, UnboundedReceiver<String>)>,
}

const TRACE_URL: &str = "https://traces.example/trace/{traceID}?view=timeline";

impl Cluster {
    async fn start() -> Cluster {
        let (collector, otlp) = Collector::start().await;
        let db = TestDb::new().await;
        let api = format!("http://127.0.0.1:{}", free_port());
        let mut cluster = Cluster {
            token: TokenKey::new(SECRET).unwrap().sign(
                Id(7),
                &["admin"],
                chrono::Utc::now().timestamp(),
                3600,
            ),
            client: reqwest::Client::new(),
            processes: Vec::new(),
            db,
            collector,
            otlp,
            api,
        };
        // A usual production log level: it must not decide what is traced.
        let address = cluster.api.trim_start_matches("http://").to_owned();
        cluster.spawn(
            "crust-api",
            &[
                ("RUST_LOG", "warn"),
                ("CRUST_HTTP_ADDR", &address),
                ("CRUST_TRACE_URL", TRACE_URL),
            ],
        );
        cluster.spawn("crust-scheduler", &[]);
        cluster.wait_ready().await;
        cluster
    }

    fn spawn(&mut self, binary_name: &str, extra: &[(&str, &str)]) {
        let mut env = vec![
            ("DATABASE_URL", self.db.url.clone()),
            ("AMQP_URL", format!("{}?heartbeat=1", amqp_url())),
            ("CRUST_QUEUE_PREFIX", self.db.name.clone()),
            ("CRUST_JWT_SECRET", SECRET.to_owned()),
            ("CRUST_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("CRUST_LOG_FORMAT", "json".to_owned()),
            ("CRUST_DB_POOL_SIZE", "4".to_owned()),
            ("RUST_LOG", "info".to_owned()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.otlp.clone()),
            // Export within a fifth of a second instead of five.
            ("OTEL_BSP_SCHEDULE_DELAY", "200".to_owned()),
        ];
        for (name, value) in extra {
            env.retain(|(known, _)| known != name);
            env.push((name, (*value).to_owned()));
        }
        let (child, lines) = spawn_process(&binary(binary_name), &env);
        self.processes.push((binary_name.to_owned(), child, lines));
    }

    /// Starts a worker that exports OTLP/JSON rather than protobuf.
    fn spawn_worker(&mut self, name: &str) {
        self.spawn(
            "crust-worker",
            &[
                ("CRUST_WORKER_NAME", name),
                ("CRUST_WORKER_LEASE_MS", "1000"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                // "job finished" is a debug line.
                ("RUST_LOG", "info,crust_worker=debug"),
            ],
        );
    }

    async fn wait_ready(&self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while self
            .client
            .get(format!("{}/healthz", self.api))
            .send()
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the api never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.api))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {body}");
        body["response"].clone()
    }

    async fn job(&self, tasks: Value) -> String {
        let workflow = self
            .call(
                reqwest::Method::POST,
                "/workflow/",
                Some(json!({"name": "traced", "tasks": tasks})),
            )
            .await;
        let job = self
            .call(
                reqwest::Method::POST,
                "/job/",
                Some(json!({"workflowID": workflow["workflowID"]})),
            )
            .await;
        job["jobID"].as_str().unwrap().to_owned()
    }

    async fn wait_status(&self, job: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let current = self
                .call(reqwest::Method::GET, &format!("/job/{job}"), None)
                .await;
            if current["status"] == status {
                return current;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {job} never became {status}: {current}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every process with SIGTERM, as Kubernetes does; returns each
    /// one's stderr. A clean stop exits 0 and says nothing about telemetry.
    async fn stop(mut self) -> (Collector, HashMap<String, Vec<String>>) {
        let mut output: HashMap<String, Vec<String>> = HashMap::new();
        for (name, child, mut lines) in self.processes.drain(..).rev() {
            let status = stop_process(child).await;
            let mut seen = Vec::new();
            while let Ok(line) = lines.try_recv() {
                seen.push(line);
            }
            // The reader may still be draining the closed pipe.
            tokio::time::sleep(Duration::from_millis(50)).await;
            while let Some(line) = lines.recv().await {
                seen.push(line);
            }
            assert!(status.success(), "{name} exited with {status}: {seen:#?}");
            let broken: Vec<&String> = seen
                .iter()
                .filter(|line| line.contains("panicked") || line.contains("telemetry:"))
                .collect();
            assert!(broken.is_empty(), "{name} printed {broken:#?}");
            output.entry(name).or_default().extend(seen);
        }
        (self.collector, output)
    }
}

async fn stop_process(mut child: Child) -> std::process::ExitStatus {
    let pid = child.id().expect("still running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("the process stops within the deadline")
        .unwrap()
}

/// Kills a process at once, as a crashed node would.
async fn kill_process(cluster: &mut Cluster, binary_name: &str) {
    let index = cluster
        .processes
        .iter()
        .position(|(name, _, _)| name == binary_name)
        .expect("the process runs");
    let (_, mut child, _) = cluster.processes.remove(index);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn one_job_is_one_trace_from_the_api_request_to_each_task_at_a_real_collector() {
    let mut cluster = Cluster::start().await;
    cluster.spawn_worker("exporting");
    let job = cluster
        .job(json!([
            {"name": "first", "kind": "log", "params": {"message": "one"}},
            {"name": "second", "kind": "log", "params": {"message": "two"}}
        ]))
        .await;
    let done = cluster.wait_status(&job, "ok").await;
    let trace_id = done["traceID"]
        .as_str()
        .unwrap_or_else(|| panic!("the job shows its traceID: {done}"))
        .to_owned();
    assert_eq!(trace_id.len(), 32, "{trace_id}");
    assert_eq!(
        done["traceURL"],
        TRACE_URL.replace("{traceID}", &trace_id),
        "CRUST_TRACE_URL makes the trace id a link"
    );
    let (collector, output) = cluster.stop().await;

    let request = collector
        .wait_for("the api's request span", |span| {
            span.name == "request"
                && span.trace_id == trace_id
                && span.attributes.get("route").map(String::as_str) == Some("/job")
        })
        .await;
    assert_eq!(request.service, "crust-api");
    assert_eq!(
        request.attributes.get("method").map(String::as_str),
        Some("POST")
    );
    let job_span = collector
        .wait_for("the worker's job span", |span| {
            span.name == "job" && span.attributes.get("job.id") == Some(&job)
        })
        .await;
    assert_eq!(job_span.service, "crust-worker");
    assert_eq!(job_span.trace_id, trace_id, "one trace from api to worker");
    assert_eq!(job_span.parent_span_id, request.span_id);
    let mut tasks: Vec<String> = collector
        .spans()
        .into_iter()
        .filter(|span| span.name == "task" && span.parent_span_id == job_span.span_id)
        .map(|span| {
            assert_eq!(span.trace_id, trace_id);
            span.attributes["task.name"].clone()
        })
        .collect();
    tasks.sort();
    assert_eq!(tasks, ["first", "second"]);
    // OTLP's default encoding, and JSON where OTEL_EXPORTER_OTLP_PROTOCOL asks.
    for (service, content_type) in collector.content_types.lock().unwrap().iter() {
        let expected = match service.as_str() {
            "crust-worker" => "application/json",
            _ => "application/x-protobuf",
        };
        assert_eq!(content_type, expected, "{service}");
    }

    // The worker's JSON log lines inside the job carry the ids.
    let linked = output["crust-worker"]
        .iter()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["trace_id"] == trace_id.as_str())
        .unwrap_or_else(|| {
            panic!(
                "no worker log line carries trace_id {trace_id}: {:#?}",
                output["crust-worker"]
            )
        });
    assert_eq!(
        linked["span_id"].as_str().map(str::len),
        Some(16),
        "{linked}"
    );
}

#[tokio::test]
async fn a_retry_after_a_killed_worker_is_a_new_trace_linked_to_the_first() {
    let mut cluster = Cluster::start().await;
    cluster.spawn_worker("doomed");
    let job = cluster
        .job(json!([{"name": "nap", "kind": "sleep", "params": {"seconds": 2}}]))
        .await;
    let running = cluster.wait_status(&job, "running").await;
    let first_trace = running["traceID"].as_str().unwrap().to_owned();
    kill_process(&mut cluster, "crust-worker").await;
    cluster.spawn_worker("survivor");
    let done = cluster.wait_status(&job, "ok").await;
    assert_eq!(done["attempt"], 2, "{done}");
    let (collector, _) = cluster.stop().await;

    let request = collector
        .wait_for("the api's request span", |span| {
            span.name == "request" && span.trace_id == first_trace
        })
        .await;
    let retry = collector
        .wait_for("the retry's job span", |span| {
            span.name == "job"
                && span.attributes.get("job.id") == Some(&job)
                && span.attributes.get("attempt").map(String::as_str) == Some("2")
        })
        .await;
    assert_eq!(retry.service, "crust-worker");
    assert!(
        retry.parent_span_id.is_empty(),
        "a retry is the root of its own trace: {retry:?}"
    );
    assert_ne!(retry.trace_id, first_trace);
    assert!(
        retry
            .links
            .contains(&(first_trace.clone(), request.span_id.clone())),
        "the retry links to the request that created the job: {retry:?}"
    );
}

#[tokio::test]
async fn a_cron_job_s_trace_starts_at_the_scheduler() {
    let mut cluster = Cluster::start().await;
    cluster.spawn_worker("exporting");
    let workflow = cluster
        .call(
            reqwest::Method::POST,
            "/workflow/",
            Some(json!({"name": "ticking", "schedule": "* * * * * *",
                        "tasks": [{"name": "tick", "kind": "log", "params": {"message": "tick"}}]})),
        )
        .await;
    let workflow = workflow["workflowID"].as_str().unwrap().to_owned();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let done = loop {
        let list = cluster
            .call(reqwest::Method::GET, "/job/?status=ok", None)
            .await;
        if let Some(job) = list["jobs"].as_array().and_then(|jobs| {
            jobs.iter()
                .find(|job| job["workflowID"] == workflow.as_str())
        }) {
            break job.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no cron job ran");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let trace_id = done["traceID"]
        .as_str()
        .unwrap_or_else(|| panic!("a cron job has a trace: {done}"))
        .to_owned();
    let job = done["jobID"].as_str().unwrap().to_owned();
    let (collector, _) = cluster.stop().await;
    let cron = collector
        .wait_for("the scheduler's cron span", |span| {
            span.name == "cron" && span.trace_id == trace_id
        })
        .await;
    assert_eq!(cron.service, "crust-scheduler");
    assert_eq!(cron.attributes.get("workflow.id"), Some(&workflow));
    let job_span = collector
        .wait_for("the worker's job span", |span| {
            span.name == "job" && span.attributes.get("job.id") == Some(&job)
        })
        .await;
    assert_eq!(job_span.trace_id, trace_id);
    assert_eq!(job_span.parent_span_id, cron.span_id);
}
