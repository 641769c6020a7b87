//! `/role`: the built-in roles and custom roles (rules of allow and deny
//! per resource and operation; deny wins). Built-in roles can be read but
//! not redefined or deleted.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use crust_model::access::{Role, RoleInput};
use crust_store::roles;

use super::{ok, success, ApiResult};
use crate::extract::{Body, Envelope};
use crate::AppState;

/// Every role, built-in first.
#[utoipa::path(get, path = "/role/", tag = "roles",
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Role>>))))]
pub async fn list_roles(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    Ok(ok(roles::list(&state.pool).await?))
}

/// One role.
#[utoipa::path(get, path = "/role/{name}", tag = "roles",
    params(("name" = String, Path, description = "Role name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, body = inline(crate::extract::Envelope<Role>)), (status = 404, body = super::ErrorBody)))]
pub async fn read_role(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(roles::get(&state.pool, &name).await?))
}

/// Creates (201) or replaces (200) a custom role. Every api replica uses
/// the new rules within a second (at once on this one).
#[utoipa::path(put, path = "/role/{name}", tag = "roles", request_body = RoleInput,
    params(("name" = String, Path, description = "Role name: 1 to 64 of A-Z a-z 0-9 _ - .", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 201, description = "Created", body = inline(crate::extract::Envelope<Role>)),
              (status = 200, description = "Replaced", body = inline(crate::extract::Envelope<Role>)),
              (status = 400, body = super::ErrorBody),
              (status = 404, description = "not answered by this route (PUT creates a missing role); listed as on every path with an ID", body = super::ErrorBody),
              (status = 409, description = "a built-in role's name", body = super::ErrorBody)))]
pub async fn put_role(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Body(input): Body<RoleInput>,
) -> ApiResult<impl IntoResponse> {
    crust_model::access::check_role_name(&name)?;
    input.validate()?;
    let (role, created) = roles::put(&state.pool, &name, &input.rules).await?;
    state.permissions.invalidate();
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Envelope { response: role })))
}

/// Deletes a custom role; tokens naming it lose what it granted.
#[utoipa::path(delete, path = "/role/{name}", tag = "roles",
    params(("name" = String, Path, description = "Role name", pattern = "^[A-Za-z0-9_.-]{1,64}$")),
    responses((status = 200, body = super::Success), (status = 404, body = super::ErrorBody),
              (status = 409, description = "a built-in role", body = super::ErrorBody)))]
pub async fn delete_role(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<impl IntoResponse> {
    roles::delete(&state.pool, &name).await?;
    state.permissions.invalidate();
    Ok(success())
}

pub fn router() -> Router<AppState> {
    Router::new().route("/role", get(list_roles)).route(
        "/role/{name}",
        get(read_role).put(put_role).delete(delete_role),
    )
}
