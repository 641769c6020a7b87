//! `crust-bench prune`: what retention costs at a million finished jobs,
//! row by row (the scheduler's `DELETE … LIMIT 1000` with its cascades into
//! logs and steps: the only way before log partitions) against dropping
//! whole ranges of job IDs. Each way runs on a fresh scratch database
//! holding the same jobs, so the figures compare like with like; the
//! physical limit is the plain `DELETE` of the same log rows with no job
//! row, index probe or cascade around it.

use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::Context;
use crust_store::jobs::retention::{drop_expired, ensure_partitions, prune};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::client::DbArgs;
use crate::report::Table;

/// The scratch database, dropped after each way.
const SCRATCH: &str = "crust_bench_prune";
/// The scheduler's row batch.
const ROW_BATCH: i64 = 1_000;
/// Retention of the run: every job finished eight days ago is past it.
const RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// Options of `crust-bench prune`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Postgres server (the database in the URL is not touched: the bench
    /// creates and drops its own).
    #[command(flatten)]
    db: DbArgs,

    /// Finished jobs to prune.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1_000..=100_000_000))]
    jobs: i64,

    /// Log lines per job (each job also has one step).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(i64).range(0..=1_000))]
    lines: i64,

    /// Job IDs per range (the scheduler's `CRUST_JOB_PARTITION_SPAN`).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(i64).range(100..=1_000_000_000))]
    span: i64,

    /// Rounds of both ways, for the spread.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
}

/// How one way went.
struct Outcome {
    jobs: i64,
    log_rows: i64,
    took: Duration,
    /// Write-ahead log written meanwhile (the whole server's: other load on
    /// it counts too), and the dead rows left for vacuum.
    wal_bytes: i64,
    dead_rows: i64,
}

/// Runs the bench.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let server = PgConnectOptions::from_str(&args.db.database_url)
        .with_context(|| format!("bad DATABASE_URL {}", args.db.redacted()))?;
    let mut table = Table::new([
        "run",
        "way",
        "jobs",
        "log rows",
        "seconds",
        "jobs/s",
        "vs rows",
        "vs plain DELETE",
        "WAL MB",
        "dead rows left",
    ]);
    for run in 1..=args.runs {
        let limit = {
            let pool = scratch(&server, &args).await?;
            let started = Instant::now();
            sqlx::query("DELETE FROM job_logs").execute(&pool).await?;
            let took = started.elapsed();
            pool.close().await;
            took
        };
        let rows = {
            let pool = scratch(&server, &args).await?;
            let outcome = by_rows(&pool).await?;
            pool.close().await;
            outcome
        };
        let ranges = {
            let pool = scratch(&server, &args).await?;
            let outcome = by_ranges(&pool).await?;
            pool.close().await;
            outcome
        };
        drop_scratch(&server).await?;
        for (way, outcome) in [("row by row", &rows), ("drop ranges", &ranges)] {
            let secs = outcome.took.as_secs_f64();
            table.row([
                run.to_string(),
                way.to_owned(),
                outcome.jobs.to_string(),
                outcome.log_rows.to_string(),
                format!("{secs:.2}"),
                format!("{:.0}", outcome.jobs as f64 / secs.max(1e-9)),
                format!("{:.1}×", rows.took.as_secs_f64() / secs.max(1e-9)),
                format!("{:.2}", limit.as_secs_f64() / secs.max(1e-9)),
                format!("{:.0}", outcome.wal_bytes as f64 / 1e6),
                outcome.dead_rows.to_string(),
            ]);
        }
        eprintln!(
            "run {run}: plain DELETE of the log rows {:.2} s",
            limit.as_secs_f64()
        );
    }
    println!(
        "\nprune of {} finished jobs × {} log lines and 1 step (\"vs plain DELETE\": the \
         plain delete's time over this way's; above 1 is faster than deleting the log rows alone)",
        args.jobs, args.lines
    );
    table.print();
    Ok(())
}

