//! `crust-bench query`: a module of 10 mixed-kind fields and a million
//! records; measures (a) the first page of 20 with a two-condition filter
//! and a sort, and (b) a monthly SUM/COUNT report through the API, against
//! (c) the same report as plain SQL on a native typed table holding the
//! same rows, measured in the same run.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crust_model::Id;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::client::{unix_now, Api, ApiArgs, DbArgs};
use crate::report::{cores, Latency, Table, Verdicts};

/// Targets from the issue.
const TARGET_PAGE_P50: Duration = Duration::from_millis(20);
const TARGET_REPORT_RATIO: f64 = 2.0;
/// How long one request may take (a report over a million records is slow
/// on a debug build).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of `crust-bench query`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: ApiArgs,

    #[command(flatten)]
    db: DbArgs,

    /// Records to load.
    #[arg(long, default_value_t = 1_000_000)]
    records: i64,

    /// Timed first-page requests.
    #[arg(long, default_value_t = 200)]
    pages: usize,

    /// Timed report runs (each way).
    #[arg(long, default_value_t = 7)]
    reports: usize,

    /// Keep the module, its records and the native table afterwards (to
    /// look at query plans); the next run needs them gone.
    #[arg(long)]
    keep: bool,
}

/// The filter and sort of measurement (a), and the report of (b) and (c).
const FILTER: &str = "stage = 'won' AND amount > 5000";
const SORT: &str = "closeAt DESC";
const METRICS: &str = "SUM(amount) AS total, COUNT(*) AS deals";
const DIMENSIONS: &str = "DATE_FORMAT(closeAt, '%Y-%m') AS month";
const NATIVE_REPORT: &str = "SELECT count(*)::float8, sum(amount)::float8, to_char(close_at AT TIME ZONE 'UTC', 'YYYY-MM') AS month
     FROM bench_native GROUP BY 3 ORDER BY 3";

/// Runs the bench and removes what it made.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let api = args.target.connect(1, REQUEST_TIMEOUT)?;
    let pool = args.db.connect(2).await?;

    let fields = json!([
        {"name": "title", "kind": "String", "maxLength": 200},
        {"name": "amount", "kind": "Number", "options": {"precision": 2}},
        {"name": "stage", "kind": "Select", "options": {"options": ["new", "open", "won", "lost"]}},
        {"name": "closeAt", "kind": "DateTime"},
        {"name": "email", "kind": "Email"},
        {"name": "score", "kind": "Number"},
        {"name": "active", "kind": "Bool"},
        {"name": "region", "kind": "Select", "options": {"options": ["emea", "amer", "apac", "latam", "anz"]}},
        {"name": "owner", "kind": "User"},
        {"name": "priority", "kind": "Select", "options": {"options": ["low", "medium", "high"]}}
    ]);
    let name = format!("bench_query_{}", unix_now()?.as_nanos());
    let module = api
        .create(
            "/module/",
            &json!({"name": name, "fields": fields}),
            "moduleID",
        )
        .await
        .context("cannot create the bench module")?;
    println!(
        "module {name} (id {module}), 10 fields; loading {} records",
        args.records
    );

    let result = measure(&args, &pool, module, &api, &fields).await;
    if args.keep {
        println!("kept module {module}, partition records_m{module} and table bench_native");
        return result;
    }
    // Clean up whatever happened: the partition goes in one statement.
    let partition = format!("records_m{module}");
    let _ = sqlx::query(&format!("ALTER TABLE records DETACH PARTITION {partition}"))
        .execute(&pool)
        .await;
    let _ = sqlx::query(&format!("DROP TABLE IF EXISTS {partition}"))
        .execute(&pool)
        .await;
    let _ = sqlx::query("DROP TABLE IF EXISTS bench_native")
        .execute(&pool)
        .await;
    let _ = sqlx::query("UPDATE modules SET deleted_at = now() WHERE id = $1")
        .bind(module)
        .execute(&pool)
        .await;
    result
}

