//! The Crust worker as a library: `run` consumes jobs from RabbitMQ, claims
//! them in Postgres, runs their workflows and writes their logs and outcome,
//! until the shutdown token fires; then it drains. The binary and the tests
//! start it the same way.
//!
//! Where things are: [`config`] (the settings), `consume` (the RabbitMQ
//! consumer: deliveries claimed in batches, cancel broadcasts), `claimed`
//! (one claimed job from start to acknowledgement), [`runner`] (a workflow's
//! tasks in order, with timeouts and retries), `lease` (the heartbeat that
//! renews leases), `drain` (graceful shutdown), [`writer`] and [`logs`] (job
//! logs and outcomes to Postgres), [`tasks`] (the task kinds). This file
//! only wires them together.

mod claimed;
pub mod config;
mod consume;
mod drain;
pub mod graph;
mod lease;
pub mod logs;
pub mod runner;
pub mod secrets;
pub mod step_writer;
pub mod storable;
pub mod tasks;
pub mod writer;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crust_queue::Names;
use crust_store::config::DbConfig;
use crust_store::jobs::follow::NOTIFY_AFTER;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::config::{Config, Limits};
use crate::runner::Runs;
use crate::tasks::egress::HttpClient;
use crate::tasks::TaskEnv;
use crate::writer::Writer;

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
    config.validate()?;
    let pool = config.db.pool_by_key_with(&[NOTIFY_AFTER])?;
    let log_pool = log_pool(&config.db)?;
    let (writer, writer_task) = Writer::start(pool.clone(), log_pool);
    let http = HttpClient::new(config.http_allow.clone(), config.http_timeout)
        .context("cannot build the HTTP client")?;
    let worker = Arc::new(Worker {
        name: config.name(),
        names: Names::new(&config.amqp.queue_prefix),
        env: TaskEnv {
            steps: crate::step_writer::StepWriter::start(pool.clone()),
            secrets: Arc::new(crate::secrets::Secrets::new(
                pool.clone(),
                config.secrets.keyring()?,
            )),
            pool,
            http,
            max_output_bytes: config.limits.max_output_bytes,
            durable_sleep: Duration::from_secs(config.limits.durable_sleep_secs),
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
    let beats = tokio::spawn(lease::heartbeats(worker.clone(), beats_stop.clone()));

    consume::consume_until(worker.clone(), shutdown).await;
    // Runs started on a connection that failed are still going; give them
    // the same grace.
    drain::drain(&worker).await;

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
    let mut config = tokio_postgres::Config::from_str(&db.database_url)
        .context("DATABASE_URL is not a valid Postgres URL")?;
    // As on the worker's other pool (`DbConfig::pool_by_key_with`).
    let options: Vec<String> = crust_store::config::BY_KEY
        .iter()
        .chain([&NOTIFY_AFTER])
        .map(|(name, value)| format!("-c {name}={value}"))
        .collect();
    config.options(options.join(" "));
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
