//! Phase 1c, bulk create: the throughput phase with `POST /job/bulk` of
//! [`BULK_SIZE`] jobs per request, from first create to last `ok` (the
//! target: ≥ 5 000 jobs/s over ≥ 20 000 jobs).

use anyhow::Context;
use crust_model::Id;
use sqlx::PgPool;

use super::rows::{db_now, seconds_between, wait_ok, Batch};
use super::throughput::EndToEnd;
use super::{Goals, Plan};
use crate::client::Api;
use crate::report::{run_load, show_errors, Summary, Table};

/// Jobs per `POST /job/bulk` (the most one request takes).
pub const BULK_SIZE: usize = 1000;
/// Concurrent bulk requests.
const BULK_CLIENTS: usize = 4;
/// The target, jobs/s end to end.
const TARGET_BULK_RATE: f64 = 5_000.0;

/// Phase 1c: `plan.jobs` jobs in bulk requests, until all are ok.
pub async fn bulk(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    workflow: Id,
    single: &EndToEnd,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    let requests = plan.jobs.div_ceil(BULK_SIZE);
    eprintln!(
        "phase 1c: {} jobs in {requests} POST /job/bulk of {BULK_SIZE} from {BULK_CLIENTS} clients, until all are ok",
        requests * BULK_SIZE
    );
    let first_create = db_now(db).await?;
    let cpu_before = crate::procfs::cpu_by_group();
    let create_api = api.clone();
    let mut create = run_load(BULK_CLIENTS, requests, move |_| {
        let api = create_api.clone();
        Box::pin(async move { api.create_jobs_bulk(workflow, BULK_SIZE).await })
            as crate::report::Op<Vec<Id>>
    })
    .await?;
    show_errors("bulk create (API)", &create);
    let ids: Vec<Id> = create.values.iter().flatten().copied().collect();
    let batch = Batch::of(workflow, &ids).context("every bulk create failed")?;
    let last_ok = wait_ok(db, &batch, plan.limit, "bulk throughput").await?;
    let seconds = seconds_between(last_ok, first_create);
    let rate = if seconds > 0.0 {
        batch.count as f64 / seconds
    } else {
        0.0
    };
    let summary = Summary::of(&mut create);
    let mut table = Table::new([
        "bulk create",
        "jobs",
        "jobs/s",
        "vs one create per job",
        "request p50 ms",
        "request p99 ms",
        "errors",
    ]);
    let [p50, p99, _] = summary.latency.cells();
    table.row([
        format!("POST /job/bulk × {BULK_SIZE}, first create → last ok"),
        batch.count.to_string(),
        format!("{rate:.0}"),
        if single.rate > 0.0 {
            format!("{:.2}×", rate / single.rate)
        } else {
            String::new()
        },
        p50,
        p99,
        summary.errors.to_string(),
    ]);
    table.print();
    println!("bulk end to end: {seconds:.3} s on the database clock");
    crate::procfs::print_cpu("phase 1c", &cpu_before, seconds);
    goals.add(
        "bulk create end to end",
        format!("≥ {TARGET_BULK_RATE:.0} jobs/s"),
        format!("{rate:.0} jobs/s"),
        rate >= TARGET_BULK_RATE,
    );
    Ok(())
}
