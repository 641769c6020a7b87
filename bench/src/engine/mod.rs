//! `crust-bench engine`: what the workflow engine costs on top of plain
//! jobs, on a running api and scheduler with workers the bench starts
//! itself (like `crust-bench jobs`), each figure beside its baseline
//! measured in the same run.
//!
//! Phases, in the order [`measure`] runs them: the jobs bench's warm-up and
//! its phase 1, `throughput` (plain one-`log`-task jobs end to end: the
//! baseline of the others); 2 `fanout` (a `forEach` over many items in one
//! job: items/s, one job at a time); 3 `graphs` (10 tasks at once against
//! the same 10 in sequence and 1 task, one job at a time); 4 `checkpoint`
//! (the two step writes of a durable step, timed straight through
//! `crust_store::steps` with the workers stopped, against the cost of a
//! plain job). `calls` holds the api calls and the one-job-at-a-time
//! runner. Each phase prints its table as it completes; this module prints
//! the targets at the end.

mod calls;
mod checkpoint;
mod fanout;
mod graphs;

use std::time::Duration;

use anyhow::Context;
use crust_model::Id;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::client::{unix_now, Api, ApiArgs, DbArgs};
use crate::jobs::rows::connection_use;
use crate::jobs::workers::WorkerArgs;
use crate::jobs::workers::{Launch, Workers};
use crate::jobs::{clean_up, throughput, warm_up, Goals, Plan};
use crate::report::cores;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections watching job rows (the checkpoint phase gets its own pool).
const WATCH_CONNECTIONS: u32 = 4;

/// Options of `crust-bench engine`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: ApiArgs,

    // The workers the bench starts are given it too.
    #[command(flatten)]
    db: DbArgs,

    #[command(flatten)]
    fleet: WorkerArgs,

    /// Plain one-`log`-task jobs run end to end: the baseline.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    jobs: u64,

    /// Concurrent API clients for the plain jobs, and connections of the
    /// checkpoint phase.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1024))]
    clients: u32,

    /// Items of the fan-out job's `forEach` (the worker allows 10 000).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    fanout_items: u32,

    /// The `concurrency` of the fan-out task (1–100).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=100))]
    fanout_concurrency: u32,

    /// Fan-out jobs, run one after the other.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    fanout_jobs: u32,

    /// Jobs of each graph shape (10 parallel tasks, 10 in sequence, 1 task),
    /// run one at a time.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    graph_jobs: u32,

    /// Checkpointed steps (one start and one record each) timed straight
    /// through the store.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    steps: u32,

    /// Small sizes for a smoke test: 200 plain jobs, 2 fan-out jobs of 100
    /// items, 5 jobs per graph shape, 1 000 steps, for each size flag left
    /// at its default.
    #[arg(long)]
    quick: bool,

    /// Longest wait, in seconds, for any one thing the bench waits on.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    deadline: u64,
}

/// The engine phases' sizes (the shared phases read [`Plan`]).
struct Sizes {
    fanout_items: usize,
    fanout_concurrency: u32,
    fanout_jobs: usize,
    graph_jobs: usize,
    steps: usize,
}

