//! The Crust worker as a library: `run` consumes jobs from RabbitMQ, claims
//! them in Postgres, runs their workflows and writes their logs and outcome,
//! until the shutdown token fires; then it drains. The binary and the tests
//! start it the same way.

pub mod logs;
pub mod runner;
pub mod storable;
pub mod tasks;
pub mod writer;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crust_model::job::JobStatus;
use crust_model::Id;
use crust_queue::{self as queue, AmqpConfig, Message, Names};
use crust_store::config::DbConfig;
use crust_store::jobs;
use crust_store::jobs::run::{Claimed, Outcome, Unreadable};
use futures_util::{FutureExt, StreamExt};
use lapin::acker::Acker;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicRejectOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::logs::JobLogger;
use crate::runner::{Ending, Runs, StopReason};
use crate::tasks::egress::{Egress, HttpClient};
use crate::tasks::TaskEnv;
use crate::writer::Writer;

/// What `crust-worker` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub amqp: AmqpConfig,

    /// Address of the health endpoints (`/healthz`, `/readyz`).
    #[arg(long, env = "CRUST_HTTP_ADDR", default_value = "127.0.0.1:0")]
    pub http_addr: std::net::SocketAddr,

    /// Jobs this process runs at once (and its RabbitMQ prefetch).
    #[arg(long, env = "CRUST_WORKER_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,

    /// Lease of a claimed job in milliseconds; renewed four times per lease.
    /// A dead worker's jobs run again once their lease expires.
    #[arg(long, env = "CRUST_WORKER_LEASE_MS", default_value_t = 5_000)]
    pub lease_ms: u64,

    /// Seconds running jobs get to finish after SIGTERM before they are
    /// handed back to the queue.
    #[arg(long, env = "CRUST_WORKER_DRAIN_SECS", default_value_t = 20)]
    pub drain_secs: u64,

    /// This worker's name in job rows (default: host name and process id).
    #[arg(long, env = "CRUST_WORKER_NAME")]
    pub name: Option<String>,

    /// Internal targets the `http` task may reach anyway: comma-separated
    /// CIDR blocks, addresses and host names (e.g. `10.0.0.0/8,billing.internal`).
    /// Loopback, private, link-local, multicast and unspecified addresses are
    /// refused unless listed here.
    #[arg(long, env = "CRUST_HTTP_ALLOW", default_value = "", value_parser = Egress::parse)]
    pub http_allow: Egress,

    /// How long an `http` task's request may take, body included, when the
    /// task sets no `timeout` (`30s`, `2m`).
    #[arg(long, env = "CRUST_HTTP_TIMEOUT", default_value = "30s",
          value_parser = crust_model::config::parse_duration)]
    pub http_timeout: Duration,

    #[command(flatten)]
    pub limits: Limits,
}

/// What one job may cost the worker.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Largest output of a task, in bytes of its JSON (also the most a
    /// task's rendered params may take and the largest `http` body read).
    #[arg(long, env = "CRUST_WORKER_MAX_OUTPUT_BYTES", default_value_t = tasks::DEFAULT_MAX_OUTPUT_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=(256 << 20)))]
    pub max_output_bytes: usize,

    /// Most log lines one run of a job writes; then one "log truncated" line.
    #[arg(long, env = "CRUST_JOB_LOG_MAX_LINES", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub job_log_max_lines: u64,

    /// Most bytes of log (messages and data) one run of a job writes.
    #[arg(long, env = "CRUST_JOB_LOG_MAX_BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub job_log_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let logs = logs::LogLimits::default();
        Limits {
            max_output_bytes: tasks::DEFAULT_MAX_OUTPUT_BYTES,
            job_log_max_lines: logs.max_lines,
            job_log_max_bytes: logs.max_bytes,
        }
    }
}

impl Worker {
    /// A logger for one run, with the per-job caps.
    fn logger(&self, id: Id, attempt: i32) -> JobLogger {
        let limits = logs::LogLimits {
            max_lines: self.config.limits.job_log_max_lines,
            max_bytes: self.config.limits.job_log_max_bytes,
        };
        JobLogger::new(id, attempt, self.writer.sink.clone(), limits)
    }
}

impl Config {
    fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms.max(100))
    }

    fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

/// What the worker's tasks share.
struct Worker {
    config: Config,
    name: String,
    names: Names,
    env: TaskEnv,
    runs: Runs,
    writer: Writer,
    consuming: AtomicBool,
}

