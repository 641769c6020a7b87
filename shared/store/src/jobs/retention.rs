//! Retention of finished jobs: the partitions of job logs and steps by
//! ranges of job IDs (created ahead of the newest job, dropped whole once
//! every job of the range finished before the cutoff), and the row-by-row
//! prune for what no dropped range covers (rows in the default partition,
//! ranges held back by one long-lived job).
//!
//! Invariants:
//! - A range is dropped only if, with its parents locked, none of its jobs
//!   is unfinished or finished after the cutoff. A job can't become
//!   unfinished again (finished statuses are final), so nothing that must
//!   be kept is dropped.
//! - Every write lands somewhere: a job ID beyond the last range goes to the
//!   default partition; falling behind costs pruning speed, not a write.
//! - DDL waits at most [`LOCK_TIMEOUT`] for its locks, so a long reader of
//!   `job_logs` delays a drop, never the workers' writes behind it.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use super::millis;
use crate::Result;

/// The tables partitioned by job ID ranges.
const PARTITIONED: [&str; 2] = ["job_logs", "job_steps"];

/// Longest wait for a lock before the partition work gives up until its
/// next pass.
const LOCK_TIMEOUT: &str = "2s";

/// Job rows of a dropped range deleted per statement.
const DELETE_BATCH: i64 = 5_000;

/// What one retention pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    /// Ranges created ahead of the newest job.
    pub created: u32,
    /// Ranges whose log and step partitions were dropped.
    pub dropped: u32,
    /// Job rows deleted (with whatever logs and steps they had elsewhere).
    pub jobs: u64,
}

/// The partition of `table` for the range starting at `lo`.
fn partition(table: &str, lo: i64) -> String {
    format!("{table}_p{lo}")
}

/// Makes sure ranges of `span` job IDs exist for the next `ahead` spans
/// past the newest job ID; returns how many were created. Two schedulers
/// calling it at once take turns (a table lock), so a range is never made
/// twice.
pub async fn ensure_partitions(pool: &PgPool, span: i64, ahead: i64) -> Result<u32> {
    let span = span.max(1);
    let mut tx = pool.begin().await?;
    lock_briefly(&mut tx).await?;
    sqlx::query("LOCK TABLE job_partitions IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    // The sequence's last value bounds every ID handed out, committed or not.
    let (top, newest): (Option<i64>, i64) = sqlx::query_as(
        "SELECT (SELECT max(hi) FROM job_partitions),
                coalesce(pg_sequence_last_value(pg_get_serial_sequence('jobs', 'id')::regclass), 0)",
    )
    .fetch_one(&mut *tx)
    .await?;
    // Behind (or never started): IDs up to `newest` may already sit in the
    // default partition, which a range over them would refuse; start a span
    // past it, leaving room for IDs handed out meanwhile.
    let mut lo = match top {
        Some(top) if top > newest => top,
        _ => newest + span,
    };
    let mut created = 0;
    while lo <= newest.saturating_add(span.saturating_mul(ahead)) {
        let hi = lo + span;
        for table in PARTITIONED {
            sqlx::query(&format!(
                "CREATE TABLE {} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi})",
                partition(table, lo)
            ))
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("INSERT INTO job_partitions (lo, hi) VALUES ($1, $2)")
            .bind(lo)
            .bind(hi)
            .execute(&mut *tx)
            .await?;
        created += 1;
        lo = hi;
    }
    tx.commit().await?;
    Ok(created)
}

/// Drops the partitions of up to `limit` ranges whose jobs all finished
/// before `older_than` ago, then deletes those ranges' job rows in batches;
/// returns what it did.
pub async fn drop_expired(pool: &PgPool, older_than: Duration, limit: i64) -> Result<Pruned> {
    let mut pruned = Pruned::default();
    // Ranges wholly below the newest job (no new job can get an ID there)
    // and not dropped yet, oldest first.
    let ranges: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT lo, hi FROM job_partitions
         WHERE dropped_at IS NULL
           AND hi <= (SELECT coalesce(max(id), 0) FROM jobs)
         ORDER BY lo LIMIT $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await?;
    for (lo, hi) in ranges {
        if !expired(pool, lo, hi, older_than).await? {
            continue;
        }
        if drop_range(pool, lo, hi, older_than).await? {
            pruned.dropped += 1;
        }
    }
    // Job rows of dropped ranges, in batches (their logs and steps are gone,
    // so each delete is cheap); a range is forgotten once it is empty.
    let dropped: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT lo, hi FROM job_partitions WHERE dropped_at IS NOT NULL ORDER BY lo",
    )
    .fetch_all(pool)
    .await?;
    for (lo, hi) in dropped {
        loop {
            let deleted = sqlx::query(
                "DELETE FROM jobs WHERE id IN (
                     SELECT id FROM jobs WHERE id >= $1 AND id < $2
                       AND finished_at < now() - $3 * interval '1 millisecond'
                     LIMIT $4 FOR UPDATE SKIP LOCKED)",
            )
            .bind(lo)
            .bind(hi)
            .bind(millis(older_than))
            .bind(DELETE_BATCH)
            .execute(pool)
            .await?
            .rows_affected();
            pruned.jobs += deleted;
            if deleted < DELETE_BATCH as u64 {
                break;
            }
        }
        sqlx::query("DELETE FROM job_partitions WHERE lo = $1 AND dropped_at IS NOT NULL")
            .bind(lo)
            .execute(pool)
            .await?;
    }
    Ok(pruned)
}

