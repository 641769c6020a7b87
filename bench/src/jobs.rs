//! `crust-bench jobs`: the job pipeline of a running api and scheduler,
//! with workers the bench starts itself, against the same row work done
//! straight in Postgres in the same run (the physical limit on this
//! machine).
//!
//! Phases: end-to-end throughput; create→start latency at half that rate;
//! delayed-start lateness; cancel latency; worker memory idle and busy;
//! recovery after a worker is killed; the Postgres baseline. Every latency
//! taken from job rows uses only the database's clock.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use chrono::{DateTime, SecondsFormat, Utc};
use crust_model::auth::TokenKey;
use crust_model::Id;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::process::{Child, Command};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::api::Api;
use crate::stats::{ms, percentile, run_load, Phase, Summary, Table};

/// One request in flight, as the load driver runs it.
type Op<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;

/// The user the bench token speaks for.
const BENCH_USER: Id = Id(1);
/// Lifetime of the bench token.
const TOKEN_TTL_SECONDS: i64 = 3600;
/// How many failure messages to print per phase.
const SHOWN_ERRORS: usize = 3;
/// How often job rows are polled.
const DB_POLL: Duration = Duration::from_millis(10);
/// How often a cancelled job is read back through the API.
const CANCEL_POLL: Duration = Duration::from_millis(2);
/// Longest wait for one cancelled job to show `cancelled`.
const CANCEL_LIMIT: Duration = Duration::from_secs(10);
/// Delayed jobs start this long after they are created...
const DELAY_LEAD: Duration = Duration::from_secs(3);
/// ...spread evenly over this window.
const DELAY_SPREAD: Duration = Duration::from_secs(10);
/// The cancel phase's jobs sleep this long (they are cancelled long before).
const CANCEL_SLEEP_SECONDS: u32 = 60;
/// The recovery job sleeps this long.
const RECOVERY_SLEEP_SECONDS: u32 = 2;
/// Jobs the cancel phase runs on each worker by default.
const CANCEL_JOBS_PER_WORKER: u32 = 32;
/// Warm-up jobs per round, until every worker has run one.
const WARMUP_JOBS: usize = 64;
/// Pause before the idle memory reading.
const IDLE_SETTLE: Duration = Duration::from_secs(1);
/// How long, and how often, memory is sampled while the workers are busy.
const RSS_WINDOW: Duration = Duration::from_secs(1);
const RSS_EVERY: Duration = Duration::from_millis(50);
/// Log rows the baseline writes per job.
const BASELINE_LOG_ROWS: i32 = 3;

/// Targets.
const TARGET_SHARE: f64 = 1.00;
const MILESTONE_SHARE: f64 = 0.50;
const TARGET_START_P50: Duration = Duration::from_millis(5);
const TARGET_START_P99: Duration = Duration::from_millis(25);
const TARGET_LATE_P50: Duration = Duration::from_millis(3);
const TARGET_LATE_P99: Duration = Duration::from_millis(10);
const TARGET_CANCEL_P99: Duration = Duration::from_millis(200);
const TARGET_RSS_IDLE_MIB: f64 = 20.0;
const TARGET_RSS_BUSY_MIB: f64 = 100.0;
const TARGET_RECOVERY: Duration = Duration::from_secs(10);

/// Options of `crust-bench jobs`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the running API.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    api: String,

    /// The system's Postgres: job rows are read from it, the baseline
    /// writes to it, and the workers are given it.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/crust"
    )]
    database_url: String,

    /// The API's HS256 secret, to mint a bearer token.
    #[arg(long, env = "CRUST_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,

    /// RabbitMQ, for the workers the bench starts.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    amqp_url: String,

    /// Queue prefix of the running api and scheduler.
    #[arg(long, env = "CRUST_QUEUE_PREFIX", default_value = "crust")]
    queue_prefix: String,

    /// The `crust-worker` binary to start.
    #[arg(long, default_value = "target/release/crust-worker")]
    worker_bin: PathBuf,

    /// Worker processes to start (recovery needs at least 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    workers: u32,

    /// Jobs each worker runs at once (CRUST_WORKER_CONCURRENCY).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1000))]
    concurrency: u16,

    /// Worker lease in milliseconds (CRUST_WORKER_LEASE_MS).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1_000..=600_000))]
    lease_ms: u64,

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

    /// Longest wait, in seconds, for any one thing the bench waits on.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    deadline: u64,
}

/// Sizes and settings every phase reads.
struct Plan {
    workers: usize,
    concurrency: usize,
    clients: usize,
    jobs: usize,
    latency_jobs: usize,
    delayed: usize,
    cancel_jobs: usize,
    limit: Duration,
    lease: Duration,
    /// Unique per run: names the workflows and the workers.
    tag: String,
    queue_prefix: String,
}

