//! Reports: aggregate a module's live records by the query language's
//! metrics, dimensions and filter.

use serde_json::{Map, Number, Value};
use sqlx::{PgPool, Row};

use crate::error::query_failure;
use crate::model::module::Module;
use crate::query::{compile_report, Report};
use crate::Result;

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

/// Runs a compiled report: one object per group, with `count`, each metric
/// (a JSON number) and each dimension (text) under its key.
pub async fn run(pool: &PgPool, report: &Report) -> Result<Vec<Map<String, Value>>> {
    let mut query = sqlx::query(&report.sql);
    for param in &report.params {
        query = query.bind(param);
    }
    let rows = query.fetch_all(pool).await.map_err(query_failure)?;
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
