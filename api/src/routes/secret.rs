//! `/secret`: set, list and delete secrets. Values go in and never come
//! out: the list shows names and times only.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, put};
use axum::{Json, Router};
use crust_model::secret::{Secret, SecretInput};
use crust_store::secrets::{self, Keyring};

use super::{ok, success, ApiResult};
use crate::error::ApiError;
use crate::extract::{Body, Envelope};
use crate::AppState;

/// The secret's name from the path; a name that is not UTF-8 is a 400.
fn name_of(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(name)| name)
        .map_err(|_| ApiError::bad_request("name: not a valid secret name"))
}

/// The keyring, or the 503 that says how to enable secrets.
fn keys(state: &AppState) -> Result<&Keyring, ApiError> {
    state.secrets.as_ref().ok_or_else(|| {
        ApiError::Disabled(
            "secrets are disabled: set CRUST_SECRETS_KEY (64 hex characters, e.g. \
             `openssl rand -hex 32`) on the api and the workers"
                .into(),
        )
    })
}

/// List secrets: names and times, never values.
#[utoipa::path(get, path = "/secret/", tag = "secrets",
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<Secret>>)),
              (status = 503, description = "CRUST_SECRETS_KEY is not set", body = super::ErrorBody)))]
pub async fn list_secrets(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    keys(&state)?;
    Ok(ok(secrets::list(&state.pool).await?))
}

/// Set a secret (create or replace). The value is encrypted before it is
/// stored and is never shown again; tasks use it as `{{ secrets.name }}`.
#[utoipa::path(put, path = "/secret/{name}", tag = "secrets", request_body = SecretInput,
    params(("name" = String, Path, description = "Secret name: a letter, then letters, digits or _ (at most 64)",
            pattern = "^[A-Za-z][A-Za-z0-9_]{0,63}$")),
    responses((status = 201, description = "Created", body = inline(crate::extract::Envelope<Secret>)),
              (status = 200, description = "Replaced", body = inline(crate::extract::Envelope<Secret>)),
              (status = 400, body = super::ErrorBody),
              (status = 503, description = "CRUST_SECRETS_KEY is not set", body = super::ErrorBody)))]
pub async fn put_secret(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
    Body(input): Body<SecretInput>,
) -> ApiResult<impl IntoResponse> {
    let name = name_of(name)?;
    let keys = keys(&state)?;
    let value = input.validate()?;
    let (secret, created) = secrets::put(&state.pool, keys, &name, value).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(Envelope { response: secret })))
}

/// Delete a secret.
#[utoipa::path(delete, path = "/secret/{name}", tag = "secrets",
    params(("name" = String, Path, description = "Secret name",
            pattern = "^[A-Za-z][A-Za-z0-9_]{0,63}$")),
    responses((status = 200, body = super::Success), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody),
              (status = 503, description = "CRUST_SECRETS_KEY is not set", body = super::ErrorBody)))]
pub async fn delete_secret(
    State(state): State<AppState>,
    name: Result<Path<String>, PathRejection>,
) -> ApiResult<impl IntoResponse> {
    let name = name_of(name)?;
    keys(&state)?;
    secrets::delete(&state.pool, &name).await?;
    Ok(success())
}

/// Secret routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/secret", get(list_secrets))
        .route("/secret/{name}", put(put_secret).delete(delete_secret))
}
