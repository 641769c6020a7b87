//! The heartbeat loop: one statement renews the leases of all running jobs,
//! four times per lease, and stops the runs that lost their claim or whose
//! job was cancelled.

use std::sync::Arc;

use crust_store::jobs;
use tokio_util::sync::CancellationToken;

use crate::runner::StopReason;
use crate::Worker;

/// Renews leases four times per lease; stops runs that lost their claim or
/// were cancelled (the fallback when the cancel broadcast is missed).
pub(crate) async fn heartbeats(worker: Arc<Worker>, stop: CancellationToken) {
    let every = worker.config.lease() / 4;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
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
