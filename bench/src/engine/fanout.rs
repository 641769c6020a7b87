//! Phase 2, fan-out: jobs of one `log` task with a `forEach` over a list
//! of items given as the job's parameters, one job at a time; items per
//! second from each job's `started_at` to its `finished_at` (database
//! clock), beside the plain jobs per second of the same run.

use std::time::Instant;

use crust_model::Id;
use serde_json::json;
use sqlx::PgPool;

use super::calls::{median, min_max, run_one};
use super::Sizes;
use crate::client::Api;
use crate::jobs::throughput::EndToEnd;
use crate::jobs::Plan;
use crate::report::Table;

/// What phase 2 measured.
pub struct Fanout {
    /// Median items per second of one job.
    pub median_rate: f64,
}

/// Phase 2: `sizes.fanout_jobs` fan-out jobs, one after the other.
pub async fn fanout(
    plan: &Plan,
    sizes: &Sizes,
    api: &Api,
    db: &PgPool,
    workflow_id: Id,
    plain: &EndToEnd,
) -> anyhow::Result<Fanout> {
    eprintln!(
        "phase 2: {} fan-out jobs of {} items (concurrency {}), one at a time",
        sizes.fanout_jobs, sizes.fanout_items, sizes.fanout_concurrency
    );
    let parameters = json!({"items": (0..sizes.fanout_items).collect::<Vec<_>>()});
    let started = Instant::now();
    let mut run_times = Vec::with_capacity(sizes.fanout_jobs);
    for _ in 0..sizes.fanout_jobs {
        let seconds = run_one(api, db, workflow_id, &parameters, plan.limit, "fan-out").await?;
        run_times.push(seconds);
    }
    let wall = started.elapsed().as_secs_f64();
    let items = sizes.fanout_items as f64;
    let rates: Vec<f64> = run_times
        .iter()
        .map(|&seconds| if seconds > 0.0 { items / seconds } else { 0.0 })
        .collect();
    let (slowest, fastest) = min_max(&rates);
    let median_rate = median(&rates);
    let total_items = sizes.fanout_items * run_times.len();
    let run_total: f64 = run_times.iter().sum();

    let mut table = Table::new([
        "fan-out (forEach, one job at a time)",
        "jobs",
        "items",
        "min/s",
        "median/s",
        "max/s",
        "median run s",
    ]);
    table.row([
        format!(
            "items of {} × log, concurrency {}",
            sizes.fanout_items, sizes.fanout_concurrency
        ),
        run_times.len().to_string(),
        total_items.to_string(),
        format!("{slowest:.0}"),
        format!("{median_rate:.0}"),
        format!("{fastest:.0}"),
        format!("{:.3}", median(&run_times)),
    ]);
    table.row([
        "baseline: plain 1-task jobs end to end (throughput above)".to_owned(),
        plain.jobs.to_string(),
        String::new(),
        String::new(),
        format!("{:.0}", plain.rate),
    ]);
    table.print();
    println!(
        "fan-out: median {median_rate:.0} items/s = {:.2}× the plain jobs/s of this run; \
         {total_items} items in {run_total:.3} s of job run time ({:.0} items/s overall), phase {wall:.1} s",
        if plain.rate > 0.0 { median_rate / plain.rate } else { 0.0 },
        if run_total > 0.0 { total_items as f64 / run_total } else { 0.0 },
    );
    if wall < 10.0 && total_items < 20_000 {
        println!(
            "fan-out: note: the phase lasted under 10 s and under 20 000 items; raise \
             --fanout-jobs for a stable spread"
        );
    }
    Ok(Fanout { median_rate })
}
