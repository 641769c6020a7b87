//! What crust-api does to jobs: create one, record that its message was
//! published, read and list them, update one (log, status, definition),
//! cancel one and read its logs.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::{millis, missing, JobRow, COLUMNS, PUBLISH_GRACE, RELEASE_CHANNEL};
use crate::{Error, Result};
use crust_model::access::Actor;
use crust_model::job::{
    check_parameters, parse_start_at, Job, JobStatus, JobUpdate, LogEntry, NewJob, NewLogEntry,
};
use crust_model::paging::Paging;
use crust_model::Id;

/// The lease of a run started through the api (`POST /job/{id}` with
/// `status: running`, a step done by hand or by another system). Nobody
/// renews it, so it bounds how long such a run may stay `running` without
/// its outcome being posted before the scheduler counts it as lost and
/// requeues it. A minute gives a client time to post the outcome of a short
/// step, yet retries a forgotten one soon; it is longer than a worker's
/// lease (seconds, renewed by heartbeats) because nothing renews it.
pub const HAND_STARTED_LEASE: Duration = Duration::from_secs(60);

/// A newly created job (or the one its idempotency key found) and whether
/// the api should publish it now.
#[derive(Debug, Clone)]
pub struct Created {
    pub job: Job,
    /// False for a delayed job: the scheduler releases it at `startAt`.
    /// Always false for a job found by its key (it was published when it
    /// was created). A job due now is stored as published already: the
    /// caller must publish its hint after the commit (there is no later
    /// write to mark it). If the hint never arrives (the api died, the
    /// broker was down), the scheduler finds it missing and publishes it
    /// again (`HINT_GRACE`, ARCHITECTURE.md "Hints, not copies").
    pub due_now: bool,
    /// True when the job was created by this call; false when its workflow
    /// and key matched a job created within the key's TTL, which is
    /// returned instead (the api answers 200 rather than 201).
    pub new: bool,
}

/// Creates a queued job, checked by [`crust_model::job::JobInput::validate`].
/// It runs the workflow's current version, and its parameters are the
/// workflow's `parameters` with the job's own merged over them (shallow: a
/// key of the job's replaces the default's whole value). A job due now is
/// for the caller to publish; a delayed one wakes the scheduler. The
/// workflow is share-locked so it cannot be deleted (or edited) in between.
///
/// A job with a `key` whose workflow already has a job with that key,
/// created less than `key_ttl` ago, is not created: that job comes back
/// (`new: false`). See [`insert`] for how this stays right under
/// concurrent creates.
pub async fn create(
    pool: &PgPool,
    job: NewJob,
    creator: impl Into<Actor>,
    trace_parent: Option<&str>,
    key_ttl: Duration,
) -> Result<Created> {
    let creator = creator.into();
    if job.key.is_none() {
        // Without a key (and without a concurrency key, whose slot grant
        // needs a second statement) the insert is one statement, which
        // carries the request's audit entry too: its own transaction, one
        // round trip instead of four (BEGIN, insert, audit entry, COMMIT).
        let mut conn = pool.acquire().await?;
        let alone = insert_row(
            &mut conn,
            job.clone(),
            &creator,
            trace_parent,
            key_ttl,
            Audit::InStatement,
        )
        .await?;
        if let Some(created) = alone {
            return Ok(created);
        }
    }
    let mut tx = pool.begin().await?;
    let created = insert(&mut tx, job, &creator, trace_parent, key_ttl).await?;
    crate::audit::commit(tx).await?;
    Ok(created)
}

/// Who writes the request's audit entry of an [`insert_row`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audit {
    /// The insert statement itself (run outside a transaction).
    InStatement,
    /// The caller, when it commits its transaction.
    AtCommit,
}

