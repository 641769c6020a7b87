//! `crust-bench jobs`: the job pipeline of a running api and scheduler,
//! with workers the bench starts itself, against the same row work done
//! straight in Postgres in the same run (the physical limit on this
//! machine).
//!
//! Phases, in the order [`measure`] runs them, one module each: `warm_up`;
//! 1 `throughput` (end to end); 1c `bulk` (the same with `POST /job/bulk`);
//! 1b `keyed` (the same with a concurrency
//! key on every job); 2 `start_latency` (create→start at half
//! that rate); 3 `delayed` (delayed-start lateness); 4 `cancel` (cancel
//! latency) and 5 `memory` (worker memory idle and busy); 6 `recovery`
//! (after a worker is killed); 7 `baseline` (Postgres alone). `workers`
//! starts and stops the worker processes, `rows` reads the job rows (every
//! latency taken from them uses only the database's clock), `calls` holds
//! the api calls. Each phase prints its table as it completes; this module
//! prints the targets at the end.

mod baseline;
mod bulk;
// `calls`, `rows`, `throughput`, `warm_up` and `workers` are shared with
// the engine bench.
pub(crate) mod calls;
mod cancel;
mod delayed;
mod keyed;
mod memory;
mod recovery;
pub(crate) mod rows;
mod start_latency;
pub(crate) mod throughput;
pub(crate) mod warm_up;
pub(crate) mod workers;

use std::time::Duration;
use workers::WorkerArgs;

use anyhow::{bail, Context};
use crust_model::Id;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::client::{unix_now, Api, ApiArgs, DbArgs};
use crate::report::{cores, Table, Verdicts};
use cancel::CANCEL_SLEEP_SECONDS;
use recovery::RECOVERY_SLEEP_SECONDS;
use rows::connection_use;
use workers::{Launch, Workers};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections watching job rows (the baseline gets its own pool).
const WATCH_CONNECTIONS: u32 = 4;
/// Jobs the cancel phase runs on each worker by default (and the busy
/// memory target's load).
const CANCEL_JOBS_PER_WORKER: u32 = 32;
/// Target of phase 1, jobs/s end to end with one create per job.
const TARGET_SINGLE_RATE: f64 = 2_000.0;
/// Pause before the idle memory reading.
const IDLE_SETTLE: Duration = Duration::from_secs(1);

/// Options of `crust-bench jobs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: ApiArgs,

    // The workers the bench starts are given it too.
    #[command(flatten)]
    db: DbArgs,

    #[command(flatten)]
    fleet: WorkerArgs,

    /// Jobs in the throughput phase (and the Postgres baseline).
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    jobs: u64,

    /// Concurrent API clients, and Postgres connections of the baseline.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    clients: u32,

    /// Jobs created at half the end-to-end rate to measure start latency.
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    latency_jobs: u64,

    /// Delayed jobs, their startAt spread over 10 s beginning 3 s ahead.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    delayed: u64,

    /// Sleeping jobs to cancel; also the load of the busy memory reading.
    /// Default: 32 per worker (at most what the workers run at once).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    cancel_jobs: Option<u32>,

    /// Stop after the throughput phases (1 and 1c): for comparing worker
    /// counts (`--workers 1`, `2`, `4`), where only jobs/s and where the CPU
    /// went matter.
    #[arg(long)]
    throughput_only: bool,

    /// Longest wait, in seconds, for any one thing the bench waits on.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    deadline: u64,
}

/// Sizes and settings every phase reads (the engine bench fills in the
/// ones its shared phases read, with zero for the others).
pub(crate) struct Plan {
    pub(crate) workers: usize,
    pub(crate) concurrency: usize,
    pub(crate) clients: usize,
    pub(crate) jobs: usize,
    pub(crate) latency_jobs: usize,
    pub(crate) delayed: usize,
    pub(crate) cancel_jobs: usize,
    pub(crate) limit: Duration,
    pub(crate) lease: Duration,
    /// Unique per run: names the workflows and the workers.
    pub(crate) tag: String,
    pub(crate) queue_prefix: String,
}

