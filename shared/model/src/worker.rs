//! A live worker as `GET /worker/` shows it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// A worker process that sent a heartbeat recently.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerInfo {
    /// `CRUST_WORKER_NAME`, or `<host>-<pid>`.
    pub name: String,
    /// The queues it consumes.
    pub queues: Vec<String>,
    /// Jobs it runs at once, at most.
    pub concurrency: i32,
    /// Jobs it was running at its last heartbeat.
    pub running: i32,
    pub started_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}
