//! The audit log: one entry per mutating api request, written in the
//! transaction of the change it records.
//!
//! How the entry gets into that transaction without every store function
//! taking an extra argument: the api runs each mutating request inside
//! [`scope`], a task-local [`RequestAudit`]. Every store function that
//! writes for a request commits through [`commit`], which inserts the
//! request's entry (once) in the same transaction just before `COMMIT`; so a
//! change never commits without its entry and an entry is never written for
//! a change that rolled back. When the request ends, the api calls
//! [`finish`] with the real status: a request whose change committed has its
//! entry already (it is corrected if the status differs from the one
//! assumed, e.g. 200 instead of 201 for an idempotent job create); one that
//! changed nothing (a 4xx, or a failure) gets its entry then. Outside a
//! scope (the worker, the scheduler, tests) [`commit`] is a plain commit.

use std::sync::atomic::{AtomicI64, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use crust_model::access::{Actor, AuditEntry};
use crust_model::paging::Paging;
use crust_model::Id;
use crust_query::{compile_filter, compile_sort, FieldSpec, FieldType, Params, Schema};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::config::QueryLimits;
use crate::{Error, Result};

tokio::task_local! {
    static REQUEST: Arc<RequestAudit>;
}

/// The audit entry of the request being served, filled in as it runs.
#[derive(Debug)]
pub struct RequestAudit {
    /// Who sent it (the token's `sub` and roles).
    pub actor: Actor,
    pub method: String,
    pub path: String,
    resource: Mutex<String>,
    /// The status logged if the change commits (the request's success status).
    status: AtomicU16,
    /// The entry's ID once the change's transaction inserted it (0 = none).
    written: AtomicI64,
}

impl RequestAudit {
    /// An entry for `method path` by `actor`; `resource` until a permission
    /// check names a better one; `status` is assumed for a committed change.
    pub fn new(actor: Actor, method: &str, path: &str, resource: &str, status: u16) -> Self {
        Self {
            actor,
            method: method.to_owned(),
            path: path.to_owned(),
            resource: Mutex::new(resource.to_owned()),
            status: AtomicU16::new(status),
            written: AtomicI64::new(0),
        }
    }

    fn resource(&self) -> String {
        self.resource
            .lock()
            .map(|resource| resource.clone())
            .unwrap_or_default()
    }
}

/// An entry's column values, for a store statement that inserts it itself.
pub struct Values<'a> {
    pub user: Id,
    pub method: &'a str,
    pub path: &'a str,
    pub resource: String,
    pub status: i32,
}

impl RequestAudit {
    /// The values to insert.
    pub fn values(&self) -> Values<'_> {
        Values {
            user: self.actor.user,
            method: &self.method,
            path: &self.path,
            resource: self.resource(),
            status: i32::from(self.status.load(Ordering::Acquire)),
        }
    }

    /// Records that the change's own statement inserted entry `id`.
    pub(crate) fn mark_written(&self, id: i64) {
        self.written.store(id, Ordering::Release);
    }
}

/// The current request's entry when it is not written yet (for a store
/// statement that inserts it in the same statement as its change).
pub(crate) fn pending() -> Option<Arc<RequestAudit>> {
    current().filter(|audit| audit.written.load(Ordering::Acquire) == 0)
}

/// Runs `work` (a request's handler) with `audit` as its entry.
pub async fn scope<F: std::future::Future>(audit: Arc<RequestAudit>, work: F) -> F::Output {
    REQUEST.scope(audit, work).await
}

fn current() -> Option<Arc<RequestAudit>> {
    REQUEST.try_with(Arc::clone).ok()
}

/// Names the resource the current request acts on (the one whose permission
/// was checked); the first name given wins. No-op outside a request.
pub fn set_resource(resource: &str) {
    if let Some(audit) = current() {
        if let Ok(mut slot) = audit.resource.lock() {
            if slot.starts_with('/') {
                *slot = resource.to_owned();
            }
        }
    }
}

/// Who the current request acts for, if it is a request.
pub fn actor() -> Option<Actor> {
    current().map(|audit| audit.actor.clone())
}

/// Commits `tx`, with the current request's audit entry inserted in it
/// first (once per request). Store functions that write use this instead of
/// `tx.commit()`.
pub(crate) async fn commit(mut tx: Transaction<'static, Postgres>) -> Result<()> {
    let Some(audit) = current() else {
        tx.commit().await?;
        return Ok(());
    };
    if audit.written.load(Ordering::Acquire) != 0 {
        tx.commit().await?;
        return Ok(());
    }
    let status = audit.status.load(Ordering::Acquire);
    let id = insert(&mut tx, &audit, status).await?;
    tx.commit().await?;
    audit.mark_written(id);
    Ok(())
}

