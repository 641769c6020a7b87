//! Phase 1b, concurrency keys: the throughput phase again, with a
//! `concurrency` key on every job, against phase 1's jobs/s without one
//! (the target: a key costs at most 20 %). Two shapes: every job its own
//! key (limit 1: each job takes and frees a slot, the bookkeeping alone),
//! and 64 shared keys with limit 8 (most jobs wait, and each start is a
//! slot handed on by the run that ended before it).

use anyhow::Context;
use crust_model::Id;
use serde_json::json;
use sqlx::PgPool;

use super::rows::{db_now, seconds_between, wait_ok, Batch};
use super::throughput::EndToEnd;
use super::{Goals, Plan};
use crate::client::Api;
use crate::report::{run_load, show_errors, Summary, Table};

/// Largest share of phase 1's rate a key may cost.
const MAX_COST: f64 = 0.20;
/// Keys and limit of the shared-keys shape.
const SHARED_KEYS: usize = 64;
const SHARED_LIMIT: usize = 8;

/// One keyed throughput run: its jobs/s and the create summary.
async fn keyed_run(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    workflow: Id,
    keys: Option<usize>,
) -> anyhow::Result<(f64, Summary)> {
    let first_create = db_now(db).await?;
    let create_api = api.clone();
    let mut create = run_load(plan.clients, plan.jobs, move |index| {
        let api = create_api.clone();
        let key = keys.map_or(index, |keys| index % keys);
        Box::pin(async move {
            api.create_job_with(workflow, &json!({ "k": key }))
                .await
                .map_err(|err| format!("{err:#}"))
        }) as crate::report::Op<Id>
    })
    .await?;
    show_errors("create (API, keyed)", &create);
    let batch = Batch::of(workflow, &create.values).context("every keyed job create failed")?;
    let last_ok = wait_ok(db, &batch, plan.limit, "keyed throughput").await?;
    let seconds = seconds_between(last_ok, first_create);
    let rate = if seconds > 0.0 {
        batch.count as f64 / seconds
    } else {
        0.0
    };
    Ok((rate, Summary::of(&mut create)))
}

/// Phase 1b: both shapes, printed beside phase 1's rate, and the target.
pub async fn keyed(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    workflows: (Id, Id),
    plain: &EndToEnd,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    eprintln!(
        "phase 1b: {} jobs with a concurrency key each, twice (distinct keys; {SHARED_KEYS} keys × {SHARED_LIMIT})",
        plan.jobs
    );
    let (distinct, distinct_create) = keyed_run(plan, api, db, workflows.0, None).await?;
    let (shared, shared_create) = keyed_run(plan, api, db, workflows.1, Some(SHARED_KEYS)).await?;
    let mut table = Table::new([
        "concurrency keys",
        "jobs",
        "jobs/s",
        "vs no key",
        "create p50 ms",
        "create p99 ms",
    ]);
    let versus = |rate: f64| {
        if plain.rate > 0.0 {
            format!("{:+.1} %", (rate / plain.rate - 1.0) * 100.0)
        } else {
            String::new()
        }
    };
    table.row([
        "none (phase 1)".to_owned(),
        plain.jobs.to_string(),
        format!("{:.0}", plain.rate),
        String::new(),
    ]);
    for (name, rate, summary) in [
        (
            "a distinct key per job, limit 1",
            distinct,
            &distinct_create,
        ),
        ("64 shared keys, limit 8", shared, &shared_create),
    ] {
        let [p50, p99, _] = summary.latency.cells();
        table.row([
            name.to_owned(),
            plan.jobs.to_string(),
            format!("{rate:.0}"),
            versus(rate),
            p50,
            p99,
        ]);
    }
    table.print();
    let cost = if plain.rate > 0.0 {
        1.0 - distinct / plain.rate
    } else {
        1.0
    };
    goals.add(
        "concurrency key cost",
        format!("≤ {:.0} % of jobs/s", MAX_COST * 100.0),
        format!("{:.1} %", cost * 100.0),
        cost <= MAX_COST,
    );
    Ok(())
}
