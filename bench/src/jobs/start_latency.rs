//! Phase 2, start latency: jobs created at a fixed rate (half the
//! end-to-end rate), timed from `created_at` to `started_at`.

use std::time::{Duration, Instant};

use anyhow::Context;
use crust_model::Id;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use super::rows::{job_spans, wait_ok, Batch, Spread};
use super::{Goals, Plan};
use crate::client::Api;
use crate::report::{ms, show_errors, Phase, Summary, Table};

/// Targets.
const TARGET_START_P50: Duration = Duration::from_micros(2_500);
const TARGET_START_P99: Duration = Duration::from_millis(10);

/// Phase 2: jobs at half the end-to-end rate; created_at → started_at.
pub async fn start_latency(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    latency_wf: Id,
    e2e_rate: f64,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    let rate = (e2e_rate / 2.0).max(1.0);
    eprintln!(
        "phase 2: {} jobs at {rate:.0}/s (half the end-to-end rate)",
        plan.latency_jobs
    );
    let (mut paced, sent_rate) = paced_creates(api, latency_wf, plan.latency_jobs, rate).await?;
    show_errors("paced create (API)", &paced);
    let batch = Batch::of(latency_wf, &paced.values)
        .context("every job create of the latency phase failed")?;
    wait_ok(db, &batch, plan.limit, "start latency").await?;
    let waits = job_spans(db, &batch, "started_at - created_at").await?;
    let start = Spread::of(&waits);
    let paced_summary = Summary::of(&mut paced);
    let mut table = Table::new([
        "start latency",
        "jobs",
        "rate/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
    ]);
    let [p50, p99, max] = paced_summary.latency.cells();
    table.row([
        "create request (POST /job/)".to_owned(),
        paced_summary.requests.to_string(),
        format!("{sent_rate:.0}"),
        p50,
        p99,
        max,
        paced_summary.errors.to_string(),
    ]);
    let [p50, p99, max] = start.latency.cells();
    table.row([
        "created_at → started_at".to_owned(),
        start.count.to_string(),
        String::new(),
        p50,
        p99,
        max,
    ]);
    table.print();
    goals.add(
        "create→start p50",
        format!("≤ {} ms", ms(TARGET_START_P50)),
        format!("{} ms", ms(start.latency.p50)),
        start.latency.p50 <= TARGET_START_P50,
    );
    goals.add(
        "create→start p99",
        format!("≤ {} ms", ms(TARGET_START_P99)),
        format!("{} ms", ms(start.latency.p99)),
        start.latency.p99 <= TARGET_START_P99,
    );

    Ok(())
}

/// Creates `count` jobs at a fixed `rate` per second, each in its own task
/// so a slow answer does not hold back the next create; returns the phase
/// and the rate at which creates were actually sent.
async fn paced_creates(
    api: &Api,
    workflow_id: Id,
    count: usize,
    rate: f64,
) -> anyhow::Result<(Phase<Id>, f64)> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Catch up after a late tick, so the average rate holds.
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    let mut last_sent = started;
    for _ in 0..count {
        tick.tick().await;
        last_sent = Instant::now();
        let api = api.clone();
        tasks.spawn(async move {
            let sent = Instant::now();
            let result = api.create_job(workflow_id, None).await;
            (sent.elapsed(), result)
        });
    }
    let sending = last_sent.duration_since(started).as_secs_f64();
    let mut phase = Phase::new(count);
    while let Some(done) = tasks.join_next().await {
        let (latency, result) = done.context("a paced create task panicked")?;
        phase.record(latency, result);
    }
    phase.elapsed = started.elapsed();
    let sent_rate = if sending > 0.0 {
        (count.saturating_sub(1)) as f64 / sending
    } else {
        rate
    };
    Ok((phase, sent_rate))
}
