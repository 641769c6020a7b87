//! Before measuring: rounds of short jobs until every worker has run one,
//! which also proves they consume the queue the api publishes to.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crust_model::Id;
use sqlx::PgPool;

use super::calls::api_create_job;
use super::rows::{wait_ok, Batch};
use super::workers::Workers;
use super::Plan;
use crate::client::Api;
use crate::report::{run_load, show_errors};

/// Warm-up jobs per round, until every worker has run one.
const WARMUP_JOBS: usize = 64;

/// Runs rounds of short jobs until every worker has run one; warns about
/// workers the bench did not start that take jobs from the same queue.
pub async fn warm_up(
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