/// Consumes and runs jobs until `shutdown`, then drains: no new jobs, the
/// running ones get `drain_secs` to finish, the rest are handed back.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = config.db.pool()?;
    config.amqp.validate()?;
    let log_pool = log_pool(&config.db)?;
    let (writer, writer_task) = Writer::start(pool.clone(), log_pool);
    let http = HttpClient::new(config.http_allow.clone(), config.http_timeout)
        .context("cannot build the HTTP client")?;
    let worker = Arc::new(Worker {
        name: config.name(),
        names: Names::new(&config.amqp.queue_prefix),
        env: TaskEnv {
            pool,
            http,
            max_output_bytes: config.limits.max_output_bytes,
        },
        runs: Runs::default(),
        writer,
        consuming: AtomicBool::new(false),
        config,
    });
    tracing::info!(worker = %worker.name, addr = %listener.local_addr()?, "crust-worker started");

    let health_stop = CancellationToken::new();
    let health = tokio::spawn(crust_runtime::health::serve(
        listener,
        ready_check(worker.clone()),
        health_stop.clone(),
    ));
    let beats_stop = CancellationToken::new();
    let beats = tokio::spawn(heartbeats(worker.clone(), beats_stop.clone()));

    consume_until(worker.clone(), shutdown).await;
    drain(&worker).await;

    beats_stop.cancel();
    let _ = beats.await;
    health_stop.cancel();
    let _ = health.await;
    // The writer ends once the last sender is gone, after writing all.
    drop(worker);
    let _ = writer_task.await;
    tracing::info!("crust-worker stopped");
    Ok(())
}

