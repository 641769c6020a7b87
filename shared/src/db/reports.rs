//! Reports: aggregate a module's live records by the query language's
//! metrics, dimensions and filter.

use serde_json::{Map, Number, Value};
use sqlx::{PgPool, Row};

use super::bounded;
use crate::config::QueryLimits;
use crate::error::query_failure;
use crate::model::module::Module;
use crate::query::{compile_report, Report};
use crate::{Error, Result};

/// Compiles a report over `module`; errors name the part that is wrong.
pub fn compile(module: &Module, metrics: &str, dimensions: &str, filter: &str) -> Result<Report> {
    Ok(compile_report(
        module.id.get(),
        &module.query_schema(),
        metrics,
        dimensions,
        filter,
    )?)
}

/// Runs a compiled report under `limits`: one object per group, with
/// `count`, each metric (a JSON number) and each dimension (text) under its
/// key. More than `limits.report_max_rows` groups is a 400.
pub async fn run(
    pool: &PgPool,
    report: &Report,
    limits: &QueryLimits,
) -> Result<Vec<Map<String, Value>>> {
    let max_rows = limits.report_max_rows as usize;
    // One row more than allowed tells a report that is too big from one
    // that just fits, without reading all of it.
    let sql = format!("{} LIMIT {}", report.sql, max_rows + 1);
    let mut query = sqlx::query(&sql);
    for param in &report.params {
        query = query.bind(param);
    }
    let mut tx = bounded(pool, limits.query_timeout).await?;
    let rows = query
        .fetch_all(&mut *tx)
        .await
        .map_err(query_failure(limits.query_timeout))?;
    tx.commit().await?;
    if rows.len() > max_rows {
        return Err(Error::invalid(format!(
            "the report has more than {max_rows} groups (CRUST_REPORT_MAX_ROWS); \
             use fewer or coarser dimensions or a narrower filter"
        )));
    }
    let mut results = Vec::with_capacity(rows.len());
    for row in rows {
        let mut object = Map::new();
        for (index, column) in report.columns.iter().enumerate() {
            let value = if column.is_metric {
                row.try_get::<Option<f64>, _>(index)?
                    .and_then(metric_number)
                    .map_or(Value::Null, Value::Number)
            } else {
                row.try_get::<Option<String>, _>(index)?
                    .map_or(Value::Null, Value::String)
            };
            object.insert(column.key.clone(), value);
        }
        results.push(object);
    }
    Ok(results)
}

/// Whole numbers print as integers (`3`, not `3.0`); others as floats.
fn metric_number(value: f64) -> Option<Number> {
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        Some(Number::from(value as i64))
    } else {
        Number::from_f64(value)
    }
}
