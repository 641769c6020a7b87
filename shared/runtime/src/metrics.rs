//! Prometheus metrics of every process, in one registry, rendered in the
//! text format at `/metrics`. Each process updates the ones it owns (the
//! api counts requests and created jobs, workers count runs, the scheduler
//! reads the queue) and leaves the rest at zero.

use std::sync::OnceLock;

use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric.
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub jobs_created: IntCounter,
    pub jobs_started: IntCounter,
    pub jobs_finished: IntCounterVec,
    pub job_run_seconds: Histogram,
    pub job_start_latency: Histogram,
    pub job_start_lateness: Histogram,
    pub queue_messages: IntGaugeVec,
    pub queue_consumers: IntGaugeVec,
    pub queue_ready: IntGaugeVec,
    pub queue_running: IntGaugeVec,
    pub queue_waiting: IntGaugeVec,
    pub queue_delayed: IntGaugeVec,
    pub queue_oldest_ready_age: GaugeVec,
    pub queue_hints_republished: IntCounterVec,
    pub log_lines: IntCounter,
    pub jobs_rescued: IntCounter,
    pub running_jobs: IntGauge,
    pub db_pool: IntGaugeVec,
    pub db_up: IntGauge,
    pub amqp_connected: IntGauge,
}

/// Buckets for latencies from a millisecond to a minute.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// Buckets for job run times, up to an hour.
const RUN_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0,
];