/// Runs the bench. The workers are killed and the bench's jobs and
/// workflows removed afterwards whether or not the measurement succeeded.
pub async fn run(mut args: Args) -> anyhow::Result<()> {
    if args.quick {
        apply_quick(&mut args);
    }
    let now = unix_now()?;
    let plan = Plan {
        workers: usize::try_from(args.fleet.workers).context("--workers does not fit in usize")?,
        concurrency: usize::from(args.fleet.concurrency),
        clients: usize::try_from(args.clients).context("--clients does not fit in usize")?,
        jobs: usize::try_from(args.jobs).context("--jobs does not fit in usize")?,
        latency_jobs: 0,
        delayed: 0,
        cancel_jobs: 0,
        limit: Duration::from_secs(args.deadline),
        lease: Duration::from_millis(args.fleet.lease_ms),
        tag: format!("{}", now.as_secs()),
        queue_prefix: args.fleet.queue_prefix.clone(),
    };
    let sizes = Sizes {
        fanout_items: args.fanout_items as usize,
        fanout_concurrency: args.fanout_concurrency,
        fanout_jobs: args.fanout_jobs as usize,
        graph_jobs: args.graph_jobs as usize,
        steps: args.steps as usize,
    };

    let api = args.target.connect(plan.clients, REQUEST_TIMEOUT)?;
    let db = args.db.connect(WATCH_CONNECTIONS).await?;

    println!(
        "machine: nproc {}; workers W {} (concurrency {}, lease {} ms); clients C {}; jobs N {}; \
         fan-out {} jobs × {} items (concurrency {}); graph jobs {} per shape; steps {}",
        cores(),
        plan.workers,
        plan.concurrency,
        plan.lease.as_millis(),
        plan.clients,
        plan.jobs,
        sizes.fanout_jobs,
        sizes.fanout_items,
        sizes.fanout_concurrency,
        sizes.graph_jobs,
        sizes.steps,
    );
    let (max_connections, open_connections) = connection_use(&db).await?;
    println!("postgres: max_connections {max_connections}, {open_connections} open at start");

    let mut workflows = Vec::new();
    let mut goals = Goals::default();
    let measured = async {
        let launch = Launch {
            bin: &args.fleet.worker_bin,
            database_url: &args.db.database_url,
            amqp_url: &args.fleet.amqp_url,
            name: format!("bench-engine-{}", plan.tag),
        };
        let mut workers = Workers::spawn(&launch, &plan).await?;
        let result = measure(
            &plan,
            &sizes,
            &api,
            &db,
            &args.db,
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
    goals.print(measured.is_ok());
    measured?;
    cleaned?;
    Ok(())
}

/// `--quick`: small sizes for every size flag left at its default.
fn apply_quick(args: &mut Args) {
    fn small<T: PartialEq>(value: &mut T, default: T, quick: T) {
        if *value == default {
            *value = quick;
        }
    }
    small(&mut args.jobs, 2_000, 200);
    small(&mut args.fanout_items, 1_000, 100);
    small(&mut args.fanout_jobs, 20, 2);
    small(&mut args.graph_jobs, 50, 5);
    small(&mut args.steps, 20_000, 1_000);
}

/// All the phases, in order, each printed as it completes.
#[allow(clippy::too_many_arguments)]
async fn measure(
    plan: &Plan,
    sizes: &Sizes,
    api: &Api,
    db: &PgPool,
    database: &DbArgs,
    workers: &mut Workers,
    workflows: &mut Vec<Id>,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    let log_task = |name: &str, needs: Option<Value>| {
        let mut task = json!({"name": name, "kind": "log", "params": {"message": "bench"}});
        if let Some(needs) = needs {
            task["needs"] = needs;
        }
        task
    };
    let one_task = json!([log_task("say", None)]);

    let warm = new_workflow(api, plan, workflows, "warmup", &one_task, None).await?;
    warm_up::warm_up(plan, api, db, workers, warm).await?;

    // The baseline of every phase: plain jobs end to end.
    let plain_wf = new_workflow(api, plan, workflows, "plain", &one_task, None).await?;
    let plain = throughput::throughput(plan, api, db, plain_wf).await?;
    workers.check_alive()?;

    let fanout_tasks = json!([{
        "name": "each",
        "kind": "log",
        "forEach": "{{ parameters.items }}",
        "concurrency": sizes.fanout_concurrency,
        // A fixed message: the api's save-time template check knows only
        // the roots parameters, outputs, error and job, so it refuses
        // `{{ item }}` and `{{ index }}` in params.
        "params": {"message": "bench item"},
    }]);
    let fanout_wf = new_workflow(api, plan, workflows, "fanout", &fanout_tasks, None).await?;
    let fanout = fanout::fanout(plan, sizes, api, db, fanout_wf, &plain).await?;
    workers.check_alive()?;

    let names: Vec<String> = (1..=graphs::GRAPH_TASKS).map(|n| format!("t{n}")).collect();
    let parallel: Vec<Value> = names
        .iter()
        .map(|name| log_task(name, Some(json!([]))))
        .collect();
    let sequence: Vec<Value> = names.iter().map(|name| log_task(name, None)).collect();
    let shapes = graphs::Shapes {
        parallel: new_workflow(
            api,
            plan,
            workflows,
            "parallel",
            &Value::Array(parallel),
            Some(graphs::GRAPH_TASKS),
        )
        .await?,
        sequence: new_workflow(
            api,
            plan,
            workflows,
            "sequence",
            &Value::Array(sequence),
            None,
        )
        .await?,
        single: new_workflow(api, plan, workflows, "single", &one_task, None).await?,
    };
    graphs::graphs(plan, sizes, api, db, &shapes).await?;
    workers.check_alive()?;

    // The checkpoint phase needs no workers: stop them, so their CPU and
    // their Postgres connections are free for it.
    workers.stop_all().await;
    let step_wf = new_workflow(api, plan, workflows, "checkpoint", &one_task, None).await?;
    checkpoint::checkpoint(plan, sizes, db, database, step_wf, &plain, &fanout, goals).await
}

/// Creates a workflow named after the run and `what` (with `parallelism`
/// if given), and remembers it for the clean-up.
async fn new_workflow(
    api: &Api,
    plan: &Plan,
    workflows: &mut Vec<Id>,
    what: &str,
    tasks: &Value,
    parallelism: Option<usize>,
) -> anyhow::Result<Id> {
    let mut body = json!({
        "name": format!("bench-engine-{}-{what}", plan.tag),
        "tasks": tasks,
        "timeout": 0,
    });
    if let Some(parallelism) = parallelism {
        body["parallelism"] = json!(parallelism);
    }
    let id = api.create("/workflow/", &body, "workflowID").await?;
    workflows.push(id);
    Ok(id)
}
