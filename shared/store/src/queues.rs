//! The named queues as Postgres sees them: each queue's jobs counted by
//! state, for `GET /queue/`, the `crust_queue_*` metrics and the
//! scheduler's search for lost hints.

use sqlx::PgPool;

use crate::jobs::schedule::HINT_GRACE;
use crate::Result;

/// One named queue's jobs, by state.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct QueueCounts {
    pub name: String,
    /// Queued and due (no `startAt`, or one that has passed).
    pub ready: i64,
    pub running: i64,
    /// Parked by the engine (a `wait`, a long `sleep`, a child workflow).
    pub waiting: i64,
    /// Queued with a `startAt` still ahead.
    pub delayed: i64,
    /// Seconds since the oldest ready job became due (created, or its
    /// `startAt`); `None` when nothing is ready.
    pub oldest_ready_age_seconds: Option<f64>,
    /// Queued jobs published more than [`HINT_GRACE`] ago: each should
    /// still have its hint in the broker's queue (or in a worker's hands
    /// for a moment).
    pub hinted: i64,
}

/// Every queue a workflow names (even with no jobs), `default`, and every
/// queue an active job is in, by name.
pub async fn counts(pool: &PgPool) -> Result<Vec<QueueCounts>> {
    Ok(sqlx::query_as(
        "WITH active AS (
             SELECT queue,
                    count(*) FILTER (WHERE status = 'queued'
                                       AND (start_at IS NULL OR start_at <= now())) AS ready,
                    count(*) FILTER (WHERE status = 'running') AS running,
                    count(*) FILTER (WHERE status = 'waiting') AS waiting,
                    count(*) FILTER (WHERE status = 'queued' AND start_at > now()) AS delayed,
                    min(greatest(created_at, start_at)) FILTER (
                        WHERE status = 'queued' AND (start_at IS NULL OR start_at <= now()))
                        AS oldest_ready,
                    count(*) FILTER (WHERE status = 'queued' AND published_at
                                       < now() - $1 * interval '1 millisecond') AS hinted
             FROM jobs WHERE status IN ('queued', 'running', 'waiting')
             GROUP BY queue),
         named AS (SELECT queue FROM workflows WHERE deleted_at IS NULL UNION SELECT 'default')
         SELECT queue AS name, coalesce(ready, 0) AS ready, coalesce(running, 0) AS running,
                coalesce(waiting, 0) AS waiting, coalesce(delayed, 0) AS delayed,
                extract(epoch FROM now() - oldest_ready)::float8 AS oldest_ready_age_seconds,
                coalesce(hinted, 0) AS hinted
         FROM named FULL JOIN active USING (queue)
         ORDER BY queue",
    )
    .bind(i64::try_from(HINT_GRACE.as_millis()).unwrap_or(i64::MAX))
    .fetch_all(pool)
    .await?)
}
