//! `/worker`: the live worker processes, from their heartbeats.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crust_model::worker::WorkerInfo;

use super::{ok, ApiResult};
use crate::AppState;

/// The workers that sent a heartbeat recently, by name: the queues they
/// consume, how many jobs they run at once and are running.
#[utoipa::path(get, path = "/worker/", tag = "jobs",
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<WorkerInfo>>))))]
pub async fn list_workers(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(ok(crust_store::workers::list_live(&state.pool).await?))
}

/// Worker routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/worker", get(list_workers))
}
