//! `/audit`: the audit log, one entry per mutating request (admins only).

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use crust_model::access::AuditEntry;
use crust_model::paging::Paging;
use serde::{Deserialize, Serialize};

use super::{ok, ApiResult};
use crate::extract::Query;
use crate::AppState;

/// The most entries per page.
pub const MAX_PER_PAGE: i64 = 100;

/// `?filter=&sort=&page=&perPage=`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// The query language over `at, userID, method, path, resource, status`,
    /// e.g. `status >= 400 AND userID = 7`.
    pub filter: Option<String>,
    /// e.g. `at DESC`; default newest first.
    pub sort: Option<String>,
    /// 0-based.
    #[param(minimum = 0, maximum = 92_233_720_368_547_758_i64)]
    pub page: Option<i64>,
    /// Default 50, at most 100.
    #[param(minimum = 1)]
    pub per_page: Option<i64>,
}

/// What the list echoes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditMeta {
    pub page: i64,
    pub per_page: i64,
    pub count: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
}

/// A page of entries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditList {
    pub meta: AuditMeta,
    pub entries: Vec<AuditEntry>,
}

/// A page of the audit log.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = inline(crate::extract::Envelope<AuditList>)), (status = 400, body = super::ErrorBody)))]
pub async fn list_audit(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    let paging = Paging::new(query.page, query.per_page, MAX_PER_PAGE)?;
    let (entries, count) = crust_store::audit::list(
        &state.pool,
        query.filter.as_deref().unwrap_or_default(),
        query.sort.as_deref().unwrap_or_default(),
        paging,
        &state.queries,
    )
    .await?;
    Ok(ok(AuditList {
        meta: AuditMeta {
            page: paging.page,
            per_page: paging.per_page,
            count,
            filter: query.filter,
            sort: query.sort,
        },
        entries,
    }))
}

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list_audit))
}
