//! Phase 7, the physical limit: the same row work per job as the pipeline
//! does, straight in Postgres from C connections, one statement per round
//! trip; the end-to-end rate of phase 1 is given as a share of it.

use std::time::Duration;

use anyhow::{bail, Context};
use crust_model::Id;
use sqlx::PgPool;

use super::rows::connection_use;
use super::throughput::EndToEnd;
use super::{Goals, Plan};
use crate::client::DbArgs;
use crate::report::{run_load, show_errors, Op, Summary, Table};

/// Log rows the baseline writes per job.
const BASELINE_LOG_ROWS: i32 = 3;
/// Targets: the end-to-end rate as a share of the baseline's.
const TARGET_SHARE: f64 = 1.00;
const MILESTONE_SHARE: f64 = 0.50;

/// Phase 7: the same row work per job straight in Postgres, C connections,
/// one statement per round trip.
pub async fn baseline(
    plan: &Plan,
    db: &PgPool,
    database: &DbArgs,
    throughput_wf: Id,
    e2e: &EndToEnd,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    eprintln!(
        "phase 7: {} jobs' row work straight in Postgres, {} connections, one statement per round trip",
        plan.jobs, plan.clients
    );
    let pool = database
        .connect_lazy(u32::try_from(plan.clients).unwrap_or(u32::MAX))
        .context("cannot build the baseline pool")?;
    let baseline = async {
        // Open every pooled connection before anything is timed.
        let mut held = Vec::with_capacity(plan.clients);
        for _ in 0..plan.clients {
            match pool.acquire().await {
                Ok(connection) => held.push(connection),
                Err(err) => {
                    let (max, used) = connection_use(db).await.unwrap_or((0, 0));
                    bail!(
                        "cannot open the baseline's {} Postgres connections ({} open): {err}; \
                         the server allows {max} and {used} are in use",
                        plan.clients,
                        held.len()
                    );
                }
            }
        }
        drop(held);
        let mut phase = run_load(
            plan.clients,
            plan.jobs,
            pg_job(&pool, throughput_wf, plan.lease),
        )
        .await?;
        show_errors("row work (Postgres)", &phase);
        anyhow::Ok(Summary::of(&mut phase))
    }
    .await;
    pool.close().await;
    let baseline = baseline?;
    let share = if baseline.per_second > 0.0 {
        e2e.rate / baseline.per_second
    } else {
        0.0
    };
    let mut table = Table::new([
        "physical limit",
        "jobs",
        "jobs/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "errors",
        "e2e÷pg",
    ]);
    table.row([
        "end to end (Crust)".to_owned(),
        e2e.jobs.to_string(),
        format!("{:.0}", e2e.rate),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format!("{:.1}%", 100.0 * share),
    ]);
    let [p50, p99, max] = baseline.latency.cells();
    table.row([
        "postgres row work, unbatched".to_owned(),
        baseline.requests.to_string(),
        format!("{:.0}", baseline.per_second),
        p50,
        p99,
        max,
        baseline.errors.to_string(),
    ]);
    table.print();
    println!(
        "row work per job: INSERT job RETURNING id; UPDATE to running; {BASELINE_LOG_ROWS} × INSERT job_logs; UPDATE to ok (6 round trips, autocommit)"
    );
    goals.add(
        "end to end ÷ postgres (milestone)",
        format!("≥ {:.0}%", 100.0 * MILESTONE_SHARE),
        format!("{:.1}%", 100.0 * share),
        share >= MILESTONE_SHARE,
    );
    goals.add(
        "end to end ÷ postgres",
        format!("≥ {:.0}%", 100.0 * TARGET_SHARE),
        format!("{:.1}%", 100.0 * share),
        share >= TARGET_SHARE,
    );
    Ok(())
}

/// The row work of one job, straight in Postgres, one autocommit
/// statement per round trip.
fn pg_job(
    pool: &PgPool,
    workflow_id: Id,
    lease: Duration,
) -> impl Fn(usize) -> Op<()> + Clone + Send + 'static {
    let pool = pool.clone();
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    move |_| {
        let pool = pool.clone();
        Box::pin(async move {
            let fail = |step: &str, err: sqlx::Error| format!("{step} failed: {err}");
            // Marked published, so the scheduler never picks these rows up.
            let id: Id = sqlx::query_scalar(
                "INSERT INTO jobs (workflow_id, published_at) VALUES ($1, now()) RETURNING id",
            )
            .bind(workflow_id)
            .fetch_one(&pool)
            .await
            .map_err(|err| fail("INSERT job", err))?;
            sqlx::query(
                "UPDATE jobs SET status = 'running', attempt = attempt + 1, started_at = now(),
                        lease_until = now() + $2 * interval '1 millisecond', worker = 'bench-pg'
                 WHERE id = $1",
            )
            .bind(id)
            .bind(lease_ms)
            .execute(&pool)
            .await
            .map_err(|err| fail("UPDATE to running", err))?;
            for seq in 1..=BASELINE_LOG_ROWS {
                sqlx::query(
                    "INSERT INTO job_logs (job_id, seq, ts, level, task, message, attempt)
                     VALUES ($1, $2, now(), 'info', 'say', 'bench', 1)",
                )
                .bind(id)
                .bind(seq)
                .execute(&pool)
                .await
                .map_err(|err| fail("INSERT job_logs", err))?;
            }
            sqlx::query(
                "UPDATE jobs SET status = 'ok', finished_at = now(), lease_until = NULL
                 WHERE id = $1",
            )
            .bind(id)
            .execute(&pool)
            .await
            .map_err(|err| fail("UPDATE to ok", err))?;
            Ok(())
        })
    }
}
