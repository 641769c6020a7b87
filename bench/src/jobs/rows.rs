//! Reading the bench's job rows: the jobs a phase created, waits on their
//! status, intervals between their timestamps (on the database's clock
//! only) and which worker holds which.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use crust_model::Id;
use sqlx::PgPool;

use crate::report::Latency;

/// How often job rows are polled.
pub const DB_POLL: Duration = Duration::from_millis(10);
/// How often [`wait_ok`] looks whether a batch is done.
const FINISH_POLL: Duration = Duration::from_millis(100);

/// The jobs one phase created: one workflow, an ID range.
#[derive(Debug, Clone, Copy)]
pub struct Batch {
    pub workflow_id: Id,
    pub first: Id,
    pub last: Id,
    pub count: usize,
}

impl Batch {
    pub fn of(workflow_id: Id, ids: &[Id]) -> Option<Batch> {
        Some(Batch {
            workflow_id,
            first: *ids.iter().min()?,
            last: *ids.iter().max()?,
            count: ids.len(),
        })
    }
}

/// Where one poll of a wait stands.
pub enum Check<T> {
    Done(T),
    /// Not yet; how things stand, for the timeout message.
    Waiting(String),
}

/// Calls `check` every `every` until it is done; fails after `limit`.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Check<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let state = match check().await? {
            Check::Done(value) => return Ok(value),
            Check::Waiting(state) => state,
        };
        if Instant::now() >= deadline {
            bail!(
                "{what}: not done after {} s ({state})",
                limit.as_secs_f64().round()
            );
        }
        tokio::time::sleep(every).await;
    }
}

/// Job counts of a batch by status, and the last `finished_at` of the ok ones.
type Counts = (i64, i64, i64, i64, Option<DateTime<Utc>>);

async fn counts(db: &PgPool, batch: &Batch) -> anyhow::Result<Counts> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'queued'),
                count(*) FILTER (WHERE status = 'running'),
                count(*) FILTER (WHERE status = 'ok'),
                count(*) FILTER (WHERE status IN ('error', 'cancelled')),
                max(finished_at) FILTER (WHERE status = 'ok')
         FROM jobs WHERE workflow_id = $1 AND id BETWEEN $2 AND $3",
    )
    .bind(batch.workflow_id)
    .bind(batch.first)
    .bind(batch.last)
    .fetch_one(db)
    .await
    .context("cannot read the bench's job rows")
}

/// Fails with the first job of the batch that ended badly.
async fn fail_with_first_bad(db: &PgPool, batch: &Batch, what: &str) -> anyhow::Result<()> {
    let bad: Option<(Id, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, status, error, worker FROM jobs
         WHERE workflow_id = $1 AND id BETWEEN $2 AND $3 AND status IN ('error', 'cancelled')
         ORDER BY id LIMIT 1",
    )
    .bind(batch.workflow_id)
    .bind(batch.first)
    .bind(batch.last)
    .fetch_optional(db)
    .await?;
    match bad {
        Some((id, status, error, worker)) => bail!(
            "{what}: job {id} ended {status} (error: {}, worker: {})",
            error.as_deref().unwrap_or("none"),
            worker.as_deref().unwrap_or("none")
        ),
        None => Ok(()),
    }
}

/// Waits until every job of the batch is ok; returns the last `finished_at`.
pub async fn wait_ok(
    db: &PgPool,
    batch: &Batch,
    limit: Duration,
    what: &str,
) -> anyhow::Result<DateTime<Utc>> {
    let what = format!(
        "waiting for the {what} jobs of workflow {} to finish",
        batch.workflow_id
    );
    let what = what.as_str();
    // The end is read from the rows (`finished_at`), so polling slower
    // changes no figure; it only keeps the bench's own reads from taking
    // Postgres's CPU away from the system it measures. Until nothing is
    // left active, only the active jobs are counted (a partial index).
    poll_until(what, limit, FINISH_POLL, || async move {
        let active: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs
             WHERE workflow_id = $1 AND id BETWEEN $2 AND $3 AND status IN ('queued', 'running')",
        )
        .bind(batch.workflow_id)
        .bind(batch.first)
        .bind(batch.last)
        .fetch_one(db)
        .await
        .context("cannot count the bench's active jobs")?;
        if active > 0 {
            return Ok(Check::Waiting(format!(
                "{active} of {} queued or running",
                batch.count
            )));
        }
        let (queued, running, ok, bad, last) = counts(db, batch).await?;
        if bad > 0 {
            fail_with_first_bad(db, batch, what).await?;
        }
        match last {
            Some(last) if ok as usize >= batch.count => Ok(Check::Done(last)),
            _ => Ok(Check::Waiting(format!(
                "{ok} of {} ok, {running} running, {queued} queued",
                batch.count
            ))),
        }
    })
    .await
}

