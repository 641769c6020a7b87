//! Graceful shutdown: once consuming has stopped, running jobs get
//! `drain_secs` to finish; the rest are handed back (queued again, their
//! messages requeued) so another worker runs them.

use std::time::Duration;

use crate::runner::StopReason;
use crate::Worker;

/// Waits until no job runs, or `limit` has passed.
async fn wait_for_runs(worker: &Worker, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while !worker.runs.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Lets running jobs finish for `drain_secs`, then hands the rest back to
/// the queue and waits (up to 10 s) for them to let go.
pub(crate) async fn drain(worker: &Worker) {
    wait_for_runs(worker, Duration::from_secs(worker.config.drain_secs)).await;
    worker.runs.stop_all(StopReason::HandBack);
    wait_for_runs(worker, Duration::from_secs(10)).await;
}