/// Begins a transaction for a write that would otherwise be one statement,
/// so its audit entry can join it.
pub(crate) async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>> {
    Ok(pool.begin().await?)
}

async fn insert(conn: &mut PgConnection, audit: &RequestAudit, status: u16) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO audit_log (user_id, method, path, resource, status)
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(audit.actor.user)
    .bind(&audit.method)
    .bind(&audit.path)
    .bind(audit.resource())
    .bind(i32::from(status))
    .fetch_one(conn)
    .await?)
}

/// Completes the request's entry with its real `status`: inserts it when
/// no change committed, corrects the status of the one that did if it
/// differs from the status assumed.
pub async fn finish(pool: &PgPool, audit: &RequestAudit, status: u16) -> Result<()> {
    let written = audit.written.load(Ordering::Acquire);
    if written == 0 {
        let mut conn = pool.acquire().await?;
        insert(&mut conn, audit, status).await?;
    } else if status != audit.status.load(Ordering::Acquire) {
        sqlx::query("UPDATE audit_log SET status = $2 WHERE id = $1")
            .bind(written)
            .bind(i32::from(status))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// The fields `GET /audit?filter=` may name (besides `userID`, `id`).
fn schema() -> Schema {
    let field = |name: &str, ty| FieldSpec {
        name: name.to_owned(),
        ty,
        multi: false,
    };
    Schema {
        fields: vec![
            field("at", FieldType::Timestamp),
            field("method", FieldType::Text),
            field("path", FieldType::Text),
            field("resource", FieldType::Text),
            field("status", FieldType::Number),
        ],
    }
}

/// A page of the audit log matching `filter` (the query language over `at,
/// userID, method, path, resource, status`) in `sort` order (default newest
/// first), and how many match. The entries are presented to the compiler as
/// records (`values` holding the fields), so the very same compiler and its
/// guarantees apply; runs under the query timeout.
pub async fn list(
    pool: &PgPool,
    filter: &str,
    sort: &str,
    paging: Paging,
    limits: &QueryLimits,
) -> Result<(Vec<AuditEntry>, i64)> {
    let schema = schema();
    let mut params = Params::new();
    let filter = compile_filter(filter, &schema, &mut params)
        .map_err(|err| Error::invalid(format!("filter: {err}")))?;
    let order_by =
        compile_sort(sort, &schema).map_err(|err| Error::invalid(format!("sort: {err}")))?;
    let filter = filter.map_or(String::new(), |sql| format!(" WHERE {sql}"));
    let scope = format!(
        "FROM (SELECT id, at AS created_at, NULL::timestamptz AS updated_at, user_id,
                      at, method, path, resource, status,
                      jsonb_build_object('at', extract(epoch from at), 'method', method,
                                         'path', path, 'resource', resource,
                                         'status', status) AS values
               FROM audit_log) r{filter}"
    );
    let mut page_params = params.clone();
    let limit = page_params.bind(paging.per_page.to_string(), "bigint");
    let offset = page_params.bind(paging.offset().to_string(), "bigint");
    let page_sql = format!(
        "SELECT r.id, r.at, r.user_id, r.method, r.path, r.resource, r.status {scope}
         ORDER BY {order_by} LIMIT {limit} OFFSET {offset}"
    );
    let failure = crate::error::query_failure(limits.query_timeout);
    let mut tx = crate::bounded(pool, limits.query_timeout).await?;
    type Row = (Id, DateTime<Utc>, Id, String, String, String, i32);
    let mut query = sqlx::query_as::<_, Row>(&page_sql);
    for value in &page_params.values {
        query = query.bind(value);
    }
    let rows = query.fetch_all(&mut *tx).await.map_err(&failure)?;
    let entries = rows
        .into_iter()
        .map(
            |(id, at, user_id, method, path, resource, status)| AuditEntry {
                id,
                at,
                user_id,
                method,
                path,
                resource,
                status,
            },
        )
        .collect();
    let count_sql = format!("SELECT count(*) {scope}");
    let mut counting = sqlx::query_scalar::<_, i64>(&count_sql);
    for value in &params.values {
        counting = counting.bind(value);
    }
    let count = counting.fetch_one(&mut *tx).await.map_err(&failure)?;
    tx.commit().await?;
    Ok((entries, count))
}
