//! Workflows: list, read, create, update, pause, resume and delete, keeping each cron
//! schedule's next slot in `next_fire_at` for the scheduler, and every
//! saved definition in `workflow_versions` (a job runs its version).

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgPool;

use crate::{Error, Result};
use crust_model::flow::{Concurrency, RateLimit};
use crust_model::job::Parameters;
use crust_model::paging::Paging;
use crust_model::trigger::Trigger;
use crust_model::workflow::{
    Definition, Task, ValidWorkflow, Webhook, WebhookChange, Workflow, WorkflowPatch,
    WorkflowVersion,
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
    triggers: Json<Vec<Trigger>>,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
    paused_at: Option<DateTime<Utc>>,
    has_webhook: bool,
    concurrency: Option<Json<Concurrency>>,
    rate_limit: Option<Json<RateLimit>>,
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
            triggers: row.triggers.0,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            paused: row.paused_at.is_some(),
            paused_at: row.paused_at,
            webhook: row.has_webhook.then(|| Webhook {
                secret: crust_model::secret::MASK.to_owned(),
            }),
            concurrency: row.concurrency.map(|json| json.0),
            rate_limit: row.rate_limit.map(|json| json.0),
            queue: row.queue,
        }
    }
}

const COLUMNS: &str =
    "id, name, tasks, on_error, timeout_secs, parallelism, parameters, schedule, triggers, \
     version, created_at, updated_at, paused_at, webhook_secret IS NOT NULL AS has_webhook, \
     concurrency, rate_limit, queue";

/// A 409 for a workflow Crust defines itself (the CSV import): it may be
/// run and paused, not edited or deleted.
async fn refuse_builtin(conn: &mut sqlx::PgConnection, id: Id) -> Result<()> {
    let builtin: Option<String> =
        sqlx::query_scalar("SELECT builtin FROM workflows WHERE id = $1 AND deleted_at IS NULL")
            .bind(id)
            .fetch_optional(conn)
            .await?
            .flatten();
    match builtin {
        Some(name) => Err(Error::conflict(format!(
            "workflow {id} is built in ({name}); it cannot be edited or deleted"
        ))),
        None => Ok(()),
    }
}