/// Waits until every job of the batch is running.
pub async fn wait_running(db: &PgPool, batch: &Batch, limit: Duration) -> anyhow::Result<()> {
    let what = format!(
        "waiting for the {} sleeping jobs of workflow {} to run",
        batch.count, batch.workflow_id
    );
    let what = what.as_str();
    poll_until(what, limit, DB_POLL, || async move {
        let (queued, running, ok, bad, _) = counts(db, batch).await?;
        if bad > 0 || ok > 0 {
            fail_with_first_bad(db, batch, what).await?;
            bail!("{what}: {ok} of them already ended ok");
        }
        if running as usize >= batch.count {
            Ok(Check::Done(()))
        } else {
            Ok(Check::Waiting(format!(
                "{running} running, {queued} queued"
            )))
        }
    })
    .await
}

/// One interval per job of the batch, in seconds, from the job rows:
/// `span` is `later - earlier` over two timestamp columns.
pub async fn job_spans(db: &PgPool, batch: &Batch, span: &str) -> anyhow::Result<Vec<f64>> {
    sqlx::query_scalar(&format!(
        "SELECT extract(epoch from ({span}))::float8 FROM jobs
         WHERE workflow_id = $1 AND id BETWEEN $2 AND $3"
    ))
    .bind(batch.workflow_id)
    .bind(batch.first)
    .bind(batch.last)
    .fetch_all(db)
    .await
    .with_context(|| format!("cannot read {span} of the bench's jobs"))
}

/// How many running jobs of the batch each worker holds.
pub async fn held_by_worker(db: &PgPool, batch: &Batch) -> anyhow::Result<Vec<(String, usize)>> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT worker, count(*) FROM jobs
         WHERE workflow_id = $1 AND id BETWEEN $2 AND $3 AND status = 'running'
         GROUP BY worker",
    )
    .bind(batch.workflow_id)
    .bind(batch.first)
    .bind(batch.last)
    .fetch_all(db)
    .await
    .context("cannot read which worker holds which job")?;
    Ok(rows
        .into_iter()
        .map(|(worker, count)| {
            (
                worker.unwrap_or_default(),
                usize::try_from(count).unwrap_or(0),
            )
        })
        .collect())
}

/// Postgres's `max_connections` and how many connections are open now.
pub async fn connection_use(db: &PgPool) -> anyhow::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT current_setting('max_connections')::int8, (SELECT count(*) FROM pg_stat_activity)",
    )
    .fetch_one(db)
    .await
    .context("cannot read Postgres's connection count")
}

/// The database's clock.
pub async fn db_now(db: &PgPool) -> anyhow::Result<DateTime<Utc>> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(db)
        .await
        .context("cannot read the database clock")
}

pub fn seconds_between(later: DateTime<Utc>, earlier: DateTime<Utc>) -> f64 {
    (later - earlier)
        .num_microseconds()
        .map_or(f64::MAX, |micros| micros as f64 / 1e6)
}

/// Percentiles of intervals given in seconds; negative ones (an early
/// start) count as zero in the percentiles and are counted apart.
pub struct Spread {
    pub count: usize,
    pub latency: Latency,
    /// How many intervals were negative, and the most negative.
    pub early: usize,
    pub most_early: Duration,
}

impl Spread {
    pub fn of(seconds: &[f64]) -> Spread {
        let mut sorted: Vec<Duration> = seconds
            .iter()
            .map(|&s| Duration::from_secs_f64(s.max(0.0)))
            .collect();
        sorted.sort_unstable();
        let most_early = seconds.iter().copied().fold(0.0_f64, f64::min);
        Spread {
            count: sorted.len(),
            latency: Latency::of_sorted(&sorted),
            early: seconds.iter().filter(|&&s| s < 0.0).count(),
            most_early: Duration::from_secs_f64((-most_early).max(0.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spreads_count_early_starts_apart() {
        let spread = Spread::of(&[0.001, 0.002, -0.004, 0.003]);
        assert_eq!(spread.count, 4);
        assert_eq!(spread.early, 1);
        assert_eq!(spread.most_early, Duration::from_millis(4));
        assert_eq!(spread.latency.p50, Duration::from_millis(1));
        assert_eq!(spread.latency.max, Duration::from_millis(3));
    }

    #[test]
    fn batches_span_their_ids() {
        let batch = Batch::of(Id(3), &[Id(12), Id(10), Id(11)]).expect("not empty");
        assert_eq!((batch.first, batch.last, batch.count), (Id(10), Id(12), 3));
        assert!(Batch::of(Id(3), &[]).is_none());
    }
}
