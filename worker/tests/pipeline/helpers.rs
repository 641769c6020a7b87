//! Starts a whole Crust (api, schedulers, workers) over a database and
//! queue names of its own, in-process through the real `run` functions, or
//! a worker as a real child process for crash tests.

use std::process::Stdio;
use std::time::Duration;

use crust_model::auth::TokenKey;
use crust_model::Id;
use crust_queue::{AmqpConfig, Names};
use crust_store::config::DbConfig;
use crust_testing::{amqp_url, TestDb};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret-test-secret-test-secret";
/// How long any wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A running system.
pub struct System {
    pub db: TestDb,
    pub base: String,
    pub amqp_url: String,
    /// The database URL the processes use.
    pub db_url: String,
    /// Health ports of the schedulers and workers, in start order.
    pub scheduler_health: Vec<std::net::SocketAddr>,
    pub worker_health: Vec<std::net::SocketAddr>,
    pub client: reqwest::Client,
    pub token: String,
    limits: crust_worker::Limits,
    api: CancellationToken,
    schedulers: Vec<CancellationToken>,
    workers: Vec<(CancellationToken, JoinHandle<()>)>,
    /// The workers' CRUST_HTTP_ALLOW.
    http_allow: &'static str,
}

/// What to start.
pub struct Options {
    pub workers: usize,
    pub schedulers: usize,
    pub lease_ms: u64,
    pub drain_secs: u64,
    /// The broker as the processes see it (a proxy in outage tests).
    pub amqp_url: Option<String>,
    /// Postgres's port as the processes see it (a proxy in outage tests).
    pub db_port: Option<u16>,
    /// The workers' CRUST_HTTP_ALLOW: loopback, where test servers listen.
    pub http_allow: &'static str,
    /// The workers' per-job limits.
    pub limits: crust_worker::Limits,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            workers: 1,
            schedulers: 1,
            lease_ms: 1_000,
            drain_secs: 10,
            amqp_url: None,
            db_port: None,
            http_allow: "127.0.0.1/32",
            limits: crust_worker::Limits::default(),
        }
    }
}

/// Starts api, schedulers and workers as `options` says.
pub async fn start(options: Options) -> System {
    let db = TestDb::new().await;
    let amqp_url = options.amqp_url.clone().unwrap_or_else(amqp_url);
    let db_url = match options.db_port {
        Some(port) => {
            let mut url = url::Url::parse(&db.url).unwrap();
            url.set_port(Some(port)).unwrap();
            url.to_string()
        }
        None => db.url.clone(),
    };
    let mut system = System {
        base: String::new(),
        amqp_url,
        db_url,
        scheduler_health: Vec::new(),
        worker_health: Vec::new(),
        client: reqwest::Client::new(),
        token: TokenKey::new(SECRET).unwrap().sign(
            Id(7),
            &["admin"],
            chrono::Utc::now().timestamp(),
            3600,
        ),
        api: CancellationToken::new(),
        schedulers: Vec::new(),
        workers: Vec::new(),
        http_allow: options.http_allow,
        limits: options.limits.clone(),
        db,
    };
    system.start_api().await;
    for _ in 0..options.schedulers {
        system.start_scheduler().await;
    }
    for _ in 0..options.workers {
        system
            .start_worker(options.lease_ms, options.drain_secs)
            .await;
    }
    system
}

