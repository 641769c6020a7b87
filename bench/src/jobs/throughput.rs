//! Phase 1, throughput: N jobs from C clients, timed on the database's
//! clock from just before the first create to the last job ok.

use anyhow::Context;
use crust_model::Id;
use sqlx::PgPool;

use super::calls::api_create_job;
use super::rows::{db_now, seconds_between, wait_ok, Batch};
use super::Plan;
use crate::client::Api;
use crate::report::{run_load, show_errors, Summary, Table};

/// The end-to-end result of phase 1.
pub struct EndToEnd {
    pub jobs: usize,
    pub rate: f64,
}

/// Phase 1: N jobs from C clients, from just before the first create to
/// the last job ok.
pub async fn throughput(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    throughput_wf: Id,
) -> anyhow::Result<EndToEnd> {
    eprintln!(
        "phase 1: {} jobs through the API from {} clients, until all are ok",
        plan.jobs, plan.clients
    );
    let first_create = db_now(db).await?;
    let cpu_before = crate::procfs::cpu_by_group();
    let mut create = run_load(
        plan.clients,
        plan.jobs,
        api_create_job(api, throughput_wf, None),
    )
    .await?;
    show_errors("create (API)", &create);
    let batch = Batch::of(throughput_wf, &create.values)
        .context("every job create of the throughput phase failed")?;
    let last_ok = wait_ok(db, &batch, plan.limit, "throughput").await?;
    let e2e_seconds = seconds_between(last_ok, first_create);
    let e2e_rate = if e2e_seconds > 0.0 {
        batch.count as f64 / e2e_seconds
    } else {
        0.0
    };
    let create_summary = Summary::of(&mut create);
    let mut table = Table::new([
        "throughput",
        "jobs",
        "jobs/s",
        "req/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
    ]);
    let [p50, p99, max] = create_summary.latency.cells();
    table.row([
        "create (POST /job/)".to_owned(),
        create_summary.requests.to_string(),
        String::new(),
        create_summary.rate(),
        p50,
        p99,
        max,
        create_summary.errors.to_string(),
    ]);
    table.row([
        "end to end (first create → last ok)".to_owned(),
        batch.count.to_string(),
        format!("{:.0}", e2e_rate),
    ]);
    table.print();
    println!(
        "end to end: {:.3} s on the database clock from just before the first create to the last finished_at",
        e2e_seconds
    );
    crate::procfs::print_cpu("phase 1", &cpu_before, e2e_seconds);
    Ok(EndToEnd {
        jobs: batch.count,
        rate: e2e_rate,
    })
}
