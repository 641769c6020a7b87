//! `crust-bench csv`: records out and in as CSV through a running system.
//! Export: a module of `--records` records streamed by
//! `GET /module/{id}/record/export`, rows/s and the api's resident memory
//! (sampled every 50 ms, and its peak), against Postgres's own `COPY … TO
//! STDOUT` of the same rows (the physical limit). Import: the first
//! `--import-rows` rows of that export `POST`ed to a second module and
//! imported by a worker, from the first byte sent to the job's end, against
//! one `INSERT … SELECT` of the same rows in Postgres. Needs a running api,
//! scheduler and worker on the database given.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::client::{response_id, ApiArgs, DbArgs};
use crate::report::Table;

/// Options of `crust-bench csv`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: ApiArgs,

    #[command(flatten)]
    db: DbArgs,

    /// The api to watch (default: the only process named `crust-api`).
    #[arg(long)]
    api_pid: Option<u32>,

    /// Records exported.
    #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(1_000..=100_000_000))]
    records: i64,

    /// Rows imported (the first of the export).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(i64).range(100..=10_000_000))]
    import_rows: i64,

    /// Rounds of each phase, for the spread.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=20))]
    runs: u32,
}

const FIELDS: &str = r#"[
    {"name": "code", "kind": "Number"},
    {"name": "name", "kind": "String"},
    {"name": "email", "kind": "Email"},
    {"name": "stage", "kind": "Select", "options": {"options": ["lead", "deal", "won"]}},
    {"name": "won", "kind": "Bool"},
    {"name": "tags", "kind": "String", "isMulti": true}
]"#;

/// Runs the bench; its modules are deleted afterwards.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let api = args.target.connect(4, Duration::from_secs(3600))?;
    let pool = args.db.connect(4).await?;
    let api_pid = match args.api_pid {
        Some(pid) => pid,
        None => crate::procfs::find("crust-api", "--api-pid")?,
    };
    let stamp = chrono::Utc::now().timestamp_millis();
    let fields: Value = serde_json::from_str(FIELDS)?;
    let mut modules = Vec::new();
    for role in ["source", "target", "baseline"] {
        let id = api
            .create(
                "/module/",
                &json!({"name": format!("bench_csv_{role}_{stamp}"), "fields": fields}),
                "moduleID",
            )
            .await?;
        modules.push(id);
    }
    let outcome = measure(&args, &api, &pool, api_pid, &modules).await;
    for id in &modules {
        let _ = api
            .send(
                Method::DELETE,
                &format!("/module/{id}?force=true"),
                None,
                StatusCode::OK,
            )
            .await;
        let _ = sqlx::query("DELETE FROM records WHERE module_id = $1")
            .bind(id)
            .execute(&pool)
            .await;
    }
    outcome
}

