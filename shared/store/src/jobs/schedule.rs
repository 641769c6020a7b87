//! What the scheduler does to jobs: release the ones nobody published,
//! compute when it next has something to do, rescue runs whose worker was
//! lost and fire cron slots (pruning is in
//! [`super::retention`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::millis;
use crate::Result;
use crust_model::job::JobStatus;
use crust_model::workflow::Schedule;
use crust_model::Id;

/// A job to publish, to its named queue.
#[derive(Debug, Clone)]
pub struct ToPublish {
    pub id: Id,
    pub trace_parent: Option<String>,
    pub queue: String,
}

/// Locks up to `limit` queued, unpublished jobs whose release time has
/// come, skipping rows another scheduler holds and jobs of a paused
/// workflow (resuming it makes them due again). The caller publishes them
/// and then calls [`mark_released`] in the same transaction, so a crash in
/// between only leads to a duplicate message, which workers drop.
pub async fn lock_releasable(tx: &mut PgConnection, limit: i64) -> Result<Vec<ToPublish>> {
    let rows: Vec<(Id, Option<String>, String)> = sqlx::query_as(
        "SELECT id, trace_parent, queue FROM jobs
         WHERE status = 'queued' AND published_at IS NULL AND release_at <= now()
           AND workflow_id NOT IN (SELECT id FROM workflows WHERE paused_at IS NOT NULL)
           AND (concurrency_key IS NULL OR holds_slot)
         ORDER BY release_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    Ok(to_publish(rows))
}

fn to_publish(rows: Vec<(Id, Option<String>, String)>) -> Vec<ToPublish> {
    rows.into_iter()
        .map(|(id, trace_parent, queue)| ToPublish {
            id,
            trace_parent,
            queue,
        })
        .collect()
}

/// How long a published job may stay queued before the scheduler counts
/// its hint as possibly lost ([`lock_unhinted`]): a hint reaches a worker,
/// which claims the job, within milliseconds unless the queue has a
/// backlog, and a backlog's hints are still counted by the broker.
pub const HINT_GRACE: Duration = Duration::from_secs(3);

/// Locks up to `limit` jobs of the named queue `queue` that are queued and
/// were published more than [`HINT_GRACE`] ago, oldest publish first, for
/// the caller to publish again and mark with [`mark_released`] (which
/// restarts their grace). The caller decides how many hints are missing
/// (see the scheduler); which ones are is unknowable, and a duplicate is
/// harmless, so the oldest go first.
pub async fn lock_unhinted(
    tx: &mut PgConnection,
    queue: &str,
    limit: i64,
) -> Result<Vec<ToPublish>> {
    let rows: Vec<(Id, Option<String>, String)> = sqlx::query_as(
        "SELECT id, trace_parent, queue FROM jobs
         WHERE queue = $1 AND status = 'queued'
           AND published_at < now() - $2 * interval '1 millisecond'
         ORDER BY published_at LIMIT $3 FOR UPDATE SKIP LOCKED",
    )
    .bind(queue)
    .bind(millis(HINT_GRACE))
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    Ok(to_publish(rows))
}

/// The fallback of concurrency slots (migration 0008): a slot is handed
/// on by the transaction that frees it, so this finds only jobs of a key
/// that became due with no such event — a delayed job whose `startAt` came
/// — and grants their keys (each job gets a slot if one is free, else
/// waits for a release out of the scheduler's sight). Returns how many
/// slots were granted.
pub async fn grant_due(pool: &PgPool) -> Result<i64> {
    let granted: Option<i64> = sqlx::query_scalar(
        "SELECT sum(crust_grant_slots(workflow_id, concurrency_key))::bigint
         FROM (SELECT workflow_id, concurrency_key
               FROM (SELECT DISTINCT workflow_id, concurrency_key FROM jobs
                     WHERE concurrency_key IS NOT NULL AND status = 'queued' AND NOT holds_slot
                       AND release_at <= now()
                     LIMIT 1000) keys
               ORDER BY crust_slot_lock_id(workflow_id, concurrency_key) OFFSET 0) due",
    )
    .fetch_one(pool)
    .await?;
    Ok(granted.unwrap_or(0))
}

/// Marks locked jobs as published.
pub async fn mark_released(tx: &mut PgConnection, ids: &[Id]) -> Result<()> {
    sqlx::query("UPDATE jobs SET published_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Puts the waiting jobs whose wake-up time has come (a long sleep's end,
/// a `wait`'s timeout) back in the queue, unpublished and due, for
/// [`lock_releasable`] to publish. Returns how many.
pub async fn wake_due(pool: &PgPool) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE jobs SET status = 'queued', wake_at = NULL, published_at = NULL,
                release_at = now(), updated_at = now()
         WHERE id IN (SELECT id FROM jobs
                      WHERE status = 'waiting' AND wake_at <= now()
                      ORDER BY wake_at LIMIT 1000 FOR UPDATE SKIP LOCKED)",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// The next instant the scheduler has something to do (a release of a job
/// whose workflow is not paused, a lease
/// expiry, a waiting job's wake-up or a cron slot) and the database's clock now, so the wait is
/// computed on one clock.
pub async fn next_wake(pool: &PgPool) -> Result<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    Ok(sqlx::query_as(
        "SELECT least(
             (SELECT min(release_at) FROM jobs WHERE status = 'queued' AND published_at IS NULL
                AND release_at < 'infinity'
                AND workflow_id NOT IN (SELECT id FROM workflows WHERE paused_at IS NOT NULL)),
             (SELECT min(lease_until) FROM jobs WHERE status = 'running'),
             (SELECT min(wake_at) FROM jobs WHERE status = 'waiting'),
             (SELECT min(next_fire_at) FROM workflows
               WHERE next_fire_at IS NOT NULL AND deleted_at IS NULL)),
                clock_timestamp()",
    )
    .fetch_one(pool)
    .await?)
}

/// A run whose worker was lost, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rescued {
    pub id: Id,
    pub attempt: i32,
    pub status: JobStatus,
}