/// Runs the bench. The workers are killed and the bench's jobs and
/// workflows removed afterwards whether or not the measurement succeeded.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let workers = usize::try_from(args.workers).context("--workers does not fit in usize")?;
    let concurrency = usize::from(args.concurrency);
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
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
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
        lease: Duration::from_millis(args.lease_ms),
        tag: format!("{}", now.as_secs()),
        queue_prefix: args.queue_prefix.clone(),
    };

    let key = TokenKey::new(&args.jwt_secret)
        .map_err(anyhow::Error::msg)
        .context("--jwt-secret / CRUST_JWT_SECRET")?;
    let now_secs = i64::try_from(now.as_secs()).context("the system clock is out of range")?;
    let token = key.sign(BENCH_USER, now_secs, TOKEN_TTL_SECONDS);
    let api = Api {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(plan.clients)
            .timeout(Duration::from_secs(30))
            .build()
            .context("cannot build the HTTP client")?,
        base: args.api.trim_end_matches('/').to_owned(),
        auth: format!("Bearer {token}"),
    };
    // A few connections to watch job rows; the baseline gets its own pool.
    let db = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(30))
        .connect(&args.database_url)
        .await
        .with_context(|| {
            format!(
                "cannot connect to Postgres at {}",
                redact(&args.database_url)
            )
        })?;

    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    println!(
        "machine: nproc {cores}; workers W {} (concurrency {}, lease {} ms); clients C {}; jobs N {}; \
         latency jobs {}; delayed {}; cancel jobs {}",
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
        let mut workers = Workers::spawn(&args, &plan).await?;
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
    warm_up(plan, api, db, workers, warm).await?;
    tokio::time::sleep(IDLE_SETTLE).await;
    workers.check_alive()?;
    let idle_rss = workers.rss();

    let throughput_wf = new_workflow(api, plan, workflows, "throughput", &log_tasks).await?;
    let e2e = throughput(plan, api, db, throughput_wf).await?;

    let latency_wf = new_workflow(api, plan, workflows, "latency", &log_tasks).await?;
    start_latency(plan, api, db, latency_wf, e2e.rate, goals).await?;

    let delayed_wf = new_workflow(api, plan, workflows, "delayed", &log_tasks).await?;
    delayed_start(plan, api, db, delayed_wf, goals).await?;

    let cancel_wf = new_workflow(
        api,
        plan,
        workflows,
        "cancel",
        &sleep_tasks(CANCEL_SLEEP_SECONDS),
    )
    .await?;
    cancel_and_memory(plan, api, db, workers, cancel_wf, &idle_rss, goals).await?;

    if plan.workers >= 2 {
        let recovery_wf = new_workflow(
            api,
            plan,
            workflows,
            "recovery",
            &sleep_tasks(RECOVERY_SLEEP_SECONDS),
        )
        .await?;
        recovery(plan, api, db, workers, recovery_wf, goals).await?;
    } else {
        println!();
        println!("recovery: skipped (needs --workers 2 or more)");
    }

    // The baseline needs no workers: stop them, so their CPU and their
    // Postgres connections are free for it.
    workers.stop_all().await;
    baseline(plan, db, &args.database_url, throughput_wf, &e2e, goals).await
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

/// The end-to-end result of phase 1.
struct EndToEnd {
    jobs: usize,
    rate: f64,
}

/// Phase 1: N jobs from C clients, from just before the first create to
/// the last job ok.
async fn throughput(
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
    table.row([
        "create (POST /job/)".to_owned(),
        create_summary.requests.to_string(),
        String::new(),
        format!("{:.0}", create_summary.per_second),
        ms(create_summary.p50),
        ms(create_summary.p99),
        ms(create_summary.max),
        create_summary.errors.to_string(),
    ]);
    table.row([
        "end to end (first create → last ok)".to_owned(),
        batch.count.to_string(),
        format!("{:.0}", e2e_rate),
    ]);
    println!();
    print!("{}", table.render());
    println!(
        "end to end: {:.3} s on the database clock from just before the first create to the last finished_at",
        e2e_seconds
    );
    Ok(EndToEnd {
        jobs: batch.count,
        rate: e2e_rate,
    })
}

/// Phase 2: jobs at half the end-to-end rate; created_at → started_at.
async fn start_latency(
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
    table.row([
        "create request (POST /job/)".to_owned(),
        paced_summary.requests.to_string(),
        format!("{sent_rate:.0}"),
        ms(paced_summary.p50),
        ms(paced_summary.p99),
        ms(paced_summary.max),
        paced_summary.errors.to_string(),
    ]);
    table.row([
        "created_at → started_at".to_owned(),
        start.count.to_string(),
        String::new(),
        ms(start.p50),
        ms(start.p99),
        ms(start.max),
    ]);
    println!();
    print!("{}", table.render());
    goals.add(
        "create→start p50",
        format!("≤ {} ms", TARGET_START_P50.as_millis()),
        format!("{} ms", ms(start.p50)),
        start.p50 <= TARGET_START_P50,
    );
    goals.add(
        "create→start p99",
        format!("≤ {} ms", TARGET_START_P99.as_millis()),
        format!("{} ms", ms(start.p99)),
        start.p99 <= TARGET_START_P99,
    );

    Ok(())
}

/// Phase 3: delayed jobs; start_at → started_at, and early starts.
async fn delayed_start(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    delayed_wf: Id,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    let first_start = Utc::now() + to_chrono(DELAY_LEAD)?;
    let step = to_chrono(DELAY_SPREAD)? / i32::try_from(plan.delayed).unwrap_or(i32::MAX);
    eprintln!(
        "phase 3: {} delayed jobs, startAt spread over {} s from {}",
        plan.delayed,
        DELAY_SPREAD.as_secs(),
        first_start.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    let mut create = run_load(
        plan.clients,
        plan.delayed,
        api_create_job(api, delayed_wf, Some((first_start, step))),
    )
    .await?;
    show_errors("delayed create (API)", &create);
    let created_by = Utc::now();
    if created_by > first_start {
        eprintln!(
            "warning: creating the delayed jobs took longer than {} s; the first ones were created after their startAt",
            DELAY_LEAD.as_secs()
        );
    }
    let batch = Batch::of(delayed_wf, &create.values)
        .context("every job create of the delayed phase failed")?;
    wait_ok(
        db,
        &batch,
        plan.limit + DELAY_LEAD + DELAY_SPREAD,
        "delayed start",
    )
    .await?;
    let late = job_spans(db, &batch, "started_at - start_at").await?;
    let lateness = Spread::of(&late);
    let delayed_summary = Summary::of(&mut create);
    let mut table = Table::new([
        "delayed start",
        "jobs",
        "p50 ms",
        "p99 ms",
        "max ms",
        "started early",
        "errors",
    ]);
    table.row([
        "start_at → started_at".to_owned(),
        lateness.count.to_string(),
        ms(lateness.p50),
        ms(lateness.p99),
        ms(lateness.max),
        if lateness.early == 0 {
            "0".to_owned()
        } else {
            format!(
                "{} (up to {} ms early)",
                lateness.early,
                ms(lateness.most_early)
            )
        },
        delayed_summary.errors.to_string(),
    ]);
    println!();
    print!("{}", table.render());
    goals.add(
        "lateness p50",
        format!("≤ {} ms", TARGET_LATE_P50.as_millis()),
        format!("{} ms", ms(lateness.p50)),
        lateness.p50 <= TARGET_LATE_P50,
    );
    goals.add(
        "lateness p99",
        format!("≤ {} ms", TARGET_LATE_P99.as_millis()),
        format!("{} ms", ms(lateness.p99)),
        lateness.p99 <= TARGET_LATE_P99,
    );
    goals.add(
        "delayed jobs started early",
        "0".to_owned(),
        lateness.early.to_string(),
        lateness.early == 0,
    );

    Ok(())
}

/// Phases 4 and 5: sleeping jobs on every worker; their memory while they
/// run, then each cancelled in turn.
async fn cancel_and_memory(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    workers: &mut Workers,
    cancel_wf: Id,
    idle_rss: &[Option<f64>],
    goals: &mut Goals,
) -> anyhow::Result<()> {
    eprintln!(
        "phase 4: {} sleeping jobs, then cancel each and read it back every {} ms",
        plan.cancel_jobs,
        CANCEL_POLL.as_millis()
    );
    let create = run_load(
        plan.clients.min(plan.cancel_jobs),
        plan.cancel_jobs,
        api_create_job(api, cancel_wf, None),
    )
    .await?;
    show_errors("sleeping create (API)", &create);
    if create.errors > 0 {
        bail!(
            "{} of {} sleeping jobs could not be created",
            create.errors,
            plan.cancel_jobs
        );
    }
    let batch = Batch::of(cancel_wf, &create.values).context("no sleeping job was created")?;
    wait_running(db, &batch, plan.limit).await?;
    workers.check_alive()?;
    let busy_rss = workers.sample_rss(RSS_WINDOW).await;
    let held = held_by_worker(db, &batch).await?;
    let held_by = |name: &str| {
        held.iter()
            .find(|(holder, _)| holder == name)
            .map_or(0, |(_, count)| *count)
    };
    let mut ids = create.values.clone();
    ids.sort_unstable();
    let mut cancels = cancel_each(api, &ids).await;
    show_errors("cancel (API)", &cancels);
    let cancel = Summary::of(&mut cancels);
    let mut table = Table::new(["cancel", "jobs", "p50 ms", "p99 ms", "max ms", "errors"]);
    table.row([
        "DELETE sent → GET shows cancelled".to_owned(),
        cancel.requests.to_string(),
        ms(cancel.p50),
        ms(cancel.p99),
        ms(cancel.max),
        cancel.errors.to_string(),
    ]);
    println!();
    print!("{}", table.render());
    goals.add(
        "cancel p99",
        format!("≤ {} ms", TARGET_CANCEL_P99.as_millis()),
        format!("{} ms", ms(cancel.p99)),
        cancel.p99 <= TARGET_CANCEL_P99 && cancel.errors == 0,
    );

    let mut table = Table::new([
        "worker",
        "pid",
        "idle MiB",
        "busy MiB",
        "jobs held when busy",
    ]);
    for (index, worker) in workers.list.iter().enumerate() {
        table.row([
            worker.name.clone(),
            worker.pid.to_string(),
            mib(idle_rss[index]),
            mib(busy_rss[index]),
            held_by(&worker.name).to_string(),
        ]);
    }
    println!();
    print!("{}", table.render());
    let idle_max = max_mib(idle_rss);
    let busy_max = max_mib(&busy_rss);
    let fewest_held = workers
        .list
        .iter()
        .map(|worker| held_by(&worker.name))
        .min()
        .unwrap_or(0);
    println!(
        "busy = the highest VmRSS sampled every {} ms for {} s while all {} sleeping jobs ran",
        RSS_EVERY.as_millis(),
        RSS_WINDOW.as_secs(),
        plan.cancel_jobs
    );
    goals.add(
        "worker RSS idle (max)",
        format!("≤ {TARGET_RSS_IDLE_MIB:.0} MiB"),
        idle_max.map_or("n/a".to_owned(), |v| format!("{v:.1} MiB")),
        idle_max.is_some_and(|v| v <= TARGET_RSS_IDLE_MIB),
    );
    goals.add(
        "worker RSS busy (max)",
        format!("≤ {TARGET_RSS_BUSY_MIB:.0} MiB, {CANCEL_JOBS_PER_WORKER} jobs each"),
        busy_max.map_or("n/a".to_owned(), |v| {
            format!("{v:.1} MiB, ≥ {fewest_held} jobs each")
        }),
        busy_max.is_some_and(|v| v <= TARGET_RSS_BUSY_MIB)
            && fewest_held >= CANCEL_JOBS_PER_WORKER as usize,
    );

    Ok(())
}

/// Phase 6: SIGKILL the worker running a job; time the job's second run.
async fn recovery(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    workers: &mut Workers,
    recovery_wf: Id,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    eprintln!("phase 6: one {RECOVERY_SLEEP_SECONDS} s job; SIGKILL its worker once it runs");
    let recovery = recover(plan, api, db, workers, recovery_wf).await?;
    let mut table = Table::new(["recovery", "seconds"]);
    table.row([
        "kill → running again (attempt 2)".to_owned(),
        format!("{:.3}", recovery.running.as_secs_f64()),
    ]);
    table.row([
        "kill → ok".to_owned(),
        format!("{:.3}", recovery.ok.as_secs_f64()),
    ]);
    println!();
    print!("{}", table.render());
    println!(
        "killed {} holding job {}; the lease is {} ms",
        recovery.killed,
        recovery.job,
        plan.lease.as_millis()
    );
    goals.add(
        "recovery (kill → running again)",
        format!("< {} s", TARGET_RECOVERY.as_secs()),
        format!("{:.2} s", recovery.running.as_secs_f64()),
        recovery.running < TARGET_RECOVERY,
    );
    Ok(())
}

/// Phase 7: the same row work per job straight in Postgres, C connections,
/// one statement per round trip.
async fn baseline(
    plan: &Plan,
    db: &PgPool,
    database_url: &str,
    throughput_wf: Id,
    e2e: &EndToEnd,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    eprintln!(
        "phase 7: {} jobs' row work straight in Postgres, {} connections, one statement per round trip",
        plan.jobs, plan.clients
    );
    let pool = PgPoolOptions::new()
        .max_connections(u32::try_from(plan.clients).unwrap_or(u32::MAX))
        .acquire_timeout(Duration::from_secs(30))
        .connect_lazy(database_url)
        .context("cannot build the baseline pool")?;
    let baseline = async {
        // Open every pooled connection before anything is timed.
        let mut held = Vec::with_capacity(plan.clients);
        for _ in 0..plan.clients {
            match pool.acquire().await {
                Ok(connection) => held.push(connection),
                Err(err) => {
                    let (max, used) = connection_use(db).await.unwrap_or((0, 0));
                    bail!(
                        "cannot open the baseline's {} Postgres connections ({} open): {err}; \
                         the server allows {max} and {used} are in use",
                        plan.clients,
                        held.len()
                    );
                }
            }
        }
        drop(held);
        let mut phase = run_load(
            plan.clients,
            plan.jobs,
            pg_job(&pool, throughput_wf, plan.lease),
        )
        .await?;
        show_errors("row work (Postgres)", &phase);
        anyhow::Ok(Summary::of(&mut phase))
    }
    .await;
    pool.close().await;
    let baseline = baseline?;
    let share = if baseline.per_second > 0.0 {
        e2e.rate / baseline.per_second
    } else {
        0.0
    };
    let mut table = Table::new([
        "physical limit",
        "jobs",
        "jobs/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "e2e÷pg",
    ]);
    table.row([
        "end to end (Crust)".to_owned(),
        e2e.jobs.to_string(),
        format!("{:.0}", e2e.rate),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format!("{:.1}%", 100.0 * share),
    ]);
    table.row([
        "postgres row work, unbatched".to_owned(),
        baseline.requests.to_string(),
        format!("{:.0}", baseline.per_second),
        ms(baseline.p50),
        ms(baseline.p99),
        ms(baseline.max),
        baseline.errors.to_string(),
    ]);
    println!();
    print!("{}", table.render());
    println!(
        "row work per job: INSERT job RETURNING id; UPDATE to running; {BASELINE_LOG_ROWS} × INSERT job_logs; UPDATE to ok (6 round trips, autocommit)"
    );
    goals.add(
        "end to end ÷ postgres (milestone)",
        format!("≥ {:.0}%", 100.0 * MILESTONE_SHARE),
        format!("{:.1}%", 100.0 * share),
        share >= MILESTONE_SHARE,
    );
    goals.add(
        "end to end ÷ postgres",
        format!("≥ {:.0}%", 100.0 * TARGET_SHARE),
        format!("{:.1}%", 100.0 * share),
        share >= TARGET_SHARE,
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// The API

impl Api {
    async fn create_workflow(&self, name: &str, tasks: &Value) -> anyhow::Result<Id> {
        let body = json!({"name": name, "tasks": tasks, "timeout": 0});
        let url = format!("{}/workflow/", self.base);
        let answer = self
            .call(self.http.post(&url).json(&body), StatusCode::CREATED)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("POST {url}"))?;
        response_id(&answer, "workflowID")
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("POST {url}"))
    }

    /// `POST /job/`, expecting 201; yields the new job's ID.
    async fn create_job(&self, workflow_id: Id, start_at: Option<String>) -> Result<Id, String> {
        let mut body = json!({"workflowID": workflow_id.to_string()});
        if let Some(at) = start_at {
            body["startAt"] = Value::String(at);
        }
        let answer = self
            .call(
                self.http.post(format!("{}/job/", self.base)).json(&body),
                StatusCode::CREATED,
            )
            .await?;
        response_id(&answer, "jobID")
    }

    /// `DELETE /job/{id}`, expecting 200.
    async fn cancel_job(&self, id: Id) -> Result<(), String> {
        self.call(
            self.http.delete(format!("{}/job/{id}", self.base)),
            StatusCode::OK,
        )
        .await
        .map(drop)
    }

    /// The status `GET /job/{id}` shows.
    async fn job_status(&self, id: Id) -> Result<String, String> {
        let answer = self
            .call(
                self.http.get(format!("{}/job/{id}", self.base)),
                StatusCode::OK,
            )
            .await?;
        answer
            .pointer("/response/status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "answer has no response.status string".to_owned())
    }
}

/// `response.<field>` of an API answer, as an ID.
fn response_id(answer: &Value, field: &str) -> Result<Id, String> {
    let text = answer
        .pointer(&format!("/response/{field}"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("answer has no response.{field} string"))?;
    Id::parse(text)
}

/// Job creates for the load driver; with `starts`, job `i` starts at
/// `first + i × step` (RFC 3339 with milliseconds).
fn api_create_job(
    api: &Api,
    workflow_id: Id,
    starts: Option<(DateTime<Utc>, chrono::Duration)>,
) -> impl Fn(usize) -> Op<Id> + Clone + Send + 'static {
    let api = api.clone();
    move |index| {
        let api = api.clone();
        let start_at = starts.map(|(first, step)| {
            let at = first + step * i32::try_from(index).unwrap_or(i32::MAX);
            at.to_rfc3339_opts(SecondsFormat::Millis, true)
        });
        Box::pin(async move { api.create_job(workflow_id, start_at).await })
    }
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
    let mut phase = Phase {
        latencies: Vec::with_capacity(count),
        values: Vec::with_capacity(count),
        errors: 0,
        error_samples: Vec::new(),
        elapsed: Duration::ZERO,
    };
    while let Some(done) = tasks.join_next().await {
        let (latency, result) = done.context("a paced create task panicked")?;
        phase.latencies.push(latency);
        match result {
            Ok(id) => phase.values.push(id),
            Err(message) => {
                phase.errors += 1;
                if phase.error_samples.len() < SHOWN_ERRORS {
                    phase.error_samples.push(message);
                }
            }
        }
    }
    phase.elapsed = started.elapsed();
    let sent_rate = if sending > 0.0 {
        (count.saturating_sub(1)) as f64 / sending
    } else {
        rate
    };
    Ok((phase, sent_rate))
}

/// Cancels each job in turn and times it from just before the DELETE until
/// `GET /job/{id}` shows `cancelled`.
async fn cancel_each(api: &Api, ids: &[Id]) -> Phase<()> {
    let started = Instant::now();
    let mut phase = Phase {
        latencies: Vec::with_capacity(ids.len()),
        values: Vec::with_capacity(ids.len()),
        errors: 0,
        error_samples: Vec::new(),
        elapsed: Duration::ZERO,
    };
    for &id in ids {
        let sent = Instant::now();
        let result = async {
            api.cancel_job(id).await?;
            loop {
                let status = api.job_status(id).await?;
                match status.as_str() {
                    "cancelled" => return Ok(()),
                    "queued" | "running" => {}
                    other => return Err(format!("job {id} ended {other}, not cancelled")),
                }
                if sent.elapsed() >= CANCEL_LIMIT {
                    return Err(format!(
                        "job {id} still {status} {} s after DELETE",
                        CANCEL_LIMIT.as_secs()
                    ));
                }
                tokio::time::sleep(CANCEL_POLL).await;
            }
        }
        .await;
        phase.latencies.push(sent.elapsed());
        match result {
            Ok(()) => phase.values.push(()),
            Err(message) => {
                phase.errors += 1;
                if phase.error_samples.len() < SHOWN_ERRORS {
                    phase.error_samples.push(message);
                }
            }
        }
    }
    phase.elapsed = started.elapsed();
    phase
}

/// Prints how many requests of a phase failed and the first few messages.
fn show_errors<T>(what: &str, phase: &Phase<T>) {
    if phase.errors == 0 {
        return;
    }
    eprintln!(
        "{what}: {} of {} requests failed; first ones:",
        phase.errors,
        phase.latencies.len()
    );
    for message in phase.error_samples.iter().take(SHOWN_ERRORS) {
        eprintln!("  {message}");
    }
}

// ---------------------------------------------------------------------------
// Job rows

/// The jobs one phase created: one workflow, an ID range.
#[derive(Debug, Clone, Copy)]
struct Batch {
    workflow_id: Id,
    first: Id,
    last: Id,
    count: usize,
}

impl Batch {
    fn of(workflow_id: Id, ids: &[Id]) -> Option<Batch> {
        Some(Batch {
            workflow_id,
            first: *ids.iter().min()?,
            last: *ids.iter().max()?,
            count: ids.len(),
        })
    }
}

/// Where one poll of a wait stands.
enum Check<T> {
    Done(T),
    /// Not yet; how things stand, for the timeout message.
    Waiting(String),
}

/// Calls `check` every `every` until it is done; fails after `limit`.
async fn poll_until<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Check<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        let state = match check().await? {
            Check::Done(value) => return Ok(value),
            Check::Waiting(state) => state,
        };
        if Instant::now() >= deadline {
            bail!(
                "{what}: not done after {} s ({state})",
                limit.as_secs_f64().round()
            );
        }
        tokio::time::sleep(every).await;
    }
}

/// Job counts of a batch by status, and the last `finished_at` of the ok ones.
type Counts = (i64, i64, i64, i64, Option<DateTime<Utc>>);

async fn counts(db: &PgPool, batch: &Batch) -> anyhow::Result<Counts> {
    sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 'queued'),
                count(*) FILTER (WHERE status = 'running'),
                count(*) FILTER (WHERE status = 'ok'),
                count(*) FILTER (WHERE status IN ('error', 'cancelled')),
                max(finished_at) FILTER (WHERE status = 'ok')
         FROM jobs WHERE workflow_id = $1 AND id BETWEEN $2 AND $3",
    )
    .bind(batch.workflow_id)
    .bind(batch.first)
    .bind(batch.last)
    .fetch_one(db)
    .await
    .context("cannot read the bench's job rows")
}

