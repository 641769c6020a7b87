//! Job steps: each task of a job (and each item of a `forEach` task) has a
//! row written as it starts and as it ends. Every write is fenced on the
//! run's `attempt` like the run's other writes: it locks the job's row in
//! share mode and only writes while the job is `running` under that
//! attempt, so a run that lost its claim cannot record a step, and a claim
//! (which updates the row) waits for a step write in flight.

use chrono::{DateTime, Utc};
use crust_model::step::{Step, StepStatus};
use crust_model::Id;
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::{PgExecutor, PgPool};

use crate::Result;

/// The item number of a task's own step; items of a `forEach` count from 0.
pub const TASK_ITEM: i32 = -1;

/// A step as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredStep {
    pub task: String,
    /// [`TASK_ITEM`] for the task itself.
    pub item: i32,
    pub status: String,
    pub tries: i32,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// A durable sleep's end or a wait's deadline, fixed by the first try.
    pub until_at: Option<DateTime<Utc>>,
    pub output: Option<Json<Box<RawValue>>>,
    pub error: Option<String>,
}

impl StoredStep {
    /// Its status; a stored value this build does not know reads as
    /// `running`, i.e. not done, so the step runs again rather than being
    /// taken as finished.
    pub fn status(&self) -> StepStatus {
        StepStatus::parse(&self.status).unwrap_or(StepStatus::Running)
    }

    /// The step as the API shows it.
    pub fn view(self) -> Step {
        let status = self.status();
        Step {
            task: self.task,
            index: u32::try_from(self.item).ok(),
            status,
            tries: self.tries,
            started_at: self.started_at,
            finished_at: self.finished_at,
            output: self.output.map(|Json(raw)| raw),
            error: self.error,
        }
    }
}

const COLUMNS: &str = "task, item, status, tries, started_at, finished_at, until_at, output, error";

/// Every step of a job, by task then item.
pub async fn list(executor: impl PgExecutor<'_>, job: Id) -> Result<Vec<StoredStep>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM job_steps WHERE job_id = $1 ORDER BY task, item"
    ))
    .bind(job)
    .fetch_all(executor)
    .await?)
}

/// The outputs of a job's finished tasks as one JSON object (`{task:
/// output}`, `null` for skipped ones), if any finished.
pub async fn outputs(executor: impl PgExecutor<'_>, job: Id) -> Result<Option<Box<RawValue>>> {
    let row: Option<Json<Box<RawValue>>> = sqlx::query_scalar(
        "SELECT jsonb_object_agg(task, coalesce(output, 'null'::jsonb)) FROM job_steps
         WHERE job_id = $1 AND item = -1 AND status IN ('ok', 'skipped')",
    )
    .bind(job)
    .fetch_one(executor)
    .await?;
    Ok(row.map(|Json(raw)| raw))
}

/// The job's row, share-locked, while the run `attempt` holds it.
const FENCE: &str =
    "run AS (SELECT id FROM jobs WHERE id = $1 AND attempt = $2 AND status = 'running' FOR SHARE)";

/// Starts a try of a step: `running`, one more try, `started_at` kept from
/// the first try, `until` kept from the first try that set one. Returns the
/// step's `until_at`, or `None` when the run no longer holds the job.
pub async fn start(
    pool: &PgPool,
    job: Id,
    attempt: i32,
    task: &str,
    item: i32,
    until: Option<DateTime<Utc>>,
) -> Result<Option<Option<DateTime<Utc>>>> {
    Ok(sqlx::query_scalar(&format!(
        "WITH {FENCE}
         INSERT INTO job_steps (job_id, task, item, status, tries, attempt, started_at, until_at)
         SELECT id, $3, $4, 'running', 1, $2, now(), $5 FROM run
         ON CONFLICT (job_id, task, item) DO UPDATE SET
             status = 'running', tries = job_steps.tries + 1, attempt = EXCLUDED.attempt,
             until_at = coalesce(job_steps.until_at, EXCLUDED.until_at),
             finished_at = NULL, error = NULL
         RETURNING until_at"
    ))
    .bind(job)
    .bind(attempt)
    .bind(task)
    .bind(item)
    .bind(until)
    .fetch_optional(pool)
    .await?)
}