/// The second Postgres client, for job log lines only. Log appends are the
/// worker's hottest writes: many small multi-row inserts of one prepared
/// statement. tokio-postgres through deadpool keeps that statement prepared
/// per connection (`prepare_cached`) and pipelines it, and its own 4
/// connections keep log writes from queueing behind claims, heartbeats and
/// task queries on the sqlx pool (and vice versa).
fn log_pool(db: &DbConfig) -> anyhow::Result<deadpool_postgres::Pool> {
    let config = tokio_postgres::Config::from_str(&db.database_url)
        .context("DATABASE_URL is not a valid Postgres URL")?;
    let manager = deadpool_postgres::Manager::from_config(
        config,
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(4)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("cannot build the log connection pool")
}

fn ready_check(worker: Arc<Worker>) -> crust_runtime::health::ReadyCheck {
    Arc::new(move || {
        let worker = worker.clone();
        Box::pin(async move {
            let postgres = crust_store::ping(&worker.env.pool).await;
            crust_runtime::metrics::metrics()
                .db_up
                .set(i64::from(postgres.is_ok()));
            postgres.map_err(|err| format!("postgres: {err}"))?;
            let consuming = worker.consuming.load(Ordering::Relaxed);
            let metrics = crust_runtime::metrics::metrics();
            metrics.amqp_connected.set(i64::from(consuming));
            crust_runtime::metrics::observe_pool(&worker.env.pool);
            if !consuming {
                return Err("not consuming from RabbitMQ".into());
            }
            Ok(())
        })
    })
}

/// Connects and consumes; on any broker failure reconnects with backoff.
async fn consume_until(worker: Arc<Worker>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&worker, &shutdown).await {
            Ok(()) => break,
            Err(err) => {
                worker.consuming.store(false, Ordering::Relaxed);
                tracing::warn!(error = %err, retry_in = ?backoff, "lost RabbitMQ; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    worker.consuming.store(false, Ordering::Relaxed);
}

/// One connection's life: declare, listen for cancels, consume until
/// shutdown (Ok) or a broker failure (Err). Runs started here keep their
/// deliveries, so they can still be acknowledged after consuming stops.
async fn consume(worker: &Arc<Worker>, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let connection = queue::connect(&worker.config.amqp.amqp_url).await?;
    let channel = connection.create_channel().await?;
    queue::declare(&channel, &worker.names).await?;
    queue::set_prefetch(&channel, worker.config.concurrency.max(1)).await?;
    listen_for_cancels(worker, &connection).await?;
    let tag = consumer_tag(&worker.name);
    let mut consumer = channel
        .basic_consume(
            &worker.names.jobs_queue,
            &tag,
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    worker.consuming.store(true, Ordering::Relaxed);
    tracing::info!(queue = %worker.names.jobs_queue, "consuming");
    loop {
        // Back-pressure: while the writer is behind (Postgres slow or
        // down), take no new jobs; they wait in the broker, not here.
        while worker.writer.is_behind() && !shutdown.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            next = consumer.next() => next,
        };
        let Some(first) = first else {
            anyhow::bail!("the broker closed the consumer");
        };
        let mut batch = vec![first?];
        // Claim everything that has already arrived in one statement.
        while batch.len() < 64 {
            match consumer.next().now_or_never() {
                Some(Some(delivery)) => batch.push(delivery?),
                _ => break,
            }
        }
        claim_and_start(worker, batch).await;
    }
    // Stop new deliveries; the channel stays open for the running jobs'
    // acknowledgements until they are done.
    worker.consuming.store(false, Ordering::Relaxed);
    let _ = channel
        .basic_cancel(&tag, BasicCancelOptions::default())
        .await;
    wait_for_runs(worker, Duration::from_secs(worker.config.drain_secs)).await;
    worker.runs.stop_all(StopReason::HandBack);
    wait_for_runs(worker, Duration::from_secs(10)).await;
    crust_queue::close_connection(connection, "worker shutting down", Duration::from_secs(5)).await;
    Ok(())
}

/// A consumer tag for this worker's next connection: its name and how many
/// connections it has opened (a tag only has to be unique per channel; the
/// name and number make it readable in the broker's consumer list).
fn consumer_tag(name: &str) -> String {
    static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{name}-{n}")
}

/// Binds a private queue to the cancel fanout and stops matching runs.
async fn listen_for_cancels(
    worker: &Arc<Worker>,
    connection: &lapin::Connection,
) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    let private = channel
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            private.name().as_str(),
            &worker.names.cancel_exchange,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut cancels = channel
        .basic_consume(
            private.name().as_str(),
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let worker = worker.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = cancels.next().await {
            if let Ok(Message::CancelJob { job_id }) = Message::from_bytes(&delivery.data) {
                if worker.runs.stop(job_id, StopReason::Cancelled) {
                    tracing::info!(job.id = %job_id, "cancel received");
                }
            }
        }
    });
    Ok(())
}

/// Claims a batch of deliveries and starts the claimed runs; everything
/// else is acknowledged and dropped (a duplicate, a finished or cancelled
/// job, or one not yet due, which goes back to the scheduler).
async fn claim_and_start(worker: &Arc<Worker>, batch: Vec<Delivery>) {
    let mut wanted: Vec<(Id, Delivery)> = Vec::with_capacity(batch.len());
    for delivery in batch {
        match Message::from_bytes(&delivery.data) {
            Ok(Message::RunJob { job_id }) => wanted.push((job_id, delivery)),
            Ok(other) => {
                tracing::warn!(?other, "unexpected message on the jobs queue; dropped");
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "malformed message; dead-lettered");
                let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            }
        }
    }
    if wanted.is_empty() {
        return;
    }
    let ids: Vec<Id> = wanted.iter().map(|(id, _)| *id).collect();
    let claimed =
        match jobs::run::claim(&worker.env.pool, &ids, &worker.name, worker.config.lease()).await {
            Ok(claimed) => claimed,
            Err(err) => {
                // Postgres is down: give the messages back after a pause so they
                // do not spin through the queue.
                tracing::warn!(error = %err, "cannot claim jobs; requeueing");
                tokio::time::sleep(Duration::from_secs(1)).await;
                for (_, delivery) in wanted {
                    let _ = delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await;
                }
                return;
            }
        };
    let mut started = HashSet::new();
    for (id, delivery) in wanted {
        if !started.insert(id) {
            tracing::debug!(job.id = %id, "duplicate message; dropped");
            let _ = delivery.ack(BasicAckOptions::default()).await;
            continue;
        }
        if let Some(job) = claimed.runs.iter().find(|job| job.id == id) {
            let span = job_span(job.attempt, job.id, job.trace_parent.as_deref());
            tokio::spawn(run_claimed(worker.clone(), job.clone(), delivery.acker).instrument(span));
            continue;
        }
        match claimed.unreadable.iter().find(|job| job.id == id) {
            Some(job) => {
                let span = job_span(job.attempt, job.id, job.trace_parent.as_deref());
                tokio::spawn(
                    end_unreadable(worker.clone(), job.clone(), delivery.acker).instrument(span),
                );
            }
            None => {
                tracing::debug!(job.id = %id, "not claimable; message dropped");
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        }
    }
}

/// The span of one run. The first run continues the trace of the request
/// (or schedule) that created the job; a later run, after a lost worker,
/// starts a new trace linked to that origin.
fn job_span(attempt: i32, id: Id, trace_parent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!("job", job.id = %id, attempt = attempt);
    if let Some(origin) = trace_parent {
        if attempt == 1 {
            crust_runtime::telemetry::set_parent(&span, origin);
        } else {
            crust_runtime::telemetry::add_link(&span, origin);
        }
    }
    span
}

/// Ends a claimed job that cannot be read: one log line with the reason,
/// then `error` with it, like any failed run (fenced on the attempt).
async fn end_unreadable(worker: Arc<Worker>, job: Unreadable, acker: Acker) {
    let metrics = crust_runtime::metrics::metrics();
    metrics.jobs_started.inc();
    tracing::warn!(job.id = %job.id, reason = %job.reason, "claimed job cannot be read; ended");
    let logger = worker.logger(job.id, job.attempt);
    logger
        .log(
            "error",
            None,
            format!("job cannot run: {}", job.reason),
            None,
        )
        .await;
    let outcome = Outcome {
        id: job.id,
        attempt: job.attempt,
        status: JobStatus::Error,
        error: Some(job.reason),
    };
    if worker.writer.finish(outcome).await {
        metrics.jobs_finished.with_label_values(&["error"]).inc();
    }
    let _ = acker.ack(BasicAckOptions::default()).await;
}

/// Runs a claimed job, writes its ending, and only then acknowledges.
async fn run_claimed(worker: Arc<Worker>, job: Claimed, acker: Acker) {
    let metrics = crust_runtime::metrics::metrics();
    metrics.jobs_started.inc();
    match job.late {
        Some(late) => metrics.job_start_lateness.observe(late.max(0.0)),
        None => metrics.job_start_latency.observe(job.waited.max(0.0)),
    }
    metrics.running_jobs.inc();
    let started = std::time::Instant::now();
    let stop = worker.runs.insert(job.id, job.attempt);
    let logger = worker.logger(job.id, job.attempt);
    let ending = runner::run(&worker.env, &job, &logger, &stop).await;
    match ending {
        Ending::Finish(status, error) => {
            let outcome = Outcome {
                id: job.id,
                attempt: job.attempt,
                status,
                error,
            };
            let status_label = outcome.status.as_str();
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &outcome.error {
                Some(error) => {
                    tracing::warn!(status = status_label, error = %error, elapsed_ms, "job finished")
                }
                None => tracing::debug!(status = status_label, elapsed_ms, "job finished"),
            }
            if worker.writer.finish(outcome).await {
                metrics
                    .jobs_finished
                    .with_label_values(&[status_label])
                    .inc();
                metrics
                    .job_run_seconds
                    .observe(started.elapsed().as_secs_f64());
            } else {
                tracing::warn!(job.id = %job.id, "run lost its claim; outcome not written");
            }
            let _ = acker.ack(BasicAckOptions::default()).await;
        }
        Ending::Lost => {
            tracing::warn!(job.id = %job.id, "run lost its claim; stopped");
            let _ = acker.ack(BasicAckOptions::default()).await;
        }
        Ending::HandBack => {
            match jobs::run::hand_back(&worker.env.pool, job.id, job.attempt).await {
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(job.id = %job.id, error = %err, "cannot hand job back; its lease will expire")
                }
            }
            let _ = acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
        }
    }
    worker.runs.remove(job.id);
    metrics.running_jobs.dec();
}

