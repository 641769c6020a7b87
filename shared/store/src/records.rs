//! Records: list, read, create, update and soft delete, each validated
//! against its module inside the transaction that writes it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use crate::bounded;
use crate::config::QueryLimits;
use crate::error::query_failure;
use crate::modules::{self, ModuleCache};
use crate::triggers::{TriggerCache, TriggerSet};
use crate::{Error, Result};
use crust_model::module::Module;
use crust_model::paging::Paging;
use crust_model::record::{check_values, Record, Reference};
use crust_model::trigger::{Change, ChangedBy, RecordEvent, Revision, MAX_TRIGGER_DEPTH};
use crust_model::Id;
use crust_query::{compile_filter, compile_sort, Params};

#[derive(sqlx::FromRow)]
struct RecordRow {
    id: Id,
    module_id: Id,
    user_id: Id,
    values: Json<Map<String, Value>>,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
}

impl RecordRow {
    fn into_record(self, module: &Module) -> Record {
        Record {
            id: self.id,
            module_id: self.module_id,
            user_id: self.user_id,
            fields: Record::fields_in_order(module, &self.values.0),
            created_at: self.created_at,
            updated_at: self.updated_at,
        }
    }
}

const COLUMNS: &str = r#"r.id, r.module_id, r.user_id, r."values", r.created_at, r.updated_at"#;

fn missing(module: Id, id: Id) -> Error {
    Error::not_found(format!("record {id} does not exist in module {module}"))
}

/// Above this many matches the total is estimated, not counted.
pub const EXACT_COUNT_LIMIT: i64 = 10_000;

/// How many records match a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Count {
    pub value: i64,
    /// False when the total passed [`EXACT_COUNT_LIMIT`] and `value` is
    /// the planner's estimate.
    pub exact: bool,
}

/// A page of a module's live records matching `filter` (query language,
/// blank = all) in `sort` order (blank = newest first), plus how many match.
/// The client's text is compiled to SQL with every literal bound.
///
/// Every statement runs under `limits.query_timeout`, enforced by Postgres.
pub async fn list(
    pool: &PgPool,
    module: &Module,
    paging: Paging,
    filter: &str,
    sort: &str,
    limits: &QueryLimits,
) -> Result<(Vec<Record>, Count)> {
    let schema = module.query_schema();
    let mut params = Params::new();
    let filter = compile_filter(filter, &schema, &mut params)
        .map_err(|err| Error::invalid(format!("filter: {err}")))?;
    let order_by =
        compile_sort(sort, &schema).map_err(|err| Error::invalid(format!("sort: {err}")))?;
    let filter = filter.map_or(String::new(), |sql| format!(" AND ({sql})"));
    // The module ID is our own integer, written as a literal so Postgres
    // prunes to the module's partition while planning.
    let scope = format!(
        "FROM records r WHERE r.module_id = {} AND r.deleted_at IS NULL{filter}",
        module.id
    );
    let mut page_params = params.clone();
    let limit = page_params.bind(paging.per_page.to_string(), "bigint");
    let offset = page_params.bind(paging.offset().to_string(), "bigint");
    let page_sql =
        format!("SELECT {COLUMNS} {scope} ORDER BY {order_by} LIMIT {limit} OFFSET {offset}");
    let failure = query_failure(limits.query_timeout);
    let mut tx = bounded(pool, limits.query_timeout).await?;
    let rows = bind_all(
        sqlx::query_as::<_, RecordRow>(&page_sql),
        &page_params.values,
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(&failure)?;
    // Count only what the meta block needs: nothing when the page itself
    // tells the total; the planner's estimate when that is large (planning
    // only, no scan); else an exact count, capped.
    let count = count_matching(
        &mut tx,
        &scope,
        &params.values,
        rows.len(),
        paging,
        &failure,
    )
    .await?;
    tx.commit().await?;
    Ok((
        rows.into_iter()
            .map(|row| row.into_record(module))
            .collect(),
        count,
    ))
}

/// The compiled query of an export: every live record of a module that
/// matches a filter, in sort order (blank sort = oldest first, so an export
/// reads like the order records were made).
pub struct ExportQuery {
    sql: String,
    params: Vec<String>,
}

/// Compiles an export's `filter` and `sort` (errors name which, as a list's do).
pub fn export_query(module: &Module, filter: &str, sort: &str) -> Result<ExportQuery> {
    let schema = module.query_schema();
    let mut params = Params::new();
    let filter = compile_filter(filter, &schema, &mut params)
        .map_err(|err| Error::invalid(format!("filter: {err}")))?;
    let order_by = if sort.trim().is_empty() {
        "r.id".to_owned()
    } else {
        compile_sort(sort, &schema).map_err(|err| Error::invalid(format!("sort: {err}")))?
    };
    let filter = filter.map_or(String::new(), |sql| format!(" AND ({sql})"));
    Ok(ExportQuery {
        sql: format!(
            r#"SELECT r.id, r."values" FROM records r
               WHERE r.module_id = {} AND r.deleted_at IS NULL{filter} ORDER BY {order_by}"#,
            module.id
        ),
        params: params.values,
    })
}

/// Streams the records of `query` to `each` as `(recordID, values)`, in
/// order, as Postgres sends them: nothing is buffered beyond what `each`
/// has not taken yet, so memory stays flat for any number of records. One
/// statement in one snapshot, bounded by `timeout`; `each` returning false
/// stops it. Returns how many records were handed over.
pub async fn export<F, Fut>(
    pool: &PgPool,
    query: &ExportQuery,
    timeout: std::time::Duration,
    mut each: F,
) -> Result<u64>
where
    F: FnMut(Id, Map<String, Value>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    use futures_util::TryStreamExt;
    let failure = query_failure(timeout);
    let mut tx = bounded(pool, timeout).await?;
    let mut sent = 0;
    {
        let mut rows = bind_all(
            sqlx::query_as::<_, (Id, Json<Map<String, Value>>)>(&query.sql),
            &query.params,
        )
        .fetch(&mut *tx);
        while let Some((id, values)) = rows.try_next().await.map_err(&failure)? {
            if !each(id, values.0).await {
                break;
            }
            sent += 1;
        }
    }
    tx.commit().await?;
    Ok(sent)
}

/// Which of `ids` are live records of module `module_id`.
pub async fn live_ids(
    pool: &PgPool,
    module_id: Id,
    ids: &[i64],
) -> Result<std::collections::HashSet<i64>> {
    let found: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM records WHERE module_id = $1 AND id = ANY($2) AND deleted_at IS NULL",
    )
    .bind(module_id)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    Ok(found.into_iter().collect())
}

