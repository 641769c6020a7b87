//! `/chart`: list, create, read, edit and delete charts.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crust_shared::db::charts;
use crust_shared::model::chart::{Chart, ChartInput};

use super::{created, ok, success, ApiResult};
use crate::extract::{Body, Ids};
use crate::AppState;

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
    Ok(created(
        charts::create(&state.pool, input.validate()?).await?,
    ))
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

/// Edit a chart.
#[utoipa::path(post, path = "/chart/{chartID}", tag = "charts", request_body = ChartInput,
    params(("chartID" = String, Path, description = "Chart ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Chart>)), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody)))]
pub async fn edit_chart(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    Body(input): Body<ChartInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(charts::update(&state.pool, id, input.validate()?).await?))
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

/// Chart routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/chart", get(list_charts).post(create_chart))
        .route(
            "/chart/{chartID}",
            get(read_chart).post(edit_chart).delete(delete_chart),
        )
}
