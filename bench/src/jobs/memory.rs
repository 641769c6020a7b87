//! Phase 5, worker memory: each worker's VmRSS idle (after the warm-up)
//! and busy (sampled while the cancel phase's sleeping jobs all run).

use std::time::Duration;

use sqlx::PgPool;

use super::rows::{held_by_worker, Batch};
use super::workers::Workers;
use super::{Goals, Plan, CANCEL_JOBS_PER_WORKER};
use crate::report::Table;

/// How long memory is sampled while the workers are busy.
const RSS_WINDOW: Duration = Duration::from_secs(1);
/// Targets.
const TARGET_RSS_IDLE_MIB: f64 = 25.0;
const TARGET_RSS_BUSY_MIB: f64 = 100.0;

/// The busy reading: each worker's highest VmRSS, and the jobs it held.
pub struct Busy {
    rss: Vec<Option<f64>>,
    held: Vec<(String, usize)>,
}

impl Busy {
    /// Samples the workers' memory while the `running` jobs run.
    pub async fn read(db: &PgPool, workers: &Workers, running: &Batch) -> anyhow::Result<Busy> {
        let rss = workers.sample_rss(RSS_WINDOW).await;
        let held = held_by_worker(db, running).await?;
        Ok(Busy { rss, held })
    }

    /// How many of the running jobs the worker `name` held.
    fn held_by(&self, name: &str) -> usize {
        self.held
            .iter()
            .find(|(holder, _)| holder == name)
            .map_or(0, |(_, count)| *count)
    }
}

/// Prints the worker memory table and sets the memory targets.
pub fn report(
    plan: &Plan,
    workers: &Workers,
    idle_rss: &[Option<f64>],
    busy: &Busy,
    goals: &mut Goals,
) {
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
            mib(busy.rss[index]),
            busy.held_by(&worker.name).to_string(),
        ]);
    }
    table.print();
    let idle_max = max_mib(idle_rss);
    let busy_max = max_mib(&busy.rss);
    let fewest_held = workers
        .list
        .iter()
        .map(|worker| busy.held_by(&worker.name))
        .min()
        .unwrap_or(0);
    println!(
        "busy = the highest VmRSS sampled every {} ms for {} s while all {} sleeping jobs ran",
        Workers::RSS_EVERY.as_millis(),
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
}

fn mib(value: Option<f64>) -> String {
    value.map_or("n/a".to_owned(), |v| format!("{v:.1}"))
}

fn max_mib(values: &[Option<f64>]) -> Option<f64> {
    values.iter().flatten().copied().reduce(f64::max)
}
