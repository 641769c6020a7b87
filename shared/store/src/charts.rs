//! Charts: plain CRUD over a name and a JSON config.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use sqlx::PgPool;

use crate::{Error, Result};
use crust_model::chart::{Chart, ChartInput};
use crust_model::Id;

#[derive(sqlx::FromRow)]
struct ChartRow {
    id: Id,
    name: String,
    config: Json<Value>,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
}

impl From<ChartRow> for Chart {
    fn from(row: ChartRow) -> Self {
        Chart {
            id: row.id,
            name: row.name,
            config: row.config.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str = "id, name, config, created_at, updated_at";

fn missing(id: Id) -> Error {
    Error::not_found(format!("chart {id} does not exist"))
}

/// Every chart, by ID.
pub async fn list(pool: &PgPool) -> Result<Vec<Chart>> {
    let rows: Vec<ChartRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM charts ORDER BY id"))
        .fetch_all(pool)
        .await?;
    Ok(rows.into_iter().map(Chart::from).collect())
}

/// One chart.
pub async fn get(pool: &PgPool, id: Id) -> Result<Chart> {
    sqlx::query_as::<_, ChartRow>(&format!("SELECT {COLUMNS} FROM charts WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(Chart::from)
        .ok_or_else(|| missing(id))
}

/// Creates a chart.
pub async fn create(pool: &PgPool, input: ChartInput) -> Result<Chart> {
    let mut tx = crate::audit::begin(pool).await?;
    let row: ChartRow = sqlx::query_as(&format!(
        "INSERT INTO charts (name, config) VALUES ($1, $2) RETURNING {COLUMNS}"
    ))
    .bind(&input.name)
    .bind(Json(&input.config))
    .fetch_one(&mut *tx)
    .await?;
    crate::audit::commit(tx).await?;
    Ok(row.into())
}

/// Edits a chart: a given `name` or `config` replaces the stored one, an
/// absent one stays (each in one statement, so concurrent edits of the
/// other key are kept). The caller validates what it passes.
pub async fn update(
    pool: &PgPool,
    id: Id,
    name: Option<&str>,
    config: Option<&Value>,
) -> Result<Chart> {
    let mut tx = crate::audit::begin(pool).await?;
    let chart = sqlx::query_as::<_, ChartRow>(&format!(
        "UPDATE charts SET name = coalesce($2, name), config = coalesce($3, config), updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(name)
    .bind(config.map(Json))
    .fetch_optional(&mut *tx)
    .await?
    .map(Chart::from)
    .ok_or_else(|| missing(id))?;
    crate::audit::commit(tx).await?;
    Ok(chart)
}

/// Deletes a chart.
pub async fn delete(pool: &PgPool, id: Id) -> Result<()> {
    let mut tx = crate::audit::begin(pool).await?;
    let deleted = sqlx::query("DELETE FROM charts WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(missing(id));
    }
    crate::audit::commit(tx).await?;
    Ok(())
}