/// Runs the bench. The workers are killed and the bench's jobs and
/// workflows removed afterwards whether or not the measurement succeeded.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let workers = usize::try_from(args.fleet.workers).context("--workers does not fit in usize")?;
    let concurrency = usize::from(args.fleet.concurrency);
    let capacity = workers * concurrency;
    let cancel_jobs = match args.cancel_jobs {
        Some(k) => usize::try_from(k).context("--cancel-jobs does not fit in usize")?,
        None => workers * concurrency.min(CANCEL_JOBS_PER_WORKER as usize),
    };
    if cancel_jobs > capacity {
        bail!(
            "--cancel-jobs {cancel_jobs} cannot all run at once on {workers} workers × {concurrency} (--concurrency)"
        );
    }
    let now = unix_now()?;
    let plan = Plan {
        workers,
        concurrency,
        clients: usize::try_from(args.clients).context("--clients does not fit in usize")?,
        jobs: usize::try_from(args.jobs).context("--jobs does not fit in usize")?,
        latency_jobs: usize::try_from(args.latency_jobs)
            .context("--latency-jobs does not fit in usize")?,
        delayed: usize::try_from(args.delayed).context("--delayed does not fit in usize")?,
        cancel_jobs,
        limit: Duration::from_secs(args.deadline),
        lease: Duration::from_millis(args.fleet.lease_ms),
        tag: format!("{}", now.as_secs()),
        queue_prefix: args.fleet.queue_prefix.clone(),
    };

    let api = args.target.connect(plan.clients, REQUEST_TIMEOUT)?;
    let db = args.db.connect(WATCH_CONNECTIONS).await?;

    println!(
        "machine: nproc {}; workers W {} (concurrency {}, lease {} ms); clients C {}; jobs N {}; \
         latency jobs {}; delayed {}; cancel jobs {}",
        cores(),
        plan.workers,
        plan.concurrency,
        plan.lease.as_millis(),
        plan.clients,
        plan.jobs,
        plan.latency_jobs,
        plan.delayed,
        plan.cancel_jobs,
    );
    let (max_connections, open_connections) = connection_use(&db).await?;
    println!("postgres: max_connections {max_connections}, {open_connections} open at start");
    let headroom = usize::try_from(max_connections - open_connections).unwrap_or(0);
    if headroom < plan.clients + 8 * plan.workers {
        eprintln!(
            "warning: only {headroom} more Postgres connections are allowed; the workers and the \
             baseline ({} connections) may run out",
            plan.clients
        );
    }

    let mut workflows = Vec::new();
    let mut goals = Goals::default();
    let measured = async {
        let launch = Launch {
            bin: &args.fleet.worker_bin,
            database_url: &args.db.database_url,
            amqp_url: &args.fleet.amqp_url,
            name: format!("bench-jobs-{}", plan.tag),
        };
        let mut workers = Workers::spawn(&launch, &plan).await?;
        let result = measure(
            &plan,
            &api,
            &db,
            &args,
            &mut workers,
            &mut workflows,
            &mut goals,
        )
        .await;
        workers.stop_all().await;
        result
    }
    .await;
    let cleaned = clean_up(&db, &workflows).await;
    db.close().await;
    // The targets of the phases that completed, even if a later one failed.
    goals.print(measured.is_ok());
    measured?;
    cleaned?;
    Ok(())
}

/// All the phases, in order, each printed as it completes.
async fn measure(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    args: &Args,
    workers: &mut Workers,
    workflows: &mut Vec<Id>,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    let log_tasks = json!([{"name": "say", "kind": "log", "params": {"message": "bench"}}]);
    let sleep_tasks =
        |seconds: u32| json!([{"name": "nap", "kind": "sleep", "params": {"seconds": seconds}}]);

    // Warm-up: until every worker has run a job, which also proves they
    // consume the queue the api publishes to.
    let warm = new_workflow(api, plan, workflows, "warmup", &log_tasks).await?;
    warm_up::warm_up(plan, api, db, workers, warm).await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    workers.check_alive()?;
    let idle_rss = workers.rss();

    let throughput_wf = new_workflow(api, plan, workflows, "throughput", &log_tasks).await?;
    let e2e = throughput::throughput(plan, api, db, throughput_wf).await?;
    goals.add(
        "one create per job, end to end",
        format!("≥ {TARGET_SINGLE_RATE:.0} jobs/s"),
        format!("{:.0} jobs/s", e2e.rate),
        e2e.rate >= TARGET_SINGLE_RATE,
    );

    let bulk_wf = new_workflow(api, plan, workflows, "bulk", &log_tasks).await?;
    bulk::bulk(plan, api, db, bulk_wf, &e2e, goals).await?;
    if args.throughput_only {
        return Ok(());
    }

    let distinct_wf = keyed_workflow(api, plan, workflows, "keyed-distinct", &log_tasks, 1).await?;
    let shared_wf = keyed_workflow(api, plan, workflows, "keyed-shared", &log_tasks, 8).await?;
    keyed::keyed(plan, api, db, (distinct_wf, shared_wf), &e2e, goals).await?;

    let latency_wf = new_workflow(api, plan, workflows, "latency", &log_tasks).await?;
    start_latency::start_latency(plan, api, db, latency_wf, e2e.rate, goals).await?;

    let delayed_wf = new_workflow(api, plan, workflows, "delayed", &log_tasks).await?;
    delayed::delayed_start(plan, api, db, delayed_wf, goals).await?;

    let cancel_wf = new_workflow(
        api,
        plan,
        workflows,
        "cancel",
        &sleep_tasks(CANCEL_SLEEP_SECONDS),
    )
    .await?;
    // Phases 4 and 5: the busy memory reading is taken while the sleeping
    // jobs run, just before they are cancelled.
    let sleeping = cancel::start_sleeping(plan, api, db, cancel_wf).await?;
    workers.check_alive()?;
    let busy = memory::Busy::read(db, workers, &sleeping.batch).await?;
    cancel::cancel(api, &sleeping, goals).await;
    memory::report(plan, workers, &idle_rss, &busy, goals);

    if plan.workers >= 2 {
        let recovery_wf = new_workflow(
            api,
            plan,
            workflows,
            "recovery",
            &sleep_tasks(RECOVERY_SLEEP_SECONDS),
        )
        .await?;
        recovery::recovery(plan, api, db, workers, recovery_wf, goals).await?;
    } else {
        println!();
        println!("recovery: skipped (needs --workers 2 or more)");
    }

    // The baseline needs no workers: stop them, so their CPU and their
    // Postgres connections are free for it.
    workers.stop_all().await;
    baseline::baseline(plan, db, &args.db, throughput_wf, &e2e, goals).await
}

