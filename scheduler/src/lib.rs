//! The Crust scheduler as a library: the only process that acts on time.
//! It releases delayed jobs at their `startAt`, publishes jobs the api could
//! not, requeues jobs whose worker died, fires cron schedules and prunes old
//! jobs. It sleeps until the next thing is due (read from Postgres, on
//! Postgres's clock) and is woken early by a notification when a nearer job
//! is created. Several replicas are safe together: every pass claims rows
//! with `FOR UPDATE SKIP LOCKED`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crust_model::config::ConfigError;
use crust_model::job::JobStatus;
use crust_queue::{AmqpConfig, Outgoing, Publisher};
use crust_store::config::DbConfig;
use crust_store::jobs::{self, retention, RELEASE_CHANNEL};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What `crust-scheduler` needs. Every numeric setting carries its allowed
/// range, so a value out of it stops the process at start with one line
/// naming the variable; [`Config::validate`] checks what clap cannot.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub amqp: AmqpConfig,

    /// Address of the health endpoints (`/healthz`, `/readyz`).
    #[arg(long, env = "CRUST_HTTP_ADDR", default_value = "127.0.0.1:0")]
    pub http_addr: std::net::SocketAddr,

    /// Runs a job may lose to dead workers before it ends `error` (1 to 1000).
    #[arg(long, env = "CRUST_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub max_attempts: i32,

    /// How long finished jobs and their logs are kept (e.g. 7d, 12h; at most
    /// 3650d).
    #[arg(long, env = "CRUST_JOB_RETENTION", default_value = "7d", value_parser = parse_retention)]
    pub retention: Duration,

    /// Job IDs per partition of job logs and steps (100 to 1e9): retention
    /// drops a whole range once all its jobs are past `retention`.
    #[arg(long, env = "CRUST_JOB_PARTITION_SPAN", default_value_t = 100_000,
          value_parser = clap::value_parser!(i64).range(100..=1_000_000_000))]
    pub partition_span: i64,
}

/// Longest retention: ten years (Postgres's intervals would overflow long
/// before `u64` seconds do, failing every prune).
const MAX_RETENTION_SECS: i64 = 3650 * 86_400;

fn parse_retention(text: &str) -> Result<Duration, String> {
    let seconds = crust_model::auth::parse_ttl(text)?;
    if seconds > MAX_RETENTION_SECS {
        return Err(format!("{:?} is longer than 3650d", text.trim()));
    }
    Ok(Duration::from_secs(seconds.unsigned_abs()))
}

impl Config {
    /// Checks what the ranges on each setting cannot: that the URLs parse.
    /// The scheduler has no rule across settings.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.db.connect_options()?;
        self.amqp.validate()
    }
}

/// Longest sleep between passes, so housekeeping runs, a missed
/// notification costs at most this much and lost hints are looked for
/// often enough ([`check_queues`]).
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How often the queues are counted (metrics) and checked for lost hints:
/// a lost hint is published again within about `HINT_GRACE` plus this.
const QUEUE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// Jobs released per transaction.
const RELEASE_BATCH: i64 = 500;
/// How often partitions are made ahead and old jobs pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// Ranges of job IDs kept ready past the newest job: at 5 000 jobs/s and
/// the default span, a minute of jobs between two passes.
const PARTITIONS_AHEAD: i64 = 3;

