//! Workflows: list, read, create, update, pause, resume and delete, keeping each cron
//! schedule's next slot in `next_fire_at` for the scheduler, and every
//! saved definition in `workflow_versions` (a job runs its version).

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgPool;

use crate::{Error, Result};
use crust_model::job::Parameters;
use crust_model::paging::Paging;
use crust_model::workflow::{
    Definition, Task, ValidWorkflow, Workflow, WorkflowPatch, WorkflowVersion,
};
use crust_model::Id;

#[derive(sqlx::FromRow)]
struct WorkflowRow {
    id: Id,
    name: String,
    tasks: Json<Vec<Task>>,
    on_error: Json<Vec<Task>>,
    timeout_secs: i32,
    parallelism: i32,
    parameters: Json<Parameters>,
    schedule: Option<String>,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
    paused_at: Option<DateTime<Utc>>,
    queue: String,
}

impl From<WorkflowRow> for Workflow {
    fn from(row: WorkflowRow) -> Self {
        Workflow {
            id: row.id,
            name: row.name,
            tasks: row.tasks.0,
            on_error: row.on_error.0,
            timeout: row.timeout_secs.max(0) as u32,
            parallelism: row.parallelism.max(1) as u32,
            parameters: row.parameters.0,
            schedule: row.schedule,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            paused: row.paused_at.is_some(),
            paused_at: row.paused_at,
            queue: row.queue,
        }
    }
}

const COLUMNS: &str =
    "id, name, tasks, on_error, timeout_secs, parallelism, parameters, schedule, \
     version, created_at, updated_at, paused_at, queue";

fn missing(id: Id) -> Error {
    Error::not_found(format!("workflow {id} does not exist"))
}

/// Live workflows, by ID.
pub async fn list(pool: &PgPool) -> Result<Vec<Workflow>> {
    let rows: Vec<WorkflowRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM workflows WHERE deleted_at IS NULL ORDER BY id"
    ))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Workflow::from).collect())
}

/// One live workflow.
pub async fn get(pool: &PgPool, id: Id) -> Result<Workflow> {
    sqlx::query_as::<_, WorkflowRow>(&format!(
        "SELECT {COLUMNS} FROM workflows WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .map(Workflow::from)
    .ok_or_else(|| missing(id))
}

fn next_fire(input: &ValidWorkflow) -> Option<DateTime<Utc>> {
    input
        .schedule
        .as_ref()
        .and_then(|schedule| schedule.next_after(Utc::now()))
}

/// Wakes the scheduler (at commit) when the workflow has a next cron slot,
/// so it re-arms its timer at once and the first slot is not late by up to
/// its longest sleep.
const WAKE_SCHEDULER: &str =
    "CASE WHEN next_fire_at IS NOT NULL THEN pg_notify('crust_jobs_release', '') END";

/// Records version `version` of workflow `id` (in the transaction that
/// saved it).
async fn record_version(
    tx: &mut sqlx::PgConnection,
    id: Id,
    version: i32,
    definition: &Definition,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO workflow_versions (workflow_id, version, definition) VALUES ($1, $2, $3)",
    )
    .bind(id)
    .bind(version)
    .bind(Json(definition))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Creates a workflow, at version 1.
pub async fn create(pool: &PgPool, input: ValidWorkflow) -> Result<Workflow> {
    let mut tx = pool.begin().await?;
    let row: WorkflowRow = sqlx::query_as(&format!(
        "WITH w AS (INSERT INTO workflows (name, tasks, on_error, timeout_secs, schedule, next_fire_at,
                                           parameters, version, parallelism, queue)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9) RETURNING *)
         SELECT {COLUMNS}, {WAKE_SCHEDULER} AS notified FROM w"
    ))
    .bind(&input.name)
    .bind(Json(&input.tasks))
    .bind(Json(&input.on_error))
    .bind(input.timeout as i32)
    .bind(input.schedule.as_ref().map(|s| s.text.clone()))
    .bind(next_fire(&input))
    .bind(Json(&input.parameters))
    .bind(input.parallelism as i32)
    .bind(&input.queue)
    .fetch_one(&mut *tx)
    .await?;
    record_version(&mut tx, row.id, row.version, &input.definition()).await?;
    tx.commit().await?;
    Ok(row.into())
}

