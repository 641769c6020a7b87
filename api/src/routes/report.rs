//! `/module/{moduleID}/report`: aggregate a module's records.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crust_store::{modules, reports};
use serde::Deserialize;

use super::{ok, ApiResult};
use crate::extract::{Ids, Query};
use crate::AppState;

/// `GET /module/{moduleID}/report` parameters, in the query language.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Aggregates with optional aliases, e.g. `COUNT(*) AS count, SUM(money)`.
    #[serde(default)]
    pub metrics: String,
    /// Group-by expressions, e.g. `DATE(foo), status`.
    #[serde(default)]
    pub dimensions: String,
    /// Which records to include, e.g. `DATE(foo) > 2010`.
    #[serde(default)]
    pub filter: String,
}

/// Run a report: one row per group with `count`, each metric (alias or
/// `metric_N`) and each dimension (alias or `dimension_N`).
#[utoipa::path(get, path = "/module/{moduleID}/report", tag = "records",
    params(("moduleID" = String, Path, description = "Module ID"), ReportQuery),
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Object>>)),
              (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn module_report(
    State(state): State<AppState>,
    Ids([module_id]): Ids<1>,
    Query(query): Query<ReportQuery>,
) -> ApiResult<impl IntoResponse> {
    let module = modules::get(&state.pool, module_id).await?;
    let report = reports::compile(&module, &query.metrics, &query.dimensions, &query.filter)?;
    Ok(ok(reports::run(&state.pool, &report, &state.queries).await?))
}

/// Report routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/module/{moduleID}/report", get(module_report))
}