/// Schedules until `shutdown` is cancelled.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.validate()?;
    let pool = config.db.pool_by_key()?;
    let publisher = Arc::new(Publisher::new(&config.amqp));
    tracing::info!(addr = %listener.local_addr()?, "crust-scheduler started");
    let health = tokio::spawn(crust_runtime::health::serve(
        listener,
        ready_check(pool.clone(), publisher.clone()),
        shutdown.clone(),
    ));
    let wake = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(listen(pool.clone(), wake.clone(), shutdown.clone()));

    let mut backoff = Duration::from_millis(100);
    let mut last_prune: Option<Instant> = None;
    let mut last_queue_check: Option<Instant> = None;
    while !shutdown.is_cancelled() {
        let pause = match pass(
            &config,
            &pool,
            &publisher,
            &mut last_prune,
            &mut last_queue_check,
        )
        .await
        {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                match jobs::schedule::next_wake(&pool).await {
                    Ok((Some(next), now)) => {
                        (next - now).to_std().unwrap_or_default().min(MAX_SLEEP)
                    }
                    Ok((None, _)) => MAX_SLEEP,
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot read the next wake-up");
                        MAX_SLEEP
                    }
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?backoff, "scheduler pass failed");
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_SLEEP);
                pause
            }
        };
        if pause.is_zero() {
            continue;
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = wake.notified() => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
    let _ = health.await;
    publisher.close().await;
    tracing::info!("crust-scheduler stopped");
    Ok(())
}

fn ready_check(pool: PgPool, publisher: Arc<Publisher>) -> crust_runtime::health::ReadyCheck {
    Arc::new(move || {
        let (pool, publisher) = (pool.clone(), publisher.clone());
        Box::pin(async move {
            let postgres = crust_store::ping(&pool).await;
            crust_runtime::metrics::metrics()
                .db_up
                .set(i64::from(postgres.is_ok()));
            crust_runtime::metrics::observe_pool(&pool);
            postgres.map_err(|err| format!("postgres: {err}"))?;
            publisher
                .check()
                .await
                .map_err(|err| format!("rabbitmq: {err}"))
        })
    })
}

/// Wakes the main loop on every notification; reconnects by itself.
async fn listen(pool: PgPool, wake: Arc<tokio::sync::Notify>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let listener = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(RELEASE_CHANNEL).await?;
            // Anything created while we were not listening is found by the
            // pass this triggers.
            wake.notify_one();
            loop {
                listener.recv().await?;
                wake.notify_one();
            }
        };
        let result: Result<(), sqlx::Error> = tokio::select! {
            () = shutdown.cancelled() => return,
            result = listener => result,
        };
        if let Err(err) = result {
            tracing::warn!(error = %err, "notification listener lost; reconnecting");
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

/// One round of everything that is due.
async fn pass(
    config: &Config,
    pool: &PgPool,
    publisher: &Publisher,
    last_prune: &mut Option<Instant>,
    last_queue_check: &mut Option<Instant>,
) -> anyhow::Result<()> {
    let fired = jobs::schedule::fire_schedules(pool, |workflow, slot| {
        // The slot's trace starts here, in the scheduler, as a request's
        // does in the api: the job's first run continues it.
        let span = tracing::info_span!("cron", workflow.id = %workflow, slot = %slot.to_rfc3339());
        span.in_scope(crust_runtime::telemetry::current_traceparent)
    })
    .await?;
    crust_runtime::metrics::metrics().jobs_created.inc_by(fired);
    if fired > 0 {
        tracing::info!(jobs = fired, "cron slots fired");
    }
    let rescued_runs = jobs::schedule::rescue_expired(pool, config.max_attempts).await?;
    crust_runtime::metrics::metrics()
        .jobs_rescued
        .inc_by(rescued_runs.len() as u64);
    for rescued in rescued_runs {
        match rescued.status {
            JobStatus::Queued => {
                tracing::warn!(job.id = %rescued.id, attempt = rescued.attempt, "worker lost; job requeued")
            }
            status => tracing::warn!(job.id = %rescued.id, %status, "worker lost; job ended"),
        }
    }
    let woken = jobs::schedule::wake_due(pool).await?;
    if woken > 0 {
        tracing::debug!(jobs = woken, "waiting jobs woken");
    }
    let granted = jobs::schedule::grant_due(pool).await?;
    if granted > 0 {
        tracing::debug!(slots = granted, "concurrency slots granted to delayed jobs");
    }
    release(pool, publisher).await?;
    if last_queue_check.is_none_or(|at| at.elapsed() >= QUEUE_CHECK_EVERY) {
        *last_queue_check = Some(Instant::now());
        check_queues(pool, publisher).await?;
    }
    if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
        *last_prune = Some(Instant::now());
        let span = config.partition_span;
        let created = retention::ensure_partitions(pool, span, PARTITIONS_AHEAD).await?;
        if created > 0 {
            tracing::info!(ranges = created, span, "job log partitions created");
        }
        let dropped = retention::drop_expired(pool, config.retention, 10).await?;
        if dropped.dropped > 0 || dropped.jobs > 0 {
            tracing::info!(
                ranges = dropped.dropped,
                jobs = dropped.jobs,
                "old job partitions dropped"
            );
        }
        let pruned = retention::prune(pool, config.retention, 1_000).await?;
        if pruned > 0 {
            tracing::info!(jobs = pruned, "old jobs pruned");
        }
    }
    Ok(())
}

