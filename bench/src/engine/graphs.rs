//! Phase 3, parallel against sequence: a job of 10 `log` tasks that all
//! have `needs: []` (workflow parallelism 10), the same 10 in sequence
//! (no `needs`), and a job of 1 `log` task (the floor both are measured
//! against), one job at a time and taking turns so drift hits all three
//! alike; the run time of each job is `finished_at - started_at`.

use crust_model::Id;
use serde_json::json;
use sqlx::PgPool;

use super::calls::{median, min_max, run_one};
use super::Sizes;
use crate::client::Api;
use crate::jobs::Plan;
use crate::report::Table;

/// Tasks of the parallel and the sequence workflows.
pub const GRAPH_TASKS: usize = 10;

/// The three workflows of phase 3.
pub struct Shapes {
    /// 10 tasks with `needs: []`, parallelism 10.
    pub parallel: Id,
    /// The same 10, each needing the one before.
    pub sequence: Id,
    /// One task: the floor.
    pub single: Id,
}

/// Phase 3: `sizes.graph_jobs` jobs of each shape, one at a time.
pub async fn graphs(
    plan: &Plan,
    sizes: &Sizes,
    api: &Api,
    db: &PgPool,
    shapes: &Shapes,
) -> anyhow::Result<()> {
    eprintln!(
        "phase 3: {} jobs each of {GRAPH_TASKS} parallel tasks, {GRAPH_TASKS} in sequence and 1 task, one at a time",
        sizes.graph_jobs
    );
    let none = json!({});
    let mut times: [Vec<f64>; 3] = Default::default();
    for _ in 0..sizes.graph_jobs {
        for (slot, (workflow, what)) in times.iter_mut().zip([
            (shapes.parallel, "parallel"),
            (shapes.sequence, "sequence"),
            (shapes.single, "single-task"),
        ]) {
            slot.push(run_one(api, db, workflow, &none, plan.limit, what).await?);
        }
    }
    let [parallel, sequence, single] = times.map(|seconds| {
        let (min, max) = min_max(&seconds);
        (seconds.len(), median(&seconds), min, max)
    });

    let mut table = Table::new([
        "graph (one job at a time)",
        "jobs",
        "median ms",
        "min ms",
        "max ms",
    ]);
    let ms = |seconds: f64| format!("{:.2}", seconds * 1000.0);
    for (name, (jobs, mid, min, max)) in [
        (
            format!("{GRAPH_TASKS} log tasks, needs [] (parallelism {GRAPH_TASKS})"),
            parallel,
        ),
        (format!("{GRAPH_TASKS} log tasks in sequence"), sequence),
        ("baseline: 1 log task".to_owned(), single),
    ] {
        table.row([name, jobs.to_string(), ms(mid), ms(min), ms(max)]);
    }
    table.print();
    let (par, seq, one) = (parallel.1, sequence.1, single.1);
    let per_task = (seq - one) / (GRAPH_TASKS - 1) as f64;
    println!(
        "graphs: sequence/parallel {:.2}× (at most {GRAPH_TASKS}× on the tasks' share); \
         parallel is {} ms over 1 task (its floor); each task in sequence adds {} ms",
        if par > 0.0 { seq / par } else { 0.0 },
        ms(par - one),
        ms(per_task),
    );
    Ok(())
}
