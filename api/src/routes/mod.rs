//! The HTTP surface: one module per resource, assembled here with the
//! cross-cutting layers (request ids, logging, auth, body limit).

pub mod audit;
pub mod chart;
pub mod csv;
pub mod health;
pub mod hook;
pub mod job;
pub mod module;
pub mod page;
pub mod queue;
pub mod record;
pub mod report;
pub mod role;
pub mod secret;
pub mod ui;
pub mod worker;
pub mod workflow;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tracing::Instrument;

use crate::error::{ApiError, REQUEST_ID};
use crate::extract::Envelope;
use crate::AppState;

/// Every route, with its layers.
pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .merge(module::router())
        .merge(csv::router())
        .merge(record::router())
        .merge(report::router())
        .merge(page::router())
        .merge(chart::router())
        .merge(workflow::router())
        .merge(job::router())
        .merge(worker::router())
        .merge(secret::router())
        .merge(queue::router())
        .merge(role::router())
        .merge(audit::router())
        // Outermost last: the token is checked, then the permission.
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::access::authorize,
        ))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_token,
        ));
    let cors = state.cors.clone();
    let router = Router::new()
        .merge(protected)
        .merge(health::router())
        .merge(hook::router())
        .merge(ui::router())
        .merge(crate::openapi::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({"error": {"message": "method not allowed on this endpoint"}})),
            )
        })
        .layer(middleware::from_fn(crate::query_params::refuse_unknown))
        .layer(DefaultBodyLimit::max(state.body_limit))
        .layer(middleware::from_fn(crate::extract::refuse_nul_in_url));
    let router = match cors {
        Some(cors) => router.layer(middleware::from_fn_with_state(cors, crate::cors::cors)),
        None => router,
    };
    router.layer(middleware::from_fn(observe)).with_state(state)
}

/// `{"response": value}` with 200.
pub fn ok<T: Serialize>(value: T) -> Json<Envelope<T>> {
    Json(Envelope { response: value })
}

/// `{"response": value}` with 201.
pub fn created<T: Serialize>(value: T) -> (StatusCode, Json<Envelope<T>>) {
    (StatusCode::CREATED, Json(Envelope { response: value }))
}

/// `{"success": {"message": "OK"}}`, the answer to deletes and reorders.
pub fn success() -> Json<serde_json::Value> {
    Json(json!({"success": {"message": "OK"}}))
}

/// The answer to deletes and reorders: `{"success": {"message": "OK"}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Success {
    pub success: SuccessMessage,
}

/// `{"message": "OK"}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SuccessMessage {
    #[schema(example = "OK")]
    pub message: String,
}

/// The error envelope: `{"error": {"message": "..."}}`.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorMessage,
}

/// What went wrong, naming the parameter or JSON path.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorMessage {
    #[schema(example = "name: must not be empty")]
    pub message: String,
}

/// `?force=true` on deletes.
#[derive(Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct Force {
    /// Also delete what depends on the resource.
    #[serde(default)]
    pub force: bool,
}

static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// Gives each request an id (echoed in `x-request-id`), a span, and one log
/// line when it ends.
async fn observe(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let request_id = format!(
        "{:x}-{:x}",
        std::process::id(),
        NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)
    );
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %method,
        route = %route,
    );
    let mut response = REQUEST_ID
        .scope(request_id.clone(), next.run(request))
        .instrument(span.clone())
        .await;
    let status = response.status();
    let elapsed = started.elapsed().as_secs_f64();
    let metrics = crust_runtime::metrics::metrics();
    metrics
        .http_requests
        .with_label_values(&[route.as_str(), method.as_str(), status.as_str()])
        .inc();
    metrics
        .http_duration
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(elapsed);
    let elapsed_ms = elapsed * 1e3;
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), elapsed_ms, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), elapsed_ms, "request finished");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Unwraps a shared result into the API error, for `?` in handlers.
pub type ApiResult<T> = Result<T, ApiError>;
