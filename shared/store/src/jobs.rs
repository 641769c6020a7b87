//! Jobs: creation, the legal status moves, cancellation, logs, and the
//! fenced claim / heartbeat / finish of the worker and the release, rescue,
//! cron and prune passes of the scheduler.
//!
//! Every write of a run is fenced on `(id, attempt, status = 'running')`, so
//! a worker that lost its claim cannot touch a newer run. Every statement
//! that updates several jobs locks them in `id` order first: without that,
//! a claim and a publish mark (or a heartbeat and a log batch) deadlock, and
//! Postgres takes a second to notice.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::{Error, Result};
use crust_model::job::{
    check_parameters, parse_start_at, Job, JobStatus, JobUpdate, LogEntry, NewLogEntry, Parameters,
};
use crust_model::paging::Paging;
use crust_model::workflow::{Schedule, Task};
use crust_model::Id;

/// The channel the api notifies when a job's release time may have moved
/// earlier, so the scheduler re-arms its timer at once.
pub const RELEASE_CHANNEL: &str = "crust_jobs_release";

/// How long the api has to publish a job it created before the scheduler
/// publishes it instead.
pub const PUBLISH_GRACE: Duration = Duration::from_secs(5);

#[derive(sqlx::FromRow)]
struct JobRow {
    id: Id,
    workflow_id: Id,
    status: String,
    parameters: Json<Parameters>,
    start_at: Option<DateTime<Utc>>,
    attempt: i32,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
    cron_slot: Option<DateTime<Utc>>,
    trace_parent: Option<String>,
}

impl JobRow {
    fn into_job(self) -> Result<Job> {
        Ok(Job {
            id: self.id,
            workflow_id: self.workflow_id,
            status: JobStatus::parse(&self.status)
                .map_err(|reason| Error::Database(sqlx::Error::Decode(reason.into())))?,
            parameters: self.parameters.0,
            start_at: self.start_at,
            attempt: self.attempt,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            error: self.error,
            cron_slot: self.cron_slot,
            trace_id: self
                .trace_parent
                .as_deref()
                .and_then(crust_model::job::trace_id_of)
                .map(str::to_owned),
            trace_url: None,
        })
    }
}

const COLUMNS: &str = "id, workflow_id, status, parameters, start_at, attempt, created_at, \
                       started_at, finished_at, error, cron_slot, trace_parent";

