//! Job search: the query language over the jobs table (`GET /job/?filter=`),
//! and the bulk cancel and rerun of the jobs a filter matches.
//!
//! The filter compiles with [`crust_query::compile_job_filter`] (every
//! literal bound); `status`/`workflowID` shorthands are ANDed with it.
//! Everything runs under the client query timeout.

use sqlx::{PgPool, Postgres, Transaction};

use super::api::{rerun_in, Created};
use super::{JobRow, COLUMNS};
use crate::config::QueryLimits;
use crate::error::query_failure;
use crate::records::{bind_all, count_matching, Count};
use crate::{Error, Result};
use crust_model::job::{Job, JobStatus};
use crust_model::paging::Paging;
use crust_model::Id;
use crust_query::{compile_job_filter, compile_job_sort, Params};

/// Most jobs one bulk cancel or rerun touches; a filter matching more is a
/// 400 (narrow it, or repeat with `jobID > …`).
pub const MAX_BULK_JOBS: i64 = 10_000;

/// What a job search asks for.
#[derive(Debug, Clone, Default)]
pub struct JobSearch<'a> {
    /// Query-language filter over the job columns (blank = every job).
    pub filter: &'a str,
    /// Sort list (blank = newest first).
    pub sort: &'a str,
    /// `status=` shorthand.
    pub status: Option<JobStatus>,
    /// `workflowID=` shorthand.
    pub workflow_id: Option<Id>,
    /// Only jobs of these workflows (the ones the caller may see); `None`:
    /// every workflow.
    pub workflows: Option<&'a [Id]>,
}

/// `FROM jobs j WHERE …` for `search` and its bound values.
fn scope(search: &JobSearch<'_>) -> Result<(String, Params)> {
    let mut params = Params::new();
    let mut conditions = Vec::new();
    if let Some(filter) = compile_job_filter(search.filter, &mut params)
        .map_err(|err| Error::invalid(format!("filter: {err}")))?
    {
        conditions.push(filter);
    }
    if let Some(status) = search.status {
        let placeholder = params.bind(status.as_str().to_owned(), "text");
        conditions.push(format!("j.status = {placeholder}"));
    }
    if let Some(workflow) = search.workflow_id {
        let placeholder = params.bind(workflow.to_string(), "bigint");
        conditions.push(format!("j.workflow_id = {placeholder}"));
    }
    if let Some(workflows) = search.workflows {
        let list: Vec<String> = workflows.iter().map(Id::to_string).collect();
        let placeholder = params.bind(list.join(","), "text");
        conditions.push(format!(
            "j.workflow_id = ANY(string_to_array({placeholder}, ',')::bigint[])"
        ));
    }
    let scope = if conditions.is_empty() {
        "FROM jobs j".to_owned()
    } else {
        format!("FROM jobs j WHERE {}", conditions.join(" AND "))
    };
    Ok((scope, params))
}

/// A page of the jobs `search` matches, in its order, and how many match
/// (exact up to 10 000, else the planner's estimate).
pub async fn search(
    pool: &PgPool,
    search: &JobSearch<'_>,
    paging: Paging,
    limits: &QueryLimits,
) -> Result<(Vec<Job>, Count)> {
    let (scope, params) = scope(search)?;
    let order_by =
        compile_job_sort(search.sort).map_err(|err| Error::invalid(format!("sort: {err}")))?;
    let mut page_params = params.clone();
    let limit = page_params.bind(paging.per_page.to_string(), "bigint");
    let offset = page_params.bind(paging.offset().to_string(), "bigint");
    let columns = qualified_columns();
    let page_sql =
        format!("SELECT {columns} {scope} ORDER BY {order_by} LIMIT {limit} OFFSET {offset}");
    let failure = query_failure(limits.query_timeout);
    let mut tx = crate::bounded(pool, limits.query_timeout).await?;
    let rows = bind_all(sqlx::query_as::<_, JobRow>(&page_sql), &page_params.values)
        .fetch_all(&mut *tx)
        .await
        .map_err(&failure)?;
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
    Ok((rows.into_iter().map(Job::from).collect(), count))
}

