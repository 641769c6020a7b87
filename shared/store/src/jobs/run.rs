//! What a worker does to jobs: claim them, renew their leases, finish them,
//! hand them back at shutdown and append their logs. Every write is fenced
//! on the run's `attempt` (see [`super`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::PgPool;

use super::{millis, PUBLISH_GRACE, RELEASE_CHANNEL};
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
    /// The creator's roles, whose permissions the job's record tasks act
    /// with; `None` for a system job (not restricted).
    pub creator_roles: Option<Vec<String>>,
    pub trace_parent: Option<String>,
    pub tasks: Vec<Task>,
    pub on_error: Vec<Task>,
    /// Seconds the whole job may take; 0 = no limit.
    pub timeout: u32,
    /// Tasks that run at once, at most.
    pub parallelism: u32,
    /// Seconds from creation to this claim (on the database's clock).
    pub waited: f64,
    /// For a delayed job: seconds this claim came after `startAt`.
    pub late: Option<f64>,
    /// Steps of it may be recorded already (a later attempt, or a rerun):
    /// the runner reads them; a first run of a new job has none.
    pub resumes: bool,
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
    rerun_of: Option<Id>,
    parameters: String,
    created_by: Id,
    creator_roles: Option<Vec<String>>,
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
            parallelism,
            ..
        } = serde_json::from_str(definition).map_err(|err| {
            unreadable(format!("{workflow}: its definition cannot be read: {err}"))
        })?;
        Ok(Claimed {
            id: self.id,
            attempt: self.attempt,
            parameters,
            created_by: self.created_by,
            creator_roles: self.creator_roles,
            trace_parent: self.trace_parent,
            tasks,
            on_error,
            timeout,
            parallelism,
            waited: self.waited,
            late: self.late,
            resumes: self.attempt > 1 || self.rerun_of.is_some(),
        })
    }
}