/// How many rows `scope` (`FROM … WHERE …`, with `values` bound) holds,
/// counting only what a list's meta block needs: nothing when the page
/// itself tells the total; the planner's estimate when that is large
/// (planning only, no scan); else an exact count, capped.
pub(crate) async fn count_matching(
    tx: &mut sqlx::PgConnection,
    scope: &str,
    values: &[String],
    page_rows: usize,
    paging: Paging,
    failure: &(dyn Fn(sqlx::Error) -> Error + Sync),
) -> Result<Count> {
    if paging.page == 0 && (page_rows as i64) < paging.per_page {
        return Ok(Count {
            value: page_rows as i64,
            exact: true,
        });
    }
    let explain_sql = format!("EXPLAIN (FORMAT JSON) SELECT 1 {scope}");
    let mut explaining = sqlx::query_scalar::<_, Json<Value>>(&explain_sql);
    for value in values {
        explaining = explaining.bind(value);
    }
    let plan = explaining.fetch_one(&mut *tx).await.map_err(failure)?;
    let estimate = plan.0[0]["Plan"]["Plan Rows"].as_f64().unwrap_or(0.0) as i64;
    if estimate > EXACT_COUNT_LIMIT {
        return Ok(Count {
            value: estimate,
            exact: false,
        });
    }
    let capped_sql = format!(
        "SELECT count(*) FROM (SELECT 1 {scope} LIMIT {}) capped",
        EXACT_COUNT_LIMIT + 1
    );
    let mut counting = sqlx::query_scalar::<_, i64>(&capped_sql);
    for value in values {
        counting = counting.bind(value);
    }
    let counted = counting.fetch_one(&mut *tx).await.map_err(failure)?;
    Ok(Count {
        value: counted,
        exact: counted <= EXACT_COUNT_LIMIT,
    })
}

pub(crate) fn bind_all<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    values: &'q [String],
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    values.iter().fold(query, |query, value| query.bind(value))
}