/// Creates many jobs in one transaction, in order (see [`create`]; keys
/// are honoured per item, also between items of the same call). Any
/// failure creates none; a missing workflow is named as `jobs[i].workflowID`.
pub async fn create_many(
    pool: &PgPool,
    jobs: Vec<NewJob>,
    creator: impl Into<Actor>,
    trace_parent: Option<&str>,
    key_ttl: Duration,
) -> Result<Vec<Created>> {
    let creator = creator.into();
    let mut tx = pool.begin().await?;
    // Concurrency slots are handed out once at the end, key by key in lock
    // order: granting as each insert runs would lock keys in item order,
    // and two bulk creates naming the same keys in another order would
    // deadlock.
    sqlx::query("SELECT set_config('crust.defer_grants', 'on', true)")
        .execute(&mut *tx)
        .await?;
    let created = if jobs.iter().all(|job| job.key.is_none()) {
        insert_all(&mut tx, &jobs, &creator, trace_parent).await?
    } else {
        let mut created = Vec::with_capacity(jobs.len());
        for (index, job) in jobs.into_iter().enumerate() {
            let one = insert(&mut tx, job, &creator, trace_parent, key_ttl)
                .await
                .map_err(|err| match err {
                    Error::Domain(crust_model::Error::Invalid(message)) => {
                        Error::invalid(format!("jobs[{index}].{message}"))
                    }
                    other => other,
                })?;
            created.push(one);
        }
        created
    };
    sqlx::query("SELECT set_config('crust.defer_grants', 'off', true)")
        .execute(&mut *tx)
        .await?;
    let keyed: Vec<Id> = created
        .iter()
        .filter(|one| one.new && one.job.concurrency_key.is_some())
        .map(|one| one.job.id)
        .collect();
    if !keyed.is_empty() {
        grant_keys_of(&mut tx, &keyed).await?;
    }
    crate::audit::commit(tx).await?;
    Ok(created)
}

/// Inserts jobs without idempotency keys in `tx`, all in one statement, in
/// order (what [`insert`] does for one, without its key handling): one
/// round trip for a whole `POST /job/bulk` instead of one per item. A
/// missing workflow is named as `jobs[i].workflowID`. Jobs with a
/// concurrency key are left to the scheduler, as [`create_many`] grants
/// their slots at its end.
async fn insert_all(
    tx: &mut PgConnection,
    jobs: &[NewJob],
    creator: &Actor,
    trace_parent: Option<&str>,
) -> Result<Vec<Created>> {
    let now = Utc::now();
    let due: Vec<bool> = jobs
        .iter()
        .map(|job| job.start_at.is_none_or(|at| at <= now))
        .collect();
    let workflow_ids: Vec<Id> = jobs.iter().map(|job| job.workflow_id).collect();
    let starts: Vec<Option<DateTime<Utc>>> = jobs.iter().map(|job| job.start_at).collect();
    let releases: Vec<DateTime<Utc>> = jobs
        .iter()
        .zip(&due)
        .map(|(job, due)| match job.start_at {
            Some(at) if !due => at,
            _ => now + PUBLISH_GRACE,
        })
        .collect();
    let parameters: Vec<String> = jobs
        .iter()
        .map(|job| serde_json::to_string(&job.parameters))
        .collect::<std::result::Result<_, _>>()
        .map_err(|err| Error::invalid(format!("parameters: {err}")))?;
    // Share-locked so none is deleted (or edited) before the commit.
    let found: Vec<Id> = sqlx::query_scalar(
        "SELECT id FROM workflows WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id FOR SHARE",
    )
    .bind(&workflow_ids)
    .fetch_all(&mut *tx)
    .await?;
    if let Some(index) = workflow_ids.iter().position(|id| !found.contains(id)) {
        return Err(Error::invalid(format!(
            "jobs[{index}].workflowID: workflow {} does not exist",
            workflow_ids[index]
        )));
    }
    // IDs are drawn in the SELECT's order, so sorting by ID gives the
    // items' order back.
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "WITH input AS (
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[],
                                  $5::bool[])
                           WITH ORDINALITY AS i(workflow_id, parameters, start_at, release_at, due, ord)),
         j AS (INSERT INTO jobs (workflow_id, workflow_version, parameters, start_at, release_at,
                                 created_by, trace_parent, creator_roles, published_at)
               SELECT w.id, w.version, w.parameters || i.parameters::jsonb, i.start_at, i.release_at,
                      $6, $7, $8, CASE WHEN i.due THEN now() END
               FROM input i JOIN workflows w ON w.id = i.workflow_id
               ORDER BY i.ord
               RETURNING {COLUMNS})
         SELECT * FROM j ORDER BY id"
    ))
    .bind(&workflow_ids)
    .bind(&parameters)
    .bind(&starts)
    .bind(&releases)
    .bind(&due)
    .bind(creator.user)
    .bind(trace_parent)
    .bind(creator.roles.as_deref())
    .fetch_all(&mut *tx)
    .await?;
    if rows.len() != jobs.len() {
        return Err(Error::Database(sqlx::Error::Protocol(format!(
            "bulk insert returned {} jobs for {}",
            rows.len(),
            jobs.len()
        ))));
    }
    if due.iter().any(|due| !due) {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(RELEASE_CHANNEL)
            .execute(&mut *tx)
            .await?;
    }
    Ok(rows
        .into_iter()
        .zip(due)
        .map(|(row, due)| {
            // A keyed job's slot comes at the end of `create_many`; the
            // scheduler publishes it once granted.
            let due_now = due && row.concurrency_key.is_none();
            Created {
                job: row.into(),
                due_now,
                new: true,
            }
        })
        .collect())
}