/// Edits a workflow: the keys `patch` names change, the rest stay, and the
/// result is validated as a whole. The row is locked from read to write, so
/// concurrent edits of different keys do not undo each other. Every edit is
/// a new version; jobs already created keep running the version they were
/// created with.
pub async fn update(pool: &PgPool, id: Id, patch: WorkflowPatch) -> Result<Workflow> {
    let mut tx = pool.begin().await?;
    let current: Workflow = sqlx::query_as::<_, WorkflowRow>(&format!(
        "SELECT {COLUMNS} FROM workflows WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .map(Workflow::from)
    .ok_or_else(|| missing(id))?;
    let input = patch.apply(current).validate()?;
    let row: WorkflowRow = sqlx::query_as(&format!(
        "WITH w AS (UPDATE workflows SET name = $2, tasks = $3, on_error = $4, timeout_secs = $5,
                           schedule = $6, next_fire_at = $7, parameters = $8,
                           version = version + 1, parallelism = $9, queue = $10,
                           updated_at = now()
                    WHERE id = $1 RETURNING *)
         SELECT {COLUMNS}, {WAKE_SCHEDULER} AS notified FROM w"
    ))
    .bind(id)
    .bind(&input.name)
    .bind(Json(&input.tasks))
    .bind(Json(&input.on_error))
    .bind(input.timeout as i32)
    .bind(input.schedule.as_ref().map(|s| s.text.clone()))
    .bind(next_fire(&input))
    .bind(Json(&input.parameters))
    .bind(input.parallelism as i32)
    .bind(&input.queue)
    .fetch_one(&mut *tx)
    .await?;
    record_version(&mut tx, id, row.version, &input.definition()).await?;
    tx.commit().await?;
    Ok(row.into())
}

#[derive(sqlx::FromRow)]
struct VersionRow {
    version: i32,
    created_at: DateTime<Utc>,
    definition: Json<Definition>,
}

/// A page of a workflow's versions, newest first, and how many there are.
/// A deleted workflow's versions are gone with it (404).
pub async fn versions(
    pool: &PgPool,
    id: Id,
    paging: Paging,
) -> Result<(Vec<WorkflowVersion>, i64)> {
    let count: Option<i64> = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM workflow_versions WHERE workflow_id = w.id)
         FROM workflows w WHERE w.id = $1 AND w.deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    let count = count.ok_or_else(|| missing(id))?;
    let rows: Vec<VersionRow> = sqlx::query_as(
        "SELECT version, created_at, definition FROM workflow_versions WHERE workflow_id = $1
         ORDER BY version DESC LIMIT $2 OFFSET $3",
    )
    .bind(id)
    .bind(paging.per_page)
    .bind(paging.offset())
    .fetch_all(pool)
    .await?;
    let versions = rows
        .into_iter()
        .map(|row| WorkflowVersion {
            version: row.version,
            created_at: row.created_at,
            definition: row.definition.0,
        })
        .collect();
    Ok((versions, count))
}

/// Pauses a workflow (idempotent; a paused one keeps its first `paused_at`):
/// from now on a worker's claim hands its queued jobs back unpublished and
/// the scheduler neither releases them nor fires its cron slots (they are
/// skipped, not fired later). Jobs already running finish normally.
pub async fn pause(pool: &PgPool, id: Id) -> Result<Workflow> {
    let row: Option<WorkflowRow> = sqlx::query_as(&format!(
        "UPDATE workflows SET paused_at = coalesce(paused_at, now())
         WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.map(Into::into).ok_or_else(|| missing(id))
}

/// Resumes a workflow (idempotent): its queued jobs nobody published (those
/// a claim handed back while it was paused, and those woken or requeued
/// meanwhile) become due now (a delayed job keeps its `startAt`), and the scheduler is woken to publish them.
pub async fn resume(pool: &PgPool, id: Id) -> Result<Workflow> {
    let mut tx = pool.begin().await?;
    let row: Option<WorkflowRow> = sqlx::query_as(&format!(
        "UPDATE workflows SET paused_at = NULL
         WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Err(missing(id));
    };
    sqlx::query(
        "UPDATE jobs SET release_at = now()
         WHERE id IN (SELECT id FROM jobs WHERE workflow_id = $1 AND status = 'queued'
                        AND published_at IS NULL AND release_at > now()
                        AND (start_at IS NULL OR start_at <= now())
                      ORDER BY id FOR UPDATE)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::jobs::RELEASE_CHANNEL)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(row.into())
}

/// Deletes a workflow (softly, so its finished jobs keep their history),
/// whatever its definition holds: nothing here reads it. Its schedule stops
/// at once, its queued and waiting jobs are cancelled and its running ones are asked to
/// stop; returns those running jobs, for the caller to tell the workers.
pub async fn delete(pool: &PgPool, id: Id) -> Result<Vec<Id>> {
    let mut tx = pool.begin().await?;
    let found: Option<Id> = sqlx::query_scalar(
        "UPDATE workflows SET deleted_at = now(), next_fire_at = NULL
         WHERE id = $1 AND deleted_at IS NULL RETURNING id",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Err(missing(id));
    }
    let running: Vec<Id> = sqlx::query_scalar::<_, Option<Id>>(
        "UPDATE jobs SET cancel_requested = true, updated_at = now(), wake_at = NULL,
                status = CASE WHEN status = 'running' THEN status ELSE 'cancelled' END,
                finished_at = CASE WHEN status = 'running' THEN finished_at ELSE now() END
         WHERE id IN (SELECT id FROM jobs WHERE workflow_id = $1
                        AND status IN ('queued', 'running', 'waiting') ORDER BY id FOR UPDATE)
         RETURNING CASE WHEN status = 'running' THEN id END",
    )
    .bind(id)
    .fetch_all(&mut *tx)
    .await?
    .into_iter()
    .flatten()
    .collect();
    tx.commit().await?;
    Ok(running)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_wake_up_goes_to_the_channel_the_scheduler_listens_on() {
        let channel = format!("'{}'", crate::jobs::RELEASE_CHANNEL);
        assert!(super::WAKE_SCHEDULER.contains(&channel));
    }
}
