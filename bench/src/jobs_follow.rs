//! `crust-bench jobs-follow`: live logs under many followers. Opens one
//! `GET /job/{id}/logs?follow=true` stream per job (jobs held queued, so the
//! bench itself writes their lines, as a worker would, through
//! `POST /job/{id}` with a `log`), then measures (a) the delay from the
//! moment a write is sent to the moment each follower reads the line, and
//! (b) the api's CPU over a quiet spell with every stream open (read from
//! `/proc/<pid>/stat`, given `--api-pid`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::json;
use tokio::sync::Mutex;

use crate::client::{ApiArgs, DbArgs};
use crate::report::{cores, Latency, Table, Verdicts};

const TARGET_P99: Duration = Duration::from_millis(100);
const TARGET_IDLE_CPU: f64 = 2.0;

/// Options of `crust-bench jobs-follow`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: ApiArgs,

    #[command(flatten)]
    db: DbArgs,

    /// Followers (one job each).
    #[arg(long, default_value_t = 200)]
    followers: usize,

    /// Lines written per job.
    #[arg(long, default_value_t = 10)]
    lines: usize,

    /// The api's process ID, to read its CPU time while the streams idle.
    #[arg(long)]
    api_pid: Option<u32>,

    /// Seconds of quiet for the CPU measurement.
    #[arg(long, default_value_t = 20)]
    idle_secs: u64,
}

/// The api's CPU time so far (user + system), from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    let ticks: u64 = fields
        .get(11..13)
        .context("short /proc stat")?
        .iter()
        .map(|field| field.parse::<u64>().unwrap_or(0))
        .sum();
    // USER_HZ is 100 on Linux.
    Ok(Duration::from_millis(ticks * 10))
}

/// Runs the bench.
pub async fn run(args: Args) -> anyhow::Result<()> {
    println!("cores: {}", cores());
    let api = args
        .target
        .connect(args.followers + 4, Duration::from_secs(60))?;
    let pool = args.db.connect(2).await?;
    let workflow = api
        .create(
            "/workflow/",
            &json!({"name": "bench jobs-follow", "tasks": [{"name": "t", "kind": "log", "params": {"message": "x"}}]}),
            "workflowID",
        )
        .await?;
    let start = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let mut jobs = Vec::with_capacity(args.followers);
    for _ in 0..args.followers {
        jobs.push(
            api.create(
                "/job/",
                &json!({"workflowID": workflow.to_string(), "startAt": start}),
                "jobID",
            )
            .await?,
        );
    }
    // When each line was sent, by (job index, seq).
    let sent: Arc<Mutex<Vec<Vec<Option<Instant>>>>> =
        Arc::new(Mutex::new(vec![vec![None; args.lines + 1]; jobs.len()]));
    let delays: Arc<Mutex<Vec<Duration>>> = Arc::new(Mutex::new(Vec::new()));
    let mut readers = Vec::new();
    for (index, job) in jobs.iter().enumerate() {
        let response = api
            .http
            .get(api.url(&format!("/job/{job}/logs?follow=true")))
            .header(reqwest::header::AUTHORIZATION, &api.auth)
            .timeout(Duration::from_secs(3600))
            .send()
            .await?;
        anyhow::ensure!(
            response.status() == StatusCode::OK,
            "follow: {}",
            response.status()
        );
        let (sent, delays) = (Arc::clone(&sent), Arc::clone(&delays));
        readers.push(tokio::spawn(async move {
            let mut response = response;
            let mut buffer = String::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                let now = Instant::now();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let seq = block
                        .lines()
                        .find_map(|line| line.strip_prefix("id:"))
                        .and_then(|id| id.trim().parse::<usize>().ok());
                    if let Some(seq) = seq {
                        if let Some(at) = sent.lock().await[index].get(seq).copied().flatten() {
                            delays.lock().await.push(now - at);
                        }
                    }
                    if block.contains("event: status") {
                        return;
                    }
                }
            }
        }));
    }
    // Let every stream settle (old lines sent, feeds ready).
    tokio::time::sleep(Duration::from_secs(2)).await;

    let idle_cpu = match args.api_pid {
        Some(pid) => {
            let before = cpu_time(pid)?;
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(args.idle_secs)).await;
            let used = cpu_time(pid)? - before;
            Some(used.as_secs_f64() / started.elapsed().as_secs_f64() * 100.0)
        }
        None => None,
    };

    // Lines: one per job in turn, a few ms apart, like busy workers.
    for seq in 1..=args.lines {
        for (index, job) in jobs.iter().enumerate() {
            sent.lock().await[index][seq] = Some(Instant::now());
            api.send(
                Method::POST,
                &format!("/job/{job}"),
                Some(&json!({"log": {"message": format!("line {seq}")}})),
                StatusCode::OK,
            )
            .await?;
        }
    }
    // Finish the jobs so the streams end.
    for job in &jobs {
        api.send(Method::DELETE, &format!("/job/{job}"), None, StatusCode::OK)
            .await?;
    }
    for reader in readers {
        let _ = tokio::time::timeout(Duration::from_secs(30), reader).await;
    }
    let mut delays = delays.lock().await.clone();
    delays.sort();
    let expected = args.followers * args.lines;
    let latency = Latency::of_sorted(&delays);
    let mut table = Table::new([
        "delivery (write sent → follower read)",
        "p50 ms",
        "p99 ms",
        "max ms",
    ]);
    let [p50, p99, max] = latency.cells();
    table.row([
        format!(
            "{} of {expected} lines, {} followers",
            delays.len(),
            args.followers
        ),
        p50,
        p99,
        max,
    ]);
    table.print();
    println!(
        "target: p99 <= {} ms: {}",
        TARGET_P99.as_millis(),
        Verdicts::Lower.of(latency.p99 <= TARGET_P99 && delays.len() == expected)
    );
    if let Some(cpu) = idle_cpu {
        println!(
            "api CPU with {} idle followers over {} s: {cpu:.2} % of a core; target < {TARGET_IDLE_CPU} %: {}",
            args.followers,
            args.idle_secs,
            Verdicts::Lower.of(cpu < TARGET_IDLE_CPU)
        );
    }
    let _ = sqlx::query("DELETE FROM jobs WHERE workflow_id = $1")
        .bind(workflow)
        .execute(&pool)
        .await;
    let _ = sqlx::query("DELETE FROM workflows WHERE id = $1")
        .bind(workflow)
        .execute(&pool)
        .await;
    Ok(())
}
