//! `/workflow`: list, create, read, update and delete workflows.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crust_model::workflow::{Workflow, WorkflowInput, WorkflowPatch};
use crust_store::workflows;

use super::{created, ok, success, ApiResult};
use crate::extract::{Body, Ids};
use crate::AppState;

/// List workflows.
#[utoipa::path(get, path = "/workflow/", tag = "workflows",
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Workflow>>))))]
pub async fn list_workflows(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(ok(workflows::list(&state.pool).await?))
}

/// Create a workflow.
#[utoipa::path(post, path = "/workflow/", tag = "workflows", request_body = WorkflowInput,
    responses((status = 201, body = inline(crate::extract::Envelope<Workflow>)), (status = 400, body = super::ErrorBody)))]
pub async fn create_workflow(
    State(state): State<AppState>,
    Body(input): Body<WorkflowInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(
        workflows::create(&state.pool, input.validate()?).await?,
    ))
}

/// Read a workflow.
#[utoipa::path(get, path = "/workflow/{workflowID}", tag = "workflows",
    params(("workflowID" = String, Path, description = "Workflow ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Workflow>)), (status = 404, body = super::ErrorBody)))]
pub async fn read_workflow(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(workflows::get(&state.pool, id).await?))
}

/// Edit a workflow. Send only the keys to change: absent ones keep their
/// value, `"schedule": null` removes the schedule, and a given `tasks` or
/// `onError` replaces that whole list. Running jobs keep the definition they
/// started with.
#[utoipa::path(post, path = "/workflow/{workflowID}", tag = "workflows", request_body = WorkflowPatch,
    params(("workflowID" = String, Path, description = "Workflow ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Workflow>)), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody)))]
pub async fn update_workflow(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    Body(patch): Body<WorkflowPatch>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(workflows::update(&state.pool, id, patch).await?))
}

/// Delete a workflow: its schedule stops at once, its queued jobs are
/// cancelled and its running jobs are stopped (they end `cancelled`).
#[utoipa::path(delete, path = "/workflow/{workflowID}", tag = "workflows",
    params(("workflowID" = String, Path, description = "Workflow ID")),
    responses((status = 200, body = super::Success), (status = 404, body = super::ErrorBody)))]
pub async fn delete_workflow(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    for running in workflows::delete(&state.pool, id).await? {
        state.queue.cancel(running);
    }
    Ok(success())
}

/// Workflow routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/workflow", get(list_workflows).post(create_workflow))
        .route(
            "/workflow/{workflowID}",
            get(read_workflow)
                .post(update_workflow)
                .delete(delete_workflow),
        )
}
