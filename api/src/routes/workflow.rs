//! `/workflow`: list, create, read, update and delete workflows, list a
//! workflow's versions, and pause and resume it.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use crust_model::paging::Paging;
use crust_model::workflow::{Workflow, WorkflowInput, WorkflowPatch, WorkflowVersion};
use crust_store::workflows;
use serde::{Deserialize, Serialize};

use super::{created, ok, success, ApiResult};
use crate::access::Access;
use crate::extract::{Body, Ids, Query};
use crate::AppState;
use crust_model::access::{Operation, Resource};

/// List workflows.
#[utoipa::path(get, path = "/workflow/", tag = "workflows",
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Workflow>>))))]
pub async fn list_workflows(
    State(state): State<AppState>,
    access: Access,
) -> ApiResult<impl IntoResponse> {
    // Only the workflows the caller may read.
    let mut list = workflows::list(&state.pool).await?;
    list.retain(|workflow| access.allows(Resource::Workflow(Some(workflow.id)), Operation::Read));
    Ok(ok(list))
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
/// `onError` replaces that whole list. Each edit is a new version; jobs
/// already created keep running the version they were created with.
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

/// Pause a workflow: its jobs stay queued and are not started (those
/// already running finish normally) and its cron slots are skipped, not
/// fired later. Pausing a paused workflow changes nothing.
#[utoipa::path(post, path = "/workflow/{workflowID}/pause", tag = "workflows",
    params(("workflowID" = String, Path, description = "Workflow ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Workflow>)), (status = 404, body = super::ErrorBody)))]
pub async fn pause_workflow(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(workflows::pause(&state.pool, id).await?))
}

/// Resume a paused workflow: the jobs that waited start. Resuming a
/// workflow that is not paused changes nothing.
#[utoipa::path(post, path = "/workflow/{workflowID}/resume", tag = "workflows",
    params(("workflowID" = String, Path, description = "Workflow ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Workflow>)), (status = 404, body = super::ErrorBody)))]
pub async fn resume_workflow(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(workflows::resume(&state.pool, id).await?))
}

/// Most versions per page.
pub const MAX_VERSIONS_PER_PAGE: i64 = 100;

/// Paging parameters of the version list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// 0-based page (default 0).
    #[param(minimum = 0, maximum = 92_233_720_368_547_758_i64)]
    pub page: Option<i64>,
    /// Versions per page (default 50); values above 100 are lowered to 100.
    #[param(minimum = 1)]
    pub per_page: Option<i64>,
}

/// What a version list echoes back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VersionListMeta {
    pub page: i64,
    pub per_page: i64,
    pub count: i64,
}

/// A page of a workflow's versions, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VersionList {
    pub meta: VersionListMeta,
    pub versions: Vec<WorkflowVersion>,
}

/// A workflow's saved versions, newest first: each create and edit is one,
/// with the whole definition it saved. A job runs the version it shows as
/// `workflowVersion`.
#[utoipa::path(get, path = "/workflow/{workflowID}/versions", tag = "workflows",
    params(("workflowID" = String, Path, description = "Workflow ID"), VersionQuery),
    responses((status = 200, body = inline(crate::extract::Envelope<VersionList>)), (status = 404, body = super::ErrorBody)))]
pub async fn workflow_versions(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    Query(query): Query<VersionQuery>,
) -> ApiResult<impl IntoResponse> {
    let paging = Paging::new(query.page, query.per_page, MAX_VERSIONS_PER_PAGE)?;
    let (versions, count) = workflows::versions(&state.pool, id, paging).await?;
    Ok(ok(VersionList {
        meta: VersionListMeta {
            page: paging.page,
            per_page: paging.per_page,
            count,
        },
        versions,
    }))
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
        .route("/workflow/{workflowID}/versions", get(workflow_versions))
        .route("/workflow/{workflowID}/pause", post(pause_workflow))
        .route("/workflow/{workflowID}/resume", post(resume_workflow))
}