/// Records where a step ended (`ok`, `error`, `skipped`, `cancelled`, or
/// `waiting` when the job parks on it), creating the row if the step never
/// started (a skipped one). False when the run no longer holds the job.
#[allow(clippy::too_many_arguments)]
pub async fn record(
    pool: &PgPool,
    job: Id,
    attempt: i32,
    task: &str,
    item: i32,
    status: StepStatus,
    output: Option<&RawValue>,
    error: Option<&str>,
) -> Result<bool> {
    let finished = status != StepStatus::Waiting;
    let done = sqlx::query(&format!(
        "WITH {FENCE}
         INSERT INTO job_steps (job_id, task, item, status, tries, attempt, finished_at, output, error)
         SELECT id, $3, $4, $5, 0, $2, CASE WHEN $8 THEN now() END, $6, $7 FROM run
         ON CONFLICT (job_id, task, item) DO UPDATE SET
             status = EXCLUDED.status, attempt = EXCLUDED.attempt,
             finished_at = EXCLUDED.finished_at, output = EXCLUDED.output, error = EXCLUDED.error"
    ))
    .bind(job)
    .bind(attempt)
    .bind(task)
    .bind(item)
    .bind(status.as_str())
    .bind(output.map(Json))
    .bind(error)
    .bind(finished)
    .execute(pool)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Copies the finished (`ok` or `skipped`) steps of `tasks` from one job to
/// another, for a rerun that starts further down the graph.
pub async fn copy_done(
    executor: impl PgExecutor<'_>,
    from: Id,
    to: Id,
    tasks: &[String],
) -> Result<u64> {
    Ok(sqlx::query(
        "INSERT INTO job_steps (job_id, task, item, status, tries, attempt, started_at, finished_at, output, error)
         SELECT $2, task, item, status, tries, 0, started_at, finished_at, output, error
         FROM job_steps WHERE job_id = $1 AND task = ANY($3) AND status IN ('ok', 'skipped')",
    )
    .bind(from)
    .bind(to)
    .bind(tasks)
    .execute(executor)
    .await?
    .rows_affected())
}

/// One step start of a batch (see [`start_many`]).
#[derive(Debug, Clone)]
pub struct Start {
    pub job: Id,
    pub attempt: i32,
    pub task: String,
    pub item: i32,
    pub until: Option<DateTime<Utc>>,
}

/// One step outcome of a batch (see [`record_many`]).
#[derive(Debug, Clone)]
pub struct Record {
    pub job: Id,
    pub attempt: i32,
    pub task: String,
    pub item: i32,
    pub status: StepStatus,
    pub output: Option<Box<RawValue>>,
    pub error: Option<String>,
}

/// [`start`] for many steps in one statement (one commit): for each, its
/// `until_at`, or `None` when its run no longer holds the job. No two may
/// name the same step.
pub async fn start_many(
    pool: &PgPool,
    starts: &[Start],
) -> Result<Vec<Option<Option<DateTime<Utc>>>>> {
    let jobs: Vec<Id> = starts.iter().map(|s| s.job).collect();
    let attempts: Vec<i32> = starts.iter().map(|s| s.attempt).collect();
    let tasks: Vec<&str> = starts.iter().map(|s| s.task.as_str()).collect();
    let items: Vec<i32> = starts.iter().map(|s| s.item).collect();
    let untils: Vec<Option<DateTime<Utc>>> = starts.iter().map(|s| s.until).collect();
    let rows: Vec<(Id, String, i32, Option<DateTime<Utc>>)> = sqlx::query_as(
        "WITH input AS (
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::timestamptz[])
                           AS i(job_id, attempt, task, item, until_at)),
         run AS (
             SELECT i.* FROM input i JOIN jobs j
                 ON j.id = i.job_id AND j.attempt = i.attempt AND j.status = 'running'
             -- By primary key, whatever the statistics say (see run::claim).
             WHERE j.id = ANY($1)
             ORDER BY j.id FOR SHARE OF j)
         INSERT INTO job_steps (job_id, task, item, status, tries, attempt, started_at, until_at)
         SELECT job_id, task, item, 'running', 1, attempt, now(), until_at FROM run
         ON CONFLICT (job_id, task, item) DO UPDATE SET
             status = 'running', tries = job_steps.tries + 1, attempt = EXCLUDED.attempt,
             until_at = coalesce(job_steps.until_at, EXCLUDED.until_at),
             finished_at = NULL, error = NULL
         RETURNING job_id, task, item, until_at",
    )
    .bind(&jobs)
    .bind(&attempts)
    .bind(&tasks)
    .bind(&items)
    .bind(&untils)
    .fetch_all(pool)
    .await?;
    Ok(starts
        .iter()
        .map(|s| {
            rows.iter()
                .find(|(job, task, item, _)| *job == s.job && *task == s.task && *item == s.item)
                .map(|(_, _, _, until)| *until)
        })
        .collect())
}

/// [`record`] for many steps in one statement (one commit): for each,
/// whether its run still held the job. No two may name the same step.
pub async fn record_many(pool: &PgPool, records: &[Record]) -> Result<Vec<bool>> {
    let jobs: Vec<Id> = records.iter().map(|r| r.job).collect();
    let attempts: Vec<i32> = records.iter().map(|r| r.attempt).collect();
    let tasks: Vec<&str> = records.iter().map(|r| r.task.as_str()).collect();
    let items: Vec<i32> = records.iter().map(|r| r.item).collect();
    let statuses: Vec<&str> = records.iter().map(|r| r.status.as_str()).collect();
    let outputs: Vec<Option<&str>> = records
        .iter()
        .map(|r| r.output.as_deref().map(RawValue::get))
        .collect();
    let errors: Vec<Option<&str>> = records.iter().map(|r| r.error.as_deref()).collect();
    let rows: Vec<(Id, String, i32)> = sqlx::query_as(
        "WITH input AS (
             SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::text[],
                                  $6::text[], $7::text[])
                           AS i(job_id, attempt, task, item, status, output, error)),
         run AS (
             SELECT i.* FROM input i JOIN jobs j
                 ON j.id = i.job_id AND j.attempt = i.attempt AND j.status = 'running'
             -- By primary key, whatever the statistics say (see run::claim).
             WHERE j.id = ANY($1)
             ORDER BY j.id FOR SHARE OF j)
         INSERT INTO job_steps (job_id, task, item, status, tries, attempt, finished_at, output, error)
         SELECT job_id, task, item, status, 0, attempt,
                CASE WHEN status <> 'waiting' THEN now() END, output::jsonb, error
         FROM run
         ON CONFLICT (job_id, task, item) DO UPDATE SET
             status = EXCLUDED.status, attempt = EXCLUDED.attempt,
             finished_at = EXCLUDED.finished_at, output = EXCLUDED.output, error = EXCLUDED.error
         RETURNING job_id, task, item",
    )
    .bind(&jobs)
    .bind(&attempts)
    .bind(&tasks)
    .bind(&items)
    .bind(&statuses)
    .bind(&outputs)
    .bind(&errors)
    .fetch_all(pool)
    .await?;
    Ok(records
        .iter()
        .map(|r| {
            rows.iter()
                .any(|(job, task, item)| *job == r.job && *task == r.task && *item == r.item)
        })
        .collect())
}
