//! `/module/{moduleID}/record`: list (paged, filtered, sorted), create,
//! read, update and soft-delete records.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crust_model::paging::Paging;
use crust_model::record::{Record, RecordInput};
use crust_model::trigger::Revision;
use crust_store::records::{Actor, Written};
use crust_store::{modules, records};
use serde::{Deserialize, Serialize};

use super::{created, ok, success, ApiResult};
use crate::auth::AuthUser;
use crate::extract::{Body, Ids, Query};
use crate::AppState;

/// Most records per page.
pub const MAX_PER_PAGE: i64 = 100;

/// `GET /module/{moduleID}/record` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RecordQuery {
    /// Filter expression, e.g. `amount > 100 AND status = 'won'`.
    pub filter: Option<String>,
    /// Sort list, e.g. `createdAt DESC, name`; default `id DESC`.
    pub sort: Option<String>,
    /// 0-based page (default 0).
    #[param(minimum = 0, maximum = 92_233_720_368_547_758_i64)]
    pub page: Option<i64>,
    /// Records per page (default 50); values above 100 are lowered to 100.
    #[param(minimum = 1)]
    pub per_page: Option<i64>,
}

/// What a paged record list echoes back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecordListMeta {
    pub page: i64,
    pub per_page: i64,
    /// Records matching the filter, over all pages: exact up to 10 000,
    /// beyond that the planner's estimate (see `countIsEstimate`).
    pub count: i64,
    /// Present (true) when `count` is an estimate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub count_is_estimate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
}

/// One page of records.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RecordList {
    pub meta: RecordListMeta,
    pub records: Vec<Record>,
}

/// List a module's records.
#[utoipa::path(get, path = "/module/{moduleID}/record", tag = "records",
    params(("moduleID" = String, Path, description = "Module ID"), RecordQuery),
    responses((status = 200, body = inline(crate::extract::Envelope<RecordList>)),
              (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn list_records(
    State(state): State<AppState>,
    Ids([module_id]): Ids<1>,
    Query(query): Query<RecordQuery>,
) -> ApiResult<impl IntoResponse> {
    let paging = Paging::new(query.page, query.per_page, MAX_PER_PAGE)?;
    let module = modules::get(&state.pool, module_id).await?;
    let (records, count) = records::list(
        &state.pool,
        &module,
        paging,
        query.filter.as_deref().unwrap_or_default(),
        query.sort.as_deref().unwrap_or_default(),
        &state.queries,
    )
    .await?;
    Ok(ok(RecordList {
        meta: RecordListMeta {
            page: paging.page,
            per_page: paging.per_page,
            count: count.value,
            count_is_estimate: !count.exact,
            filter: query.filter,
            sort: query.sort,
        },
        records,
    }))
}

/// Create a record.
#[utoipa::path(post, path = "/module/{moduleID}/record", tag = "records", request_body = RecordInput,
    params(("moduleID" = String, Path, description = "Module ID")),
    responses((status = 201, body = inline(crate::extract::Envelope<Record>)),
              (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn create_record(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Ids([module_id]): Ids<1>,
    Body(input): Body<RecordInput>,
) -> ApiResult<impl IntoResponse> {
    let values = input.fields.into_map()?;
    let written = records::create_cached(
        &state.pool,
        &state.modules,
        &state.triggers,
        module_id,
        &Actor::User(user),
        values,
    )
    .await?;
    Ok(created(publish(&state, written).await?))
}

/// Read a record.
#[utoipa::path(get, path = "/module/{moduleID}/record/{recordID}", tag = "records",
    params(("moduleID" = String, Path, description = "Module ID"), ("recordID" = String, Path, description = "Record ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Record>)), (status = 404, body = super::ErrorBody)))]
pub async fn read_record(
    State(state): State<AppState>,
    Ids([module_id, record_id]): Ids<2>,
) -> ApiResult<impl IntoResponse> {
    let module = modules::get(&state.pool, module_id).await?;
    Ok(ok(records::get(&state.pool, &module, record_id).await?))
}

/// Update a record: given fields replace stored ones, `null` clears one,
/// fields not given keep their value.
#[utoipa::path(post, path = "/module/{moduleID}/record/{recordID}", tag = "records", request_body = RecordInput,
    params(("moduleID" = String, Path, description = "Module ID"), ("recordID" = String, Path, description = "Record ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Record>)),
              (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn update_record(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Ids([module_id, record_id]): Ids<2>,
    Body(input): Body<RecordInput>,
) -> ApiResult<impl IntoResponse> {
    let values = input.fields.into_map()?;
    let written = records::update_cached(
        &state.pool,
        &state.triggers,
        module_id,
        record_id,
        &Actor::User(user),
        values,
    )
    .await?;
    Ok(ok(publish(&state, written).await?))
}

/// Delete a record (soft: it disappears from lists, reports and references).
#[utoipa::path(delete, path = "/module/{moduleID}/record/{recordID}", tag = "records",
    params(("moduleID" = String, Path, description = "Module ID"), ("recordID" = String, Path, description = "Record ID")),
    responses((status = 200, body = super::Success), (status = 404, body = super::ErrorBody)))]
pub async fn delete_record(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Ids([module_id, record_id]): Ids<2>,
) -> ApiResult<impl IntoResponse> {
    let written = records::delete_cached(
        &state.pool,
        &state.triggers,
        module_id,
        record_id,
        &Actor::User(user),
    )
    .await?;
    publish(&state, written).await?;
    Ok(success())
}

/// A record's revisions, oldest first: who changed what, and when. A
/// deleted record keeps them (the last is the delete).
#[utoipa::path(get, path = "/module/{moduleID}/record/{recordID}/revisions", tag = "records",
    params(("moduleID" = String, Path, description = "Module ID"), ("recordID" = String, Path, description = "Record ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Revision>>)), (status = 404, body = super::ErrorBody)))]
pub async fn record_revisions(
    State(state): State<AppState>,
    Ids([module_id, record_id]): Ids<2>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(
        records::revisions(&state.pool, module_id, record_id).await?
    ))
}

/// Hands the jobs a write triggered to the publisher (they are committed;
/// the scheduler publishes them if this process cannot) and returns the
/// record.
async fn publish(
    state: &AppState,
    written: Written,
) -> Result<crust_model::record::Record, crate::error::ApiError> {
    if !written.due.is_empty() {
        for (job, queue) in crust_store::jobs::api::queues_of(&state.pool, &written.due).await? {
            state.queue.run(job, &queue, None);
        }
    }
    Ok(written.record)
}

/// Record routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/module/{moduleID}/record",
            get(list_records).post(create_record),
        )
        .route(
            "/module/{moduleID}/record/{recordID}",
            get(read_record).post(update_record).delete(delete_record),
        )
        .route(
            "/module/{moduleID}/record/{recordID}/revisions",
            get(record_revisions),
        )
}
