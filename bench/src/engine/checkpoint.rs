//! Phase 4, what a durable step costs: the two writes every step adds (its
//! start and its outcome), made as the workers make them: each worker's
//! step writer batches the checkpoints of its running jobs into one
//! `crust_store::steps::start_many` and one `record_many` per round. The
//! bench calls those through the store itself, W writers (one per worker)
//! with rounds of the worker concurrency's size, against a job row it
//! inserts in state `running`, with the workers stopped; per step against
//! the cost of one plain job at the throughput measured earlier in the same
//! run (1 / jobs per second).

use anyhow::{bail, Context};
use crust_model::step::StepStatus;
use crust_model::Id;
use crust_store::steps;
use serde_json::value::RawValue;
use sqlx::PgPool;

use super::fanout::Fanout;
use super::Sizes;
use crate::client::DbArgs;
use crate::jobs::rows::connection_use;
use crate::jobs::throughput::EndToEnd;
use crate::jobs::{Goals, Plan};
use crate::report::{run_load, show_errors, Op, Summary, Table};

/// Writes a checkpointed step adds: its start and its outcome.
const STATEMENTS_PER_STEP: usize = 2;
/// The target: a checkpointed step costs less than this share of a plain job.
const TARGET_SHARE: f64 = 0.10;
/// The run (attempt) the bench's job row is held by.
const ATTEMPT: i32 = 1;
/// The task name of the bench's steps.
const TASK: &str = "bench";
/// What each step records as its output (a `log` task's output).
const OUTPUT: &str = r#"{"message":"bench"}"#;

/// Phase 4: `sizes.steps` checkpointed steps from C connections.
#[allow(clippy::too_many_arguments)]
pub async fn checkpoint(
    plan: &Plan,
    sizes: &Sizes,
    db: &PgPool,
    database: &DbArgs,
    workflow_id: Id,
    plain: &EndToEnd,
    fanout: &Fanout,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    let writers = plan.workers.max(1);
    let batch = plan.concurrency.max(1);
    eprintln!(
        "phase 4: {} checkpointed steps (start_many + record_many) in rounds of {batch} from {writers} writers, workers stopped",
        sizes.steps
    );
    let statements = StatementStats::available(db).await;
    let job = running_job(db, workflow_id).await?;
    let pool = database
        .connect_lazy(u32::try_from(writers).unwrap_or(u32::MAX))
        .context("cannot build the checkpoint pool")?;
    let measured = async {
        // Open every pooled connection before anything is timed.
        let mut held = Vec::with_capacity(writers);
        for _ in 0..writers {
            match pool.acquire().await {
                Ok(connection) => held.push(connection),
                Err(err) => {
                    let (max, used) = connection_use(db).await.unwrap_or((0, 0));
                    bail!(
                        "cannot open the checkpoint phase's {} Postgres connections ({} open): \
                         {err}; the server allows {max} and {used} are in use",
                        writers,
                        held.len()
                    );
                }
            }
        }
        drop(held);
        let before = statements.read(db).await;
        let rounds = sizes.steps.div_ceil(batch);
        let mut phase = run_load(writers, rounds, checkpointed_round(&pool, job, batch)).await?;
        let after = statements.read(db).await;
        show_errors("checkpointed step (store)", &phase);
        anyhow::Ok((Summary::of(&mut phase), before.zip(after)))
    }
    .await;
    pool.close().await;
    let (summary, server) = measured?;
    if summary.errors == summary.requests {
        bail!("every checkpointed step failed");
    }

    let steps_per_second = summary.per_second * batch as f64;
    let step_us = if steps_per_second > 0.0 {
        1e6 / steps_per_second
    } else {
        f64::INFINITY
    };
    let job_us = if plain.rate > 0.0 {
        1e6 / plain.rate
    } else {
        f64::INFINITY
    };
    let share = step_us / job_us;

    let mut table = Table::new([
        "checkpoint (start_many + record_many)",
        "count",
        "per s",
        "µs each",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
    ]);
    let [p50, p99, max] = summary.latency.cells();
    table.row([
        format!("checkpointed steps, rounds of {batch}, {writers} writers"),
        (summary.requests * batch).to_string(),
        format!("{steps_per_second:.0}"),
        format!("{step_us:.1}"),
        p50,
        p99,
        max,
        summary.errors.to_string(),
    ]);
    table.row([
        format!("  per statement ({STATEMENTS_PER_STEP} per round, latency is per round)"),
        (summary.requests * STATEMENTS_PER_STEP).to_string(),
        format!("{:.0}", summary.per_second * STATEMENTS_PER_STEP as f64),
        format!(
            "{:.1}",
            1e6 / (summary.per_second * STATEMENTS_PER_STEP as f64)
        ),
    ]);
    table.row([
        "baseline: one plain job end to end (1 / jobs/s)".to_owned(),
        plain.jobs.to_string(),
        format!("{:.0}", plain.rate),
        format!("{job_us:.1}"),
    ]);
    table.print();
    println!(
        "checkpoint: {STATEMENTS_PER_STEP} extra writes per step, batched {batch} to a statement; a step costs {step_us:.1} µs \
         from {writers} writers = {:.3} of a plain job ({job_us:.1} µs; 1/{:.0})",
        share,
        if share > 0.0 { 1.0 / share } else { 0.0 },
    );
    println!(
        "checkpoint: the fan-out's median {:.0} items/s is {:.1} % of the {:.0} steps/s the step \
         writes alone allow (each item is one checkpointed step)",
        fanout.median_rate,
        if steps_per_second > 0.0 {
            100.0 * fanout.median_rate / steps_per_second
        } else {
            0.0
        },
        steps_per_second,
    );
    match server {
        Some(((calls_0, ms_0), (calls_1, ms_1))) if calls_1 > calls_0 => println!(
            "checkpoint: pg_stat_statements: {} step statements, {:.1} µs of server time each",
            calls_1 - calls_0,
            1000.0 * (ms_1 - ms_0) / (calls_1 - calls_0) as f64
        ),
        _ => println!("checkpoint: {}", statements.note()),
    }
    goals.add(
        "checkpointed step vs plain job",
        format!("< 1/{:.0} of a plain job", 1.0 / TARGET_SHARE),
        format!("{share:.3} ({step_us:.1} µs vs {job_us:.1} µs)"),
        share < TARGET_SHARE,
    );
    Ok(())
}