/// The statement of [`claim`]: `$1` job IDs, `$2` the worker, `$3` the lease
/// in ms.
///
/// Every step reaches jobs by primary key (`id = ANY($1)`): a join
/// the planner turned into a scan of every queued job, when the
/// table's statistics lagged a burst of inserts, cost 1 s a claim.
pub const CLAIM_SQL: &str = "WITH locked AS MATERIALIZED (
             -- FOR UPDATE yields each row as it is once locked (after any
             -- wait), so `ready` filters current values without a join
             -- back to jobs.
             SELECT id, workflow_id, rate_key, rate_at, started_at, status, cancel_requested,
                    start_at, concurrency_key, holds_slot
             FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE),
         ready AS MATERIALIZED (
             SELECT l.id, l.workflow_id, l.rate_key, l.rate_at, l.started_at FROM locked l
             WHERE l.status = 'queued' AND NOT l.cancel_requested
               AND (l.start_at IS NULL OR l.start_at <= now())
               AND l.workflow_id NOT IN (SELECT id FROM workflows WHERE paused_at IS NOT NULL)
               AND (l.concurrency_key IS NULL OR l.holds_slot)),
         tokens AS MATERIALIZED (
             SELECT id, crust_rate_take(workflow_id, rate_key) AS at
             FROM (SELECT id, workflow_id, rate_key FROM ready
                   WHERE rate_key IS NOT NULL
                     AND (rate_at IS NULL OR rate_at <= coalesce(started_at, '-infinity'))
                   ORDER BY id OFFSET 0) needing),
         go AS (
             SELECT r.id, coalesce(t.at, r.rate_at) AS rate_at FROM ready r
             LEFT JOIN tokens t ON t.id = r.id
             WHERE r.rate_key IS NULL OR coalesce(t.at, r.rate_at) <= now()),
         c AS (
             -- `started_at` is read when the row is updated, after any lock
             -- wait: a slot this claim waited for was freed by a run whose
             -- `finished_at` (its transaction's start) is earlier, so the
             -- recorded running intervals of a key never overlap more than
             -- its limit (`now()`, the statement's start, could precede it).
             -- It is still never before `start_at` or a rate instant, both
             -- checked against `now()`.
             UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = clock_timestamp(),
                    lease_until = now() + $3 * interval '1 millisecond', worker = $2, updated_at = now(),
                    rate_at = go.rate_at
             FROM go WHERE jobs.id = go.id AND jobs.id = ANY($1)
               -- Checked again on the row as this statement updates it.
               AND jobs.status = 'queued' AND NOT jobs.cancel_requested
               AND (jobs.concurrency_key IS NULL OR jobs.holds_slot)
             RETURNING jobs.id, attempt, workflow_id, workflow_version, rerun_of, parameters, created_by,
                       creator_roles, trace_parent,
                       extract(epoch from clock_timestamp() - created_at)::float8 AS waited,
                       CASE WHEN start_at > created_at
                            THEN extract(epoch from clock_timestamp() - start_at)::float8 END AS late),
         deferred AS (
             UPDATE jobs SET published_at = NULL, release_at = t.at, rate_at = t.at
             FROM tokens t WHERE jobs.id = t.id AND jobs.id = ANY($1) AND t.at > now()
               AND jobs.status = 'queued'),
         early AS (
             UPDATE jobs SET published_at = NULL
             FROM locked l
             WHERE jobs.id = l.id AND l.status = 'queued'
               AND (l.start_at > now()
                    OR l.workflow_id IN (SELECT id FROM workflows WHERE paused_at IS NOT NULL)))
         SELECT c.id, c.attempt, c.workflow_id, c.workflow_version, c.rerun_of,
                c.parameters::text AS parameters, c.created_by, c.creator_roles, c.trace_parent,
                v.definition::text AS definition, c.waited, c.late
         FROM c LEFT JOIN workflow_versions v
                ON v.workflow_id = c.workflow_id
               AND v.version = coalesce(c.workflow_version,
                                        (SELECT version FROM workflows WHERE id = c.workflow_id))";

/// Claims the given jobs that are queued and due, for `worker`, with a
/// lease of `lease`: each claim bumps `attempt`. A job with a concurrency
/// key is claimed only while it holds a slot (migration 0008); a job with a
/// rate key takes the next start instant of its key first (in id order, so
/// jobs of one key start in creation order) and, when that instant is
/// still to come, is handed back unpublished with that instant as its
/// `release_at` (the scheduler publishes it then, and its claim uses the
/// instant it holds). Each runs the definition
/// of its workflow version (`workflow_versions`), not the workflow's
/// current one. Jobs not returned are
/// running elsewhere, finished, cancelled, not yet due, or of a paused
/// workflow (those last two are handed back to the scheduler, unpublished:
/// it releases a paused workflow's jobs once it is resumed). A claimed job whose parameters or workflow cannot
/// be decoded comes back in [`Claims::unreadable`], still claimed, for the
/// worker to end.
pub async fn claim(pool: &PgPool, ids: &[Id], worker: &str, lease: Duration) -> Result<Claims> {
    let rows: Vec<ClaimedRow> = sqlx::query_as(CLAIM_SQL)
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
         WHERE j.id = r.id AND j.id = ANY($1) AND j.attempt = r.attempt AND j.status = 'running'
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
         WHERE j.id = o.id AND j.id = ANY($1) AND j.attempt = o.attempt AND j.status = 'running'
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
/// worker and parsed by Postgres). Returns each job's new `log_seq` (to
/// notify followers with, see [`super::follow`]).
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
    WHERE j.id = c.job_id AND j.id = ANY($1) AND j.attempt = c.attempt AND j.status = 'running'
      AND j.id IN (SELECT id FROM jobs WHERE id = ANY($1) ORDER BY id FOR UPDATE)
    RETURNING j.id, c.attempt, j.log_seq - c.n AS base, j.log_seq AS seq
), inserted AS (
    INSERT INTO job_logs (job_id, seq, ts, level, task, message, data, attempt)
    SELECT l.job_id, b.base + row_number() OVER (PARTITION BY l.job_id ORDER BY l.ord),
           l.ts, l.level, l.task, l.message, l.data::jsonb, l.attempt
    FROM lines l JOIN bumped b ON b.id = l.job_id AND b.attempt = l.attempt
)
SELECT id, seq FROM bumped";

/// What a parked run waits for: any of these ends the wait.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Park {
    /// The wake-up time (a sleep's end, a wait's timeout), if any.
    pub wake_at: Option<DateTime<Utc>>,
    /// Signal events a `wait` step waits for.
    pub events: Vec<String>,
    /// Steps whose child job it waits for (the children's `parent_step`).
    pub children: Vec<String>,
}

/// Parks a run: `running → waiting`, holding no lease, until a signal, a
/// child's end or `wake_at` puts it back in the queue. If what it waits for
/// has already come, it goes back in the queue at once instead. The row is
/// locked before that check, so a signal or a child's end committing
/// meanwhile either is seen here or sees the job `waiting` and wakes it.
/// False when the run no longer holds the job.
pub async fn park(pool: &PgPool, id: Id, attempt: i32, park: &Park) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let held: Option<Id> = sqlx::query_scalar(
        "SELECT id FROM jobs WHERE id = $1 AND attempt = $2 AND status = 'running' FOR UPDATE",
    )
    .bind(id)
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await?;
    if held.is_none() {
        return Ok(false);
    }
    // A new statement, so a new snapshot: it sees what committed while the
    // lock was awaited.
    sqlx::query(
        "WITH ready AS (
             SELECT EXISTS (SELECT 1 FROM job_signals
                            WHERE job_id = $1 AND taken_at IS NULL AND event = ANY($2))
                 OR EXISTS (SELECT 1 FROM jobs
                            WHERE parent_job_id = $1 AND parent_step = ANY($3)
                              AND status IN ('ok', 'error', 'cancelled'))
                 OR coalesce($4 <= now(), false) AS now)
         UPDATE jobs SET
             status = CASE WHEN ready.now THEN 'queued' ELSE 'waiting' END,
             wake_at = CASE WHEN ready.now THEN NULL ELSE $4 END,
             release_at = now(), published_at = NULL,
             lease_until = NULL, worker = NULL, updated_at = now()
         FROM ready WHERE id = $1",
    )
    .bind(id)
    .bind(&park.events)
    .bind(&park.children)
    .bind(park.wake_at)
    .execute(&mut *tx)
    .await?;
    // Queued again at once: the scheduler publishes it.
    sqlx::query("SELECT pg_notify($1, '') FROM jobs WHERE id = $2 AND status = 'queued'")
        .bind(RELEASE_CHANNEL)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Takes the oldest signal named `event` sent to the job and records the