async fn measure(
    args: &Args,
    api: &crate::client::Api,
    pool: &sqlx::PgPool,
    api_pid: u32,
    modules: &[crust_model::Id],
) -> anyhow::Result<()> {
    let (source, target, baseline) = (modules[0], modules[1], modules[2]);
    eprintln!("filling module {source} with {} records", args.records);
    sqlx::query(
        r#"INSERT INTO records (module_id, user_id, "values")
           SELECT $1, 1, jsonb_build_object(
               'code', i, 'name', format('Customer %s, Ltd.', i),
               'email', format('c%s@example.com', i),
               'stage', (ARRAY['lead', 'deal', 'won'])[i % 3 + 1], 'won', i % 2 = 0,
               'tags', jsonb_build_array('t' || i % 7, 'x'))
           FROM generate_series(1, $2) i"#,
    )
    .bind(source)
    .bind(args.records)
    .execute(pool)
    .await?;
    sqlx::query("ANALYZE records").execute(pool).await?;

    let mut table = Table::new([
        "run",
        "phase",
        "rows",
        "seconds",
        "rows/s",
        "limit rows/s",
        "share",
        "api RSS MB (max sampled)",
    ]);
    let mut first_rows = String::new();
    for run in 1..=args.runs {
        // The physical limit: Postgres writing the same rows itself.
        let started = Instant::now();
        let mut conn = pool.acquire().await?;
        let mut copy = conn
            .copy_out_raw(&format!(
                r#"COPY (SELECT id, "values" FROM records WHERE module_id = {source}
                         AND deleted_at IS NULL ORDER BY id) TO STDOUT WITH (FORMAT csv)"#
            ))
            .await?;
        let mut copied = 0u64;
        while let Some(piece) = copy.next().await {
            copied += piece?.iter().filter(|b| **b == b'\n').count() as u64;
        }
        drop(copy);
        drop(conn);
        let copy_rate = copied as f64 / started.elapsed().as_secs_f64();

        let sampling = sample_rss(api_pid);
        let started = Instant::now();
        let response = api
            .http
            .get(api.url(&format!("/module/{source}/record/export")))
            .header(reqwest::header::AUTHORIZATION, &api.auth)
            .send()
            .await?;
        if response.status() != StatusCode::OK {
            bail!("export answered {}", response.status());
        }
        let mut response = response;
        let mut lines = 0u64;
        let mut keep = run == 1;
        while let Some(piece) = response.chunk().await.context("the export broke off")? {
            lines += piece.iter().filter(|b| **b == b'\n').count() as u64;
            if keep {
                first_rows.push_str(&String::from_utf8_lossy(&piece));
                if first_rows.matches('\n').count() as i64 > args.import_rows {
                    keep = false;
                }
            }
        }
        let took = started.elapsed();
        let peak_mb = sampling.stop().await;
        let rows = lines.saturating_sub(1);
        if rows as i64 != args.records {
            bail!("the export held {rows} rows, not {}", args.records);
        }
        let rate = rows as f64 / took.as_secs_f64();
        table.row([
            run.to_string(),
            "export".into(),
            rows.to_string(),
            format!("{:.2}", took.as_secs_f64()),
            format!("{rate:.0}"),
            format!("{copy_rate:.0}"),
            format!("{:.2}", rate / copy_rate),
            format!("{peak_mb:.1}"),
        ]);
    }

    // The import: the export's header and first rows.
    let upload: String = first_rows
        .split_inclusive('\n')
        .take(args.import_rows as usize + 1)
        .collect();
    for run in 1..=args.runs {
        sqlx::query("DELETE FROM records WHERE module_id = ANY($1)")
            .bind(vec![target, baseline])
            .execute(pool)
            .await?;
        let started = Instant::now();
        sqlx::query(
            r#"INSERT INTO records (module_id, user_id, "values")
               SELECT $1, 1, "values" FROM records WHERE module_id = $2 ORDER BY id LIMIT $3"#,
        )
        .bind(baseline)
        .bind(source)
        .bind(args.import_rows)
        .execute(pool)
        .await?;
        let limit_rate = args.import_rows as f64 / started.elapsed().as_secs_f64();

        let started = Instant::now();
        let answer = api
            .call(
                api.http
                    .post(api.url(&format!("/module/{target}/record/import")))
                    .header(reqwest::header::CONTENT_TYPE, "text/csv")
                    .body(upload.clone()),
                StatusCode::ACCEPTED,
            )
            .await
            .map_err(anyhow::Error::msg)?;
        let job = response_id(&answer, "jobID").map_err(anyhow::Error::msg)?;
        let output = loop {
            let job_now = api
                .send(Method::GET, &format!("/job/{job}"), None, StatusCode::OK)
                .await?;
            match job_now["response"]["status"].as_str() {
                Some("ok") => break job_now["response"]["outputs"]["import"].clone(),
                Some("error" | "cancelled") => bail!("the import ended: {job_now}"),
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        let took = started.elapsed();
        if output["created"] != json!(args.import_rows) {
            bail!(
                "the import created {output}, not {} records",
                args.import_rows
            );
        }
        let rate = args.import_rows as f64 / took.as_secs_f64();
        table.row([
            run.to_string(),
            "import".into(),
            args.import_rows.to_string(),
            format!("{:.2}", took.as_secs_f64()),
            format!("{rate:.0}"),
            format!("{limit_rate:.0}"),
            format!("{:.2}", rate / limit_rate),
            String::new(),
        ]);
    }
    println!(
        "\nCSV export of {} records (limit: COPY … TO STDOUT of the same rows) and import of {} \
         rows end to end, upload to job end (limit: one INSERT … SELECT of them)",
        args.records, args.import_rows
    );
    table.print();
    Ok(())
}

/// Samples a process's VmRSS every 50 ms until stopped; yields the most
/// seen, in MB.
struct Sampler {
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<f64>,
}

impl Sampler {
    async fn stop(self) -> f64 {
        let _ = self.stop.send(());
        self.done.await.unwrap_or(0.0)
    }
}

fn sample_rss(pid: u32) -> Sampler {
    let (stop, mut stopped) = tokio::sync::oneshot::channel();
    let done = tokio::spawn(async move {
        let mut most: f64 = 0.0;
        loop {
            if let Ok(kib) = crate::procfs::status_kib(pid, "VmRSS") {
                most = most.max(kib * 1024.0 / 1e6);
            }
            tokio::select! {
                _ = &mut stopped => return most,
                () = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    });
    Sampler { stop, done }
}