/// The scheduler before log partitions: batches of 1 000 until none is left.
async fn by_rows(pool: &PgPool) -> anyhow::Result<Outcome> {
    let log_rows = count(pool, "SELECT count(*) FROM job_logs").await?;
    let wal = wal_position(pool).await?;
    let started = Instant::now();
    let mut jobs = 0;
    loop {
        let pruned = prune(pool, RETENTION, ROW_BATCH).await?;
        jobs += pruned as i64;
        if pruned == 0 {
            break;
        }
    }
    let took = started.elapsed();
    Ok(Outcome {
        jobs,
        log_rows,
        took,
        wal_bytes: wal_since(pool, &wal).await?,
        dead_rows: dead_rows(pool).await?,
    })
}

/// The scheduler now: drop expired ranges, then the row prune for the rest.
async fn by_ranges(pool: &PgPool) -> anyhow::Result<Outcome> {
    let log_rows = count(pool, "SELECT count(*) FROM job_logs").await?;
    let wal = wal_position(pool).await?;
    let started = Instant::now();
    let dropped = drop_expired(pool, RETENTION, 1_000).await?;
    let mut jobs = dropped.jobs as i64;
    loop {
        let pruned = prune(pool, RETENTION, ROW_BATCH).await?;
        jobs += pruned as i64;
        if pruned == 0 {
            break;
        }
    }
    let took = started.elapsed();
    Ok(Outcome {
        jobs,
        log_rows,
        took,
        wal_bytes: wal_since(pool, &wal).await?,
        dead_rows: dead_rows(pool).await?,
    })
}

/// A fresh scratch database with `args.jobs` jobs that finished eight days
/// ago, each with its log lines and one step, and one recent job after them
/// (so every range of the old ones lies below the newest job).
async fn scratch(server: &PgConnectOptions, args: &Args) -> anyhow::Result<PgPool> {
    drop_scratch(server).await?;
    let mut admin = server.clone().database("postgres").connect().await?;
    sqlx::query(&format!("CREATE DATABASE {SCRATCH}"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(server.clone().database(SCRATCH))
        .await?;
    crust_store::MIGRATOR.run(&pool).await?;
    ensure_partitions(&pool, args.span, args.jobs / args.span + 2).await?;
    let (workflow,): (i64,) =
        sqlx::query_as("INSERT INTO workflows (name) VALUES ('prune') RETURNING id")
            .fetch_one(&pool)
            .await?;
    eprintln!("filling {SCRATCH} with {} finished jobs", args.jobs);
    let chunk = 100_000;
    let mut made = 0;
    while made < args.jobs {
        let n = chunk.min(args.jobs - made);
        sqlx::query(
            "WITH made AS (
                 INSERT INTO jobs (workflow_id, status, finished_at)
                 SELECT $1, 'ok', now() - interval '8 days' FROM generate_series(1, $2)
                 RETURNING id),
             logged AS (
                 INSERT INTO job_logs (job_id, seq, ts, level, message, attempt)
                 SELECT id, s, now() - interval '8 days', 'info', 'a line of a finished job', 1
                 FROM made, generate_series(1, $3) s)
             INSERT INTO job_steps (job_id, task, status, attempt, output)
             SELECT id, 't', 'ok', 1, '{\"ok\": true}' FROM made",
        )
        .bind(workflow)
        .bind(n)
        .bind(args.lines)
        .execute(&pool)
        .await?;
        made += n;
    }
    sqlx::query("INSERT INTO jobs (workflow_id, status) VALUES ($1, 'queued')")
        .bind(workflow)
        .execute(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    Ok(pool)
}

async fn drop_scratch(server: &PgConnectOptions) -> anyhow::Result<()> {
    let mut admin = server.clone().database("postgres").connect().await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

async fn wal_position(pool: &PgPool) -> anyhow::Result<String> {
    Ok(sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await?)
}

async fn wal_since(pool: &PgPool, from: &str) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint")
            .bind(from)
            .fetch_one(pool)
            .await?,
    )
}

/// Dead rows in the job tables, as the statistics collector last saw them
/// (flushed first).
async fn dead_rows(pool: &PgPool) -> anyhow::Result<i64> {
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(pool)
        .await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    Ok(sqlx::query_scalar(
        "SELECT coalesce(sum(n_dead_tup), 0)::bigint FROM pg_stat_user_tables
         WHERE relname LIKE 'job%'",
    )
    .fetch_one(pool)
    .await?)
}

async fn count(pool: &PgPool, sql: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}
