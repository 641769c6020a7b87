//! One claimed job from start to acknowledgement: its span, its run (see
//! [`crate::runner`] for the workflow itself), its outcome written through
//! the writer, and only then its message acknowledged (or requeued when the
//! run is handed back).

use std::sync::Arc;

use crust_model::job::JobStatus;
use crust_model::Id;
use crust_store::jobs;
use crust_store::jobs::run::{Claimed, Outcome, Unreadable};
use lapin::acker::Acker;
use lapin::options::{BasicAckOptions, BasicNackOptions};

use crate::logs::{self, JobLogger};
use crate::runner::{self, Ending};
use crate::Worker;

impl Worker {
    /// A logger for one run, with the per-job caps.
    fn logger(&self, id: Id, attempt: i32) -> JobLogger {
        let limits = logs::LogLimits {
            max_lines: self.config.limits.job_log_max_lines,
            max_bytes: self.config.limits.job_log_max_bytes,
        };
        JobLogger::new(id, attempt, self.writer.sink.clone(), limits)
    }
}

/// The span of one run. The first run continues the trace of the request
/// (or schedule) that created the job; a later run, after a lost worker,
/// starts a new trace linked to that origin.
pub(crate) fn span(attempt: i32, id: Id, trace_parent: Option<&str>) -> tracing::Span {
    let span = tracing::info_span!("job", job.id = %id, attempt = attempt);
    if let Some(origin) = trace_parent {
        if attempt == 1 {
            crust_runtime::telemetry::set_parent(&span, origin);
        } else {
            crust_runtime::telemetry::add_link(&span, origin);
        }
    }
    span
}

/// Ends a claimed job that cannot be read: one log line with the reason,
/// then `error` with it, like any failed run (fenced on the attempt).
pub(crate) async fn end_unreadable(worker: Arc<Worker>, job: Unreadable, acker: Acker) {
    let metrics = crust_runtime::metrics::metrics();
    metrics.jobs_started.inc();
    tracing::warn!(job.id = %job.id, reason = %job.reason, "claimed job cannot be read; ended");
    let logger = worker.logger(job.id, job.attempt);
    logger
        .log(
            "error",
            None,
            format!("job cannot run: {}", job.reason),
            None,
        )
        .await;
    let outcome = Outcome {
        id: job.id,
        attempt: job.attempt,
        status: JobStatus::Error,
        error: Some(job.reason),
    };
    if worker.writer.finish(outcome).await {
        metrics.jobs_finished.with_label_values(&["error"]).inc();
    }
    let _ = acker.ack(BasicAckOptions::default()).await;
}

/// Runs a claimed job, writes its ending, and only then acknowledges.
pub(crate) async fn run(worker: Arc<Worker>, job: Claimed, acker: Acker) {
    let metrics = crust_runtime::metrics::metrics();
    metrics.jobs_started.inc();
    match job.late {
        Some(late) => metrics.job_start_lateness.observe(late.max(0.0)),
        None => metrics.job_start_latency.observe(job.waited.max(0.0)),
    }
    metrics.running_jobs.inc();
    let started = std::time::Instant::now();
    let stop = worker.runs.insert(job.id, job.attempt);
    let logger = worker.logger(job.id, job.attempt);
    let ending = runner::run(&worker.env, &job, &logger, &stop).await;
    match ending {
        Ending::Finish(status, error) => {
            let outcome = Outcome {
                id: job.id,
                attempt: job.attempt,
                status,
                error,
            };
            let status_label = outcome.status.as_str();
            let elapsed_ms = started.elapsed().as_millis() as u64;
            match &outcome.error {
                Some(error) => {
                    tracing::warn!(status = status_label, error = %error, elapsed_ms, "job finished")
                }
                None => tracing::debug!(status = status_label, elapsed_ms, "job finished"),
            }
            if worker.writer.finish(outcome).await {
                metrics
                    .jobs_finished
                    .with_label_values(&[status_label])
                    .inc();
                metrics
                    .job_run_seconds
                    .observe(started.elapsed().as_secs_f64());
            } else {
                tracing::warn!(job.id = %job.id, "run lost its claim; outcome not written");
            }
            let _ = acker.ack(BasicAckOptions::default()).await;
        }
        Ending::Park(park) => {
            if worker.writer.park(job.id, job.attempt, park).await {
                tracing::debug!(job.id = %job.id, "job waiting");
            } else {
                tracing::warn!(job.id = %job.id, "run lost its claim; not parked");
            }
            let _ = acker.ack(BasicAckOptions::default()).await;
        }
        Ending::Lost => {
            tracing::warn!(job.id = %job.id, "run lost its claim; stopped");
            let _ = acker.ack(BasicAckOptions::default()).await;
        }
        Ending::HandBack => {
            match jobs::run::hand_back(&worker.env.pool, job.id, job.attempt).await {
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(job.id = %job.id, error = %err, "cannot hand job back; its lease will expire")
                }
            }
            let _ = acker
                .nack(BasicNackOptions {
                    requeue: true,
                    ..Default::default()
                })
                .await;
        }
    }
    worker.runs.remove(job.id);
    metrics.running_jobs.dec();
}
