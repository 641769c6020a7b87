//! Jobs, split by who calls them: [`api`] (what crust-api does: create,
//! read, list, update, cancel, logs), [`run`] (what a worker does: claim,
//! heartbeat, finish, hand back, append logs) and [`schedule`] (what the
//! scheduler does: release, next wake, rescue, cron) and [`retention`]
//! (partitions of logs and steps, pruning). This module
//! holds what they share: the row → [`Job`] mapping and the constants.
//!
//! Invariants every module keeps:
//! - Every write of a run is fenced on `(id, attempt, status = 'running')`,
//!   so a worker that lost its claim cannot touch a newer run.
//! - Every statement that updates several jobs locks them in `id` order
//!   first: without that, a claim and a publish mark (or a heartbeat and a
//!   log batch) deadlock, and Postgres takes a second to notice.
//! - The `status` column decodes straight into [`JobStatus`] (its sqlx
//!   impls are in crust-model). A stored status that is none of the five
//!   (only possible if the table's `CHECK` was bypassed) fails whatever
//!   statement reads it with the same [`Error::Database`]: it is a
//!   server-side data error, so the api answers 500 and logs it, never a
//!   400 blaming the client; the scheduler logs it and tries again. A
//!   worker's claim never reads the column (it claims only
//!   `status = 'queued'`), and still reports each row it cannot decode as
//!   [`run::Unreadable`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::types::Json;

use crate::Error;
use crust_model::job::{Job, JobStatus, Parameters};
use crust_model::Id;

pub mod api;
pub mod follow;
pub mod retention;
pub mod run;
pub mod schedule;
pub mod search;

/// The channel the api notifies when a job's release time may have moved
/// earlier, so the scheduler re-arms its timer at once.
pub const RELEASE_CHANNEL: &str = "crust_jobs_release";

/// How long the api has to publish a job it queued (created due now,
/// rescheduled to now, requeued by hand) before the scheduler publishes it
/// instead: the job's `release_at` is set this far ahead. The api publishes
/// right after its commit, in batches with broker confirms, which takes
/// milliseconds; five seconds covers a slow broker round trip, so the
/// scheduler steps in only when the api crashed or the broker is down, and
/// a job whose api died waits at most this long. Too short only costs a
/// duplicate message (workers drop it); too long only delays such a job.
pub const PUBLISH_GRACE: Duration = Duration::from_secs(5);

/// A `jobs` row as [`COLUMNS`] selects it.
#[derive(sqlx::FromRow)]
struct JobRow {
    id: Id,
    workflow_id: Id,
    workflow_version: Option<i32>,
    status: JobStatus,
    parameters: Json<Parameters>,
    start_at: Option<DateTime<Utc>>,
    attempt: i32,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
    cron_slot: Option<DateTime<Utc>>,
    trace_parent: Option<String>,
    parent_job_id: Option<Id>,
    rerun_of: Option<Id>,
    idempotency_key: Option<String>,
    concurrency_key: Option<String>,
    rate_key: Option<String>,
    queue: String,
}

impl From<JobRow> for Job {
    fn from(row: JobRow) -> Job {
        Job {
            id: row.id,
            workflow_id: row.workflow_id,
            // Every job has one since migration 0003 (earlier ones got 1).
            workflow_version: row.workflow_version.unwrap_or(1),
            status: row.status,
            queue: row.queue,
            parameters: row.parameters.0,
            start_at: row.start_at,
            attempt: row.attempt,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            error: row.error,
            cron_slot: row.cron_slot,
            trace_id: row
                .trace_parent
                .as_deref()
                .and_then(crust_model::job::trace_id_of)
                .map(str::to_owned),
            trace_url: None,
            parent_job_id: row.parent_job_id,
            rerun_of: row.rerun_of,
            key: row.idempotency_key,
            concurrency_key: row.concurrency_key,
            rate_key: row.rate_key,
            outputs: None,
        }
    }
}

/// The columns of a [`JobRow`].
const COLUMNS: &str =
    "id, workflow_id, workflow_version, status, parameters, start_at, attempt, created_at, \
     started_at, finished_at, error, cron_slot, trace_parent, parent_job_id, rerun_of, \
     idempotency_key, concurrency_key, rate_key, queue";

/// The 404 for a job that does not exist.
fn missing(id: Id) -> Error {
    Error::not_found(format!("job {id} does not exist"))
}

/// A duration for binding as `$n * interval '1 millisecond'`.
fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
