//! `crust-bench memory`: a running worker's memory under jobs that fetch
//! big JSON. The bench serves a JSON array of small objects (0.95 MB by
//! default) from 127.0.0.1, creates a workflow of `--tasks` `http` tasks
//! that each fetch it, runs one job, then `--jobs` jobs at once, and reads
//! the worker's resident memory from `/proc/<pid>/status` (VmRSS sampled
//! while they run, VmHWM — the kernel's peak — after each phase).
//!
//! The worker must reach 127.0.0.1: once the `http` task refuses loopback
//! by default, start it with `CRUST_HTTP_ALLOW=127.0.0.1/32`.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use crust_model::Id;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::client::{Api, ApiArgs};
use crate::procfs::status_kib;
use crate::report::Verdicts;

/// Targets of issue 9.
const TARGET_ONE_MB: f64 = 200.0;
const TARGET_MANY_MB: f64 = 1000.0;
/// How often VmRSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(20);
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Options of `crust-bench memory`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: ApiArgs,

    /// The worker to measure (default: the only process named
    /// `crust-worker`). It must be the only worker on the queue.
    #[arg(long)]
    worker_pid: Option<u32>,

    /// `http` tasks in the workflow.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    tasks: u32,

    /// Objects in the served JSON array (75 000 ≈ 0.95 MB).
    #[arg(long, default_value_t = 75_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    objects: u32,

    /// Jobs run at once in the second phase.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    jobs: u32,

    /// Longest wait, in seconds, for a phase.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    deadline: u64,
}

/// The served document: `[{"id":0},{"id":1},…]`.
fn document(objects: u32) -> Vec<u8> {
    let mut out = String::with_capacity(objects as usize * 13 + 2);
    out.push('[');
    for id in 0..objects {
        if id > 0 {
            out.push(',');
        }
        out.push_str(&format!("{{\"id\":{id}}}"));
    }
    out.push(']');
    out.into_bytes()
}

/// Serves `body` as JSON to every request on 127.0.0.1, from plain
/// threads (one per connection); returns its URL.
fn serve(body: Vec<u8>) -> anyhow::Result<String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}/items.json", listener.local_addr()?);
    let mut response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    response.extend_from_slice(&body);
    let response: Arc<[u8]> = response.into();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else {
                continue;
            };
            let response = response.clone();
            std::thread::spawn(move || {
                // Read the request head, then answer and close.
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
                    match socket.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = socket.write_all(&response);
                let _ = socket.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    Ok(url)
}

/// A `/proc/<pid>/status` field in MB (10^6 bytes).
fn status_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    Ok(kib_to_mb(status_kib(pid, field)?))
}

fn kib_to_mb(kib: f64) -> f64 {
    kib * 1024.0 / 1e6
}

/// What one phase measured.
struct Phase {
    jobs: usize,
    seconds: f64,
    peak_rss_mb: f64,
    hwm_mb: f64,
    after_rss_mb: f64,
}

impl Api {
    async fn status_of(&self, job: Id) -> anyhow::Result<(String, Option<String>)> {
        let answer = self
            .send(Method::GET, &format!("/job/{job}"), None, StatusCode::OK)
            .await?;
        let status = answer["response"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let error = answer["response"]["error"].as_str().map(str::to_owned);
        Ok((status, error))
    }
}

/// Runs `count` jobs of `workflow` at once and samples the worker's memory
/// until they have all ended; any job not `ok` fails the bench.
async fn phase(
    api: &Api,
    pid: u32,
    workflow: Id,
    count: usize,
    deadline: Duration,
) -> anyhow::Result<Phase> {
    let started = Instant::now();
    let mut jobs = Vec::with_capacity(count);
    for _ in 0..count {
        let job = json!({"workflowID": workflow});
        jobs.push(api.create("/job/", &job, "jobID").await?);
    }
    let mut peak = status_mb(pid, "VmRSS")?;
    let mut pending = jobs.clone();
    let mut last_poll = Instant::now();
    while !pending.is_empty() {
        if started.elapsed() > deadline {
            bail!(
                "{} jobs still not finished after {deadline:?}",
                pending.len()
            );
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
        peak = peak.max(status_mb(pid, "VmRSS")?);
        if last_poll.elapsed() < Duration::from_millis(250) {
            continue;
        }
        last_poll = Instant::now();
        let mut still = Vec::new();
        for job in pending {
            match api.status_of(job).await? {
                (status, _) if status == "queued" || status == "running" => still.push(job),
                (status, _) if status == "ok" => {}
                (status, error) => bail!("job {job} ended {status}: {error:?}"),
            }
        }
        pending = still;
    }
    Ok(Phase {
        jobs: count,
        seconds: started.elapsed().as_secs_f64(),
        peak_rss_mb: peak,
        hwm_mb: status_mb(pid, "VmHWM")?,
        after_rss_mb: status_mb(pid, "VmRSS")?,
    })
}

/// Runs the bench.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let pid = match args.worker_pid {
        Some(pid) => pid,
        None => crate::procfs::find("crust-worker", "--worker-pid")?,
    };
    let api = args.target.connect(1, REQUEST_TIMEOUT)?;
    let body = document(args.objects);
    let size = body.len();
    let url = serve(body)?;
    let tasks: Vec<Value> = (1..=args.tasks)
        .map(|n| json!({"name": format!("fetch{n}"), "kind": "http", "params": {"url": url}}))
        .collect();
    let name = format!("bench-memory-{}", std::process::id());
    let workflow = api
        .create(
            "/workflow/",
            &json!({"name": name, "tasks": tasks, "timeout": 0}),
            "workflowID",
        )
        .await?;
    let deadline = Duration::from_secs(args.deadline);
    let idle = status_mb(pid, "VmRSS")?;
    println!(
        "worker pid {pid}; serving {} objects ({:.2} MB of JSON) at {url}; {} http tasks per job",
        args.objects,
        size as f64 / 1e6,
        args.tasks
    );
    println!("worker VmRSS before: {idle:.1} MB");
    let result = async {
        let one = phase(&api, pid, workflow, 1, deadline).await?;
        let many = phase(&api, pid, workflow, args.jobs as usize, deadline).await?;
        anyhow::Ok((one, many))
    }
    .await;
    let path = format!("/workflow/{workflow}");
    if let Err(err) = api.send(Method::DELETE, &path, None, StatusCode::OK).await {
        eprintln!("cannot delete the bench's workflow {workflow}: {err:#}");
    }
    let (one, many) = result?;
    println!();
    println!("| jobs at once | time s | peak VmRSS sampled MB | VmHWM after MB | VmRSS after MB | target |");
    println!("|---|---|---|---|---|---|");
    for (phase, target) in [(&one, TARGET_ONE_MB), (&many, TARGET_MANY_MB)] {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | < {target} MB: {} |",
            phase.jobs,
            phase.seconds,
            phase.peak_rss_mb,
            phase.hwm_mb,
            phase.after_rss_mb,
            Verdicts::Lower.of(phase.hwm_mb < target)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_document_is_about_a_megabyte_of_small_objects() {
        let body = document(75_000);
        assert!((900_000..1_000_000).contains(&body.len()), "{}", body.len());
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value[74_999], json!({"id": 74_999}));
    }

    #[test]
    fn status_fields_are_shown_in_mb() {
        assert_eq!(kib_to_mb(204_800.0), 209.7152);
    }
}
