//! What a worker does to jobs: claim them, renew their leases, finish them,
//! hand them back at shutdown and append their logs. Every write is fenced
//! on the run's `attempt` (see [`super`]).

use std::time::Duration;

use sqlx::PgPool;

use super::{millis, PUBLISH_GRACE};
use crate::Result;
use crust_model::job::{JobStatus, Parameters};
use crust_model::workflow::{Definition, Task};
use crust_model::Id;

/// A job a worker has claimed, with the definition it runs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: Id,
    pub attempt: i32,
    pub parameters: Parameters,
    pub created_by: Id,
    pub trace_parent: Option<String>,
    pub tasks: Vec<Task>,
    pub on_error: Vec<Task>,
    /// Seconds the whole job may take; 0 = no limit.
    pub timeout: u32,
    /// Seconds from creation to this claim (on the database's clock).
    pub waited: f64,
    /// For a delayed job: seconds this claim came after `startAt`.
    pub late: Option<f64>,
}

/// A job a worker claimed whose row or workflow definition cannot be read
/// (written by an older release, or by hand): the worker ends it `error`
/// with `reason` on its own, so the rest of its claim batch still runs.
#[derive(Debug, Clone)]
pub struct Unreadable {
    pub id: Id,
    pub attempt: i32,
    pub trace_parent: Option<String>,
    pub reason: String,
}

/// What a claim got: the runs to start and the claimed jobs that cannot be
/// read.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    pub runs: Vec<Claimed>,
    pub unreadable: Vec<Unreadable>,
}

/// The JSON columns come as text and are decoded one row at a time, so one
/// row that cannot be decoded cannot fail the statement for the others.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    waited: f64,
    late: Option<f64>,
    id: Id,
    attempt: i32,
    workflow_id: Id,
    workflow_version: Option<i32>,
    parameters: String,
    created_by: Id,
    trace_parent: Option<String>,
    /// The version's definition; `None` when that version is not recorded.
    definition: Option<String>,
}

impl ClaimedRow {
    fn decode(self) -> std::result::Result<Claimed, Unreadable> {
        let unreadable = |reason: String| Unreadable {
            id: self.id,
            attempt: self.attempt,
            trace_parent: self.trace_parent.clone(),
            reason,
        };
        let parameters: Parameters = serde_json::from_str(&self.parameters)
            .map_err(|err| unreadable(format!("the job's parameters cannot be read: {err}")))?;
        let workflow = match self.workflow_version {
            Some(version) => format!("workflow {} version {version}", self.workflow_id),
            None => format!("workflow {}", self.workflow_id),
        };
        let definition = self
            .definition
            .as_deref()
            .ok_or_else(|| unreadable(format!("{workflow} does not exist")))?;
        let Definition {
            tasks,
            on_error,
            timeout,
            ..
        } = serde_json::from_str(definition).map_err(|err| {
            unreadable(format!("{workflow}: its definition cannot be read: {err}"))
        })?;
        Ok(Claimed {
            id: self.id,
            attempt: self.attempt,
            parameters,
            created_by: self.created_by,
            trace_parent: self.trace_parent,
            tasks,
            on_error,
            timeout,
            waited: self.waited,
            late: self.late,
        })
    }
}

/// Claims the given jobs that are queued and due, for `worker`, with a
/// lease of `lease`: each claim bumps `attempt`. Each runs the definition
/// of its workflow version (`workflow_versions`), not the workflow's
/// current one. Jobs not returned are
/// running elsewhere, finished, cancelled, or not yet due (those are handed
/// back to the scheduler). A claimed job whose parameters or workflow cannot
/// be decoded comes back in [`Claims::unreadable`], still claimed, for the
/// worker to end.
pub async fn claim(pool: &PgPool, ids: &[Id], worker: &str, lease: Duration) -> Result<Claims> {
    let rows: Vec<ClaimedRow> = sqlx::query_as(
        "WITH c AS (
             UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = now(),
                    lease_until = now() + $3 * interval '1 millisecond', worker = $2, updated_at = now()
             WHERE id IN (SELECT id FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE)
               AND status = 'queued' AND NOT cancel_requested
               AND (start_at IS NULL OR start_at <= now())
             RETURNING id, attempt, workflow_id, workflow_version, parameters, created_by, trace_parent,
                       extract(epoch from clock_timestamp() - created_at)::float8 AS waited,
                       CASE WHEN start_at > created_at
                            THEN extract(epoch from clock_timestamp() - start_at)::float8 END AS late),
         early AS (
             UPDATE jobs SET published_at = NULL
             WHERE id = ANY($1) AND status = 'queued' AND start_at > now())
         SELECT c.id, c.attempt, c.workflow_id, c.workflow_version,
                c.parameters::text AS parameters, c.created_by, c.trace_parent,
                v.definition::text AS definition, c.waited, c.late
         FROM c LEFT JOIN workflow_versions v
                ON v.workflow_id = c.workflow_id
               AND v.version = coalesce(c.workflow_version,
                                        (SELECT version FROM workflows WHERE id = c.workflow_id))",
    )
    .bind(ids)
    .bind(worker)
    .bind(millis(lease))
    .fetch_all(pool)
    .await?;
    let mut claims = Claims::default();
    for row in rows {
        match row.decode() {
            Ok(run) => claims.runs.push(run),
            Err(unreadable) => claims.unreadable.push(unreadable),
        }
    }
    Ok(claims)
}

