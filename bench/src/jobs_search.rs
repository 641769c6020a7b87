//! `crust-bench jobs-search`: job search over a million jobs. Loads jobs
//! straight into Postgres (5 % `error`, a `customer` parameter among 1 000),
//! then times `GET /job/?filter=status = 'error' AND parameters.customer =
//! '…'` through the API against the same page and capped count as plain SQL
//! on the same table, measured in the same run.

use std::time::{Duration, Instant};

use anyhow::Context;
use crust_model::Id;
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::client::{Api, ApiArgs, DbArgs};
use crate::query::encode;
use crate::report::{cores, Latency, Table, Verdicts};

/// Target from the issue.
const TARGET_P50: Duration = Duration::from_millis(20);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `crust-bench jobs-search`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: ApiArgs,

    #[command(flatten)]
    db: DbArgs,

    /// Jobs to load.
    #[arg(long, default_value_t = 1_000_000)]
    jobs: i64,

    /// Timed searches (each way).
    #[arg(long, default_value_t = 200)]
    requests: usize,

    /// Keep the workflow and its jobs afterwards (to look at plans).
    #[arg(long)]
    keep: bool,
}

/// The plain-SQL twin of what the API compiles the filter to.
/// (The bench database should hold no other jobs; the filter is the issue's,
/// without a workflow.)
const NATIVE_PAGE: &str = "SELECT j.id FROM jobs j WHERE j.status = 'error'
     AND j.parameters @> jsonb_build_object('customer', $1::text) ORDER BY j.id DESC LIMIT 50";
const NATIVE_COUNT: &str = "SELECT count(*) FROM (SELECT 1 FROM jobs j
     WHERE j.status = 'error' AND j.parameters @> jsonb_build_object('customer', $1::text) LIMIT 10001) capped";

/// Runs the bench and removes what it made (unless `--keep`).
pub async fn run(args: Args) -> anyhow::Result<()> {
    println!("cores: {}", cores());
    let api = args.target.connect(1, REQUEST_TIMEOUT)?;
    let pool = args.db.connect(2).await?;
    let workflow = api
        .create(
            "/workflow/",
            &json!({"name": "bench jobs-search", "tasks": [{"name": "t", "kind": "log", "params": {"message": "x"}}]}),
            "workflowID",
        )
        .await
        .context("cannot create the bench workflow")?;
    let result = measure(&args, &pool, &api, workflow).await;
    if args.keep {
        println!("kept workflow {workflow} and its jobs");
        return result;
    }
    let started = Instant::now();
    let _ = sqlx::query("DELETE FROM jobs WHERE workflow_id = $1")
        .bind(workflow)
        .execute(&pool)
        .await;
    let _ = sqlx::query("DELETE FROM workflows WHERE id = $1")
        .bind(workflow)
        .execute(&pool)
        .await;
    println!("cleaned up in {:.1} s", started.elapsed().as_secs_f64());
    result
}

fn customer(request: usize) -> String {
    // Customers c0, c20, c40, … have error jobs (the load makes every 20th
    // job an error): each search finds 1 000 jobs and shows 50.
    format!("c{}", (request * 20) % 1000)
}

async fn measure(args: &Args, pool: &PgPool, api: &Api, workflow: Id) -> anyhow::Result<()> {
    let started = Instant::now();
    sqlx::query(
        "INSERT INTO jobs (workflow_id, workflow_version, status, parameters, finished_at, error)
         SELECT $1, 1, CASE WHEN g % 20 = 0 THEN 'error' WHEN g % 50 = 1 THEN 'queued' ELSE 'ok' END,
                jsonb_build_object('customer', 'c' || (g % 1000), 'n', g, 'region', 'r' || (g % 7)),
                now(), CASE WHEN g % 20 = 0 THEN 'boom' END
         FROM generate_series(1, $2) g",
    )
    .bind(workflow)
    .bind(args.jobs)
    .execute(pool)
    .await
    .context("loading jobs")?;
    sqlx::query("VACUUM ANALYZE jobs").execute(pool).await?;
    println!(
        "loaded {} jobs in {:.1} s",
        args.jobs,
        started.elapsed().as_secs_f64()
    );

    let mut through_api = Vec::with_capacity(args.requests);
    for request in 0..args.requests {
        let filter = format!(
            "status = 'error' AND parameters.customer = '{}'",
            customer(request)
        );
        let path = format!("/job/?perPage=50&filter={}", encode(&filter));
        let started = Instant::now();
        let answer = api.send(Method::GET, &path, None, StatusCode::OK).await?;
        through_api.push(started.elapsed());
        let found = answer["response"]["jobs"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(found == 50, "search {filter:?} found {found} jobs, not 50");
    }
    let mut native = Vec::with_capacity(args.requests);
    for request in 0..args.requests {
        let started = Instant::now();
        let mut tx = pool.begin().await?;
        let ids: Vec<i64> = sqlx::query_scalar(NATIVE_PAGE)
            .bind(customer(request))
            .fetch_all(&mut *tx)
            .await?;
        let _: i64 = sqlx::query_scalar(NATIVE_COUNT)
            .bind(customer(request))
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        native.push(started.elapsed());
        anyhow::ensure!(ids.len() == 50, "native page found {} jobs", ids.len());
    }
    through_api.sort();
    native.sort();
    let api_latency = Latency::of_sorted(&through_api);
    let native_latency = Latency::of_sorted(&native);
    let mut table = Table::new(["search (50 of 1 000 matches)", "p50 ms", "p99 ms", "max ms"]);
    let [p50, p99, max] = api_latency.cells();
    table.row(["GET /job/?filter=… (API)".to_owned(), p50, p99, max]);
    let [p50, p99, max] = native_latency.cells();
    table.row(["same page + capped count in SQL".to_owned(), p50, p99, max]);
    table.print();
    println!(
        "target: API p50 <= {} ms: {}",
        TARGET_P50.as_millis(),
        Verdicts::Lower.of(api_latency.p50 <= TARGET_P50)
    );
    Ok(())
}
