//! Liveness, readiness and metrics, open without a token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when Postgres answers. RabbitMQ's state is reported but does not
/// make the api unready: jobs created during a broker outage are committed
/// and published later, so taking the api out of service then would turn a
/// broker outage into an api outage.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "ready"), (status = 503, description = "Postgres is unreachable")))]
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let postgres = crust_store::ping(&state.pool).await;
    let rabbitmq = state.queue.check().await;
    let metrics = crust_runtime::metrics::metrics();
    metrics.db_up.set(i64::from(postgres.is_ok()));
    metrics.amqp_connected.set(i64::from(rabbitmq.is_ok()));
    let body = json!({
        "status": if postgres.is_ok() { "ok" } else { "unavailable" },
        "postgres": if postgres.is_ok() { "ok".to_owned() } else { "unreachable".to_owned() },
        "rabbitmq": match &rabbitmq {
            Ok(()) => "ok".to_owned(),
            Err(err) => format!("unreachable ({err}); new jobs wait to be published"),
        },
    });
    if let Err(err) = postgres {
        tracing::warn!(error = %err, "not ready: postgres");
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    (StatusCode::OK, Json(body))
}

/// Prometheus metrics of this process.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format")))]
pub async fn metrics(State(state): State<AppState>) -> String {
    crust_runtime::metrics::observe_pool(&state.pool);
    crust_runtime::metrics::render()
}

/// Probe routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}
