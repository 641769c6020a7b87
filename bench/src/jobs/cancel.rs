//! Phase 4, cancel: sleeping jobs on every worker (the busy memory
//! reading is taken while they run), then each cancelled in turn and
//! timed until `GET /job/{id}` shows `cancelled`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crust_model::Id;
use sqlx::PgPool;

use super::calls::api_create_job;
use super::rows::{wait_running, Batch};
use super::{Goals, Plan};
use crate::client::Api;
use crate::report::{ms, run_load, show_errors, Phase, Summary, Table};

/// The cancel phase's jobs sleep this long (they are cancelled long before);
/// under the workers' `CRUST_DURABLE_SLEEP_SECS` (30), so they keep running
/// rather than park.
pub const CANCEL_SLEEP_SECONDS: u32 = 25;
/// How often a cancelled job is read back through the API.
const CANCEL_POLL: Duration = Duration::from_millis(2);
/// Longest wait for one cancelled job to show `cancelled`.
const CANCEL_LIMIT: Duration = Duration::from_secs(10);
/// Target.
const TARGET_CANCEL_P99: Duration = Duration::from_millis(200);

/// The sleeping jobs the cancel phase created, all running.
pub struct Sleeping {
    pub batch: Batch,
    /// Their IDs, in ascending order.
    pub ids: Vec<Id>,
}

/// Creates the sleeping jobs and waits until every one of them runs.
pub async fn start_sleeping(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    cancel_wf: Id,
) -> anyhow::Result<Sleeping> {
    eprintln!(
        "phase 4: {} sleeping jobs, then cancel each and read it back every {} ms",
        plan.cancel_jobs,
        CANCEL_POLL.as_millis()
    );
    let create = run_load(
        plan.clients.min(plan.cancel_jobs),
        plan.cancel_jobs,
        api_create_job(api, cancel_wf, None),
    )
    .await?;
    show_errors("sleeping create (API)", &create);
    if create.errors > 0 {
        bail!(
            "{} of {} sleeping jobs could not be created",
            create.errors,
            plan.cancel_jobs
        );
    }
    let batch = Batch::of(cancel_wf, &create.values).context("no sleeping job was created")?;
    wait_running(db, &batch, plan.limit).await?;
    let mut ids = create.values;
    ids.sort_unstable();
    Ok(Sleeping { batch, ids })
}

/// Cancels every sleeping job in turn and prints the cancel table.
pub async fn cancel(api: &Api, sleeping: &Sleeping, goals: &mut Goals) {
    let mut cancels = cancel_each(api, &sleeping.ids).await;
    show_errors("cancel (API)", &cancels);
    let cancel = Summary::of(&mut cancels);
    let mut table = Table::new(["cancel", "jobs", "p50 ms", "p99 ms", "max ms", "errors"]);
    let [p50, p99, max] = cancel.latency.cells();
    table.row([
        "DELETE sent → GET shows cancelled".to_owned(),
        cancel.requests.to_string(),
        p50,
        p99,
        max,
        cancel.errors.to_string(),
    ]);
    table.print();
    goals.add(
        "cancel p99",
        format!("≤ {} ms", TARGET_CANCEL_P99.as_millis()),
        format!("{} ms", ms(cancel.latency.p99)),
        cancel.latency.p99 <= TARGET_CANCEL_P99 && cancel.errors == 0,
    );
}

/// Cancels each job in turn and times it from just before the DELETE until
/// `GET /job/{id}` shows `cancelled`.
async fn cancel_each(api: &Api, ids: &[Id]) -> Phase<()> {
    let started = Instant::now();
    let mut phase = Phase::new(ids.len());
    for &id in ids {
        let sent = Instant::now();
        let result = async {
            api.cancel_job(id).await?;
            loop {
                let status = api.job_status(id).await?;
                match status.as_str() {
                    "cancelled" => return Ok(()),
                    "queued" | "running" => {}
                    other => return Err(format!("job {id} ended {other}, not cancelled")),
                }
                if sent.elapsed() >= CANCEL_LIMIT {
                    return Err(format!(
                        "job {id} still {status} {} s after DELETE",
                        CANCEL_LIMIT.as_secs()
                    ));
                }
                tokio::time::sleep(CANCEL_POLL).await;
            }
        }
        .await;
        phase.record(sent.elapsed(), result);
    }
    phase.elapsed = started.elapsed();
    phase
}