async fn measure(
    args: &Args,
    pool: &PgPool,
    module: Id,
    api: &Api,
    fields: &Value,
) -> anyhow::Result<()> {
    // Load without the field indexes, then have the API build them (a
    // module edit with the same fields creates what is missing), which is
    // also the path a real bulk import would take.
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = $1 AND indexname LIKE 'rx\\_%'",
    )
    .bind(format!("records_m{module}"))
    .fetch_all(pool)
    .await?;
    for index in &indexes {
        sqlx::query(&format!("DROP INDEX {index}"))
            .execute(pool)
            .await?;
    }
    let started = Instant::now();
    sqlx::query(
        r#"INSERT INTO records (module_id, user_id, "values", created_at)
           SELECT $1, 1 + g % 50, jsonb_build_object(
               'title', 'Deal ' || g,
               'amount', ((g * 7919) % 1000000) / 100.0,
               'stage', (ARRAY['new', 'open', 'won', 'lost'])[1 + g % 4],
               'closeAt', extract(epoch from timestamptz '2018-01-01 00:00:00+00'
                                  + (g % 730) * interval '1 day' + (g % 86400) * interval '1 second')::bigint,
               'email', 'user' || g || '@example.com',
               'score', g % 100,
               'active', g % 3 = 0,
               'region', (ARRAY['emea', 'amer', 'apac', 'latam', 'anz'])[1 + g % 5],
               'owner', (1 + g % 200)::text,
               'priority', (ARRAY['low', 'medium', 'high'])[1 + g % 3]),
               now() - (($2 - g) * interval '1 second')
           FROM generate_series(1, $2) g"#,
    )
    .bind(module)
    .bind(args.records)
    .execute(pool)
    .await
    .context("loading records")?;
    println!("loaded in {:.1} s", started.elapsed().as_secs_f64());
    let started = Instant::now();
    let edit = json!({"name": format!("bench_query_{module}"), "fields": fields});
    api.send(
        Method::POST,
        &format!("/module/{module}"),
        Some(&edit),
        StatusCode::OK,
    )
    .await
    .context("module edit failed")?;
    println!(
        "field indexes built through the API in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    sqlx::query(
        "CREATE TABLE bench_native (id bigint, title text, amount numeric, stage text, close_at timestamptz,
                                    email text, score numeric, active boolean, region text, owner bigint, priority text)",
    )
    .execute(pool)
    .await?;
    sqlx::query(
        r#"INSERT INTO bench_native
           SELECT id, "values"->>'title', ("values"->>'amount')::numeric, "values"->>'stage',
                  to_timestamp(("values"->>'closeAt')::float8), "values"->>'email', ("values"->>'score')::numeric,
                  ("values"->>'active')::boolean, "values"->>'region', ("values"->>'owner')::bigint, "values"->>'priority'
           FROM records WHERE module_id = $1"#,
    )
    .bind(module)
    .execute(pool)
    .await?;
    sqlx::query(&format!("VACUUM ANALYZE records_m{module}"))
        .execute(pool)
        .await?;
    sqlx::query("VACUUM ANALYZE bench_native")
        .execute(pool)
        .await?;

    // (a) first page, filtered and sorted.
    let page_path = format!(
        "/module/{module}/record?perPage=20&filter={}&sort={}",
        encode(FILTER),
        encode(SORT)
    );
    let mut first = None;
    for _ in 0..10 {
        first = Some(get(api, &page_path).await?);
    }
    let meta = first
        .map(|page| page["response"]["meta"].clone())
        .unwrap_or_default();
    let mut pages = Vec::with_capacity(args.pages);
    for _ in 0..args.pages {
        let sent = Instant::now();
        get(api, &page_path).await?;
        pages.push(sent.elapsed());
    }
    pages.sort_unstable();

    // (b) the report through the API, (c) the same in plain SQL.
    let report_path = format!(
        "/module/{module}/report?metrics={}&dimensions={}",
        encode(METRICS),
        encode(DIMENSIONS)
    );
    let mut api_rows = Value::Null;
    let mut api_reports = Vec::new();
    let mut native_reports = Vec::new();
    for run in 0..=args.reports {
        let sent = Instant::now();
        api_rows = get(api, &report_path).await?;
        let api_time = sent.elapsed();
        let sent = Instant::now();
        let native: Vec<(f64, f64, String)> = sqlx::query_as(NATIVE_REPORT).fetch_all(pool).await?;
        let native_time = sent.elapsed();
        if run == 0 {
            // Warm-up; also check both give the same answer.
            let api_months = api_rows["response"].as_array().map_or(0, Vec::len);
            if api_months != native.len() {
                bail!(
                    "the API report has {api_months} rows, the native one {}",
                    native.len()
                );
            }
            continue;
        }
        api_reports.push(api_time);
        native_reports.push(native_time);
    }
    api_reports.sort_unstable();
    native_reports.sort_unstable();

    let months = api_rows["response"].as_array().map_or(0, Vec::len);
    let page = Latency::of_sorted(&pages);
    let api_report = Latency::of_sorted(&api_reports);
    let native_report = Latency::of_sorted(&native_reports);
    let ratio = api_report.p50.as_secs_f64() / native_report.p50.as_secs_f64().max(1e-9);
    println!();
    println!(
        "machine: {} cores; {} records, 10 fields",
        cores(),
        args.records
    );
    println!("(a) filter {FILTER:?}, sort {SORT:?}, perPage 20; meta {meta}");
    println!("(b) report metrics {METRICS:?}, dimensions {DIMENSIONS:?}: {months} rows");
    let mut table = Table::new(["measurement", "runs", "p50 ms", "p99 ms", "max ms"]);
    for (measurement, runs, latency) in [
        ("(a) first page via API", pages.len(), page),
        ("(b) report via API", api_reports.len(), api_report),
        (
            "(c) same report, plain SQL on a typed table",
            native_reports.len(),
            native_report,
        ),
    ] {
        let [p50, p99, max] = latency.cells();
        table.row([measurement.to_owned(), runs.to_string(), p50, p99, max]);
    }
    print!("{}", table.render());
    println!("(b) / (c) = {ratio:.2}x");
    println!(
        "targets: (a) p50 <= {} ms: {}; (b) within {TARGET_REPORT_RATIO}x of (c): {}",
        TARGET_PAGE_P50.as_millis(),
        Verdicts::Lower.of(page.p50 <= TARGET_PAGE_P50),
        Verdicts::Lower.of(ratio <= TARGET_REPORT_RATIO),
    );
    Ok(())
}

/// `GET path`, expecting 200.
async fn get(api: &Api, path: &str) -> anyhow::Result<Value> {
    api.send(Method::GET, path, None, StatusCode::OK).await
}

/// Percent-encodes a query-string value.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