/// True when no job of `[lo, hi)` is unfinished or finished after the
/// cutoff.
async fn expired(
    conn: impl sqlx::PgExecutor<'_>,
    lo: i64,
    hi: i64,
    older_than: Duration,
) -> Result<bool> {
    let (expired,): (bool,) = sqlx::query_as(
        "SELECT NOT EXISTS (
             SELECT 1 FROM jobs WHERE id >= $1 AND id < $2
               AND (finished_at IS NULL OR finished_at >= now() - $3 * interval '1 millisecond'))",
    )
    .bind(lo)
    .bind(hi)
    .bind(millis(older_than))
    .fetch_one(conn)
    .await?;
    Ok(expired)
}

/// Drops one range's partitions if, with the tables locked, it is still
/// expired; false when it was not (or a lock was not granted in time: the
/// next pass tries again).
async fn drop_range(pool: &PgPool, lo: i64, hi: i64, older_than: Duration) -> Result<bool> {
    let mut tx = pool.begin().await?;
    lock_briefly(&mut tx).await?;
    // The parents first, in one order, as every DROP of a partition needs
    // them; inserts wait for the (short) rest of this transaction.
    let locked = sqlx::query(&format!(
        "LOCK TABLE job_partitions, {} IN ACCESS EXCLUSIVE MODE",
        PARTITIONED.join(", ")
    ))
    .execute(&mut *tx)
    .await;
    match locked {
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => {
            return Ok(false)
        }
        other => {
            other?;
        }
    }
    if !expired(&mut *tx, lo, hi, older_than).await? {
        return Ok(false);
    }
    let tables: Vec<String> = PARTITIONED.iter().map(|t| partition(t, lo)).collect();
    sqlx::query(&format!("DROP TABLE {}", tables.join(", ")))
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE job_partitions SET dropped_at = now() WHERE lo = $1")
        .bind(lo)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Bounds this transaction's waits for locks.
async fn lock_briefly(tx: &mut PgConnection) -> Result<()> {
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(tx)
        .await?;
    Ok(())
}

/// Deletes up to `batch` jobs (and their logs and steps) that finished
/// before `older_than` ago, one row at a time; returns how many. What
/// [`drop_expired`] leaves: jobs in the default partition and in ranges
/// held back by a job that lives long. Rate keys whose next start instant
/// has passed go too: such a row says nothing an absent one does not (the
/// next job of the key may start at once either way).
pub async fn prune(pool: &PgPool, older_than: Duration, batch: i64) -> Result<u64> {
    sqlx::query(
        "DELETE FROM rate_keys WHERE (workflow_id, key) IN (
             SELECT workflow_id, key FROM rate_keys WHERE next_at < now()
             LIMIT $1 FOR UPDATE SKIP LOCKED)",
    )
    .bind(batch)
    .execute(pool)
    .await?;
    let done = sqlx::query(
        "DELETE FROM jobs WHERE id IN (
             SELECT id FROM jobs WHERE finished_at < now() - $1 * interval '1 millisecond'
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(millis(older_than))
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