/// One live record of a module.
pub async fn get(pool: &PgPool, module: &Module, id: Id) -> Result<Record> {
    sqlx::query_as::<_, RecordRow>(&format!(
        "SELECT {COLUMNS} FROM records r WHERE r.id = $1 AND r.module_id = $2 AND r.deleted_at IS NULL"
    ))
    .bind(id)
    .bind(module.id)
    .fetch_optional(pool)
    .await?
    .map(|row| row.into_record(module))
    .ok_or_else(|| missing(module.id, id))
}

/// Checks that every referenced record exists, live, in its module.
async fn check_references(conn: &mut PgConnection, references: &[Reference]) -> Result<()> {
    for reference in references {
        let ids: Vec<i64> = reference.record_ids.iter().map(|id| id.get()).collect();
        let found: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM records WHERE module_id = $1 AND id = ANY($2) AND deleted_at IS NULL",
        )
        .bind(reference.module_id)
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        if let Some(absent) = ids.iter().find(|id| !found.contains(id)) {
            return Err(Error::invalid(format!(
                "field {:?}: record {absent} does not exist in module {}",
                reference.field, reference.module_id
            )));
        }
    }
    Ok(())
}

/// Who writes a record: a user through the api, or a task of a job (whose
/// lineage cuts trigger loops, and whose user owns what it creates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(Id),
    Job { job_id: Id, task: String, user: Id },
}

impl Actor {
    fn user(&self) -> Id {
        match self {
            Actor::User(user) | Actor::Job { user, .. } => *user,
        }
    }
}

/// A committed record write and what its triggers did.
#[derive(Debug, Clone)]
pub struct Written {
    /// The record after the change (as it was, for a delete).
    pub record: Record,
    /// Triggered jobs due now. Written by a user: for the caller to publish
    /// (the scheduler steps in after the publish grace). Written by a job:
    /// already due for the scheduler, which was woken.
    pub due: Vec<Id>,
    /// Triggers whose condition held but started no job because the
    /// writing job is at the end of a chain ([`MAX_TRIGGER_DEPTH`]); the
    /// worker logs this on the writing job.
    pub not_followed: i64,
}

#[derive(sqlx::FromRow)]
struct WriteRow {
    #[sqlx(flatten)]
    record: RecordRow,
    /// The audit entry the statement inserted (inside an api request).
    audit_id: Option<i64>,
    due: Vec<i64>,
    matched: i64,
    writer_depth: i32,
}

impl WriteRow {
    fn into_written(self, module: &Module) -> Written {
        let not_followed = if self.writer_depth >= MAX_TRIGGER_DEPTH {
            self.matched
        } else {
            0
        };
        Written {
            record: self.record.into_record(module),
            due: self.due.into_iter().map(Id::from).collect(),
            not_followed,
        }
    }
}

/// What one write statement binds besides the filters' values.
#[derive(Clone, Copy)]
struct WriteInput<'a> {
    record: Option<Id>,
    values: Option<&'a Map<String, Value>>,
    previous: Option<&'a Map<String, Value>>,
}

/// Runs `event`'s statement of `set`: the record write, its revision and
/// its triggered jobs, all or nothing. `None`: the module changed, went
/// away or its triggers changed since `set` was compiled (or, for an
/// update or delete, the record is gone).
async fn write<'e, E: sqlx::PgExecutor<'e>>(
    executor: E,
    set: &TriggerSet,
    event: RecordEvent,
    module: &Module,
    actor: &Actor,
    input: WriteInput<'_>,
) -> Result<Option<WriteRow>> {
    let statement = set.statement(event);
    let (job, task) = match actor {
        Actor::User(_) => (None, None),
        Actor::Job { job_id, task, .. } => (Some(*job_id), Some(task.as_str())),
    };
    // A user's write leaves publishing to the api (the scheduler takes
    // over after the grace); a job's write wakes the scheduler at once.
    let by_job = job.is_some();
    let release_at = if by_job {
        Utc::now()
    } else {
        Utc::now() + crate::jobs::PUBLISH_GRACE
    };
    let mut query = sqlx::query_as::<_, WriteRow>(&statement.sql)
        .bind(module.id)
        .bind(actor.user())
        .bind(input.values.map(Json))
        .bind(module.version())
        .bind(set.stamp)
        .bind(input.record)
        .bind(input.previous.map(Json))
        // $8 is unused (kept so the numbering stays fixed).
        .bind(None::<i64>)
        .bind(job)
        .bind(task)
        .bind(release_at)
        .bind(by_job);
    let audit = crate::audit::pending();
    let entry = audit.as_deref().map(crate::audit::RequestAudit::values);
    query = query
        .bind(entry.as_ref().map(|entry| entry.user))
        .bind(entry.as_ref().map(|entry| entry.method))
        .bind(entry.as_ref().map(|entry| entry.path))
        .bind(entry.as_ref().map(|entry| entry.resource.clone()))
        .bind(entry.as_ref().map(|entry| entry.status));
    for value in &statement.filter_params {
        query = query.bind(value);
    }
    let row = query.fetch_optional(executor).await?;
    if let (Some(audit), Some(id)) = (audit, row.as_ref().and_then(|row| row.audit_id)) {
        audit.mark_written(id);
    }
    Ok(row)
}