/// Inserts a job of `workflow_id` in state `running` under [`ATTEMPT`],
/// with a lease no rescue will reach during the bench (the clean-up
/// deletes it with the workflow's other jobs; its steps cascade).
async fn running_job(db: &PgPool, workflow_id: Id) -> anyhow::Result<Id> {
    sqlx::query_scalar(
        "INSERT INTO jobs (workflow_id, workflow_version, status, attempt, worker, started_at,
                           lease_until, published_at)
         VALUES ($1, 1, 'running', $2, 'bench-engine-checkpoint', now(), now() + interval '1 day',
                 now())
         RETURNING id",
    )
    .bind(workflow_id)
    .bind(ATTEMPT)
    .fetch_one(db)
    .await
    .context("cannot insert the checkpoint phase's running job")
}

/// Step `index` of the load: its start, then its record as `ok`.
fn checkpointed_round(
    pool: &PgPool,
    job: Id,
    batch: usize,
) -> impl Fn(usize) -> Op<()> + Clone + Send + 'static {
    let pool = pool.clone();
    move |index| {
        let pool = pool.clone();
        Box::pin(async move {
            let output = RawValue::from_string(OUTPUT.to_owned()).map_err(|err| err.to_string())?;
            let items = (index * batch..(index + 1) * batch)
                .map(|item| i32::try_from(item).map_err(|_| format!("step {item} is out of range")))
                .collect::<Result<Vec<i32>, String>>()?;
            let starts: Vec<steps::Start> = items
                .iter()
                .map(|&item| steps::Start {
                    job,
                    attempt: ATTEMPT,
                    task: TASK.to_owned(),
                    item,
                    until: None,
                })
                .collect();
            let started = steps::start_many(&pool, &starts)
                .await
                .map_err(|err| format!("steps::start_many: {err}"))?;
            if started.iter().any(Option::is_none) {
                return Err(format!(
                    "steps::start_many of round {index}: the job is not held"
                ));
            }
            let records: Vec<steps::Record> = items
                .iter()
                .map(|&item| steps::Record {
                    job,
                    attempt: ATTEMPT,
                    task: TASK.to_owned(),
                    item,
                    status: StepStatus::Ok,
                    output: Some(output.clone()),
                    error: None,
                })
                .collect();
            let recorded = steps::record_many(&pool, &records)
                .await
                .map_err(|err| format!("steps::record_many: {err}"))?;
            if recorded.iter().any(|applied| !applied) {
                return Err(format!(
                    "steps::record_many of round {index}: the job is not held"
                ));
            }
            Ok(())
        })
    }
}

/// `pg_stat_statements`, when the database has it: the server's own time
/// for the step statements. It is never installed by the bench.
enum StatementStats {
    Installed,
    Missing,
}

impl StatementStats {
    async fn available(db: &PgPool) -> StatementStats {
        let found: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'")
                .fetch_optional(db)
                .await
                .unwrap_or(None);
        match found {
            Some(_) => StatementStats::Installed,
            None => StatementStats::Missing,
        }
    }

    /// Calls of the step statements so far and their total server time in
    /// ms; `None` if unavailable (not installed, or not preloaded).
    async fn read(&self, db: &PgPool) -> Option<(i64, f64)> {
        match self {
            StatementStats::Missing => None,
            StatementStats::Installed => sqlx::query_as(
                "SELECT coalesce(sum(calls), 0)::int8, coalesce(sum(total_exec_time), 0)::float8
                 FROM pg_stat_statements WHERE query LIKE '%INSERT INTO job_steps%'",
            )
            .fetch_one(db)
            .await
            .ok(),
        }
    }

    fn note(&self) -> &'static str {
        match self {
            StatementStats::Missing => {
                "pg_stat_statements is not installed; the statements were timed directly"
            }
            StatementStats::Installed => {
                "pg_stat_statements is installed but gave no figures (is it in \
                 shared_preload_libraries?); the statements were timed directly"
            }
        }
    }
}
