//! CSV imports of records. The api stores the upload in chunks and creates
//! the import's job in one transaction ([`begin`], [`Upload::chunk`],
//! [`Upload::finish`]): an upload is never without its job, a failed one
//! leaves nothing. The worker's `record.import` task reads the chunks back
//! and commits each batch of records together with the import's progress
//! ([`commit_batch`]), fenced on the progress it started from, so a rerun
//! after a lost worker continues after the last committed line and no row
//! is imported twice.

use std::time::Duration;

use serde_json::{json, Map, Value};
use sqlx::types::Json;
use sqlx::{PgPool, Postgres, Transaction};

use crate::jobs::api::{insert, Created};
use crate::{modules, Error, Result};
use crust_model::access::Actor;
use crust_model::job::NewJob;
use crust_model::Id;

/// The `builtin` marker of the workflow imports run as.
pub const WORKFLOW: &str = "record.import";
/// Its name, as workflow lists show it.
pub const WORKFLOW_NAME: &str = "Import records (CSV)";
/// Largest piece of an upload stored in one row.
pub const CHUNK_BYTES: usize = 1 << 20;

/// An import as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Import {
    pub id: Id,
    pub module_id: Id,
    pub user_id: Id,
    pub job_id: Option<Id>,
    pub dry_run: bool,
    /// The last CSV line whose outcome is committed (0: none yet).
    pub done_line: i64,
    pub created: i64,
    pub failed: i64,
}

/// An upload being stored, in its own transaction until [`Upload::finish`].
pub struct Upload {
    tx: Transaction<'static, Postgres>,
    id: Id,
    module_id: Id,
    creator: Actor,
    dry_run: bool,
    seq: i32,
    bytes: i64,
}

/// Starts storing an upload for module `module_id` (404 if it does not
/// exist; the module is share-locked until the job exists).
pub async fn begin(pool: &PgPool, module_id: Id, creator: Actor, dry_run: bool) -> Result<Upload> {
    let mut tx = pool.begin().await?;
    modules::get_for_share(&mut tx, module_id).await?;
    let (id,): (Id,) = sqlx::query_as(
        "INSERT INTO record_imports (module_id, user_id, dry_run) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(module_id)
    .bind(creator.user)
    .bind(dry_run)
    .fetch_one(&mut *tx)
    .await?;
    Ok(Upload {
        tx,
        id,
        module_id,
        creator,
        dry_run,
        seq: 0,
        bytes: 0,
    })
}

impl Upload {
    /// Stores the next piece (at most [`CHUNK_BYTES`]).
    pub async fn chunk(&mut self, data: &[u8]) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        self.seq += 1;
        self.bytes += data.len() as i64;
        sqlx::query("INSERT INTO record_import_chunks (import_id, seq, data) VALUES ($1, $2, $3)")
            .bind(self.id)
            .bind(self.seq)
            .bind(data)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Bytes stored so far.
    pub fn bytes(&self) -> i64 {
        self.bytes
    }

    /// Creates the import's job and commits the whole upload with it.
    pub async fn finish(mut self, trace_parent: Option<&str>) -> Result<Created> {
        let workflow = ensure_workflow(&mut self.tx).await?;
        let parameters = json!({
            "moduleID": self.module_id.to_string(),
            "importID": self.id.to_string(),
            "dryRun": self.dry_run,
            "bytes": self.bytes,
        });
        let Value::Object(parameters) = parameters else {
            unreachable!("json! of an object literal is an object")
        };
        let job = NewJob {
            workflow_id: workflow,
            start_at: None,
            parameters,
            key: None,
        };
        let created = insert(
            &mut self.tx,
            job,
            &self.creator,
            trace_parent,
            Duration::ZERO,
        )
        .await?;
        sqlx::query("UPDATE record_imports SET job_id = $2, bytes = $3 WHERE id = $1")
            .bind(self.id)
            .bind(created.job.id)
            .bind(self.bytes)
            .execute(&mut *self.tx)
            .await?;
        crate::audit::commit(self.tx).await?;
        Ok(created)
    }
}

/// The built-in import workflow's ID, creating it (and its version 1) the
/// first time.
async fn ensure_workflow(tx: &mut Transaction<'static, Postgres>) -> Result<Id> {
    let tasks = json!([{"name": "import", "kind": "record.import",
                        "params": {"importID": "{{ parameters.importID }}"}}]);
    sqlx::query(
        "WITH w AS (INSERT INTO workflows (name, tasks, builtin) VALUES ($1, $2, $3)
                    ON CONFLICT (builtin) WHERE builtin IS NOT NULL DO NOTHING
                    RETURNING id, name, tasks)
         INSERT INTO workflow_versions (workflow_id, version, definition)
         SELECT id, 1, jsonb_build_object('name', name, 'tasks', tasks, 'onError', '[]'::jsonb,
                                          'timeout', 0, 'parallelism', 1, 'parameters', '{}'::jsonb)
         FROM w",
    )
    .bind(WORKFLOW_NAME)
    .bind(Json(&tasks))
    .bind(WORKFLOW)
    .execute(&mut **tx)
    .await?;
    // A user cannot delete it (workflows::delete refuses built-ins).
    let (id,): (Id,) = sqlx::query_as("SELECT id FROM workflows WHERE builtin = $1")
        .bind(WORKFLOW)
        .fetch_one(&mut **tx)
        .await?;
    Ok(id)
}

