//! `/page`: list by parent, tree, create, read, edit, reorder and delete.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use crust_model::page::{Page, PageInput, PagePatch, ReorderInput};
use crust_model::Id;
use crust_store::pages;
use serde::Deserialize;

use super::{created, ok, success, ApiResult, Force};
use crate::extract::{Body, Ids, Query};
use crate::AppState;

/// `GET /page/` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// List the children of this page ("0" = top level); every page if absent.
    #[serde(rename = "selfID")]
    #[param(value_type = Option<String>)]
    pub self_id: Option<Id>,
}

/// List pages.
#[utoipa::path(get, path = "/page/", tag = "pages", params(PageQuery),
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Page>>))))]
pub async fn list_pages(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(pages::list(&state.pool, query.self_id).await?))
}

/// Every page, nested under its parent in `children`, in weight order.
#[utoipa::path(get, path = "/page/tree", tag = "pages",
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Page>>))))]
pub async fn page_tree(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(ok(pages::tree(&state.pool).await?))
}

/// Create a page (last among its siblings).
#[utoipa::path(post, path = "/page/", tag = "pages", request_body = PageInput,
    responses((status = 201, body = inline(crate::extract::Envelope<Page>)),
              (status = 400, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn create_page(
    State(state): State<AppState>,
    Body(input): Body<PageInput>,
) -> ApiResult<impl IntoResponse> {
    Ok(created(
        pages::create(&state.pool, input.validate()?).await?,
    ))
}

/// Read a page.
#[utoipa::path(get, path = "/page/{pageID}", tag = "pages",
    params(("pageID" = String, Path, description = "Page ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Page>)), (status = 404, body = super::ErrorBody)))]
pub async fn read_page(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(pages::get(&state.pool, id).await?))
}

/// Edit a page. Send only the keys to change: absent ones keep their value.
/// Its weight is kept (see reorder).
#[utoipa::path(post, path = "/page/{pageID}", tag = "pages", request_body = PagePatch,
    params(("pageID" = String, Path, description = "Page ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Page>)), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn edit_page(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    Body(patch): Body<PagePatch>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(pages::update(&state.pool, id, patch).await?))
}

/// Order the children of a page: listed ones get weights 1..n, the rest
/// follow in their current order.
#[utoipa::path(post, path = "/page/{selfID}/reorder", tag = "pages", request_body = ReorderInput,
    params(("selfID" = String, Path, description = "Parent page ID (\"0\" = top level)")),
    responses((status = 200, body = super::Success), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody)))]
pub async fn reorder_pages(
    State(state): State<AppState>,
    Ids([parent]): Ids<1>,
    Body(input): Body<ReorderInput>,
) -> ApiResult<impl IntoResponse> {
    pages::reorder(&state.pool, parent, &input.page_ids).await?;
    Ok(success())
}

/// Delete a page; one with children needs `?force=true` (deletes the subtree).
#[utoipa::path(delete, path = "/page/{pageID}", tag = "pages",
    params(("pageID" = String, Path, description = "Page ID"), Force),
    responses((status = 200, body = super::Success), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn delete_page(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    Query(force): Query<Force>,
) -> ApiResult<impl IntoResponse> {
    pages::delete(&state.pool, id, force.force).await?;
    Ok(success())
}

/// Page routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/page", get(list_pages).post(create_page))
        .route("/page/tree", get(page_tree))
        .route(
            "/page/{pageID}",
            get(read_page).post(edit_page).delete(delete_page),
        )
        .route("/page/{selfID}/reorder", post(reorder_pages))
}
