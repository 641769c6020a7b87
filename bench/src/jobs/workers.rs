//! The worker processes the jobs bench starts itself (each with its own
//! name and log file), their memory from `/proc`, and stopping them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::process::{Child, Command};

use super::Plan;
use crate::procfs::status_kib;

/// One worker process the bench started.
pub struct Worker {
    pub name: String,
    pub pid: u32,
    log: PathBuf,
    child: Child,
    pub killed: bool,
}

/// How to start the workers: the binary, what it connects to (the queue
/// prefix is the plan's) and what to call them.
pub struct Launch<'a> {
    pub bin: &'a Path,
    pub database_url: &'a str,
    pub amqp_url: &'a str,
    /// The workers are named `{name}-w1`, `{name}-w2`, ...
    pub name: String,
}

/// The bench's workers; dropping them kills them.
pub struct Workers {
    pub list: Vec<Worker>,
}

impl Workers {
    /// How often memory is sampled while the workers are busy.
    pub const RSS_EVERY: Duration = Duration::from_millis(50);

    /// Starts the workers, each with its own name and a log file.
    pub async fn spawn(launch: &Launch<'_>, plan: &Plan) -> anyhow::Result<Workers> {
        if !launch.bin.is_file() {
            bail!(
                "--worker-bin {} is not a file (build it with cargo build --release -p crust-worker)",
                launch.bin.display()
            );
        }
        let mut list = Vec::with_capacity(plan.workers);
        for index in 1..=plan.workers {
            let name = format!("{}-w{index}", launch.name);
            let log = std::env::temp_dir().join(format!("{name}.log"));
            let out = std::fs::File::create(&log)
                .with_context(|| format!("cannot create {}", log.display()))?;
            let err = out.try_clone()?;
            let child = Command::new(launch.bin)
                .env("DATABASE_URL", launch.database_url)
                .env("AMQP_URL", launch.amqp_url)
                .env("CRUST_QUEUE_PREFIX", &plan.queue_prefix)
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
                .with_context(|| format!("cannot start {}", launch.bin.display()))?;
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
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
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
    pub fn rss(&self) -> Vec<Option<f64>> {
        self.list
            .iter()
            .map(|worker| (!worker.killed).then(|| rss_mib(worker.pid)).flatten())
            .collect()
    }

    /// The highest VmRSS of each worker sampled over `window`.
    pub async fn sample_rss(&self, window: Duration) -> Vec<Option<f64>> {
        let end = Instant::now() + window;
        let mut highest = self.rss();
        while Instant::now() < end {
            tokio::time::sleep(Self::RSS_EVERY).await;
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
    pub async fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let worker = &mut self.list[index];
        worker.killed = true;
        worker
            .child
            .kill()
            .await
            .with_context(|| format!("cannot kill worker {}", worker.name))
    }

    /// Kills every worker still running.
    pub async fn stop_all(&mut self) {
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
    status_kib(pid, "VmRSS").ok().map(|kib| kib / 1024.0)
}

/// The worker processes a bench starts, shared by `jobs` and `engine`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// RabbitMQ, for the workers the bench starts.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,

    /// Queue prefix of the running api and scheduler.
    #[arg(long, env = "CRUST_QUEUE_PREFIX", default_value = "crust")]
    pub queue_prefix: String,

    /// The `crust-worker` binary to start.
    #[arg(long, default_value = "target/release/crust-worker")]
    pub worker_bin: std::path::PathBuf,

    /// Worker processes to start (the jobs bench's recovery needs at least 2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub workers: u32,

    /// Jobs each worker runs at once (CRUST_WORKER_CONCURRENCY).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub concurrency: u16,

    /// Worker lease in milliseconds (CRUST_WORKER_LEASE_MS).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1_000..=600_000))]
    pub lease_ms: u64,
}