/// Fails with the first job of the batch that ended badly.
async fn fail_with_first_bad(db: &PgPool, batch: &Batch, what: &str) -> anyhow::Result<()> {
    let bad: Option<(Id, String, Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT id, status, error, worker FROM jobs
         WHERE workflow_id = $1 AND id BETWEEN $2 AND $3 AND status IN ('error', 'cancelled')
         ORDER BY id LIMIT 1",
    )
    .bind(batch.workflow_id)
    .bind(batch.first)
    .bind(batch.last)
    .fetch_optional(db)
    .await?;
    match bad {
        Some((id, status, error, worker)) => bail!(
            "{what}: job {id} ended {status} (error: {}, worker: {})",
            error.as_deref().unwrap_or("none"),
            worker.as_deref().unwrap_or("none")
        ),
        None => Ok(()),
    }
}

/// Waits until every job of the batch is ok; returns the last `finished_at`.
async fn wait_ok(
    db: &PgPool,
    batch: &Batch,
    limit: Duration,
    what: &str,
) -> anyhow::Result<DateTime<Utc>> {
    let what = format!(
        "waiting for the {what} jobs of workflow {} to finish",
        batch.workflow_id
    );
    let what = what.as_str();
    poll_until(what, limit, DB_POLL, || async move {
        let (queued, running, ok, bad, last) = counts(db, batch).await?;
        if bad > 0 {
            fail_with_first_bad(db, batch, what).await?;
        }
        match last {
            Some(last) if ok as usize >= batch.count => Ok(Check::Done(last)),
            _ => Ok(Check::Waiting(format!(
                "{ok} of {} ok, {running} running, {queued} queued",
                batch.count
            ))),
        }
    })
    .await
}