fn build() -> Result<Metrics, prometheus::Error> {
    let registry = Registry::new();
    let histogram = |name: &str, help: &str, buckets: &[f64]| {
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
    };
    let metrics = Metrics {
        http_requests: IntCounterVec::new(
            Opts::new(
                "crust_http_requests_total",
                "HTTP requests by route, method and status.",
            ),
            &["route", "method", "status"],
        )?,
        http_duration: HistogramVec::new(
            HistogramOpts::new(
                "crust_http_request_duration_seconds",
                "HTTP request latency.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?,
        jobs_created: IntCounter::new("crust_jobs_created_total", "Jobs created.")?,
        jobs_started: IntCounter::new("crust_jobs_started_total", "Job runs started (claims).")?,
        jobs_finished: IntCounterVec::new(
            Opts::new(
                "crust_jobs_finished_total",
                "Job runs finished, by final status.",
            ),
            &["status"],
        )?,
        job_run_seconds: histogram(
            "crust_job_run_duration_seconds",
            "Time from claim to final status.",
            RUN_BUCKETS,
        )?,
        job_start_latency: histogram(
            "crust_job_start_latency_seconds",
            "Time from creation to start, for jobs due at once.",
            LATENCY_BUCKETS,
        )?,
        job_start_lateness: histogram(
            "crust_job_start_lateness_seconds",
            "How late delayed jobs start behind their startAt.",
            LATENCY_BUCKETS,
        )?,
        queue_messages: IntGaugeVec::new(
            Opts::new(
                "crust_queue_messages",
                "Hints ready in a named queue's broker queue (read from RabbitMQ).",
            ),
            &["queue"],
        )?,
        queue_consumers: IntGaugeVec::new(
            Opts::new(
                "crust_queue_consumers",
                "Consumers of a named queue (read from RabbitMQ).",
            ),
            &["queue"],
        )?,
        queue_ready: IntGaugeVec::new(
            Opts::new(
                "crust_queue_ready",
                "Queued jobs that are due, per named queue (from Postgres).",
            ),
            &["queue"],
        )?,
        queue_running: IntGaugeVec::new(
            Opts::new(
                "crust_queue_running",
                "Running jobs, per named queue (from Postgres).",
            ),
            &["queue"],
        )?,
        queue_waiting: IntGaugeVec::new(
            Opts::new(
                "crust_queue_waiting",
                "Waiting (parked) jobs, per named queue (from Postgres).",
            ),
            &["queue"],
        )?,
        queue_delayed: IntGaugeVec::new(
            Opts::new(
                "crust_queue_delayed",
                "Queued jobs whose startAt is ahead, per named queue (from Postgres).",
            ),
            &["queue"],
        )?,
        queue_oldest_ready_age: GaugeVec::new(
            Opts::new(
                "crust_queue_oldest_ready_age_seconds",
                "Seconds since the oldest ready job of a named queue became due (0 if none).",
            ),
            &["queue"],
        )?,
        queue_hints_republished: IntCounterVec::new(
            Opts::new(
                "crust_queue_hints_republished_total",
                "Run hints the scheduler published again because the broker had fewer than Postgres expected.",
            ),
            &["queue"],
        )?,
        log_lines: IntCounter::new("crust_job_log_lines_total", "Job log lines written.")?,
        jobs_rescued: IntCounter::new("crust_jobs_rescued_total", "Runs whose worker was lost.")?,
        running_jobs: IntGauge::new("crust_worker_running_jobs", "Jobs this worker is running.")?,
        db_pool: IntGaugeVec::new(
            Opts::new(
                "crust_db_pool_connections",
                "Postgres pool connections by state.",
            ),
            &["state"],
        )?,
        db_up: IntGauge::new("crust_db_up", "1 when Postgres answered the last check.")?,
        amqp_connected: IntGauge::new("crust_amqp_connected", "1 when connected to RabbitMQ.")?,
        registry,
    };
    let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
        Box::new(metrics.http_requests.clone()),
        Box::new(metrics.http_duration.clone()),
        Box::new(metrics.jobs_created.clone()),
        Box::new(metrics.jobs_started.clone()),
        Box::new(metrics.jobs_finished.clone()),
        Box::new(metrics.job_run_seconds.clone()),
        Box::new(metrics.job_start_latency.clone()),
        Box::new(metrics.job_start_lateness.clone()),
        Box::new(metrics.queue_messages.clone()),
        Box::new(metrics.queue_consumers.clone()),
        Box::new(metrics.queue_ready.clone()),
        Box::new(metrics.queue_running.clone()),
        Box::new(metrics.queue_waiting.clone()),
        Box::new(metrics.queue_delayed.clone()),
        Box::new(metrics.queue_oldest_ready_age.clone()),
        Box::new(metrics.queue_hints_republished.clone()),
        Box::new(metrics.log_lines.clone()),
        Box::new(metrics.jobs_rescued.clone()),
        Box::new(metrics.running_jobs.clone()),
        Box::new(metrics.db_pool.clone()),
        Box::new(metrics.db_up.clone()),
        Box::new(metrics.amqp_connected.clone()),
    ];
    for collector in collectors {
        metrics.registry.register(collector)?;
    }
    Ok(metrics)
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS
        .get_or_init(|| build().unwrap_or_else(|err| panic!("metric definitions are valid: {err}")))
}

/// Records the pool's connection counts.
pub fn observe_pool(pool: &sqlx::PgPool) {
    let size = i64::from(pool.size());
    let idle = pool.num_idle() as i64;
    metrics().db_pool.with_label_values(&["idle"]).set(idle);
    metrics()
        .db_pool
        .with_label_values(&["used"])
        .set((size - idle).max(0));
}

/// The text exposition of every metric.
pub fn render() -> String {
    let mut buffer = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(err) = encoder.encode(&metrics().registry.gather(), &mut buffer) {
        tracing::warn!(error = %err, "cannot render metrics");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_in_the_prometheus_text_format() {
        metrics().jobs_finished.with_label_values(&["ok"]).inc();
        let text = render();
        assert!(text.contains("# TYPE crust_jobs_finished_total counter"));
        assert!(text.contains("crust_jobs_finished_total{status=\"ok\"}"));
        assert!(
            text.contains("# TYPE crust_job_run_duration_seconds histogram"),
            "{text}"
        );
    }
}