/// Renews leases four times per lease; stops runs that lost their claim or
/// were cancelled (the fallback when the cancel broadcast is missed).
async fn heartbeats(worker: Arc<Worker>, stop: CancellationToken) {
    let every = worker.config.lease() / 4;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let runs = worker.runs.snapshot();
        if runs.is_empty() {
            continue;
        }
        match jobs::run::heartbeat(&worker.env.pool, &runs, worker.config.lease()).await {
            Ok(held) => {
                for (id, _) in &runs {
                    match held.iter().find(|h| h.id == *id) {
                        None => {
                            worker.runs.stop(*id, StopReason::Lost);
                        }
                        Some(h) if h.cancel_requested => {
                            worker.runs.stop(*id, StopReason::Cancelled);
                        }
                        Some(_) => {}
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
        }
    }
}

async fn wait_for_runs(worker: &Worker, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !worker.runs.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn drain(worker: &Worker) {
    // Runs started on a connection that failed are still going; give them
    // the same grace.
    wait_for_runs(worker, Duration::from_secs(worker.config.drain_secs)).await;
    worker.runs.stop_all(StopReason::HandBack);
    wait_for_runs(worker, Duration::from_secs(10)).await;
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn the_http_policy_settings_are_read_and_checked_at_start() {
        let cli = Cli::try_parse_from([
            "crust-worker",
            "--http-allow",
            "10.0.0.0/8,billing.internal",
            "--http-timeout",
            "2m",
        ])
        .unwrap();
        assert_eq!(
            cli.config.http_allow,
            Egress::parse("10.0.0.0/8, billing.internal").unwrap()
        );
        assert_eq!(cli.config.http_timeout, Duration::from_secs(120));
        for (flag, value) in [
            ("--http-allow", "10.0.0.0/33"),
            ("--http-allow", "127.1"),
            ("--http-timeout", "0s"),
            ("--http-timeout", "30"),
        ] {
            let err = Cli::try_parse_from(["crust-worker", flag, value])
                .err()
                .unwrap_or_else(|| panic!("{flag} {value} was accepted"));
            assert!(err.to_string().contains(flag), "{err}");
        }
    }
}