/// Waits until every job of the batch is running.
async fn wait_running(db: &PgPool, batch: &Batch, limit: Duration) -> anyhow::Result<()> {
    let what = format!(
        "waiting for the {} sleeping jobs of workflow {} to run",
        batch.count, batch.workflow_id
    );
    let what = what.as_str();
    poll_until(what, limit, DB_POLL, || async move {
        let (queued, running, ok, bad, _) = counts(db, batch).await?;
        if bad > 0 || ok > 0 {
            fail_with_first_bad(db, batch, what).await?;
            bail!("{what}: {ok} of them already ended ok");
        }
        if running as usize >= batch.count {
            Ok(Check::Done(()))
        } else {
            Ok(Check::Waiting(format!(
                "{running} running, {queued} queued"
            )))
        }
    })
    .await
}

/// One interval per job of the batch, in seconds, from the job rows:
/// `span` is `later - earlier` over two timestamp columns.
async fn job_spans(db: &PgPool, batch: &Batch, span: &str) -> anyhow::Result<Vec<f64>> {
    sqlx::query_scalar(&format!(
        "SELECT extract(epoch from ({span}))::float8 FROM jobs
         WHERE workflow_id = $1 AND id BETWEEN $2 AND $3"
    ))
    .bind(batch.workflow_id)
    .bind(batch.first)
    .bind(batch.last)
    .fetch_all(db)
    .await
    .with_context(|| format!("cannot read {span} of the bench's jobs"))
}