/// Creates a record in module `module_id` as `actor`, with its revision
/// and its triggered jobs. See [`create_cached`].
pub async fn create(
    pool: &PgPool,
    module_id: Id,
    actor: &Actor,
    input: Map<String, Value>,
) -> Result<Written> {
    create_cached(
        pool,
        &ModuleCache::default(),
        &TriggerCache::default(),
        module_id,
        actor,
        input,
    )
    .await
}

/// [`create`] reading the module and its triggers through the caches,
/// which saves round trips per record.
///
/// Values are checked against the module as read, then one autocommit
/// statement inserts the record, its revision and its triggered jobs,
/// checking that the module is still live, unchanged (same version) and has
/// the same triggers (same stamp), holding a key-share lock on it, so a
/// concurrent edit or delete either waits for the insert or makes it miss;
/// a miss evicts the cache entries and tries again. Records that reference
/// other records take a transaction, to check the references under the
/// same lock.
pub async fn create_cached(
    pool: &PgPool,
    cache: &ModuleCache,
    triggers: &TriggerCache,
    module_id: Id,
    actor: &Actor,
    input: Map<String, Value>,
) -> Result<Written> {
    for _ in 0..3 {
        let module = cache.get(pool, module_id).await?;
        let checked = check_values(&module, input.clone(), None)?;
        if !checked.references.is_empty() {
            return create_with_references(pool, triggers, module_id, actor, input).await;
        }
        let set = triggers.get(pool, &module).await?;
        let values = WriteInput {
            record: None,
            values: Some(&checked.values),
            previous: None,
        };
        let row = write(pool, &set, RecordEvent::Created, &module, actor, values).await?;
        if let Some(row) = row {
            return Ok(row.into_written(&module));
        }
        // The module or its triggers changed since they were read.
        cache.forget(module_id);
        triggers.forget(module_id);
    }
    create_with_references(pool, triggers, module_id, actor, input).await
}

/// The transactional create: module share-locked, references checked.
async fn create_with_references(
    pool: &PgPool,
    triggers: &TriggerCache,
    module_id: Id,
    actor: &Actor,
    input: Map<String, Value>,
) -> Result<Written> {
    let mut tx = pool.begin().await?;
    let module = modules::get_for_share(&mut tx, module_id).await?;
    let checked = check_values(&module, input, None)?;
    check_references(&mut tx, &checked.references).await?;
    let values = WriteInput {
        record: None,
        values: Some(&checked.values),
        previous: None,
    };
    let row = write_locked(
        &mut tx,
        triggers,
        RecordEvent::Created,
        &module,
        actor,
        values,
    )
    .await?
    .ok_or_else(|| Error::conflict(format!("module {module_id} changed; try again")))?;
    crate::audit::commit(tx).await?;
    Ok(row.into_written(&module))
}

/// [`write`] in a transaction that share-locks the module: only a trigger
/// set compiled before a workflow save can miss, so it is reloaded (in the
/// transaction) and the write tried again. `None`: the record is gone.
async fn write_locked(
    tx: &mut PgConnection,
    triggers: &TriggerCache,
    event: RecordEvent,
    module: &Module,
    actor: &Actor,
    input: WriteInput<'_>,
) -> Result<Option<WriteRow>> {
    for _ in 0..3 {
        let set = triggers.get(&mut *tx, module).await?;
        if let Some(row) = write(&mut *tx, &set, event, module, actor, input).await? {
            return Ok(Some(row));
        }
        let stamp: Option<i64> =
            sqlx::query_scalar("SELECT triggers_stamp FROM modules WHERE id = $1")
                .bind(module.id)
                .fetch_optional(&mut *tx)
                .await?;
        if stamp == Some(set.stamp) {
            // The set was current: the record itself is missing.
            return Ok(None);
        }
        triggers.forget(module.id);
    }
    Err(Error::conflict(format!(
        "the triggers of module {} keep changing; try again",
        module.id
    )))
}

