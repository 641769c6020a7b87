//! Phase 3, delayed start: jobs whose `startAt` is spread over a window a
//! little ahead; how late each started after its `start_at`, and whether
//! any started early.

use std::time::Duration;

use anyhow::Context;
use chrono::{SecondsFormat, Utc};
use crust_model::Id;
use sqlx::PgPool;

use super::calls::api_create_job;
use super::rows::{job_spans, wait_ok, Batch, Spread};
use super::{Goals, Plan};
use crate::client::Api;
use crate::report::{ms, run_load, show_errors, Summary, Table};

/// Delayed jobs start this long after they are created...
const DELAY_LEAD: Duration = Duration::from_secs(3);
/// ...spread evenly over this window.
pub const DELAY_SPREAD: Duration = Duration::from_secs(10);
/// Targets.
const TARGET_LATE_P50: Duration = Duration::from_millis(3);
const TARGET_LATE_P99: Duration = Duration::from_millis(10);

/// Phase 3: delayed jobs; start_at → started_at, and early starts.
pub async fn delayed_start(
    plan: &Plan,
    api: &Api,
    db: &PgPool,
    delayed_wf: Id,
    goals: &mut Goals,
) -> anyhow::Result<()> {
    let first_start = Utc::now() + to_chrono(DELAY_LEAD)?;
    let step = to_chrono(DELAY_SPREAD)? / i32::try_from(plan.delayed).unwrap_or(i32::MAX);
    eprintln!(
        "phase 3: {} delayed jobs, startAt spread over {} s from {}",
        plan.delayed,
        DELAY_SPREAD.as_secs(),
        first_start.to_rfc3339_opts(SecondsFormat::Millis, true)
    );
    let mut create = run_load(
        plan.clients,
        plan.delayed,
        api_create_job(api, delayed_wf, Some((first_start, step))),
    )
    .await?;
    show_errors("delayed create (API)", &create);
    let created_by = Utc::now();
    if created_by > first_start {
        eprintln!(
            "warning: creating the delayed jobs took longer than {} s; the first ones were created after their startAt",
            DELAY_LEAD.as_secs()
        );
    }
    let batch = Batch::of(delayed_wf, &create.values)
        .context("every job create of the delayed phase failed")?;
    wait_ok(
        db,
        &batch,
        plan.limit + DELAY_LEAD + DELAY_SPREAD,
        "delayed start",
    )
    .await?;
    let late = job_spans(db, &batch, "started_at - start_at").await?;
    let lateness = Spread::of(&late);
    let delayed_summary = Summary::of(&mut create);
    let mut table = Table::new([
        "delayed start",
        "jobs",
        "p50 ms",
        "p99 ms",
        "max ms",
        "started early",
        "errors",
    ]);
    let [p50, p99, max] = lateness.latency.cells();
    table.row([
        "start_at → started_at".to_owned(),
        lateness.count.to_string(),
        p50,
        p99,
        max,
        if lateness.early == 0 {
            "0".to_owned()
        } else {
            format!(
                "{} (up to {} ms early)",
                lateness.early,
                ms(lateness.most_early)
            )
        },
        delayed_summary.errors.to_string(),
    ]);
    table.print();
    goals.add(
        "lateness p50",
        format!("≤ {} ms", TARGET_LATE_P50.as_millis()),
        format!("{} ms", ms(lateness.latency.p50)),
        lateness.latency.p50 <= TARGET_LATE_P50,
    );
    goals.add(
        "lateness p99",
        format!("≤ {} ms", TARGET_LATE_P99.as_millis()),
        format!("{} ms", ms(lateness.latency.p99)),
        lateness.latency.p99 <= TARGET_LATE_P99,
    );
    goals.add(
        "delayed jobs started early",
        "0".to_owned(),
        lateness.early.to_string(),
        lateness.early == 0,
    );

    Ok(())
}

fn to_chrono(duration: Duration) -> anyhow::Result<chrono::Duration> {
    chrono::Duration::from_std(duration).context("duration out of range")
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, SecondsFormat, Utc};

    #[test]
    fn delayed_starts_have_milliseconds() {
        let first = DateTime::parse_from_rfc3339("2030-01-01T00:00:03Z")
            .expect("valid")
            .with_timezone(&Utc);
        let step = chrono::Duration::milliseconds(20);
        let at = (first + step * 7).to_rfc3339_opts(SecondsFormat::Millis, true);
        assert_eq!(at, "2030-01-01T00:00:03.140Z");
    }
}