/// Inserts one job in `tx`, or finds the live job holding its key.
///
/// Concurrency: the insert is `ON CONFLICT DO NOTHING` against the unique
/// index on `(workflow_id, idempotency_key)` (migration 0004). A second
/// insert of the same key waits for the first one's transaction; once that
/// commits it inserts nothing, and the following `SELECT` (a new snapshot
/// under READ COMMITTED) sees the first job and returns it. A key found on a
/// job older than `key_ttl` is taken over: that old job's key is cleared
/// (its row locked, in this transaction) and the insert tried again. If the
/// row holding the key changes in between (another create took an expired
/// key over, or the first inserter rolled back), the loop simply tries
/// again; a few rounds always settle it.
///
pub(crate) async fn insert(
    tx: &mut PgConnection,
    job: NewJob,
    creator: &Actor,
    trace_parent: Option<&str>,
    key_ttl: Duration,
) -> Result<Created> {
    let workflow_id = job.workflow_id;
    insert_row(tx, job, creator, trace_parent, key_ttl, Audit::AtCommit)
        .await?
        .ok_or_else(|| Error::invalid(format!("workflowID: workflow {workflow_id} does not exist")))
}

/// [`insert`]; with [`Audit::InStatement`] (a job without a key, `tx` a
/// plain connection) the insert statement also inserts the current
/// request's audit entry, and only a workflow without a concurrency key
/// gets its job this way: `None` leaves the job (or the missing workflow's
/// error) to a transaction.
async fn insert_row(
    tx: &mut PgConnection,
    job: NewJob,
    creator: &Actor,
    trace_parent: Option<&str>,
    key_ttl: Duration,
    audit: Audit,
) -> Result<Option<Created>> {
    let NewJob {
        workflow_id,
        start_at,
        parameters,
        key,
    } = job;
    let now = Utc::now();
    let due_now = start_at.is_none_or(|at| at <= now);
    let release_at = match start_at {
        Some(at) if !due_now => at,
        _ => now + PUBLISH_GRACE,
    };
    let missing_workflow =
        || Error::invalid(format!("workflowID: workflow {workflow_id} does not exist"));
    let entry = match audit {
        Audit::InStatement => crate::audit::pending(),
        Audit::AtCommit => None,
    };
    let values = entry.as_deref().map(crate::audit::RequestAudit::values);
    let alone = match audit {
        Audit::InStatement => "AND concurrency_key_spec IS NULL",
        Audit::AtCommit => "",
    };
    for _ in 0..8 {
        let row: Option<JobRowAndAudit> = sqlx::query_as(&format!(
            "WITH w AS (SELECT id, version, parameters FROM workflows
                        WHERE id = $1 AND deleted_at IS NULL {alone} FOR SHARE),
                  j AS (INSERT INTO jobs (workflow_id, workflow_version, parameters, start_at,
                                          release_at, created_by, trace_parent, idempotency_key,
                                          creator_roles, published_at)
                        SELECT w.id, w.version, w.parameters || $2, $3, $4, $5, $6, $8, $9,
                               CASE WHEN NOT $7 THEN now() END FROM w
                        ON CONFLICT (workflow_id, idempotency_key)
                            WHERE idempotency_key IS NOT NULL DO NOTHING
                        RETURNING {COLUMNS}),
                  aud AS (INSERT INTO audit_log (user_id, method, path, resource, status)
                          SELECT $10, $11, $12, $13, $14 FROM j WHERE $10::bigint IS NOT NULL
                          RETURNING id)
             SELECT j.*, (SELECT id FROM aud) AS audit_id,
                    CASE WHEN $7 THEN pg_notify('{RELEASE_CHANNEL}', '') END AS notified
             FROM j"
        ))
        .bind(workflow_id)
        .bind(Json(&parameters))
        .bind(start_at)
        .bind(release_at)
        .bind(creator.user)
        .bind(trace_parent)
        .bind(!due_now)
        .bind(key.as_deref())
        .bind(creator.roles.as_deref())
        .bind(values.as_ref().map(|entry| entry.user))
        .bind(values.as_ref().map(|entry| entry.method))
        .bind(values.as_ref().map(|entry| entry.path))
        .bind(values.as_ref().map(|entry| entry.resource.clone()))
        .bind(values.as_ref().map(|entry| entry.status))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(JobRowAndAudit { row, audit_id }) = row {
            if let (Some(entry), Some(id)) = (&entry, audit_id) {
                entry.mark_written(id);
            }
            // A job with a concurrency key runs only with a slot, which the
            // insert's trigger gave it if one was free: publish it only
            // then, and give the scheduler the same grace as for any job
            // the api publishes (the grant made it due at once).
            let due_now = match row.concurrency_key {
                None => due_now,
                Some(_) => sqlx::query_scalar(
                    "UPDATE jobs SET release_at = CASE WHEN $2 THEN now() + $3 * interval '1 millisecond'
                                                       ELSE release_at END,
                                     published_at = CASE WHEN $2 AND holds_slot THEN now()
                                                         ELSE published_at END
                     WHERE id = $1 AND status = 'queued' RETURNING holds_slot AND $2",
                )
                .bind(row.id)
                .bind(due_now)
                .bind(millis(PUBLISH_GRACE))
                .fetch_optional(&mut *tx)
                .await?
                .unwrap_or(false),
            };
            return Ok(Some(Created {
                job: row.into(),
                due_now,
                new: true,
            }));
        }
        // Nothing inserted: either the workflow does not exist or the key
        // is held.
        let Some(key) = key.as_deref() else {
            return match audit {
                Audit::InStatement => Ok(None),
                Audit::AtCommit => Err(missing_workflow()),
            };
        };
        let held: Option<(JobRow, bool)> = sqlx::query_as::<_, JobRowAndLive>(&format!(
            "SELECT {COLUMNS}, created_at > now() - $3 * interval '1 millisecond' AS live
             FROM jobs WHERE workflow_id = $1 AND idempotency_key = $2 FOR UPDATE"
        ))
        .bind(workflow_id)
        .bind(key)
        .bind(millis(key_ttl))
        .fetch_optional(&mut *tx)
        .await?
        .map(|both| (both.row, both.live));
        match held {
            Some((row, true)) => {
                return Ok(Some(Created {
                    job: row.into(),
                    due_now: false,
                    new: false,
                }));
            }
            Some((row, false)) => {
                sqlx::query("UPDATE jobs SET idempotency_key = NULL WHERE id = $1")
                    .bind(row.id)
                    .execute(&mut *tx)
                    .await?;
            }
            None => {
                let exists: bool = sqlx::query_scalar(
                    "SELECT EXISTS (SELECT 1 FROM workflows WHERE id = $1 AND deleted_at IS NULL)",
                )
                .bind(workflow_id)
                .fetch_one(&mut *tx)
                .await?;
                if !exists {
                    return Err(missing_workflow());
                }
            }
        }
    }
    Err(Error::conflict(format!(
        "key: job creates with key {key:?} keep colliding; try again"
    )))
}