/// Updates a record as `actor`: given fields replace stored ones, `null`
/// clears one, the rest are kept. Its revision and triggered jobs are
/// written by the same statement.
pub async fn update(
    pool: &PgPool,
    module_id: Id,
    id: Id,
    actor: &Actor,
    input: Map<String, Value>,
) -> Result<Written> {
    update_cached(pool, &TriggerCache::default(), module_id, id, actor, input).await
}

/// [`update`] with compiled triggers from `triggers`.
pub async fn update_cached(
    pool: &PgPool,
    triggers: &TriggerCache,
    module_id: Id,
    id: Id,
    actor: &Actor,
    input: Map<String, Value>,
) -> Result<Written> {
    let mut tx = pool.begin().await?;
    let module = modules::get_for_share(&mut tx, module_id).await?;
    let stored: Json<Map<String, Value>> = sqlx::query_scalar(
        r#"SELECT "values" FROM records
           WHERE id = $1 AND module_id = $2 AND deleted_at IS NULL FOR UPDATE"#,
    )
    .bind(id)
    .bind(module_id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| missing(module_id, id))?;
    let checked = check_values(&module, input, Some(&stored.0))?;
    check_references(&mut tx, &checked.references).await?;
    let values = WriteInput {
        record: Some(id),
        values: Some(&checked.values),
        previous: Some(&stored.0),
    };
    let row = write_locked(
        &mut tx,
        triggers,
        RecordEvent::Updated,
        &module,
        actor,
        values,
    )
    .await?
    .ok_or_else(|| missing(module_id, id))?;
    crate::audit::commit(tx).await?;
    Ok(row.into_written(&module))
}

/// Soft-deletes a record as `actor` and returns it as it was; it then
/// vanishes from lists, reports and references (its revisions stay).
pub async fn delete(pool: &PgPool, module_id: Id, id: Id, actor: &Actor) -> Result<Written> {
    delete_cached(pool, &TriggerCache::default(), module_id, id, actor).await
}

/// [`delete`] with compiled triggers from `triggers`.
pub async fn delete_cached(
    pool: &PgPool,
    triggers: &TriggerCache,
    module_id: Id,
    id: Id,
    actor: &Actor,
) -> Result<Written> {
    let mut tx = pool.begin().await?;
    let module = modules::get_for_share(&mut tx, module_id).await?;
    let values = WriteInput {
        record: Some(id),
        values: None,
        previous: None,
    };
    let row = write_locked(
        &mut tx,
        triggers,
        RecordEvent::Deleted,
        &module,
        actor,
        values,
    )
    .await?
    .ok_or_else(|| missing(module_id, id))?;
    crate::audit::commit(tx).await?;
    Ok(row.into_written(&module))
}

#[derive(sqlx::FromRow)]
struct RevisionRow {
    revision: i32,
    at: DateTime<Utc>,
    operation: String,
    user_id: Option<Id>,
    job_id: Option<Id>,
    task: Option<String>,
    changes: Json<BTreeMap<String, Change>>,
}

/// Every revision of a record of a live module, oldest first; a
/// soft-deleted record keeps its revisions (its last one is the delete).
pub async fn revisions(pool: &PgPool, module_id: Id, id: Id) -> Result<Vec<Revision>> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM records r JOIN modules m ON m.id = r.module_id
                        WHERE r.module_id = $1 AND r.id = $2 AND m.deleted_at IS NULL)",
    )
    .bind(module_id)
    .bind(id)
    .fetch_one(pool)
    .await?;
    if !exists {
        return Err(missing(module_id, id));
    }
    let rows: Vec<RevisionRow> = sqlx::query_as(
        "SELECT revision, at, operation, user_id, job_id, task, changes FROM record_revisions
         WHERE module_id = $1 AND record_id = $2 ORDER BY revision",
    )
    .bind(module_id)
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Revision {
            revision: row.revision,
            at: row.at,
            operation: row.operation,
            by: match (row.job_id, row.user_id) {
                (Some(job_id), _) => ChangedBy::Job {
                    job_id,
                    task: row.task.unwrap_or_default(),
                },
                (None, user) => ChangedBy::User {
                    user_id: user.unwrap_or(Id::from(0)),
                },
            },
            changes: row.changes.0,
        })
        .collect())
}