impl System {
    /// Starts an api on a new port (the old one, if any, is told to stop)
    /// and points the test's calls at it.
    pub async fn start_api(&mut self) {
        self.api.cancel();
        self.api = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.base = format!("http://{}", listener.local_addr().unwrap());
        let config = crust_api::Config {
            db: self.db_config(),
            amqp: self.amqp_config(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            jwt_secret: Some(SECRET.into()),
            body_limit: 1 << 20,
            queries: Default::default(),
            trace_url: None,
            http_read_timeout: std::time::Duration::from_secs(30),
            max_connections: 1024,
            cors_origins: Vec::new(),
            job_key_ttl: std::time::Duration::from_secs(86_400),
            secrets: crust_store::secrets::SecretsConfig {
                secrets_key: Some(crust_testing::SECRETS_KEY.into()),
                secrets_previous_key: None,
            },
        };
        let stop = self.api.clone();
        tokio::spawn(async move { crust_api::run(config, listener, stop).await.unwrap() });
    }

    fn db_config(&self) -> DbConfig {
        DbConfig {
            database_url: self.db_url.clone(),
            db_pool_size: 8,
        }
    }

    fn amqp_config(&self) -> AmqpConfig {
        AmqpConfig {
            amqp_url: self.amqp_url.clone(),
            queue_prefix: self.db.name.clone(),
        }
    }

    /// The broker names of this system.
    pub fn names(&self) -> Names {
        Names::new(&self.db.name)
    }

    /// Starts one more scheduler.
    pub async fn start_scheduler(&mut self) {
        let config = crust_scheduler::Config {
            db: self.db_config(),
            amqp: self.amqp_config(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            max_attempts: 3,
            retention: Duration::from_secs(7 * 86_400),
            partition_span: 100,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.scheduler_health.push(listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        self.schedulers.push(stop.clone());
        tokio::spawn(async move { crust_scheduler::run(config, listener, stop).await.unwrap() });
    }

    /// Stops every scheduler.
    pub fn stop_schedulers(&mut self) {
        for stop in self.schedulers.drain(..) {
            stop.cancel();
        }
    }

    /// Starts one more in-process worker; returns its index.
    pub async fn start_worker(&mut self, lease_ms: u64, drain_secs: u64) -> usize {
        self.start_worker_on(lease_ms, drain_secs, &["default"])
            .await
    }

    /// Starts one more in-process worker consuming the named `queues`;
    /// returns its index.
    pub async fn start_worker_on(
        &mut self,
        lease_ms: u64,
        drain_secs: u64,
        queues: &[&str],
    ) -> usize {
        let config = crust_worker::Config {
            db: self.db_config(),
            amqp: self.amqp_config(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            concurrency: 8,
            queues: queues.iter().map(|queue| (*queue).to_owned()).collect(),
            lease_ms,
            drain_secs,
            name: Some(format!("test-worker-{}", self.workers.len())),
            http_allow: crust_worker::tasks::egress::Egress::parse(self.http_allow).unwrap(),
            http_timeout: Duration::from_secs(30),
            limits: self.limits.clone(),
            secrets: crust_store::secrets::SecretsConfig {
                secrets_key: Some(crust_testing::SECRETS_KEY.into()),
                secrets_previous_key: None,
            },
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.worker_health.push(listener.local_addr().unwrap());
        let stop = CancellationToken::new();
        let handle = tokio::spawn(run_worker(config, listener, stop.clone()));
        self.workers.push((stop, handle));
        self.workers.len() - 1
    }

    /// Shuts a worker down as SIGTERM would, and waits until it has exited.
    pub async fn stop_worker(&mut self, index: usize) {
        let (stop, handle) = &mut self.workers[index];
        stop.cancel();
        tokio::time::timeout(DEADLINE, handle)
            .await
            .expect("worker exits")
            .unwrap();
    }

    /// Starts the real `crust-worker` binary; its log lines arrive on the
    /// returned channel. Its AMQP heartbeat is 1 s, so the broker notices
    /// quickly when the process stops answering.
    pub fn spawn_worker_process(
        &self,
        name: &str,
        lease_ms: u64,
    ) -> (tokio::process::Child, mpsc::UnboundedReceiver<String>) {
        spawn_process(
            std::path::Path::new(env!("CARGO_BIN_EXE_crust-worker")),
            &[
                ("DATABASE_URL", self.db.url.clone()),
                ("AMQP_URL", format!("{}?heartbeat=1", self.amqp_url)),
                ("CRUST_QUEUE_PREFIX", self.db.name.clone()),
                ("CRUST_WORKER_LEASE_MS", lease_ms.to_string()),
                ("CRUST_WORKER_NAME", name.to_owned()),
                ("CRUST_HTTP_ADDR", "127.0.0.1:0".to_owned()),
                ("CRUST_HTTP_ALLOW", self.http_allow.to_owned()),
                ("CRUST_SECRETS_KEY", crust_testing::SECRETS_KEY.to_owned()),
                ("CRUST_LOG_FORMAT", "text".to_owned()),
                ("RUST_LOG", "info".to_owned()),
            ],
        )
    }

    /// Sends a request with the (admin) token; returns status and JSON body.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// A token for `user` granting `roles`.
    pub fn token_for(&self, user: Id, roles: &[&str]) -> String {
        TokenKey::new(SECRET)
            .unwrap()
            .sign(user, roles, chrono::Utc::now().timestamp(), 3600)
    }

    /// Sends a request with `token`; returns status and JSON body.
    pub async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status();
        let bytes = response.bytes().await.unwrap_or_default();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Starts a GET whose body the test reads as it arrives (a stream).
    pub async fn open(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.expect("request sent")
    }

    /// Creates a workflow and returns its ID.
    pub async fn workflow(&self, definition: Value) -> String {
        let (status, body) = self
            .call(reqwest::Method::POST, "/workflow/", Some(definition))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["response"]["workflowID"].as_str().unwrap().to_owned()
    }

    /// Creates a job and returns its ID.
    pub async fn job(&self, workflow: &str, extra: Value) -> String {
        let mut body = json!({"workflowID": workflow});
        if let (Some(target), Value::Object(extra)) = (body.as_object_mut(), extra) {
            target.extend(extra);
        }
        let (status, body) = self.call(reqwest::Method::POST, "/job/", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["response"]["jobID"].as_str().unwrap().to_owned()
    }

    /// The job as the API shows it.
    pub async fn get_job(&self, id: &str) -> Value {
        let (status, body) = self
            .call(reqwest::Method::GET, &format!("/job/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["response"].clone()
    }

    /// Polls the job until `done` holds for it, or fails at the deadline.
    pub async fn wait_for(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let job = self.get_job(id).await;
            if done(&job) {
                return job;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "job {id} never became {what}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the job has this status.
    pub async fn wait_status(&self, id: &str, status: &str) -> Value {
        self.wait_for(id, status, |job| job["status"] == status)
            .await
    }

    /// Every log entry of a job.
    pub async fn logs(&self, id: &str) -> Vec<Value> {
        let (_, body) = self
            .call(
                reqwest::Method::GET,
                &format!("/job/{id}/logs?perPage=1000"),
                None,
            )
            .await;
        body["response"]["logs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.api.cancel();
        for stop in &self.schedulers {
            stop.cancel();
        }
        for (stop, handle) in &self.workers {
            stop.cancel();
            handle.abort();
        }
    }
}

/// The status code of a health endpoint.
pub async fn probe(addr: std::net::SocketAddr, path: &str) -> u16 {
    match reqwest::get(format!("http://{addr}{path}")).await {
        Ok(response) => response.status().as_u16(),
        Err(_) => 0,
    }
}

/// Polls until `check` holds, or fails at the deadline saying `what`.
pub async fn eventually<F, Fut>(what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs a worker; a failure panics the test.
async fn run_worker(
    config: crust_worker::Config,
    listener: tokio::net::TcpListener,
    stop: CancellationToken,
) {
    if let Err(err) = crust_worker::run(config, listener, stop).await {
        panic!("worker failed: {err:#}");
    }
}

/// Messages ready in a queue right now.
pub async fn ready_messages(amqp_url: &str, queue: &str) -> u32 {
    let connection = crust_queue::connect(amqp_url).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let declared = channel
        .queue_declare(
            queue,
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done").await;
    declared.message_count()
}

/// Starts a real binary with `env`; its stderr lines arrive on the
/// returned channel.
pub fn spawn_process(
    binary: &std::path::Path,
    env: &[(&str, String)],
) -> (tokio::process::Child, mpsc::UnboundedReceiver<String>) {
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|err| panic!("{} starts: {err}", binary.display()));
    let (lines, receiver) = mpsc::unbounded_channel();
    let stderr = child.stderr.take().expect("stderr is piped");
    tokio::spawn(async move {
        let mut reader = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let _ = lines.send(line);
        }
    });
    (child, receiver)
}
