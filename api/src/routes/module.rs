//! `/module`: list, create, read, edit and delete modules.

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use crust_model::module::{Module, ModuleInput, ModulePatch};
use crust_store::modules;
use serde::Deserialize;

use super::{created, ok, success, ApiResult, Force};
use crate::access::Access;
use crate::extract::{Body, Ids, Query};
use crate::AppState;
use crust_model::access::{Operation, Resource};

/// `GET /module/` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ModuleQuery {
    /// Keep modules whose name contains this (case-insensitive).
    pub query: Option<String>,
}

/// List modules.
#[utoipa::path(get, path = "/module/", tag = "modules", params(ModuleQuery),
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Module>>))))]
pub async fn list_modules(
    State(state): State<AppState>,
    access: Access,
    Query(query): Query<ModuleQuery>,
) -> ApiResult<impl axum::response::IntoResponse> {
    // Only the modules the caller may read.
    let mut list = modules::list(&state.pool, query.query.as_deref()).await?;
    list.retain(|module| access.allows(Resource::Module(Some(module.id)), Operation::Read));
    Ok(ok(list))
}

/// Create a module.
#[utoipa::path(post, path = "/module/", tag = "modules", request_body = ModuleInput,
    responses((status = 201, body = inline(crate::extract::Envelope<Module>)),
              (status = 400, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn create_module(
    State(state): State<AppState>,
    Body(input): Body<ModuleInput>,
) -> ApiResult<impl axum::response::IntoResponse> {
    let input = input.validate()?;
    Ok(created(modules::create(&state.pool, input).await?))
}

/// Read a module.
#[utoipa::path(get, path = "/module/{moduleID}", tag = "modules",
    params(("moduleID" = String, Path, description = "Module ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Module>)), (status = 404, body = super::ErrorBody)))]
pub async fn read_module(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl axum::response::IntoResponse> {
    Ok(ok(modules::get(&state.pool, id).await?))
}

/// Edit a module. Send only the keys to change: absent ones keep their
/// value; a given `fields` is the whole new field list (fields left out are
/// removed with their values). Values of fields whose kind changed are
/// converted; if some cannot be, the edit is refused (409) naming the
/// records.
#[utoipa::path(post, path = "/module/{moduleID}", tag = "modules", request_body = ModulePatch,
    params(("moduleID" = String, Path, description = "Module ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Module>)), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn edit_module(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    Body(patch): Body<ModulePatch>,
) -> ApiResult<impl axum::response::IntoResponse> {
    Ok(ok(modules::update(&state.pool, id, patch).await?))
}

/// Delete a module; one with records or a record page needs `?force=true`.
#[utoipa::path(delete, path = "/module/{moduleID}", tag = "modules",
    params(("moduleID" = String, Path, description = "Module ID"), Force),
    responses((status = 200, body = super::Success), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn delete_module(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    Query(force): Query<Force>,
) -> ApiResult<impl axum::response::IntoResponse> {
    modules::delete(&state.pool, id, force.force).await?;
    Ok(success())
}

/// Module routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/module", get(list_modules).post(create_module))
        .route(
            "/module/{moduleID}",
            get(read_module).post(edit_module).delete(delete_module),
        )
}
