//! `/chart`: list, create, read, edit and delete charts.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crust_model::chart::{Chart, ChartInput, ChartPatch};
use crust_query::Report;
use crust_store::{charts, modules, reports};

use super::{created, ok, success, ApiResult};
use crate::access::Access;
use crate::error::ApiError;
use crate::extract::{Body, Ids};
use crate::AppState;
use crust_model::access::{Operation, Resource};

/// List charts.
#[utoipa::path(get, path = "/chart/", tag = "charts",
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Chart>>))))]
pub async fn list_charts(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(ok(charts::list(&state.pool).await?))
}

/// Create a chart.
#[utoipa::path(post, path = "/chart/", tag = "charts", request_body = ChartInput,
    responses((status = 201, body = inline(crate::extract::Envelope<Chart>)), (status = 400, body = super::ErrorBody)))]
pub async fn create_chart(
    State(state): State<AppState>,
    Body(input): Body<ChartInput>,
) -> ApiResult<impl IntoResponse> {
    let input = input.validate()?;
    compile_reports(&state, &input).await?;
    Ok(created(charts::create(&state.pool, input).await?))
}

/// Read a chart.
#[utoipa::path(get, path = "/chart/{chartID}", tag = "charts",
    params(("chartID" = String, Path, description = "Chart ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Chart>)), (status = 404, body = super::ErrorBody)))]
pub async fn read_chart(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(charts::get(&state.pool, id).await?))
}

/// Edit a chart. Send only the keys to change: absent ones keep their
/// value; a given `config` replaces the whole config and must compile.
#[utoipa::path(post, path = "/chart/{chartID}", tag = "charts", request_body = ChartPatch,
    params(("chartID" = String, Path, description = "Chart ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Chart>)), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody)))]
pub async fn edit_chart(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    Body(patch): Body<ChartPatch>,
) -> ApiResult<impl IntoResponse> {
    let current = charts::get(&state.pool, id).await?;
    let (name_given, config_given) = (patch.name.is_some(), patch.config.is_some());
    let merged = patch.apply(current).validate()?;
    if config_given {
        compile_reports(&state, &merged).await?;
    }
    let name = name_given.then_some(merged.name.as_str());
    let config = config_given.then_some(&merged.config);
    Ok(ok(charts::update(&state.pool, id, name, config).await?))
}

/// Delete a chart.
#[utoipa::path(delete, path = "/chart/{chartID}", tag = "charts",
    params(("chartID" = String, Path, description = "Chart ID")),
    responses((status = 200, body = super::Success), (status = 404, body = super::ErrorBody)))]
pub async fn delete_chart(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    charts::delete(&state.pool, id).await?;
    Ok(success())
}

/// Compiles every report of a chart's config against its module, so a
/// chart is only saved if it can be rendered; errors say which report.
async fn compile_reports(state: &AppState, input: &ChartInput) -> ApiResult<Vec<Report>> {
    let mut compiled = Vec::new();
    for (index, report) in input.reports()?.iter().enumerate() {
        let at = |err: crust_store::Error| match err {
            crust_store::Error::Database(_) => ApiError::from(err),
            other => ApiError::bad_request(format!("config.reports[{index}]: {other}")),
        };
        let module = modules::get(&state.pool, report.module_id)
            .await
            .map_err(at)?;
        compiled.push(
            reports::compile(&module, &report.metrics, &report.dimensions, &report.filter)
                .map_err(at)?,
        );
    }
    Ok(compiled)
}

/// Run every report of a chart's `config.reports`, in order.
#[utoipa::path(get, path = "/chart/{chartID}/data", tag = "charts",
    params(("chartID" = String, Path, description = "Chart ID")),
    responses((status = 200, description = "one list of report rows per entry of config.reports",
               body = inline(crate::extract::Envelope<Vec<Vec<Object>>>)),
              (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn chart_data(
    State(state): State<AppState>,
    access: Access,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    let chart = charts::get(&state.pool, id).await?;
    let input = ChartInput {
        name: chart.name,
        config: chart.config,
    };
    // The data are reports over records: each module's must be readable.
    for report in input.reports()? {
        access.require(Resource::Records(report.module_id), Operation::Read)?;
    }
    let mut results = Vec::new();
    for report in compile_reports(&state, &input).await? {
        results.push(reports::run(&state.pool, &report, &state.queries).await?);
    }
    Ok(ok(results))
}

/// The chart drawn as SVG from its reports (`config.type`: `bar`, `line`
/// or `pie`; bar when absent), with title, axes and legend; a chart whose
/// reports return no rows says "no data".
#[utoipa::path(get, path = "/chart/{chartID}/render.svg", tag = "charts",
    params(("chartID" = String, Path, description = "Chart ID")),
    responses((status = 200, description = "the chart as an SVG image", content_type = "image/svg+xml", body = String),
              (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn render_chart(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<axum::response::Response> {
    let chart = charts::get(&state.pool, id).await?;
    let kind = crate::chart_svg::Kind::parse(&chart.config)
        .ok_or_else(|| ApiError::bad_request("config.type: must be bar, line or pie"))?;
    let input = ChartInput {
        name: chart.name,
        config: chart.config,
    };
    let mut data = Vec::new();
    for report in compile_reports(&state, &input).await? {
        let rows = reports::run(&state.pool, &report, &state.queries).await?;
        let keys = |metric: bool| {
            report
                .columns
                .iter()
                .filter(|column| column.is_metric == metric)
                .map(|column| column.key.clone())
                .collect()
        };
        data.push(crate::chart_svg::ReportRows {
            metrics: keys(true),
            dimensions: keys(false),
            rows,
        });
    }
    let svg = crate::chart_svg::render(&input.name, kind, &data);
    Ok(([(axum::http::header::CONTENT_TYPE, "image/svg+xml")], svg).into_response())
}

/// Chart routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chart", get(list_charts).post(create_chart))
        .route("/chart/{chartID}/data", get(chart_data))
        .route("/chart/{chartID}/render.svg", get(render_chart))
        .route(
            "/chart/{chartID}",
            get(read_chart).post(edit_chart).delete(delete_chart),
        )
}