/// Hands the free concurrency slots of the keys of `jobs` out (see
/// `crust_grant_slots`, migration 0008), key by key in lock order.
async fn grant_keys_of(tx: &mut PgConnection, jobs: &[Id]) -> Result<()> {
    sqlx::query(
        "SELECT crust_grant_slots(workflow_id, concurrency_key)
         FROM (SELECT workflow_id, concurrency_key
               FROM (SELECT DISTINCT workflow_id, concurrency_key FROM jobs
                     WHERE id = ANY($1) AND concurrency_key IS NOT NULL) keys
               ORDER BY crust_slot_lock_id(workflow_id, concurrency_key) OFFSET 0) keyed",
    )
    .bind(jobs)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A [`JobRow`] and the audit entry its insert wrote, if it wrote one.
#[derive(sqlx::FromRow)]
struct JobRowAndAudit {
    #[sqlx(flatten)]
    row: JobRow,
    audit_id: Option<i64>,
}

/// A [`JobRow`] and whether its key is still within its TTL.
#[derive(sqlx::FromRow)]
struct JobRowAndLive {
    #[sqlx(flatten)]
    row: JobRow,
    live: bool,
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
        .map(Job::from)
        .ok_or_else(|| missing(id))
}

/// The workflow a job belongs to (for permission checks), if it exists.
pub async fn workflow_of(pool: &PgPool, id: Id) -> Result<Option<Id>> {
    Ok(
        sqlx::query_scalar("SELECT workflow_id FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(pool)
            .await?,
    )
}

/// A page of jobs, newest first, optionally of one status and only of the
/// `workflows` given (`None` = of any workflow), and the total.
pub async fn list(
    pool: &PgPool,
    status: Option<JobStatus>,
    workflows: Option<&[Id]>,
    paging: Paging,
    limits: &crate::config::QueryLimits,
) -> Result<(Vec<Job>, i64)> {
    // A client's listing (and its count over every job) is bounded like
    // record lists: Postgres stops it at the statement timeout.
    let failure = crate::error::query_failure(limits.query_timeout);
    let mut tx = crate::bounded(pool, limits.query_timeout).await?;
    let rows: Vec<JobRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM jobs WHERE ($1::text IS NULL OR status = $1)
           AND ($4::bigint[] IS NULL OR workflow_id = ANY($4))
         ORDER BY id DESC LIMIT $2 OFFSET $3"
    ))
    .bind(status)
    .bind(paging.per_page)
    .bind(paging.offset())
    .bind(workflows)
    .fetch_all(&mut *tx)
    .await
    .map_err(&failure)?;
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE ($1::text IS NULL OR status = $1)
               AND ($2::bigint[] IS NULL OR workflow_id = ANY($2))",
    )
    .bind(status)
    .bind(workflows)
    .fetch_one(&mut *tx)
    .await
    .map_err(&failure)?;
    tx.commit().await?;
    Ok((rows.into_iter().map(Job::from).collect(), count))
}

