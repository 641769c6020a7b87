//! Pages: the tree, record pages (one per module), weights and reordering.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use crate::error::unique_violation;
use crate::{Error, Result};
use crust_model::page::{build_tree, Page, PageInput, PagePatch};
use crust_model::Id;

#[derive(sqlx::FromRow)]
struct PageRow {
    id: Id,
    parent_id: Option<Id>,
    module_id: Option<Id>,
    title: String,
    description: String,
    visible: bool,
    blocks: Json<Value>,
    weight: i32,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
}

impl From<PageRow> for Page {
    fn from(row: PageRow) -> Self {
        Page {
            id: row.id,
            parent_id: row.parent_id.unwrap_or(Id::ZERO),
            module_id: row.module_id.unwrap_or(Id::ZERO),
            title: row.title,
            description: row.description,
            visible: row.visible,
            blocks: row.blocks.0,
            weight: row.weight,
            created_at: row.created_at,
            updated_at: row.updated_at,
            children: None,
        }
    }
}

const COLUMNS: &str =
    "id, parent_id, module_id, title, description, visible, blocks, weight, created_at, updated_at";

fn missing(id: Id) -> Error {
    Error::not_found(format!("page {id} does not exist"))
}

/// Pages under `parent` ("0" = root) in weight order, or every page when
/// `parent` is `None`.
pub async fn list(pool: &PgPool, parent: Option<Id>) -> Result<Vec<Page>> {
    let rows: Vec<PageRow> = match parent {
        Some(parent) => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM pages WHERE parent_id IS NOT DISTINCT FROM $1
                 ORDER BY weight, id"
            ))
            .bind(parent.non_zero())
            .fetch_all(pool)
            .await?
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM pages ORDER BY parent_id NULLS FIRST, weight, id"
            ))
            .fetch_all(pool)
            .await?
        }
    };
    Ok(rows.into_iter().map(Page::from).collect())
}

/// Every page, nested under its parent in weight order.
pub async fn tree(pool: &PgPool) -> Result<Vec<Page>> {
    Ok(build_tree(list(pool, None).await?))
}

/// One page.
pub async fn get(pool: &PgPool, id: Id) -> Result<Page> {
    sqlx::query_as::<_, PageRow>(&format!("SELECT {COLUMNS} FROM pages WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(Page::from)
        .ok_or_else(|| missing(id))
}

/// Checks the parent and module an input names; `this` is the page being
/// edited, which may not move under itself.
async fn check_links(conn: &mut PgConnection, input: &PageInput, this: Option<Id>) -> Result<()> {
    if let Some(parent) = input.parent_id.non_zero() {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pages WHERE id = $1)")
            .bind(parent)
            .fetch_one(&mut *conn)
            .await?;
        if !exists {
            return Err(Error::invalid(format!(
                "selfID: page {parent} does not exist"
            )));
        }
        if let Some(this) = this {
            // Walk up from the new parent; meeting this page means a cycle.
            let cycle: bool = sqlx::query_scalar(
                "WITH RECURSIVE up(id, parent_id) AS (
                     SELECT id, parent_id FROM pages WHERE id = $1
                     UNION
                     SELECT p.id, p.parent_id FROM pages p JOIN up ON p.id = up.parent_id
                 )
                 SELECT EXISTS (SELECT 1 FROM up WHERE id = $2)",
            )
            .bind(parent)
            .bind(this)
            .fetch_one(&mut *conn)
            .await?;
            if cycle {
                return Err(Error::invalid(format!(
                    "selfID: page {parent} is page {this} or inside it; a page cannot be its own ancestor"
                )));
            }
        }
    }
    if let Some(module) = input.module_id.non_zero() {
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM modules WHERE id = $1 AND deleted_at IS NULL)",
        )
        .bind(module)
        .fetch_one(&mut *conn)
        .await?;
        if !exists {
            return Err(Error::invalid(format!(
                "moduleID: module {module} does not exist"
            )));
        }
    }
    Ok(())
}

fn record_page_taken(err: sqlx::Error, module: Id) -> Error {
    match unique_violation(&err) {
        Some("pages_one_record_page_per_module") => {
            Error::conflict(format!("module {module} already has a record page"))
        }
        _ => err.into(),
    }
}

