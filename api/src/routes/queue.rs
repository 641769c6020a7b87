//! `/queue`: the named queues, with their jobs counted by state (from
//! Postgres) and their consumers (from RabbitMQ).

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::{ok, ApiResult};
use crate::AppState;

/// One named queue.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueInfo {
    /// The queue's name (a workflow's `queue`); its broker queue is
    /// `<CRUST_QUEUE_PREFIX>.jobs.<name>`.
    #[schema(example = "default")]
    pub name: String,
    /// Queued jobs that are due.
    pub ready: i64,
    pub running: i64,
    /// Jobs parked by a `wait`, a long `sleep` or a child workflow.
    pub waiting: i64,
    /// Queued jobs whose `startAt` is still ahead.
    pub delayed: i64,
    /// Workers consuming the queue, as RabbitMQ counts them: `null` when
    /// the broker cannot be asked (the counts above still hold), 0 when it
    /// does not have the queue yet.
    pub consumers: Option<u32>,
    /// Seconds since the oldest ready job became due; `null` when none is
    /// ready.
    pub oldest_ready_age_seconds: Option<f64>,
}

/// List the named queues: every queue a workflow names, `default`, and any
/// other queue that still has active jobs.
#[utoipa::path(get, path = "/queue/", tag = "queues",
    responses((status = 200, body = inline(crate::extract::Envelope<Vec<QueueInfo>>))))]
pub async fn list_queues(State(state): State<AppState>) -> ApiResult<impl IntoResponse> {
    let counts = crust_store::queues::counts(&state.pool).await?;
    let names: Vec<String> = counts.iter().map(|queue| queue.name.clone()).collect();
    // A broker outage fails no request: the counts are Postgres's.
    let consumers = match state.queue.queue_stats(&names).await {
        Ok(stats) => stats
            .into_iter()
            .map(|stats| Some(stats.map_or(0, |stats| stats.consumers)))
            .collect(),
        Err(err) => {
            tracing::debug!(error = %err, "cannot read the queues' consumers");
            vec![None; names.len()]
        }
    };
    let queues: Vec<QueueInfo> = counts
        .into_iter()
        .zip(consumers)
        .map(|(queue, consumers)| QueueInfo {
            name: queue.name,
            ready: queue.ready,
            running: queue.running,
            waiting: queue.waiting,
            delayed: queue.delayed,
            consumers,
            oldest_ready_age_seconds: queue.oldest_ready_age_seconds,
        })
        .collect();
    Ok(ok(queues))
}

/// Queue routes.
pub fn router() -> Router<AppState> {
    Router::new().route("/queue", get(list_queues))
}