/// `wait` step `task` as `ok` with the signal's data as its output, in one
/// transaction, so a signal is never taken without its step. `None` when
/// no such signal is waiting; `Err` of a lost claim reads as `None` with
/// nothing taken (the step write is fenced).
pub async fn take_signal(
    pool: &PgPool,
    id: Id,
    attempt: i32,
    task: &str,
    item: i32,
    event: &str,
) -> Result<Option<Box<RawValue>>> {
    let mut tx = pool.begin().await?;
    let data: Option<Option<Json<Box<RawValue>>>> = sqlx::query_scalar(
        "UPDATE job_signals SET taken_at = now()
         WHERE id = (SELECT id FROM job_signals
                     WHERE job_id = $1 AND event = $2 AND taken_at IS NULL
                     ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING data",
    )
    .bind(id)
    .bind(event)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(data) = data else {
        return Ok(None);
    };
    let output = match data {
        Some(Json(raw)) => raw,
        None => RawValue::from_string("null".into()).expect("null is JSON"),
    };
    let recorded = sqlx::query(
        "WITH run AS (SELECT id FROM jobs WHERE id = $1 AND attempt = $2 AND status = 'running' FOR SHARE)
         INSERT INTO job_steps (job_id, task, item, status, tries, attempt, started_at, finished_at, output)
         SELECT id, $3, $4, 'ok', 1, $2, now(), now(), $5 FROM run
         ON CONFLICT (job_id, task, item) DO UPDATE SET
             status = 'ok', attempt = EXCLUDED.attempt, finished_at = now(),
             output = EXCLUDED.output, error = NULL",
    )
    .bind(id)
    .bind(attempt)
    .bind(task)
    .bind(item)
    .bind(Json(&output))
    .execute(&mut *tx)
    .await?;
    if recorded.rows_affected() == 0 {
        // The run lost its claim: leave the signal for the run that has it.
        return Ok(None);
    }
    tx.commit().await?;
    Ok(Some(output))
}

/// A child job as its parent's step sees it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Child {
    pub id: Id,
    pub status: JobStatus,
    pub error: Option<String>,
}

/// Starts the child job of step `step` (once: a resumed parent gets the
/// child it already started), fenced on the parent's run. The child runs
/// the current version of `workflow` with `parameters` merged over that
/// workflow's defaults, for the parent's creator. `None` when the run lost its claim.
pub async fn start_child(
    pool: &PgPool,
    parent: Id,
    attempt: i32,
    step: &str,
    workflow: Id,
    parameters: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<Child>> {
    let mut tx = pool.begin().await?;
    // The child acts for the parent's creator, roles included.
    let created_by: Option<(Id, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT created_by, creator_roles FROM jobs
         WHERE id = $1 AND attempt = $2 AND status = 'running' FOR SHARE",
    )
    .bind(parent)
    .bind(attempt)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((created_by, creator_roles)) = created_by else {
        return Ok(None);
    };
    if let Some(child) = child_of(&mut *tx, parent, step).await? {
        return Ok(Some(child));
    }
    // Due at once and unpublished: the scheduler, woken here, publishes it.
    let created: Option<Id> = sqlx::query_scalar(
        "WITH w AS (SELECT id, version, parameters FROM workflows
                    WHERE id = $1 AND deleted_at IS NULL FOR SHARE)
         INSERT INTO jobs (workflow_id, workflow_version, parameters, release_at, created_by,
                           parent_job_id, parent_step, trace_parent, creator_roles)
         SELECT w.id, w.version, w.parameters || $2, now(), $3, $4, $5,
                (SELECT trace_parent FROM jobs WHERE id = $4), $6
         FROM w
         RETURNING id",
    )
    .bind(workflow)
    .bind(Json(parameters))
    .bind(created_by)
    .bind(parent)
    .bind(step)
    .bind(creator_roles)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(created) = created else {
        return Err(crate::Error::invalid(format!(
            "workflowID: workflow {workflow} does not exist"
        )));
    };
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(RELEASE_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Some(Child {
        id: created,
        status: JobStatus::Queued,
        error: None,
    }))
}

/// The child job step `step` of `parent` started, if any.
pub async fn child_of(
    executor: impl sqlx::PgExecutor<'_>,
    parent: Id,
    step: &str,
) -> Result<Option<Child>> {
    Ok(sqlx::query_as(
        "SELECT id, status, error FROM jobs WHERE parent_job_id = $1 AND parent_step = $2",
    )
    .bind(parent)
    .bind(step)
    .fetch_optional(executor)
    .await?)
}