/// Per named queue: reads the broker's ready hints and consumers, then
/// Postgres's counts (in that order, see [`missing_hints`]), exports them
/// as the `crust_queue_*` metrics (the scheduler is the one process that
/// always runs) and publishes again the hints the broker lacks.
async fn check_queues(pool: &PgPool, publisher: &Publisher) -> anyhow::Result<()> {
    let metrics = crust_runtime::metrics::metrics();
    // Which queues to ask the broker about: those Postgres knew last time
    // plus `default`; a queue new since is asked about next round.
    let known = crust_store::queues::counts(pool).await?;
    let names: Vec<String> = known.iter().map(|queue| queue.name.clone()).collect();
    let broker = match publisher.queue_stats(&names).await {
        Ok(stats) => {
            metrics.amqp_connected.set(1);
            Some(stats)
        }
        Err(err) => {
            metrics.amqp_connected.set(0);
            tracing::debug!(error = %err, "cannot read the queues from the broker");
            None
        }
    };
    // Counted after the broker answered: a hint consumed in between makes
    // the broker's number look high (a lost hint is found next round),
    // never Postgres's (which would republish a hint that was not lost).
    let counts = crust_store::queues::counts(pool).await?;
    for queue in &counts {
        let label = [queue.name.as_str()];
        metrics
            .queue_ready
            .with_label_values(&label)
            .set(queue.ready);
        metrics
            .queue_running
            .with_label_values(&label)
            .set(queue.running);
        metrics
            .queue_waiting
            .with_label_values(&label)
            .set(queue.waiting);
        metrics
            .queue_delayed
            .with_label_values(&label)
            .set(queue.delayed);
        metrics
            .queue_oldest_ready_age
            .with_label_values(&label)
            .set(queue.oldest_ready_age_seconds.unwrap_or(0.0));
    }
    let Some(broker) = broker else {
        return Ok(());
    };
    for (name, stats) in names.iter().zip(broker) {
        let label = [name.as_str()];
        if let Some(stats) = stats {
            metrics
                .queue_messages
                .with_label_values(&label)
                .set(i64::from(stats.ready));
            metrics
                .queue_consumers
                .with_label_values(&label)
                .set(i64::from(stats.consumers));
        }
        let hinted = counts
            .iter()
            .find(|queue| &queue.name == name)
            .map_or(0, |queue| queue.hinted);
        let missing = missing_hints(hinted, stats.map_or(0, |stats| stats.ready));
        if missing > 0 {
            let sent = rehint(pool, publisher, name, missing).await?;
            if sent > 0 {
                metrics
                    .queue_hints_republished
                    .with_label_values(&label)
                    .inc_by(sent as u64);
                tracing::info!(queue = %name, jobs = sent, "lost hints published again");
            }
        }
    }
    Ok(())
}

/// How many hints of a queue are missing: every queued job published more
/// than `HINT_GRACE` ago (`hinted`, from Postgres) should still have its
/// hint waiting in the broker (`ready`), because a delivered hint is
/// claimed within milliseconds, and a claimed job is no longer queued. So
/// when the broker holds fewer, at least the difference were lost (a broker
/// restart dropped the transient hints, a message was dropped). A long,
/// healthy backlog has as many hints as jobs and gets no duplicates; a
/// duplicate from a false alarm is dropped by the worker's claim.
fn missing_hints(hinted: i64, ready: u32) -> i64 {
    (hinted - i64::from(ready)).max(0)
}