/// [`COLUMNS`] prefixed with the `j` alias.
fn qualified_columns() -> String {
    COLUMNS
        .split(',')
        .map(|column| format!("j.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The IDs of the jobs `filter` matches among those in `statuses`, locked
/// in ID order; more than [`MAX_BULK_JOBS`] is a 400.
async fn lock_matching(
    tx: &mut Transaction<'static, Postgres>,
    filter: &str,
    workflows: Option<&[Id]>,
    statuses: &str,
    what: &str,
    limits: &QueryLimits,
) -> Result<Vec<Id>> {
    let (scope, params) = scope(&JobSearch {
        filter,
        workflows,
        ..JobSearch::default()
    })?;
    let joiner = if scope.contains(" WHERE ") {
        " AND"
    } else {
        " WHERE"
    };
    let sql = format!(
        "SELECT j.id {scope}{joiner} j.status IN ({statuses}) ORDER BY j.id LIMIT {} FOR UPDATE",
        MAX_BULK_JOBS + 1
    );
    let failure = query_failure(limits.query_timeout);
    let mut query = sqlx::query_scalar::<_, Id>(&sql);
    for value in &params.values {
        query = query.bind(value);
    }
    let ids = query.fetch_all(&mut **tx).await.map_err(&failure)?;
    if ids.len() as i64 > MAX_BULK_JOBS {
        return Err(Error::invalid(format!(
            "filter: matches more than {MAX_BULK_JOBS} jobs to {what}; narrow it \
             (e.g. AND jobID <= …) and repeat"
        )));
    }
    Ok(ids)
}

/// What a bulk cancel did.
#[derive(Debug, Clone, Default)]
pub struct BulkCancelled {
    /// Jobs cancelled or asked to stop.
    pub count: i64,
    /// Running jobs asked to stop: their workers must be told.
    pub running: Vec<Id>,
}

/// Cancels the queued, waiting and running jobs `filter` matches, in one
/// transaction: queued and waiting ones end `cancelled` at once, running
/// ones are asked to stop (as `DELETE /job/{id}` does for one).
pub async fn cancel_matching(
    pool: &PgPool,
    filter: &str,
    workflows: Option<&[Id]>,
    limits: &QueryLimits,
) -> Result<BulkCancelled> {
    let mut tx = crate::bounded(pool, limits.query_timeout).await?;
    let ids = lock_matching(
        &mut tx,
        filter,
        workflows,
        "'queued', 'waiting', 'running'",
        "cancel",
        limits,
    )
    .await?;
    sqlx::query(
        "UPDATE jobs SET status = 'cancelled', cancel_requested = true, finished_at = now(),
                wake_at = NULL, updated_at = now()
         WHERE id = ANY($1) AND status IN ('queued', 'waiting')",
    )
    .bind(&ids)
    .execute(&mut *tx)
    .await?;
    let running: Vec<Id> = sqlx::query_scalar(
        "UPDATE jobs SET cancel_requested = true, updated_at = now()
         WHERE id = ANY($1) AND status = 'running' RETURNING id",
    )
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    crate::audit::commit(tx).await?;
    Ok(BulkCancelled {
        count: ids.len() as i64,
        running,
    })
}

/// Reruns every finished job `filter` matches as a new job, as
/// `POST /job/{id}/rerun` without `from` does for one; all or nothing.
pub async fn rerun_matching(
    pool: &PgPool,
    filter: &str,
    workflows: Option<&[Id]>,
    creator: &crust_model::access::Actor,
    trace_parent: Option<&str>,
    limits: &QueryLimits,
) -> Result<Vec<Created>> {
    let mut tx = crate::bounded(pool, limits.query_timeout).await?;
    let ids = lock_matching(
        &mut tx,
        filter,
        workflows,
        "'ok', 'error', 'cancelled'",
        "rerun",
        limits,
    )
    .await?;
    let mut created = Vec::with_capacity(ids.len());
    for id in ids {
        created.push(rerun_in(&mut tx, id, None, creator, trace_parent).await?);
    }
    crate::audit::commit(tx).await?;
    Ok(created)
}