fn missing(id: Id) -> Error {
    Error::not_found(format!("job {id} does not exist"))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// A newly created job and whether the api should publish it now.
#[derive(Debug, Clone)]
pub struct Created {
    pub job: Job,
    /// False for a delayed job: the scheduler releases it at `startAt`.
    pub due_now: bool,
}

/// Creates a queued job. A job due now is for the caller to publish; a
/// delayed one wakes the scheduler. The workflow is share-locked so it
/// cannot be deleted in between.
pub async fn create(
    pool: &PgPool,
    workflow_id: Id,
    user: Id,
    start_at: Option<&str>,
    parameters: Parameters,
    trace_parent: Option<&str>,
) -> Result<Created> {
    check_parameters(&parameters)?;
    let start_at = start_at.map(parse_start_at).transpose()?;
    let now = Utc::now();
    let due_now = start_at.is_none_or(|at| at <= now);
    let release_at = match start_at {
        Some(at) if !due_now => at,
        _ => now + PUBLISH_GRACE,
    };
    let row: Option<JobRow> = sqlx::query_as(&format!(
        "WITH w AS (SELECT id FROM workflows WHERE id = $1 AND deleted_at IS NULL FOR SHARE),
              j AS (INSERT INTO jobs (workflow_id, parameters, start_at, release_at, created_by, trace_parent)
                    SELECT w.id, $2, $3, $4, $5, $6 FROM w
                    RETURNING {COLUMNS})
         SELECT j.*, CASE WHEN $7 THEN pg_notify('{RELEASE_CHANNEL}', '') END AS notified FROM j"
    ))
    .bind(workflow_id)
    .bind(Json(&parameters))
    .bind(start_at)
    .bind(release_at)
    .bind(user)
    .bind(trace_parent)
    .bind(!due_now)
    .fetch_optional(pool)
    .await?;
    let row = row.ok_or_else(|| {
        Error::invalid(format!("workflowID: workflow {workflow_id} does not exist"))
    })?;
    Ok(Created {
        job: row.into_job()?,
        due_now,
    })
}

/// Records that these jobs' messages were confirmed by the broker.
pub async fn mark_published(pool: &PgPool, ids: &[Id]) -> Result<()> {
    sqlx::query(
        "UPDATE jobs SET published_at = now()
         WHERE id IN (SELECT id FROM jobs
                      WHERE id = ANY($1) AND status = 'queued' AND published_at IS NULL
                      ORDER BY id FOR UPDATE SKIP LOCKED)",
    )
    .bind(ids)
    .execute(pool)
    .await?;
    Ok(())
}

/// One job.
pub async fn get(pool: &PgPool, id: Id) -> Result<Job> {
    sqlx::query_as::<_, JobRow>(&format!("SELECT {COLUMNS} FROM jobs WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| missing(id))?
        .into_job()
}

/// A page of jobs, newest first, optionally of one status, and the total.
pub async fn list(
    pool: &PgPool,
    status: Option<JobStatus>,
    paging: Paging,
    limits: &crate::config::QueryLimits,
) -> Result<(Vec<Job>, i64)> {
    let status = status.map(JobStatus::as_str);
    // A client's listing (and its count over every job) is bounded like
    // record lists: Postgres stops it at the statement timeout.
    let failure = crate::error::query_failure(limits.query_timeout);
    let mut tx = crate::bounded(pool, limits.query_timeout).await?;
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE ($1::text IS NULL OR status = $1)
         ORDER BY id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(status)
    .bind(paging.per_page)
    .bind(paging.offset())
    .fetch_all(&mut *tx)
    .await
    .map_err(&failure)?;
    let count: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE ($1::text IS NULL OR status = $1)")
            .bind(status)
            .fetch_one(&mut *tx)
            .await
            .map_err(&failure)?;
    tx.commit().await?;
    let jobs = rows
        .into_iter()
        .map(JobRow::into_job)
        .collect::<Result<_>>()?;
    Ok((jobs, count))
}

async fn lock(tx: &mut Transaction<'_, Postgres>, id: Id) -> Result<JobRow> {
    sqlx::query_as::<_, JobRow>(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    .ok_or_else(|| missing(id))
}

/// What an update did that the caller must act on.
#[derive(Debug, Clone)]
pub struct Updated {
    pub job: Job,
    /// The job is queued, due and unpublished: publish it.
    pub publish: bool,
    /// A running job was asked to stop: tell the workers.
    pub cancel: bool,
}

/// Applies `POST /job/{id}`: appends a log entry, changes the definition of
/// a queued job, and/or moves its status along a legal edge — all or
/// nothing, in one transaction.
pub async fn update(pool: &PgPool, id: Id, input: JobUpdate) -> Result<Updated> {
    let log = input.log.map(NewLogEntry::from_input).transpose()?;
    let next = input
        .status
        .as_deref()
        .map(|text| {
            JobStatus::parse(text).map_err(|reason| Error::invalid(format!("status: {reason}")))
        })
        .transpose()?;
    if let Some(parameters) = &input.parameters {
        check_parameters(parameters)?;
    }
    let start_at = match input.start_at.as_deref().map(str::trim) {
        None => None,
        Some("") => Some(None),
        Some(text) => Some(Some(parse_start_at(text)?)),
    };
    let mut tx = pool.begin().await?;
    let row = lock(&mut tx, id).await?;
    let current = JobStatus::parse(&row.status).map_err(Error::invalid)?;
    let redefines = input.workflow_id.is_some() || start_at.is_some() || input.parameters.is_some();
    if redefines && current != JobStatus::Queued {
        return Err(Error::conflict(format!(
            "job {id} is {current}; workflowID, startAt and parameters can change only while it is queued"
        )));
    }
    let mut publish = false;
    let mut cancel = false;
    if let Some(workflow_id) = input.workflow_id {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM workflows WHERE id = $1 AND deleted_at IS NULL)",
        )
        .bind(workflow_id)
        .fetch_one(&mut *tx)
        .await?;
        if !exists {
            return Err(Error::invalid(format!(
                "workflowID: workflow {workflow_id} does not exist"
            )));
        }
        sqlx::query("UPDATE jobs SET workflow_id = $2 WHERE id = $1")
            .bind(id)
            .bind(workflow_id)
            .execute(&mut *tx)
            .await?;
    }
    if let Some(parameters) = &input.parameters {
        sqlx::query("UPDATE jobs SET parameters = $2 WHERE id = $1")
            .bind(id)
            .bind(Json(parameters))
            .execute(&mut *tx)
            .await?;
    }
    if let Some(start_at) = start_at {
        // A new start time withdraws any message already sent: a worker
        // that receives it finds the job not yet due and drops it.
        let now = Utc::now();
        let due_now = start_at.is_none_or(|at| at <= now);
        let release_at = if due_now {
            now + PUBLISH_GRACE
        } else {
            start_at.unwrap_or(now)
        };
        sqlx::query(
            "UPDATE jobs SET start_at = $2, release_at = $3, published_at = NULL WHERE id = $1",
        )
        .bind(id)
        .bind(start_at)
        .bind(release_at)
        .execute(&mut *tx)
        .await?;
        if due_now {
            publish = true;
        } else {
            sqlx::query(&format!("SELECT pg_notify('{RELEASE_CHANNEL}', '')"))
                .execute(&mut *tx)
                .await?;
        }
    }
    if let Some(next) = next.filter(|next| *next != current) {
        if !current.can_move_to(next) {
            return Err(Error::conflict(format!(
                "job {id} is {current} and cannot become {next}"
            )));
        }
        move_status(&mut tx, id, current, next).await?;
        publish = next == JobStatus::Queued;
        cancel = current == JobStatus::Running && next == JobStatus::Cancelled;
    }
    if let Some(entry) = log {
        append_log(&mut tx, id, &entry).await?;
    }
    if redefines || next.is_some() {
        sqlx::query("UPDATE jobs SET updated_at = now() WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    let job = lock(&mut tx, id).await?.into_job()?;
    tx.commit().await?;
    Ok(Updated {
        job,
        publish,
        cancel,
    })
}

async fn move_status(
    tx: &mut PgConnection,
    id: Id,
    current: JobStatus,
    next: JobStatus,
) -> Result<()> {
    use JobStatus::{Cancelled, Error as Failed, Ok as Done, Queued, Running};
    let sql = match (current, next) {
        // Started by hand: it holds a lease nobody renews, so the scheduler
        // requeues it if nothing finishes it in time.
        (Queued, Running) => {
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = now(),
                    lease_until = now() + interval '60 seconds', worker = 'api' WHERE id = $1"
        }
        (Running, Queued) => {
            "UPDATE jobs SET status = 'queued', lease_until = NULL, worker = NULL,
                    published_at = NULL, release_at = now() + interval '5 seconds' WHERE id = $1"
        }
        (_, Done | Failed | Cancelled) => {
            "UPDATE jobs SET status = $2, finished_at = now(), lease_until = NULL WHERE id = $1"
        }
        _ => {
            return Err(crate::Error::conflict(format!(
                "job {id} is {current} and cannot become {next}"
            )))
        }
    };
    sqlx::query(sql)
        .bind(id)
        .bind(next.as_str())
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// Appends one entry written through the api (attempt 0), taking the next
/// sequence number under the job's row lock so numbers have no gaps.
async fn append_log(tx: &mut PgConnection, id: Id, entry: &NewLogEntry) -> Result<()> {
    sqlx::query(
        "WITH bump AS (UPDATE jobs SET log_seq = log_seq + 1 WHERE id = $1 RETURNING log_seq)
         INSERT INTO job_logs (job_id, seq, ts, level, task, message, data, attempt)
         SELECT $1, bump.log_seq, $2, $3, $4, $5, $6, 0 FROM bump",
    )
    .bind(id)
    .bind(entry.ts)
    .bind(&entry.level)
    .bind(&entry.task)
    .bind(&entry.message)
    .bind(entry.data.as_ref().map(Json))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// It was queued and is now cancelled; it will never start.
    Queued,
    /// It is running; the worker holding it was asked to stop.
    Running,
}

/// Cancels a job. A finished job cannot be cancelled (409).
pub async fn cancel(pool: &PgPool, id: Id) -> Result<Cancelled> {
    let mut tx = pool.begin().await?;
    let row = lock(&mut tx, id).await?;
    let outcome = match JobStatus::parse(&row.status).map_err(Error::invalid)? {
        JobStatus::Queued => {
            sqlx::query(
                "UPDATE jobs SET status = 'cancelled', cancel_requested = true, finished_at = now(),
                        updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Cancelled::Queued
        }
        JobStatus::Running => {
            sqlx::query(
                "UPDATE jobs SET cancel_requested = true, updated_at = now() WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            Cancelled::Running
        }
        done => {
            return Err(Error::conflict(format!(
                "job {id} is {done} and cannot be cancelled"
            )));
        }
    };
    tx.commit().await?;
    Ok(outcome)
}

#[derive(sqlx::FromRow)]
struct LogRow {
    seq: i32,
    ts: DateTime<Utc>,
    level: String,
    task: Option<String>,
    message: String,
    data: Option<Json<Value>>,
}

/// A page of a job's log entries in order, and how many there are.
pub async fn logs(pool: &PgPool, id: Id, paging: Paging) -> Result<(Vec<LogEntry>, i64)> {
    let total: Option<i32> = sqlx::query_scalar("SELECT log_seq FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    let total = total.ok_or_else(|| missing(id))?;
    let rows: Vec<LogRow> = sqlx::query_as(
        "SELECT seq, ts, level, task, message, data FROM job_logs WHERE job_id = $1
             ORDER BY seq LIMIT $2 OFFSET $3",
    )
    .bind(id)
    .bind(paging.per_page)
    .bind(paging.offset())
    .fetch_all(pool)
    .await?;
    let entries = rows
        .into_iter()
        .map(|row| LogEntry {
            seq: row.seq,
            ts: row.ts,
            level: row.level,
            task: row.task,
            message: row.message,
            data: row.data.map(|json| json.0),
        })
        .collect();
    Ok((entries, i64::from(total)))
}

// ---------------------------------------------------------------------------
// Worker side

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
    parameters: String,
    created_by: Id,
    trace_parent: Option<String>,
    tasks: String,
    on_error: String,
    timeout_secs: i32,
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
        let tasks: Vec<Task> = serde_json::from_str(&self.tasks).map_err(|err| {
            unreadable(format!(
                "workflow {}: its tasks cannot be read: {err}",
                self.workflow_id
            ))
        })?;
        let on_error: Vec<Task> = serde_json::from_str(&self.on_error).map_err(|err| {
            unreadable(format!(
                "workflow {}: its onError tasks cannot be read: {err}",
                self.workflow_id
            ))
        })?;
        Ok(Claimed {
            id: self.id,
            attempt: self.attempt,
            parameters,
            created_by: self.created_by,
            trace_parent: self.trace_parent,
            tasks,
            on_error,
            timeout: self.timeout_secs.max(0) as u32,
            waited: self.waited,
            late: self.late,
        })
    }
}

/// Claims the given jobs that are queued and due, for `worker`, with a
/// lease of `lease`: each claim bumps `attempt`. Jobs not returned are
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
             RETURNING id, attempt, workflow_id, parameters, created_by, trace_parent,
                       extract(epoch from clock_timestamp() - created_at)::float8 AS waited,
                       CASE WHEN start_at > created_at
                            THEN extract(epoch from clock_timestamp() - start_at)::float8 END AS late),
         early AS (
             UPDATE jobs SET published_at = NULL
             WHERE id = ANY($1) AND status = 'queued' AND start_at > now())
         SELECT c.id, c.attempt, c.workflow_id, c.parameters::text AS parameters, c.created_by,
                c.trace_parent, w.tasks::text AS tasks, w.on_error::text AS on_error,
                w.timeout_secs, c.waited, c.late
         FROM c JOIN workflows w ON w.id = c.workflow_id",
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

/// A run still held after a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub id: Id,
    pub cancel_requested: bool,
}

/// Renews the leases of these runs; returns those still held (a run missing
/// from the answer has lost its claim and must stop without writing).
pub async fn heartbeat(pool: &PgPool, runs: &[(Id, i32)], lease: Duration) -> Result<Vec<Held>> {
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
        .map(|(id, cancel_requested)| Held {
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
    let statuses: Vec<&str> = outcomes.iter().map(|o| o.status.as_str()).collect();
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
/// message already back in the broker.
pub async fn hand_back(pool: &PgPool, id: Id, attempt: i32) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE jobs SET status = 'queued', lease_until = NULL, worker = NULL,
                published_at = now(), release_at = now() + interval '5 seconds', updated_at = now()
         WHERE id = $1 AND attempt = $2 AND status = 'running'",
    )
    .bind(id)
    .bind(attempt)
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

// ---------------------------------------------------------------------------
// Scheduler side

/// A job to publish.
#[derive(Debug, Clone)]
pub struct ToPublish {
    pub id: Id,
    pub trace_parent: Option<String>,
}

/// Locks up to `limit` queued, unpublished jobs whose release time has
/// come, skipping rows another scheduler holds. The caller publishes them
/// and then calls [`mark_released`] in the same transaction, so a crash in
/// between only leads to a duplicate message, which workers drop.
pub async fn lock_releasable(tx: &mut PgConnection, limit: i64) -> Result<Vec<ToPublish>> {
    let rows: Vec<(Id, Option<String>)> = sqlx::query_as(
        "SELECT id, trace_parent FROM jobs
         WHERE status = 'queued' AND published_at IS NULL AND release_at <= now()
         ORDER BY release_at LIMIT $1 FOR UPDATE SKIP LOCKED",
    )
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, trace_parent)| ToPublish { id, trace_parent })
        .collect())
}

/// Marks locked jobs as published.
pub async fn mark_released(tx: &mut PgConnection, ids: &[Id]) -> Result<()> {
    sqlx::query("UPDATE jobs SET published_at = now() WHERE id = ANY($1)")
        .bind(ids)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The next instant the scheduler has something to do (a release, a lease
/// expiry or a cron slot) and the database's clock now, so the wait is
/// computed on one clock.
pub async fn next_wake(pool: &PgPool) -> Result<(Option<DateTime<Utc>>, DateTime<Utc>)> {
    Ok(sqlx::query_as(
        "SELECT least(
             (SELECT min(release_at) FROM jobs WHERE status = 'queued' AND published_at IS NULL),
             (SELECT min(lease_until) FROM jobs WHERE status = 'running'),
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
    let rows: Vec<(Id, i32, String)> = sqlx::query_as(
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
    rows.into_iter()
        .map(|(id, attempt, status)| {
            Ok(Rescued {
                id,
                attempt,
                status: JobStatus::parse(&status).map_err(Error::invalid)?,
            })
        })
        .collect()
}

/// Fires every cron slot that is due: one job per slot (a unique index
/// backs this up), then advances the workflow to its next slot after now,
/// so slots missed while no scheduler ran are skipped, not replayed.
/// `trace_parent` starts each slot's trace (the caller's tracing, given the
/// workflow and the slot) and returns its `traceparent`, if traced.
/// Returns how many jobs were created.
pub async fn fire_schedules(
    pool: &PgPool,
    trace_parent: impl Fn(Id, DateTime<Utc>) -> Option<String>,
) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let due: Vec<(Id, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT id, schedule, next_fire_at FROM workflows
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
    for (id, text, slot) in due {
        let next = Schedule::parse(&text).ok().and_then(|s| s.next_after(now));
        let trace_parent = trace_parent(id, slot);
        let created = sqlx::query(
            "INSERT INTO jobs (workflow_id, cron_slot, release_at, trace_parent)
             VALUES ($1, $2, now(), $3)
             ON CONFLICT (workflow_id, cron_slot) WHERE cron_slot IS NOT NULL DO NOTHING",
        )
        .bind(id)
        .bind(slot)
        .bind(trace_parent)
        .execute(&mut *tx)
        .await?;
        fired += created.rows_affected();
        sqlx::query("UPDATE workflows SET next_fire_at = $2 WHERE id = $1")
            .bind(id)
            .bind(next)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(fired)
}

/// Deletes up to `batch` jobs (and their logs) that finished before
/// `older_than` ago; returns how many.
pub async fn prune(pool: &PgPool, older_than: Duration, batch: i64) -> Result<u64> {
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