/// Reads a job and locks its row for the rest of the transaction.
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
    let current = row.status;
    let redefines = input.workflow_id.is_some() || start_at.is_some() || input.parameters.is_some();
    if redefines && current != JobStatus::Queued {
        return Err(Error::conflict(format!(
            "job {id} is {current}; workflowID, startAt and parameters can change only while it is queued"
        )));
    }
    let mut publish = false;
    let mut cancel = false;
    if let Some(workflow_id) = input.workflow_id {
        // The job is re-pinned to the workflow's current version.
        let moved = sqlx::query(
            "UPDATE jobs SET workflow_id = w.id, workflow_version = w.version
             FROM (SELECT id, version FROM workflows
                   WHERE id = $2 AND deleted_at IS NULL FOR SHARE) w
             WHERE jobs.id = $1",
        )
        .bind(id)
        .bind(workflow_id)
        .execute(&mut *tx)
        .await?;
        if moved.rows_affected() == 0 {
            return Err(Error::invalid(format!(
                "workflowID: workflow {workflow_id} does not exist"
            )));
        }
    }
    if let Some(parameters) = &input.parameters {
        sqlx::query("UPDATE jobs SET parameters = $2 WHERE id = $1")
            .bind(id)
            .bind(Json(parameters))
            .execute(&mut *tx)
            .await?;
    }
    if input.workflow_id.is_some() || input.parameters.is_some() {
        // The keys follow the job's (new) workflow and parameters. A key
        // that changed gives up the old key's slot (migration 0008's
        // triggers); a job that waited for a slot and has no key any more
        // is due now, and the scheduler publishes it.
        sqlx::query(
            "UPDATE jobs j SET
                 concurrency_key = CASE WHEN w.concurrency_key_spec IS NOT NULL
                                        THEN crust_render_key(w.concurrency_key_spec, j.parameters) END,
                 rate_key = CASE WHEN w.rate_key_spec IS NOT NULL
                                 THEN crust_render_key(w.rate_key_spec, j.parameters) END,
                 holds_slot = j.holds_slot AND w.concurrency_key_spec IS NOT NULL,
                 release_at = CASE WHEN j.release_at = 'infinity' THEN now() ELSE j.release_at END
             FROM workflows w WHERE j.id = $1 AND w.id = j.workflow_id",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(&format!("SELECT pg_notify('{RELEASE_CHANNEL}', '')"))
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
        if next == JobStatus::Running {
            // Read again: this same update may have changed its key.
            let may_start: bool = sqlx::query_scalar(
                "SELECT concurrency_key IS NULL OR holds_slot FROM jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            if !may_start {
                return Err(Error::conflict(format!(
                    "job {id} waits for a slot of its workflow's concurrency limit and cannot start yet"
                )));
            }
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
    let job = lock(&mut tx, id).await?.into();
    crate::audit::commit(tx).await?;
    Ok(Updated {
        job,
        publish,
        cancel,
    })
}

/// Moves a locked job along one legal edge (the caller checked it).
async fn move_status(
    tx: &mut PgConnection,
    id: Id,
    current: JobStatus,
    next: JobStatus,
) -> Result<()> {
    use JobStatus::{Cancelled, Error as Failed, Ok as Done, Queued, Running, Waiting};
    let query = match (current, next) {
        // Started by hand: it holds a lease nobody renews, so the scheduler
        // requeues it if nothing finishes it in time.
        (Queued, Running) => sqlx::query(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = now(),
                    lease_until = now() + $2 * interval '1 millisecond', worker = 'api'
             WHERE id = $1",
        )
        .bind(id)
        .bind(millis(HAND_STARTED_LEASE)),
        // Requeued: the caller publishes it; the scheduler does after the
        // grace if that fails.
        (Running, Queued) => sqlx::query(
            "UPDATE jobs SET status = 'queued', lease_until = NULL, worker = NULL,
                    published_at = NULL, release_at = now() + $2 * interval '1 millisecond'
             WHERE id = $1",
        )
        .bind(id)
        .bind(millis(PUBLISH_GRACE)),
        // Woken by hand: it resumes where it stopped.
        (Waiting, Queued) => sqlx::query(
            "UPDATE jobs SET status = 'queued', wake_at = NULL, published_at = NULL,
                    release_at = now() + $2 * interval '1 millisecond'
             WHERE id = $1",
        )
        .bind(id)
        .bind(millis(PUBLISH_GRACE)),
        (_, Done | Failed | Cancelled) => sqlx::query(
            "UPDATE jobs SET status = $2, finished_at = now(), lease_until = NULL, wake_at = NULL
             WHERE id = $1",
        )
        .bind(id)
        .bind(next),
        _ => {
            return Err(crate::Error::conflict(format!(
                "job {id} is {current} and cannot become {next}"
            )))
        }
    };
    query.execute(&mut *tx).await?;
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
    let outcome = match lock(&mut tx, id).await?.status {
        // A waiting job holds no worker: it ends here, like a queued one.
        JobStatus::Queued | JobStatus::Waiting => {
            sqlx::query(
                "UPDATE jobs SET status = 'cancelled', cancel_requested = true, finished_at = now(),
                        wake_at = NULL, updated_at = now() WHERE id = $1",
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
    crate::audit::commit(tx).await?;
    Ok(outcome)
}

#[derive(sqlx::FromRow)]
pub(crate) struct LogRow {
    seq: i32,
    ts: DateTime<Utc>,
    level: String,
    task: Option<String>,
    message: String,
    data: Option<Json<Value>>,
}

/// The highest log sequence number a job has handed out (404 if there is
/// no such job).
pub async fn get_log_seq(pool: &PgPool, id: Id) -> Result<i32> {
    sqlx::query_scalar("SELECT log_seq FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or_else(|| missing(id))
}

/// A page of a job's log entries in order, and how many there are.
/// `after` skips the entries up to that sequence number (0: none), so a
/// reader resumes where it stopped.
pub async fn logs(
    pool: &PgPool,
    id: Id,
    after: i32,
    paging: Paging,
) -> Result<(Vec<LogEntry>, i64)> {
    let total: Option<i32> = sqlx::query_scalar("SELECT log_seq FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    let total = total.ok_or_else(|| missing(id))?;
    let rows: Vec<LogRow> = sqlx::query_as(
        "SELECT seq, ts, level, task, message, data FROM job_logs WHERE job_id = $1
             AND seq > $4 ORDER BY seq LIMIT $2 OFFSET $3",
    )
    .bind(id)
    .bind(paging.per_page)
    .bind(paging.offset())
    .bind(after)
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

/// The tasks a job runs (its workflow version's), for the step list and
/// reruns.
async fn tasks_of(
    executor: impl sqlx::PgExecutor<'_>,
    job: Id,
) -> Result<Vec<crust_model::workflow::Task>> {
    // The version the job runs; a job whose version is not recorded (made
    // by hand) shows its workflow's current tasks.
    let tasks: Option<Json<Vec<crust_model::workflow::Task>>> = sqlx::query_scalar(
        "SELECT coalesce(v.definition -> 'tasks', w.tasks)
         FROM jobs j JOIN workflows w ON w.id = j.workflow_id
         LEFT JOIN workflow_versions v ON v.workflow_id = j.workflow_id AND v.version = j.workflow_version
         WHERE j.id = $1",
    )
    .bind(job)
    .fetch_optional(executor)
    .await?;
    tasks.map(|Json(tasks)| tasks).ok_or_else(|| missing(job))
}

/// A job with the outputs of its finished steps, as `GET /job/{id}` shows.
pub async fn get_with_outputs(pool: &PgPool, id: Id) -> Result<Job> {
    let mut job = get(pool, id).await?;
    job.outputs = crate::steps::outputs(pool, id).await?;
    Ok(job)
}

/// A job's steps in workflow order: each task's step (`pending` before it
/// starts), followed by its `forEach` items.
pub async fn steps(pool: &PgPool, id: Id) -> Result<Vec<crust_model::step::Step>> {
    use crust_model::step::Step;
    let tasks = tasks_of(pool, id).await?;
    let mut stored: std::collections::HashMap<String, Vec<crate::steps::StoredStep>> =
        std::collections::HashMap::new();
    for step in crate::steps::list(pool, id).await? {
        stored.entry(step.task.clone()).or_default().push(step);
    }
    let mut shown = Vec::new();
    for task in &tasks {
        // Stored by task then item: the task's own step (-1) comes first.
        match stored.remove(&task.name) {
            Some(steps) if steps[0].item == crate::steps::TASK_ITEM => {
                shown.extend(steps.into_iter().map(crate::steps::StoredStep::view));
            }
            Some(items) => {
                shown.push(Step::pending(&task.name));
                shown.extend(items.into_iter().map(crate::steps::StoredStep::view));
            }
            None => shown.push(Step::pending(&task.name)),
        }
    }
    Ok(shown)
}

/// What a signal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signalled {
    /// The job was waiting and is queued again: publish it.
    pub woke: bool,
    /// The job's queue.
    pub queue: String,
}

/// Sends a signal to a job: kept until a `wait` step for `event` takes it
/// (now, or when the job reaches that step); a waiting job goes back in
/// the queue to look. A finished job takes no signals (409).
pub async fn signal(pool: &PgPool, id: Id, event: &str, data: Option<&Value>) -> Result<Signalled> {
    let mut tx = pool.begin().await?;
    let row = lock(&mut tx, id).await?;
    let status = row.status;
    if status.is_final() {
        return Err(Error::conflict(format!(
            "job {id} is {status}; a finished job takes no signals"
        )));
    }
    sqlx::query("INSERT INTO job_signals (job_id, event, data) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(event)
        .bind(data.map(Json))
        .execute(&mut *tx)
        .await?;
    let woke = status == JobStatus::Waiting;
    if woke {
        sqlx::query(
            "UPDATE jobs SET status = 'queued', wake_at = NULL, published_at = NULL,
                    release_at = now() + $2 * interval '1 millisecond', updated_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(millis(PUBLISH_GRACE))
        .execute(&mut *tx)
        .await?;
    }
    crate::audit::commit(tx).await?;
    Ok(Signalled {
        woke,
        queue: row.queue,
    })
}

/// The queue of each of `ids` (jobs a record write triggered, for the api
/// to publish).
pub async fn queues_of(pool: &PgPool, ids: &[Id]) -> Result<Vec<(Id, String)>> {
    Ok(
        sqlx::query_as("SELECT id, queue FROM jobs WHERE id = ANY($1) ORDER BY id")
            .bind(ids)
            .fetch_all(pool)
            .await?,
    )
}

/// Reruns a finished job as a new job (`rerunOf` = `id`) of the same
/// workflow with the same parameters, created by `user`. The steps before
/// `from` — every task that is neither `from` nor needs it, directly or
/// not — keep their outputs and are not run again. `from` defaults to the
/// first task (in workflow order) that did not end ok or skipped.
pub async fn rerun(
    pool: &PgPool,
    id: Id,
    from: Option<&str>,
    creator: impl Into<Actor>,
    trace_parent: Option<&str>,
) -> Result<Created> {
    let creator = creator.into();
    let mut tx = pool.begin().await?;
    let created = rerun_in(&mut tx, id, from, &creator, trace_parent).await?;
    crate::audit::commit(tx).await?;
    Ok(created)
}

/// [`rerun`] within the caller's transaction (a bulk rerun reruns many in
/// one).
pub(crate) async fn rerun_in(
    tx: &mut Transaction<'_, Postgres>,
    id: Id,
    from: Option<&str>,
    creator: &Actor,
    trace_parent: Option<&str>,
) -> Result<Created> {
    let job = lock(tx, id).await?;
    if !job.status.is_final() {
        return Err(Error::conflict(format!(
            "job {id} is {}; only a finished job can be rerun",
            job.status
        )));
    }
    let tasks = tasks_of(&mut **tx, id).await?;
    let graph = crust_model::workflow::graph("tasks", &tasks).map_err(Error::invalid)?;
    let done: std::collections::HashSet<String> = crate::steps::list(&mut **tx, id)
        .await?
        .into_iter()
        .filter(|step| step.item == crate::steps::TASK_ITEM && step.status().is_done())
        .map(|step| step.task)
        .collect();
    let start = match from {
        Some(name) => Some(tasks.iter().position(|t| t.name == name).ok_or_else(|| {
            let names: Vec<&str> = tasks.iter().map(|t| t.name.as_str()).collect();
            Error::invalid(format!(
                "from: no task {name:?} in the workflow (its tasks are {})",
                names.join(", ")
            ))
        })?),
        None => tasks.iter().position(|t| !done.contains(&t.name)),
    };
    let again = start.map(|at| graph.downstream(at)).unwrap_or_default();
    let kept: Vec<String> = tasks
        .iter()
        .enumerate()
        .filter(|(at, task)| !again.contains(at) && done.contains(&task.name))
        .map(|(_, task)| task.name.clone())
        .collect();
    let row: JobRow = sqlx::query_as(&format!(
        "INSERT INTO jobs (workflow_id, workflow_version, parameters, release_at, created_by,
                           trace_parent, rerun_of, creator_roles)
         SELECT workflow_id, workflow_version, parameters, now() + $2 * interval '1 millisecond',
                $3, $4, id, $5
         FROM jobs WHERE id = $1
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(millis(PUBLISH_GRACE))
    .bind(creator.user)
    .bind(trace_parent)
    .bind(creator.roles.as_deref())
    .fetch_one(&mut **tx)
    .await?;
    crate::steps::copy_done(&mut **tx, id, row.id, &kept).await?;
    Ok(Created {
        job: row.into(),
        due_now: true,
        new: true,
    })
}
