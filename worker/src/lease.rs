//! The heartbeat loop: one statement renews the leases of all running jobs,
//! four times per lease, and stops the runs that lost their claim or whose
//! job was cancelled.

use std::sync::Arc;
use std::time::Duration;

use crust_store::{jobs, workers};
use tokio_util::sync::CancellationToken;

use crate::runner::StopReason;
use crate::Worker;

/// Renews leases four times per lease; stops runs that lost their claim or
/// were cancelled (the fallback when the cancel broadcast is missed).
pub(crate) async fn heartbeats(worker: Arc<Worker>, stop: CancellationToken) {
    let every = worker.config.lease() / 4;
    let started_at = chrono::Utc::now();
    // The queues it consumes. (Named queues, once the worker has a
    // `CRUST_WORKER_QUEUES` setting, are read from its config here.)
    let queues = vec!["default".to_owned()];
    loop {
        // Presence for `GET /worker/`: live for three heartbeats (at least
        // ten seconds), so one slow beat does not hide it.
        let beat = workers::Beat {
            name: &worker.name,
            queues: &queues,
            concurrency: i32::from(worker.config.concurrency),
            running: i32::try_from(worker.runs.len()).unwrap_or(i32::MAX),
            started_at,
            live_for: (every * 3).max(Duration::from_secs(10)),
        };
        if let Err(err) = workers::beat(&worker.env.pool, &beat).await {
            tracing::warn!(error = %err, "worker presence beat failed");
        }
        tokio::select! {
            () = stop.cancelled() => {
                if let Err(err) = workers::remove(&worker.env.pool, &worker.name).await {
                    tracing::warn!(error = %err, "cannot remove the worker's presence row");
                }
                return;
            }
            () = tokio::time::sleep(every) => {}
        }
        let runs = worker.runs.snapshot();
        if runs.is_empty() {
            continue;
        }
        match jobs::run::heartbeat(&worker.env.pool, &runs, worker.config.lease()).await {
            Ok(held) => {
                for (id, _) in &runs {
                    match held.iter().find(|h| h.id == *id) {
                        None => {
                            worker.runs.stop(*id, StopReason::Lost);
                        }
                        Some(h) if h.cancel_requested => {
                            worker.runs.stop(*id, StopReason::Cancelled);
                        }
                        Some(_) => {}
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "heartbeat failed"),
        }
    }
}