/// How many running jobs of the batch each worker holds.
async fn held_by_worker(db: &PgPool, batch: &Batch) -> anyhow::Result<Vec<(String, usize)>> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT worker, count(*) FROM jobs
         WHERE workflow_id = $1 AND id BETWEEN $2 AND $3 AND status = 'running'
         GROUP BY worker",
    )
    .bind(batch.workflow_id)
    .bind(batch.first)
    .bind(batch.last)
    .fetch_all(db)
    .await
    .context("cannot read which worker holds which job")?;
    Ok(rows
        .into_iter()
        .map(|(worker, count)| {
            (
                worker.unwrap_or_default(),
                usize::try_from(count).unwrap_or(0),
            )
        })
        .collect())
}

/// Postgres's `max_connections` and how many connections are open now.
async fn connection_use(db: &PgPool) -> anyhow::Result<(i64, i64)> {
    sqlx::query_as(
        "SELECT current_setting('max_connections')::int8, (SELECT count(*) FROM pg_stat_activity)",
    )
    .fetch_one(db)
    .await
    .context("cannot read Postgres's connection count")
}

/// The database's clock.
async fn db_now(db: &PgPool) -> anyhow::Result<DateTime<Utc>> {
    sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(db)
        .await
        .context("cannot read the database clock")
}