/// Creates a page as the last child of its parent.
pub async fn create(pool: &PgPool, input: PageInput) -> Result<Page> {
    let mut tx = pool.begin().await?;
    check_links(&mut tx, &input, None).await?;
    let row: PageRow = sqlx::query_as(&format!(
        "INSERT INTO pages (parent_id, module_id, title, description, visible, blocks, weight)
         VALUES ($1, $2, $3, $4, $5, $6,
                 (SELECT coalesce(max(weight), 0) + 1 FROM pages WHERE parent_id IS NOT DISTINCT FROM $1))
         RETURNING {COLUMNS}"
    ))
    .bind(input.parent_id.non_zero())
    .bind(input.module_id.non_zero())
    .bind(&input.title)
    .bind(&input.description)
    .bind(input.visible)
    .bind(Json(&input.blocks))
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| record_page_taken(err, input.module_id))?;
    crate::audit::commit(tx).await?;
    Ok(row.into())
}

/// Edits a page: the keys `patch` names change, the rest stay, and the
/// result is validated as a whole under the page's row lock. Its weight is
/// kept.
pub async fn update(pool: &PgPool, id: Id, patch: PagePatch) -> Result<Page> {
    let mut tx = pool.begin().await?;
    let current: Page = sqlx::query_as::<_, PageRow>(&format!(
        "SELECT {COLUMNS} FROM pages WHERE id = $1 FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .map(Page::from)
    .ok_or_else(|| missing(id))?;
    let input = patch.apply(current).validate()?;
    check_links(&mut tx, &input, Some(id)).await?;
    let row: PageRow = sqlx::query_as(&format!(
        "UPDATE pages SET parent_id = $2, module_id = $3, title = $4, description = $5,
                          visible = $6, blocks = $7, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(input.parent_id.non_zero())
    .bind(input.module_id.non_zero())
    .bind(&input.title)
    .bind(&input.description)
    .bind(input.visible)
    .bind(Json(&input.blocks))
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| record_page_taken(err, input.module_id))?;
    crate::audit::commit(tx).await?;
    Ok(row.into())
}

/// Gives the listed children of `parent` weights 1..n in that order; the
/// children not listed follow, keeping their relative order.
pub async fn reorder(pool: &PgPool, parent: Id, order: &[Id]) -> Result<()> {
    let mut tx = pool.begin().await?;
    if let Some(parent) = parent.non_zero() {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pages WHERE id = $1)")
            .bind(parent)
            .fetch_one(&mut *tx)
            .await?;
        if !exists {
            return Err(missing(parent));
        }
    }
    let children: Vec<Id> = sqlx::query_scalar(
        "SELECT id FROM pages WHERE parent_id IS NOT DISTINCT FROM $1 ORDER BY weight, id FOR UPDATE",
    )
    .bind(parent.non_zero())
    .fetch_all(&mut *tx)
    .await?;
    for (index, id) in order.iter().enumerate() {
        if order[..index].contains(id) {
            return Err(Error::invalid(format!(
                "pageIDs[{index}]: page {id} is listed twice"
            )));
        }
        if !children.contains(id) {
            return Err(Error::invalid(format!(
                "pageIDs[{index}]: page {id} is not a child of page {parent}"
            )));
        }
    }
    let ordered: Vec<i64> = order
        .iter()
        .chain(children.iter().filter(|id| !order.contains(id)))
        .map(|id| id.get())
        .collect();
    sqlx::query(
        "UPDATE pages p SET weight = o.weight
         FROM unnest($1::bigint[]) WITH ORDINALITY AS o(id, weight)
         WHERE p.id = o.id",
    )
    .bind(&ordered)
    .execute(&mut *tx)
    .await?;
    crate::audit::commit(tx).await?;
    Ok(())
}

/// Deletes a page; one with children only with `force`, which deletes the
/// whole subtree.
pub async fn delete(pool: &PgPool, id: Id, force: bool) -> Result<()> {
    let mut tx = pool.begin().await?;
    let found: Option<Id> = sqlx::query_scalar("SELECT id FROM pages WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    if found.is_none() {
        return Err(missing(id));
    }
    if !force {
        let children: i64 = sqlx::query_scalar("SELECT count(*) FROM pages WHERE parent_id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
        if children > 0 {
            return Err(Error::conflict(format!(
                "page {id} has {children} child page(s); delete with ?force=true to remove them too"
            )));
        }
    }
    sqlx::query("DELETE FROM pages WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    crate::audit::commit(tx).await?;
    Ok(())
}