/// The webhook secret of live workflow `id`, and whom its deliveries' jobs
/// act for (the workflow's last editor, as its cron jobs do): 404 when
/// there is no such workflow or it has no webhook (a caller without a token
/// learns nothing more).
pub async fn webhook(pool: &PgPool, id: Id) -> Result<(String, crust_model::access::Actor)> {
    let row: Option<(Option<String>, Id, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT webhook_secret, edited_by, editor_roles FROM workflows
         WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?;
    match row {
        Some((Some(secret), user, roles)) => {
            Ok((secret, crust_model::access::Actor { user, roles }))
        }
        _ => Err(Error::not_found(format!("workflow {id} has no webhook"))),
    }
}

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
    // The editor (when an api request makes the change) is whom the
    // workflow's cron jobs act for.
    if let Some(editor) = crate::audit::actor() {
        sqlx::query("UPDATE workflows SET edited_by = $2, editor_roles = $3 WHERE id = $1")
            .bind(id)
            .bind(editor.user)
            .bind(editor.roles)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Creates a workflow, at version 1.
pub async fn create(pool: &PgPool, input: ValidWorkflow) -> Result<Workflow> {
    let mut tx = pool.begin().await?;
    let row: WorkflowRow = sqlx::query_as(&format!(
        "WITH w AS (INSERT INTO workflows (name, tasks, on_error, timeout_secs, schedule, next_fire_at,
                                           parameters, version, parallelism, concurrency,
                                           concurrency_limit, concurrency_key_spec, rate_limit,
                                           rate_step_us, rate_key_spec, triggers, queue)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $11, $12, $13, $14, $15,
                            $16)
                    RETURNING *)
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
    .bind(input.concurrency.as_ref().map(|(shown, _)| Json(shown)))
    .bind(input.concurrency.as_ref().map(|(_, valid)| valid.limit))
    .bind(input.concurrency.as_ref().map(|(_, valid)| Json(&valid.key.0)))
    .bind(input.rate_limit.as_ref().map(|(shown, _)| Json(shown)))
    .bind(input.rate_limit.as_ref().map(|(_, valid)| valid.step_us))
    .bind(input.rate_limit.as_ref().map(|(_, valid)| Json(&valid.key.0)))
    .bind(Json(&input.triggers))
    .bind(&input.queue)
    .fetch_one(&mut *tx)
    .await?;
    crate::triggers::save(&mut tx, row.id, &input.triggers).await?;
    let mut row = row;
    if input.webhook == WebhookChange::Keep {
        return Err(Error::invalid(
            "webhook.secret: a new workflow has no secret to keep; give the secret itself",
        ));
    }
    row.has_webhook = set_webhook(&mut tx, row.id, &input.webhook).await?;
    record_version(&mut tx, row.id, row.version, &input.definition()).await?;
    crate::audit::commit(tx).await?;
    Ok(row.into())
}

/// Stores (or removes) a workflow's webhook secret as `change` says; true
/// when the workflow has a webhook afterwards. A statement of its own, so
/// the secret never enters the versioned definition.
async fn set_webhook(tx: &mut sqlx::PgConnection, id: Id, change: &WebhookChange) -> Result<bool> {
    let secret = match change {
        WebhookChange::Keep => {
            let kept: Option<bool> = sqlx::query_scalar(
                "SELECT webhook_secret IS NOT NULL FROM workflows WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            return Ok(kept.unwrap_or(false));
        }
        WebhookChange::None => None,
        WebhookChange::Set(secret) => Some(secret.as_str()),
    };
    sqlx::query("UPDATE workflows SET webhook_secret = $2 WHERE id = $1")
        .bind(id)
        .bind(secret)
        .execute(&mut *tx)
        .await?;
    Ok(secret.is_some())
}

/// Edits a workflow: the keys `patch` names change, the rest stay, and the
/// result is validated as a whole. The row is locked from read to write, so
/// concurrent edits of different keys do not undo each other. Every edit is
/// a new version; jobs already created keep running the version they were
/// created with.
pub async fn update(pool: &PgPool, id: Id, patch: WorkflowPatch) -> Result<Workflow> {
    let mut tx = pool.begin().await?;
    refuse_builtin(&mut tx, id).await?;
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
                           version = version + 1, parallelism = $9, updated_at = now(),
                           concurrency = $10, concurrency_limit = $11, concurrency_key_spec = $12,
                           rate_limit = $13, rate_step_us = $14, rate_key_spec = $15, triggers = $16,
                           queue = $17
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
    .bind(input.concurrency.as_ref().map(|(shown, _)| Json(shown)))
    .bind(input.concurrency.as_ref().map(|(_, valid)| valid.limit))
    .bind(
        input
            .concurrency
            .as_ref()
            .map(|(_, valid)| Json(&valid.key.0)),
    )
    .bind(input.rate_limit.as_ref().map(|(shown, _)| Json(shown)))
    .bind(input.rate_limit.as_ref().map(|(_, valid)| valid.step_us))
    .bind(
        input
            .rate_limit
            .as_ref()
            .map(|(_, valid)| Json(&valid.key.0)),
    )
    .bind(Json(&input.triggers))
    .bind(&input.queue)
    .fetch_one(&mut *tx)
    .await?;
    crate::triggers::save(&mut tx, id, &input.triggers).await?;
    let mut row = row;
    row.has_webhook = set_webhook(&mut tx, id, &input.webhook).await?;
    record_version(&mut tx, id, row.version, &input.definition()).await?;
    // A raised or removed limit frees slots: hand them out now, key by key
    // in lock order (jobs keep the key they were created with).
    sqlx::query(
        "SELECT crust_grant_slots(workflow_id, concurrency_key)
         FROM (SELECT workflow_id, concurrency_key
               FROM (SELECT DISTINCT workflow_id, concurrency_key FROM jobs
                     WHERE workflow_id = $1 AND concurrency_key IS NOT NULL
                       AND status = 'queued' AND NOT holds_slot) keys
               ORDER BY crust_slot_lock_id(workflow_id, concurrency_key) OFFSET 0) waiting",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    crate::audit::commit(tx).await?;
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

/// The IDs of every live workflow (for permission-filtered job lists).
pub async fn ids(pool: &PgPool) -> Result<Vec<Id>> {
    Ok(
        sqlx::query_scalar("SELECT id FROM workflows WHERE deleted_at IS NULL ORDER BY id")
            .fetch_all(pool)
            .await?,
    )
}

/// Pauses a workflow (idempotent; a paused one keeps its first `paused_at`):
/// from now on a worker's claim hands its queued jobs back unpublished and
/// the scheduler neither releases them nor fires its cron slots (they are
/// skipped, not fired later). Jobs already running finish normally.
pub async fn pause(pool: &PgPool, id: Id) -> Result<Workflow> {
    let mut tx = crate::audit::begin(pool).await?;
    let row: Option<WorkflowRow> = sqlx::query_as(&format!(
        "UPDATE workflows SET paused_at = coalesce(paused_at, now())
         WHERE id = $1 AND deleted_at IS NULL RETURNING {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let workflow = row.map(Into::into).ok_or_else(|| missing(id))?;
    crate::audit::commit(tx).await?;
    Ok(workflow)
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
    crate::audit::commit(tx).await?;
    Ok(row.into())
}

/// Deletes a workflow (softly, so its finished jobs keep their history),
/// whatever its definition holds: nothing here reads it. Its schedule stops
/// at once, its queued and waiting jobs are cancelled and its running ones are asked to
/// stop; returns those running jobs, for the caller to tell the workers.
pub async fn delete(pool: &PgPool, id: Id) -> Result<Vec<Id>> {
    let mut tx = pool.begin().await?;
    refuse_builtin(&mut tx, id).await?;
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
    crate::triggers::save(&mut tx, id, &[]).await?;
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
    crate::audit::commit(tx).await?;
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