/// Creates a workflow named after the run and `what`, and remembers it for
/// the clean-up.
async fn new_workflow(
    api: &Api,
    plan: &Plan,
    workflows: &mut Vec<Id>,
    what: &str,
    tasks: &Value,
) -> anyhow::Result<Id> {
    let id = api
        .create_workflow(&format!("bench-jobs-{}-{what}", plan.tag), tasks)
        .await?;
    workflows.push(id);
    Ok(id)
}

/// Creates a workflow like [`new_workflow`] whose jobs have the
/// concurrency key `{{ parameters.k }}` with `limit`.
async fn keyed_workflow(
    api: &Api,
    plan: &Plan,
    workflows: &mut Vec<Id>,
    what: &str,
    tasks: &Value,
    limit: u32,
) -> anyhow::Result<Id> {
    let body = json!({"name": format!("bench-jobs-{}-{what}", plan.tag), "tasks": tasks,
                      "concurrency": {"key": "{{ parameters.k }}", "limit": limit}});
    let id = api.create("/workflow/", &body, "workflowID").await?;
    workflows.push(id);
    Ok(id)
}

/// Removes the bench's jobs (their logs and steps cascade) and workflows
/// (with their versions) directly.
pub(crate) async fn clean_up(db: &PgPool, workflows: &[Id]) -> anyhow::Result<()> {
    if workflows.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = workflows.iter().map(|id| id.get()).collect();
    let jobs = sqlx::query("DELETE FROM jobs WHERE workflow_id = ANY($1)")
        .bind(&ids)
        .execute(db)
        .await
        .context("cannot delete the bench's jobs")?;
    // Every saved version of a workflow is kept in its own table.
    sqlx::query("DELETE FROM rate_keys WHERE workflow_id = ANY($1)")
        .bind(&ids)
        .execute(db)
        .await
        .context("cannot delete the bench's rate keys")?;
    sqlx::query("DELETE FROM workflow_versions WHERE workflow_id = ANY($1)")
        .bind(&ids)
        .execute(db)
        .await
        .context("cannot delete the bench's workflow versions")?;
    let removed = sqlx::query("DELETE FROM workflows WHERE id = ANY($1)")
        .bind(&ids)
        .execute(db)
        .await
        .context("cannot delete the bench's workflows")?;
    eprintln!(
        "cleaned up: {} jobs and {} workflows removed",
        jobs.rows_affected(),
        removed.rows_affected()
    );
    Ok(())
}

/// The targets, filled in as the phases complete: the final summary.
#[derive(Default)]
pub(crate) struct Goals {
    rows: Vec<[String; 4]>,
}

impl Goals {
    pub(crate) fn add(&mut self, name: &str, goal: String, measured: String, met: bool) {
        self.rows
            .push([name.to_owned(), goal, measured, verdict(met).to_owned()]);
    }

    pub(crate) fn print(&self, complete: bool) {
        if self.rows.is_empty() {
            return;
        }
        let mut table = Table::new(["target", "goal", "measured", "verdict"]);
        for row in &self.rows {
            table.row(row.iter().cloned());
        }
        table.print();
        let met = self
            .rows
            .iter()
            .filter(|row| row[3] == verdict(true))
            .count();
        println!(
            "targets met: {met} of {}{}",
            self.rows.len(),
            if complete {
                ""
            } else {
                " (the run failed before measuring the rest)"
            }
        );
    }
}

fn verdict(met: bool) -> &'static str {
    Verdicts::Shouted.of(met)
}