fn seconds_between(later: DateTime<Utc>, earlier: DateTime<Utc>) -> f64 {
    (later - earlier)
        .num_microseconds()
        .map_or(f64::MAX, |micros| micros as f64 / 1e6)
}

fn to_chrono(duration: Duration) -> anyhow::Result<chrono::Duration> {
    chrono::Duration::from_std(duration).context("duration out of range")
}

/// Percentiles of intervals given in seconds; negative ones (an early
/// start) count as zero in the percentiles and are counted apart.
struct Spread {
    count: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
    early: usize,
    most_early: Duration,
}

impl Spread {
    fn of(seconds: &[f64]) -> Spread {
        let mut sorted: Vec<Duration> = seconds
            .iter()
            .map(|&s| Duration::from_secs_f64(s.max(0.0)))
            .collect();
        sorted.sort_unstable();
        let most_early = seconds.iter().copied().fold(0.0_f64, f64::min);
        Spread {
            count: sorted.len(),
            p50: percentile(&sorted, 50.0),
            p99: percentile(&sorted, 99.0),
            max: sorted.last().copied().unwrap_or_default(),
            early: seconds.iter().filter(|&&s| s < 0.0).count(),
            most_early: Duration::from_secs_f64((-most_early).max(0.0)),
        }
    }
}

/// The row work of one job, straight in Postgres, one autocommit
/// statement per round trip.
fn pg_job(
    pool: &PgPool,
    workflow_id: Id,
    lease: Duration,
) -> impl Fn(usize) -> Op<()> + Clone + Send + 'static {
    let pool = pool.clone();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    move |_| {
        let pool = pool.clone();
        Box::pin(async move {
            let fail = |step: &str, err: sqlx::Error| format!("{step} failed: {err}");
            // Marked published, so the scheduler never picks these rows up.
            let id: Id = sqlx::query_scalar(
                "INSERT INTO jobs (workflow_id, published_at) VALUES ($1, now()) RETURNING id",
            )
            .bind(workflow_id)
            .fetch_one(&pool)
            .await
            .map_err(|err| fail("INSERT job", err))?;
            sqlx::query(
                "UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = now(),
                        lease_until = now() + $2 * interval '1 millisecond', worker = 'bench-pg'
                 WHERE id = $1",
            )
            .bind(id)
            .bind(lease_ms)
            .execute(&pool)
            .await
            .map_err(|err| fail("UPDATE to running", err))?;
            for seq in 1..=BASELINE_LOG_ROWS {
                sqlx::query(
                    "INSERT INTO job_logs (job_id, seq, ts, level, task, message, attempt)
                     VALUES ($1, $2, now(), 'info', 'say', 'bench', 1)",
                )
                .bind(id)
                .bind(seq)
                .execute(&pool)
                .await
                .map_err(|err| fail("INSERT job_logs", err))?;
            }
            sqlx::query(
                "UPDATE jobs SET status = 'ok', finished_at = now(), lease_until = NULL
                 WHERE id = $1",
            )
            .bind(id)
            .execute(&pool)
            .await
            .map_err(|err| fail("UPDATE to ok", err))?;
            Ok(())
        })
    }
}

