//! Reports: aggregate a module's live records by the query language's
//! metrics, dimensions and filter.

use futures_util::TryStreamExt;
use serde_json::{Map, Number, Value};
use sqlx::{PgPool, Row};

use crate::bounded;
use crate::config::QueryLimits;
use crate::error::query_failure;
use crate::{Error, Result};
use crust_model::module::Module;
use crust_query::{compile_report, Report};

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
/// key. More than `limits.report_max_rows` groups, or more than
/// `limits.report_max_bytes` of keys and values, is a 400; rows are read one
/// at a time, so a report too big is refused without being held whole.
pub async fn run(
    pool: &PgPool,
    report: &Report,
    limits: &QueryLimits,
) -> Result<Vec<Map<String, Value>>> {
    let max_rows = limits.report_max_rows as usize;
    let max_bytes = limits.report_max_bytes as usize;
    // One row more than allowed tells a report that is too big from one
    // that just fits, without reading all of it.
    let sql = format!("{} LIMIT {}", report.sql, max_rows + 1);
    let mut query = sqlx::query(&sql);
    for param in &report.params {
        query = query.bind(param);
    }
    let failure = query_failure(limits.query_timeout);
    let mut tx = bounded(pool, limits.query_timeout).await?;
    let mut results = Vec::new();
    let mut bytes = 0;
    {
        let mut rows = query.fetch(&mut *tx);
        while let Some(row) = rows.try_next().await.map_err(&failure)? {
            if results.len() == max_rows {
                return Err(Error::invalid(format!(
                    "the report has more than {max_rows} groups (CRUST_REPORT_MAX_ROWS); \
                     use fewer or coarser dimensions or a narrower filter"
                )));
            }
            let mut object = Map::new();
            for (index, column) in report.columns.iter().enumerate() {
                let value = if column.is_metric {
                    // About what a number takes in the JSON answer.
                    bytes += 24;
                    row.try_get::<Option<f64>, _>(index)?
                        .and_then(metric_number)
                        .map_or(Value::Null, Value::Number)
                } else {
                    let text = row.try_get::<Option<String>, _>(index)?;
                    bytes += text.as_ref().map_or(4, String::len);
                    text.map_or(Value::Null, Value::String)
                };
                bytes += column.key.len();
                object.insert(column.key.clone(), value);
            }
            if bytes > max_bytes {
                return Err(Error::invalid(format!(
                    "the report is larger than {max_bytes} bytes (CRUST_REPORT_MAX_BYTES); \
                     use fewer or shorter dimensions or a narrower filter"
                )));
            }
            results.push(object);
        }
    }
    tx.commit().await?;
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
