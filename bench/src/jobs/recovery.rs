//! Phase 6, recovery: SIGKILL the worker running a job and time the job's
//! second run on another worker (bounded by the lease).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use crust_model::Id;
use sqlx::PgPool;

use super::rows::{poll_until, Check, DB_POLL};
use super::workers::Workers;
use super::{Goals, Plan};
use crate::client::Api;
use crate::report::Table;

/// The recovery job sleeps this long.
pub const RECOVERY_SLEEP_SECONDS: u32 = 2;
/// Target.
const TARGET_RECOVERY: Duration = Duration::from_secs(10);

/// Phase 6: SIGKILL the worker running a job; time the job's second run.
pub async fn recovery(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    workers: &mut Workers,
    recovery_wf: Id,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    eprintln!("phase 6: one {RECOVERY_SLEEP_SECONDS} s job; SIGKILL its worker once it runs");
    let recovery = recover(plan, api, db, workers, recovery_wf).await?;
    let mut table = Table::new(["recovery", "seconds"]);
    table.row([
        "kill → running again (attempt 2)".to_owned(),
        format!("{:.3}", recovery.running.as_secs_f64()),
    ]);
    table.row([
        "kill → ok".to_owned(),
        format!("{:.3}", recovery.ok.as_secs_f64()),
    ]);
    table.print();
    println!(
        "killed {} holding job {}; the lease is {} ms",
        recovery.killed,
        recovery.job,
        plan.lease.as_millis()
    );
    goals.add(
        "recovery (kill → running again)",
        format!("< {} s", TARGET_RECOVERY.as_secs()),
        format!("{:.2} s", recovery.running.as_secs_f64()),
        recovery.running < TARGET_RECOVERY,
    );
    Ok(())
}

/// What the recovery phase measured.
struct Recovery {
    job: Id,
    killed: String,
    running: Duration,
    ok: Duration,
}

/// Starts one sleeping job, SIGKILLs the worker that runs it, and times
/// the job's second run.
async fn recover(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    workers: &mut Workers,
    workflow_id: Id,
) -> anyhow::Result<Recovery> {
    let job = api
        .create_job(workflow_id, None)
        .await
        .map_err(anyhow::Error::msg)
        .context("cannot create the recovery job")?;
    let state = |db: &PgPool| {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (String, i32, Option<String>, Option<String>)>(
                "SELECT status, attempt, worker, error FROM jobs WHERE id = $1",
            )
            .bind(job)
            .fetch_one(&db)
            .await
            .with_context(|| format!("cannot read job {job}"))
        }
    };
    let state = &state;
    let what = format!("waiting for recovery job {job} to run");
    let what = what.as_str();
    let holder = poll_until(what, plan.limit, DB_POLL, || async move {
        let (status, attempt, worker, _) = state(db).await?;
        match (status.as_str(), worker) {
            ("running", Some(worker)) => Ok(Check::Done(worker)),
            ("queued", _) => Ok(Check::Waiting("queued".into())),
            (other, _) => bail!("{what}: it is {other} (attempt {attempt})"),
        }
    })
    .await?;
    let index = workers
        .list
        .iter()
        .position(|worker| worker.name == holder && !worker.killed)
        .with_context(|| format!("job {job} runs on {holder}, which the bench did not start"))?;
    let killed_at = Instant::now();
    workers.kill(index).await?;

    let what = format!("waiting for job {job} to run again after its worker was killed");
    let what = what.as_str();
    let running = poll_until(what, plan.limit, DB_POLL, || async move {
        let (status, attempt, _, error) = state(db).await?;
        match status.as_str() {
            "running" | "ok" if attempt >= 2 => Ok(Check::Done(killed_at.elapsed())),
            "running" | "queued" => Ok(Check::Waiting(format!("{status}, attempt {attempt}"))),
            other => bail!(
                "{what}: it ended {other} (attempt {attempt}, error: {})",
                error.as_deref().unwrap_or("none")
            ),
        }
    })
    .await?;
    let what = format!("waiting for job {job} to finish its second run");
    let what = what.as_str();
    let ok = poll_until(what, plan.limit, DB_POLL, || async move {
        let (status, attempt, _, error) = state(db).await?;
        match status.as_str() {
            "ok" => Ok(Check::Done(killed_at.elapsed())),
            "running" | "queued" => Ok(Check::Waiting(format!("{status}, attempt {attempt}"))),
            other => bail!(
                "{what}: it ended {other} (attempt {attempt}, error: {})",
                error.as_deref().unwrap_or("none")
            ),
        }
    })
    .await?;
    Ok(Recovery {
        job,
        killed: workers.list[index].name.clone(),
        running,
        ok,
    })
}