// ---------------------------------------------------------------------------
// Workers

/// One worker process the bench started.
struct Worker {
    name: String,
    pid: u32,
    log: PathBuf,
    child: Child,
    killed: bool,
}

/// The bench's workers; dropping them kills them.
struct Workers {
    list: Vec<Worker>,
}

impl Workers {
    /// Starts the workers, each with its own name and a log file.
    async fn spawn(args: &Args, plan: &Plan) -> anyhow::Result<Workers> {
        if !args.worker_bin.is_file() {
            bail!(
                "--worker-bin {} is not a file (build it with cargo build --release -p crust-worker)",
                args.worker_bin.display()
            );
        }
        let mut list = Vec::with_capacity(plan.workers);
        for index in 1..=plan.workers {
            let name = format!("bench-jobs-{}-w{index}", plan.tag);
            let log = std::env::temp_dir().join(format!("{name}.log"));
            let out = std::fs::File::create(&log)
                .with_context(|| format!("cannot create {}", log.display()))?;
            let err = out.try_clone()?;
            let child = Command::new(&args.worker_bin)
                .env("DATABASE_URL", &args.database_url)
                .env("AMQP_URL", &args.amqp_url)
                .env("CRUST_QUEUE_PREFIX", &args.queue_prefix)
                .env("CRUST_HTTP_ADDR", "127.0.0.1:0")
                .env("CRUST_WORKER_CONCURRENCY", plan.concurrency.to_string())
                .env("CRUST_WORKER_LEASE_MS", plan.lease.as_millis().to_string())
                .env("CRUST_WORKER_NAME", &name)
                .env("RUST_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {}", args.worker_bin.display()))?;
            let pid = child.id().context("a worker exited at once")?;
            list.push(Worker {
                name,
                pid,
                log,
                child,
                killed: false,
            });
        }
        let workers = Workers { list };
        eprintln!(
            "started {} workers; their output goes to {}",
            workers.list.len(),
            workers
                .list
                .iter()
                .map(|worker| worker.log.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(workers)
    }

    /// Fails if a worker the bench did not kill has exited.
    fn check_alive(&mut self) -> anyhow::Result<()> {
        for worker in &mut self.list {
            if worker.killed {
                continue;
            }
            if let Some(status) = worker.child.try_wait()? {
                bail!(
                    "worker {} exited unexpectedly ({status}); see {}",
                    worker.name,
                    worker.log.display()
                );
            }
        }
        Ok(())
    }

    /// VmRSS of each worker now, in MiB.
    fn rss(&self) -> Vec<Option<f64>> {
        self.list
            .iter()
            .map(|worker| (!worker.killed).then(|| rss_mib(worker.pid)).flatten())
            .collect()
    }

    /// The highest VmRSS of each worker sampled over `window`.
    async fn sample_rss(&self, window: Duration) -> Vec<Option<f64>> {
        let end = Instant::now() + window;
        let mut highest = self.rss();
        while Instant::now() < end {
            tokio::time::sleep(RSS_EVERY).await;
            for (slot, now) in highest.iter_mut().zip(self.rss()) {
                *slot = match (*slot, now) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        highest
    }

    /// SIGKILLs one worker and reaps it.
    async fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let worker = &mut self.list[index];
        worker.killed = true;
        worker
            .child
            .kill()
            .await
            .with_context(|| format!("cannot kill worker {}", worker.name))
    }

    /// Kills every worker still running.
    async fn stop_all(&mut self) {
        for worker in &mut self.list {
            if !worker.killed {
                worker.killed = true;
                if let Err(err) = worker.child.kill().await {
                    eprintln!("cannot kill worker {}: {err}", worker.name);
                }
            }
        }
    }
}

/// A process's resident memory from `/proc/<pid>/status`, in MiB.
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<f64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: f64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn mib(value: Option<f64>) -> String {
    value.map_or("n/a".to_owned(), |v| format!("{v:.1}"))
}

fn max_mib(values: &[Option<f64>]) -> Option<f64> {
    values.iter().flatten().copied().reduce(f64::max)
}

/// Runs rounds of short jobs until every worker has run one; warns about
/// workers the bench did not start that take jobs from the same queue.
async fn warm_up(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    workers: &mut Workers,
    workflow_id: Id,
) -> anyhow::Result<()> {
    eprintln!(
        "warming up until each of the {} workers has run a job",
        plan.workers
    );
    let deadline = Instant::now() + plan.limit;
    loop {
        workers.check_alive()?;
        let created = run_load(
            plan.clients,
            WARMUP_JOBS,
            api_create_job(api, workflow_id, None),
        )
        .await?;
        show_errors("warm-up create (API)", &created);
        let batch = Batch::of(workflow_id, &created.values).with_context(|| {
            format!(
                "every warm-up job create failed: {}",
                created.error_samples.first().map_or("", String::as_str)
            )
        })?;
        wait_ok(db, &batch, plan.limit, "warm-up").await?;
        let seen: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT worker FROM jobs WHERE workflow_id = $1 AND worker IS NOT NULL",
        )
        .bind(workflow_id)
        .fetch_all(db)
        .await
        .context("cannot read which workers ran the warm-up jobs")?;
        let strangers: Vec<&String> = seen
            .iter()
            .filter(|name| !workers.list.iter().any(|worker| &worker.name == *name))
            .collect();
        if !strangers.is_empty() {
            eprintln!(
                "warning: workers the bench did not start take jobs from queue prefix {:?}: {}; results will be skewed",
                plan.queue_prefix,
                strangers
                    .iter()
                    .map(|name| name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if workers
            .list
            .iter()
            .all(|worker| seen.contains(&worker.name))
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "after {} s not every worker has run a job (seen: {}); do they consume queue prefix {:?}? see their logs",
                plan.limit.as_secs(),
                seen.join(", "),
                plan.queue_prefix
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the recovery phase measured.
struct Recovery {
    job: Id,
    killed: String,
    running: Duration,
    ok: Duration,
}

/// Starts one sleeping job, SIGKILLs the worker that runs it, and times
/// the job's second run.
async fn recover(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    workers: &mut Workers,
    workflow_id: Id,
) -> anyhow::Result<Recovery> {
    let job = api
        .create_job(workflow_id, None)
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot create the recovery job")?;
    let state = |db: &PgPool| {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (String, i32, Option<String>, Option<String>)>(
                "SELECT status, attempt, worker, error FROM jobs WHERE id = $1",
            )
            .bind(job)
            .fetch_one(&db)
            .await
            .with_context(|| format!("cannot read job {job}"))
        }
    };
    let state = &state;
    let what = format!("waiting for recovery job {job} to run");
    let what = what.as_str();
    let holder = poll_until(what, plan.limit, DB_POLL, || async move {
        let (status, attempt, worker, _) = state(db).await?;
        match (status.as_str(), worker) {
            ("running", Some(worker)) => Ok(Check::Done(worker)),
            ("queued", _) => Ok(Check::Waiting("queued".into())),
            (other, _) => bail!("{what}: it is {other} (attempt {attempt})"),
        }
    })
    .await?;
    let index = workers
        .list
        .iter()
        .position(|worker| worker.name == holder && !worker.killed)
        .with_context(|| format!("job {job} runs on {holder}, which the bench did not start"))?;
    let killed_at = Instant::now();
    workers.kill(index).await?;

    let what = format!("waiting for job {job} to run again after its worker was killed");
    let what = what.as_str();
    let running = poll_until(what, plan.limit, DB_POLL, || async move {
        let (status, attempt, _, error) = state(db).await?;
        match status.as_str() {
            "running" | "ok" if attempt >= 2 => Ok(Check::Done(killed_at.elapsed())),
            "running" | "queued" => Ok(Check::Waiting(format!("{status}, attempt {attempt}"))),
            other => bail!(
                "{what}: it ended {other} (attempt {attempt}, error: {})",
                error.as_deref().unwrap_or("none")
            ),
        }
    })
    .await?;
    let what = format!("waiting for job {job} to finish its second run");
    let what = what.as_str();
    let ok = poll_until(what, plan.limit, DB_POLL, || async move {
        let (status, attempt, _, error) = state(db).await?;
        match status.as_str() {
            "ok" => Ok(Check::Done(killed_at.elapsed())),
            "running" | "queued" => Ok(Check::Waiting(format!("{status}, attempt {attempt}"))),
            other => bail!(
                "{what}: it ended {other} (attempt {attempt}, error: {})",
                error.as_deref().unwrap_or("none")
            ),
        }
    })
    .await?;
    Ok(Recovery {
        job,
        killed: workers.list[index].name.clone(),
        running,
        ok,
    })
}

// ---------------------------------------------------------------------------
// Clean-up and report

/// Removes the bench's jobs (their logs cascade) and workflows directly.
async fn clean_up(db: &PgPool, workflows: &[Id]) -> anyhow::Result<()> {
    if workflows.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = workflows.iter().map(|id| id.get()).collect();
    let jobs = sqlx::query("DELETE FROM jobs WHERE workflow_id = ANY($1)")
        .bind(&ids)
        .execute(db)
        .await
        .context("cannot delete the bench's jobs")?;
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

/// The targets, filled in as the phases complete.
#[derive(Default)]
struct Goals {
    rows: Vec<[String; 4]>,
}

impl Goals {
    fn add(&mut self, name: &str, goal: String, measured: String, met: bool) {
        self.rows
            .push([name.to_owned(), goal, measured, verdict(met).to_owned()]);
    }

    fn print(&self, complete: bool) {
        if self.rows.is_empty() {
            return;
        }
        let mut table = Table::new(["target", "goal", "measured", "verdict"]);
        for row in &self.rows {
            table.row(row.iter().cloned());
        }
        println!();
        print!("{}", table.render());
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
    if met {
        "met"
    } else {
        "NOT MET"
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_mib() {
        let status = "Name:\tcrust-worker\nVmPeak:\t  99999 kB\nVmRSS:\t   10240 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss(status), Some(10.0));
        assert_eq!(parse_vm_rss("Name:\tx\n"), None);
    }

    #[test]
    fn spreads_count_early_starts_apart() {
        let spread = Spread::of(&[0.001, 0.002, -0.004, 0.003]);
        assert_eq!(spread.count, 4);
        assert_eq!(spread.early, 1);
        assert_eq!(spread.most_early, Duration::from_millis(4));
        assert_eq!(spread.p50, Duration::from_millis(1));
        assert_eq!(spread.max, Duration::from_millis(3));
    }

    #[test]
    fn batches_span_their_ids() {
        let batch = Batch::of(Id(3), &[Id(12), Id(10), Id(11)]).expect("not empty");
        assert_eq!((batch.first, batch.last, batch.count), (Id(10), Id(12), 3));
        assert!(Batch::of(Id(3), &[]).is_none());
    }

    #[test]
    fn delayed_starts_have_milliseconds() {
        let first = DateTime::parse_from_rfc3339("2030-01-01T00:00:03Z")
            .expect("valid")
            .with_timezone(&Utc);
        let step = chrono::Duration::milliseconds(20);
        let at = (first + step * 7).to_rfc3339_opts(SecondsFormat::Millis, true);
        assert_eq!(at, "2030-01-01T00:00:03.140Z");
    }
}
