//! Records: list, read, create, update and soft delete, each validated
//! against its module inside the transaction that writes it.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use crate::bounded;
use crate::config::QueryLimits;
use crate::error::query_failure;
use crate::modules::{self, ModuleCache};
use crate::{Error, Result};
use crust_model::module::Module;
use crust_model::paging::Paging;
use crust_model::record::{check_values, Record, Reference};
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

/// Creates a record in module `module_id` for `user`.
///
/// Values are checked against the module as read, then inserted by one
/// autocommit statement that also checks the module is still live and
/// unchanged (same version), holding a key-share lock on it, so a
/// concurrent edit or delete either waits for the insert or makes it miss;
/// a miss re-reads the module and tries again. Records that reference other
/// records take a transaction, to check the references under the same lock.
pub async fn create(
    pool: &PgPool,
    module_id: Id,
    user: Id,
    input: Map<String, Value>,
) -> Result<Record> {
    create_cached(pool, &ModuleCache::default(), module_id, user, input).await
}

/// [`create`] reading the module through `cache`, which saves a round trip
/// per record; a stale entry makes the guarded insert miss and is evicted.
pub async fn create_cached(
    pool: &PgPool,
    cache: &ModuleCache,
    module_id: Id,
    user: Id,
    input: Map<String, Value>,
) -> Result<Record> {
    for _ in 0..3 {
        let module = cache.get(pool, module_id).await?;
        let checked = check_values(&module, input.clone(), None)?;
        if !checked.references.is_empty() {
            return create_with_references(pool, module_id, user, input).await;
        }
        let row: Option<RecordRow> = sqlx::query_as(&format!(
            r#"WITH m AS (
                   SELECT id FROM modules
                   WHERE id = $1 AND deleted_at IS NULL AND coalesce(updated_at, created_at) = $4
                   FOR KEY SHARE)
               INSERT INTO records AS r (module_id, user_id, "values")
               SELECT m.id, $2, $3 FROM m
               RETURNING {COLUMNS}"#
        ))
        .bind(module_id)
        .bind(user)
        .bind(Json(&checked.values))
        .bind(module.version())
        .fetch_optional(pool)
        .await?;
        if let Some(row) = row {
            return Ok(row.into_record(&module));
        }
        // The module changed or went away since it was read: read it again.
        cache.forget(module_id);
    }
    create_with_references(pool, module_id, user, input).await
}

/// The transactional create: module share-locked, references checked.
async fn create_with_references(
    pool: &PgPool,
    module_id: Id,
    user: Id,
    input: Map<String, Value>,
) -> Result<Record> {
    let mut tx = pool.begin().await?;
    let module = modules::get_for_share(&mut tx, module_id).await?;
    let checked = check_values(&module, input, None)?;
    check_references(&mut tx, &checked.references).await?;
    let row: RecordRow = sqlx::query_as(&format!(
        r#"INSERT INTO records AS r (module_id, user_id, "values") VALUES ($1, $2, $3)
           RETURNING {COLUMNS}"#
    ))
    .bind(module_id)
    .bind(user)
    .bind(Json(&checked.values))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.into_record(&module))
}

/// Updates a record: given fields replace stored ones, `null` clears one,
/// the rest are kept.
pub async fn update(
    pool: &PgPool,
    module_id: Id,
    id: Id,
    input: Map<String, Value>,
) -> Result<Record> {
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
    let row: RecordRow = sqlx::query_as(&format!(
        r#"UPDATE records AS r SET "values" = $2, updated_at = now()
           WHERE r.module_id = $3 AND r.id = $1
           RETURNING {COLUMNS}"#
    ))
    .bind(id)
    .bind(Json(&checked.values))
    .bind(module_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row.into_record(&module))
}

/// Soft-deletes a record and returns it as it was; it then vanishes from
/// lists, reports and references.
pub async fn delete(pool: &PgPool, module_id: Id, id: Id) -> Result<Record> {
    let module = modules::get(pool, module_id).await?;
    sqlx::query_as::<_, RecordRow>(&format!(
        "UPDATE records r SET deleted_at = now()
         WHERE r.id = $1 AND r.module_id = $2 AND r.deleted_at IS NULL
           AND EXISTS (SELECT 1 FROM modules WHERE id = $2 AND deleted_at IS NULL)
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(module_id)
    .fetch_optional(pool)
    .await?
    .map(|row| row.into_record(&module))
    .ok_or_else(|| missing(module_id, id))
}