/// A lease a heartbeat renewed: the run still holds its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewedLease {
    pub id: Id,
    pub cancel_requested: bool,
}

/// Renews the leases of these runs; returns those still held (a run missing
/// from the answer has lost its claim and must stop without writing).
pub async fn heartbeat(
    pool: &PgPool,
    runs: &[(Id, i32)],
    lease: Duration,
) -> Result<Vec<RenewedLease>> {
    let (ids, attempts): (Vec<Id>, Vec<i32>) = runs.iter().copied().unzip();
    let rows: Vec<(Id, bool)> = sqlx::query_as(
        "UPDATE jobs j SET lease_until = now() + $3 * interval '1 millisecond'
         FROM unnest($1::bigint[], $2::int[]) AS r(id, attempt)
         WHERE j.id = r.id AND j.attempt = r.attempt AND j.status = 'running'
           AND j.id IN (SELECT id FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE)
         RETURNING j.id, j.cancel_requested",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(millis(lease))
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, cancel_requested)| RenewedLease {
            id,
            cancel_requested,
        })
        .collect())
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub id: Id,
    pub attempt: i32,
    pub status: JobStatus,
    pub error: Option<String>,
}

/// Ends runs with one fenced update; returns the IDs whose update applied
/// (the others had lost their claim).
pub async fn finish(pool: &PgPool, outcomes: &[Outcome]) -> Result<Vec<Id>> {
    let ids: Vec<Id> = outcomes.iter().map(|o| o.id).collect();
    let attempts: Vec<i32> = outcomes.iter().map(|o| o.attempt).collect();
    let statuses: Vec<JobStatus> = outcomes.iter().map(|o| o.status).collect();
    let errors: Vec<Option<&str>> = outcomes.iter().map(|o| o.error.as_deref()).collect();
    let done: Vec<Id> = sqlx::query_scalar(
        "UPDATE jobs j SET status = o.status, error = o.error, finished_at = now(),
                lease_until = NULL, updated_at = now()
         FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[]) AS o(id, attempt, status, error)
         WHERE j.id = o.id AND j.attempt = o.attempt AND j.status = 'running'
           AND j.id IN (SELECT id FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE)
         RETURNING j.id",
    )
    .bind(&ids)
    .bind(&attempts)
    .bind(&statuses)
    .bind(&errors)
    .fetch_all(pool)
    .await?;
    Ok(done)
}

/// Gives a run back unfinished (worker shutdown): queued again, its
/// message already back in the broker. Its `release_at` gets the same
/// [`PUBLISH_GRACE`] as a job the api queues.
pub async fn hand_back(pool: &PgPool, id: Id, attempt: i32) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'queued', lease_until = NULL, worker = NULL, published_at = now(),
                release_at = now() + $3 * interval '1 millisecond', updated_at = now()
         WHERE id = $1 AND attempt = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(attempt)
    .bind(millis(PUBLISH_GRACE))
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The statement that appends log lines of many runs at once: each run's
/// lines take consecutive numbers after its `log_seq`, and only runs that
/// still hold their claim get any. Parameters are parallel arrays: job id,
/// attempt, ts, level, task, message, data (JSON text, kept compact on the
/// worker and parsed by Postgres).
pub const APPEND_LOGS_SQL: &str = "
WITH lines AS (
    SELECT * FROM unnest($1::bigint[], $2::int[], $3::timestamptz[], $4::text[], $5::text[],
                         $6::text[], $7::text[])
           WITH ORDINALITY AS l(job_id, attempt, ts, level, task, message, data, ord)
), counts AS (
    SELECT job_id, attempt, count(*)::int AS n FROM lines GROUP BY job_id, attempt
), bumped AS (
    UPDATE jobs j SET log_seq = j.log_seq + c.n
    FROM counts c
    WHERE j.id = c.job_id AND j.attempt = c.attempt AND j.status = 'running'
      AND j.id IN (SELECT id FROM jobs WHERE id IN (SELECT job_id FROM counts) ORDER BY id FOR UPDATE)
    RETURNING j.id, c.attempt, j.log_seq - c.n AS base
)
INSERT INTO job_logs (job_id, seq, ts, level, task, message, data, attempt)
SELECT l.job_id, b.base + row_number() OVER (PARTITION BY l.job_id ORDER BY l.ord),
       l.ts, l.level, l.task, l.message, l.data::jsonb, l.attempt
FROM lines l JOIN bumped b ON b.id = l.job_id AND b.attempt = l.attempt";