/// One import.
pub async fn get(pool: &PgPool, id: Id) -> Result<Import> {
    sqlx::query_as(
        "SELECT id, module_id, user_id, job_id, dry_run, done_line, created, failed
         FROM record_imports WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or_else(|| Error::not_found(format!("import {id} does not exist")))
}

/// Piece `seq` (1, 2, …) of an upload; `None` past the last.
pub async fn chunk(pool: &PgPool, id: Id, seq: i32) -> Result<Option<Vec<u8>>> {
    Ok(sqlx::query_scalar(
        "SELECT data FROM record_import_chunks WHERE import_id = $1 AND seq = $2",
    )
    .bind(id)
    .bind(seq)
    .fetch_optional(pool)
    .await?)
}

/// What one batch of an import did: the records to create (already
/// checked) and the progress to record with them.
#[derive(Debug, Default)]
pub struct Batch {
    pub records: Vec<Map<String, Value>>,
    pub failed: i64,
    /// The last CSV line this batch covers.
    pub done_line: i64,
}

/// Creates a batch's records (none on a dry run, where they only count) and
/// moves the import's progress on, in one transaction, only if the progress
/// is still `from_line`: false when another run got further meanwhile
/// (nothing is written then).
pub async fn commit_batch(
    pool: &PgPool,
    import: &Import,
    from_line: i64,
    batch: &Batch,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let moved = sqlx::query(
        "UPDATE record_imports SET done_line = $3, created = created + $4, failed = failed + $5
         WHERE id = $1 AND done_line = $2",
    )
    .bind(import.id)
    .bind(from_line)
    .bind(batch.done_line)
    .bind(batch.records.len() as i64)
    .bind(batch.failed)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved == 0 {
        return Ok(false);
    }
    if !import.dry_run && !batch.records.is_empty() {
        // The module must still exist; share-locked against a concurrent delete.
        modules::get_for_share(&mut tx, import.module_id).await?;
        let values: Vec<Json<&Map<String, Value>>> = batch.records.iter().map(Json).collect();
        sqlx::query(
            r#"INSERT INTO records (module_id, user_id, "values")
               SELECT $1, $2, v FROM unnest($3::jsonb[]) AS v"#,
        )
        .bind(import.module_id)
        .bind(import.user_id)
        .bind(&values)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Drops an import's upload once it is imported (the counts stay).
pub async fn finish(pool: &PgPool, id: Id) -> Result<()> {
    sqlx::query("DELETE FROM record_import_chunks WHERE import_id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(())
}