/// Publishes `count` hints again, for the jobs of `queue` published
/// longest ago, and restarts their grace (in the transaction that locked
/// them, as [`release`] does), [`RELEASE_BATCH`] at a time. Returns how
/// many were sent. After a broker outage every job created meanwhile is
/// here (the api stores a job as published when it creates it).
async fn rehint(
    pool: &PgPool,
    publisher: &Publisher,
    queue: &str,
    count: i64,
) -> anyhow::Result<usize> {
    let mut sent = 0;
    while (sent as i64) < count {
        let mut tx = pool.begin().await?;
        let want = (count - sent as i64).min(RELEASE_BATCH);
        let due = jobs::schedule::lock_unhinted(&mut tx, queue, want).await?;
        if due.is_empty() {
            break;
        }
        let published = publish_locked(tx, publisher, &due).await?;
        sent += published;
        if (published as i64) < want {
            break;
        }
    }
    Ok(sent)
}

/// Publishes every job whose release time has come, inside the transaction
/// that locks them, and marks them published only after the broker
/// confirmed: a crash in between yields a duplicate message, never a lost
/// job.
async fn release(pool: &PgPool, publisher: &Publisher) -> anyhow::Result<()> {
    loop {
        let mut tx = pool.begin().await?;
        let due = jobs::schedule::lock_releasable(&mut tx, RELEASE_BATCH).await?;
        if due.is_empty() {
            return Ok(());
        }
        let published = publish_locked(tx, publisher, &due).await?;
        tracing::debug!(jobs = published, "jobs released");
        if (published as i64) < RELEASE_BATCH {
            return Ok(());
        }
    }
}

/// Publishes the jobs `tx` locked, then marks them published in it and
/// commits: a crash in between yields a duplicate message, never a lost
/// job. Returns how many were published.
async fn publish_locked(
    mut tx: sqlx::Transaction<'_, sqlx::Postgres>,
    publisher: &Publisher,
    due: &[jobs::schedule::ToPublish],
) -> anyhow::Result<usize> {
    let batch: Vec<Outgoing> = due
        .iter()
        .map(|job| Outgoing::run(job.id, job.queue.clone(), job.trace_parent.clone()))
        .collect();
    publisher.publish(&batch).await?;
    let ids: Vec<_> = due.iter().map(|job| job.id).collect();
    jobs::schedule::mark_released(&mut tx, &ids).await?;
    tx.commit().await?;
    Ok(ids.len())
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
    fn numbers_out_of_range_are_refused_naming_their_variable() {
        let cli: Cli = crust_model::config::parse_from([
            "crust-scheduler",
            "--max-attempts=1",
            "--retention=3650d",
        ])
        .unwrap();
        assert_eq!(cli.config.max_attempts, 1);
        assert_eq!(cli.config.retention, Duration::from_secs(3650 * 86_400));
        cli.config.validate().unwrap();
        for (flag, env) in [
            ("--max-attempts=0", "CRUST_MAX_ATTEMPTS"),
            ("--max-attempts=-1", "CRUST_MAX_ATTEMPTS"),
            ("--max-attempts=1001", "CRUST_MAX_ATTEMPTS"),
            ("--retention=0d", "CRUST_JOB_RETENTION"),
            ("--retention=3651d", "CRUST_JOB_RETENTION"),
            ("--db-pool-size=0", "CRUST_DB_POOL_SIZE"),
            ("--db-pool-size=1001", "CRUST_DB_POOL_SIZE"),
        ] {
            let err = crust_model::config::parse_from::<Cli, _, _>(["crust-scheduler", flag])
                .err()
                .unwrap_or_else(|| panic!("{flag} was accepted"));
            let message = err.to_string();
            assert!(message.starts_with(&format!("{env}: ")), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }
}