/// Requeues running jobs whose lease expired (their worker died): back to
/// queued for the next attempt, or `error` ("worker lost") once
/// `max_attempts` runs were lost, or `cancelled` if a cancel was pending.
pub async fn rescue_expired(pool: &PgPool, max_attempts: i32) -> Result<Vec<Rescued>> {
    let rows: Vec<(Id, i32, JobStatus)> = sqlx::query_as(
        "WITH lost AS (
             SELECT id FROM jobs WHERE status = 'running' AND lease_until < now()
             ORDER BY lease_until LIMIT 500 FOR UPDATE SKIP LOCKED),
         moved AS (
             UPDATE jobs j SET
                 status = CASE WHEN j.cancel_requested THEN 'cancelled'
                               WHEN j.attempt >= $1 THEN 'error' ELSE 'queued' END,
                 error = CASE WHEN j.cancel_requested THEN NULL
                              WHEN j.attempt >= $1 THEN 'worker lost' ELSE j.error END,
                 finished_at = CASE WHEN j.cancel_requested OR j.attempt >= $1 THEN now() END,
                 lease_until = NULL, worker = NULL, published_at = NULL, release_at = now(),
                 updated_at = now(), log_seq = j.log_seq + 1
             FROM lost WHERE j.id = lost.id
             RETURNING j.id, j.attempt, j.status, j.log_seq),
         logged AS (
             INSERT INTO job_logs (job_id, seq, ts, level, task, message, attempt)
             SELECT id, log_seq, now(), 'warn', NULL,
                    CASE status WHEN 'queued' THEN 'worker lost; the job will run again'
                                WHEN 'error' THEN 'worker lost; no attempts left'
                                ELSE 'worker lost; cancelled' END,
                    attempt
             FROM moved)
         SELECT id, attempt, status FROM moved",
    )
    .bind(max_attempts)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, attempt, status)| Rescued {
            id,
            attempt,
            status,
        })
        .collect())
}

/// Fires every cron slot that is due: one job per slot (a unique index
/// backs this up), then advances the workflow to its next slot after now,
/// so slots missed while no scheduler ran are skipped, not replayed; so are
/// the slots of a paused workflow (advanced, no job).
/// `trace_parent` starts each slot's trace (the caller's tracing, given the
/// workflow and the slot) and returns its `traceparent`, if traced.
/// Returns how many jobs were created.
pub async fn fire_schedules(
    pool: &PgPool,
    trace_parent: impl Fn(Id, DateTime<Utc>) -> Option<String>,
) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let due: Vec<(Id, String, DateTime<Utc>, bool)> = sqlx::query_as(
        "SELECT id, schedule, next_fire_at, paused_at IS NOT NULL FROM workflows
         WHERE deleted_at IS NULL AND next_fire_at <= now() AND schedule IS NOT NULL
         ORDER BY next_fire_at LIMIT 100 FOR UPDATE SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut fired = 0;
    // The next slot is counted from the database's clock, the one that
    // judges due-ness: from a lagging application clock it could already be
    // due, and the scheduler would spin without sleeping.
    let now: DateTime<Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *tx)
        .await?;
    for (id, text, slot, paused) in due {
        let next = Schedule::parse(&text).ok().and_then(|s| s.next_after(now));
        // A paused workflow's slot is skipped (advanced, no job), not
        // fired once it is resumed.
        if !paused {
            let trace_parent = trace_parent(id, slot);
            let created = sqlx::query(
                "INSERT INTO jobs (workflow_id, workflow_version, parameters, cron_slot, release_at,
                                   trace_parent, created_by, creator_roles)
                 SELECT id, version, parameters, $2, now(), $3, edited_by, editor_roles
                 FROM workflows WHERE id = $1
                 ON CONFLICT (workflow_id, cron_slot) WHERE cron_slot IS NOT NULL DO NOTHING",
            )
            .bind(id)
            .bind(slot)
            .bind(trace_parent)
            .execute(&mut *tx)
            .await?;
            fired += created.rows_affected();
        }
        sqlx::query("UPDATE workflows SET next_fire_at = $2 WHERE id = $1")
            .bind(id)
            .bind(next)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(fired)
}
