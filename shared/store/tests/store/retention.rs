//! Retention by partitions: ranges of job IDs are made ahead of the newest
//! job and hold its logs and steps; a range whose jobs all finished before
//! the cutoff is dropped whole, one job that lives on keeps its range; what
//! no range covers is pruned row by row.

use std::time::Duration;

use crust_model::workflow::WorkflowInput;
use crust_model::Id;
use crust_store::jobs::retention::{drop_expired, ensure_partitions, prune};
use crust_store::workflows;
use serde_json::json;
use sqlx::PgPool;

use crate::support::Store;

const WEEK: Duration = Duration::from_secs(7 * 86_400);

async fn workflow(pool: &PgPool) -> Id {
    let input: WorkflowInput = serde_json::from_value(
        json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}),
    )
    .unwrap();
    workflows::create(pool, input.validate().unwrap())
        .await
        .unwrap()
        .id
}

/// Adds jobs until the newest ID is at least `upto`, each finished eight
/// days ago with one log line and one step.
async fn jobs_upto(pool: &PgPool, workflow: Id, upto: i64) {
    let newest = newest(pool).await;
    sqlx::query(
        "WITH made AS (
             INSERT INTO jobs (workflow_id, status, finished_at)
             SELECT $1, 'ok', now() - interval '8 days' FROM generate_series(1, $2)
             RETURNING id),
         logged AS (
             INSERT INTO job_logs (job_id, seq, ts, level, message, attempt)
             SELECT id, 1, now(), 'info', 'line', 1 FROM made)
         INSERT INTO job_steps (job_id, task, status, attempt)
         SELECT id, 't', 'ok', 1 FROM made",
    )
    .bind(workflow)
    .bind(upto - newest)
    .execute(pool)
    .await
    .unwrap();
}

async fn newest(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM jobs")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The ranges made by the scheduler (not the migration's range 0).
async fn ranges(pool: &PgPool) -> Vec<(i64, i64)> {
    sqlx::query_as("SELECT lo, hi FROM job_partitions WHERE lo > 0 ORDER BY lo")
        .fetch_all(pool)
        .await
        .unwrap()
}

/// The partition a job's log line is stored in.
async fn home(pool: &PgPool, job: i64) -> String {
    sqlx::query_scalar("SELECT tableoid::regclass::text FROM job_logs WHERE job_id = $1")
        .bind(job)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn ranges_are_made_ahead_of_the_newest_job_once_and_hold_its_rows() {
    let store = Store::new().await;
    let pool = &store.pool;
    let workflow = workflow(pool).await;
    jobs_upto(pool, workflow, 10).await;

    assert_eq!(ensure_partitions(pool, 100, 2).await.unwrap(), 2);
    let made = ranges(pool).await;
    assert_eq!(made.len(), 2, "{made:?}");
    assert!(
        made[0].0 > 10,
        "a range starts past the newest job: {made:?}"
    );
    assert!(
        made.windows(2).all(|w| w[0].1 == w[1].0),
        "contiguous: {made:?}"
    );
    assert!(made.iter().all(|(lo, hi)| hi - lo == 100), "{made:?}");
    assert_eq!(
        ensure_partitions(pool, 100, 2).await.unwrap(),
        0,
        "nothing twice"
    );

    // A job in the gap before the first range goes to the default
    // partition; one inside a range to that range's partition.
    let first = made[0].0;
    jobs_upto(pool, workflow, first).await;
    assert_eq!(home(pool, 11).await, "job_logs_default");
    assert_eq!(home(pool, first).await, format!("job_logs_p{first}"));

    // Two schedulers at once: both succeed, each range is made once.
    jobs_upto(pool, workflow, first + 150).await;
    let (a, b) = tokio::join!(
        ensure_partitions(pool, 100, 2),
        ensure_partitions(pool, 100, 2)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 2);
    let made = ranges(pool).await;
    assert!(made.windows(2).all(|w| w[0].1 == w[1].0), "{made:?}");
    assert_eq!(made.last().unwrap().1, first + 400);
}

#[tokio::test]
async fn an_expired_range_is_dropped_whole_and_one_live_job_keeps_its_range() {
    let store = Store::new().await;
    let pool = &store.pool;
    let workflow = workflow(pool).await;
    // Jobs from before any range (in the default partition)...
    jobs_upto(pool, workflow, 50).await;
    ensure_partitions(pool, 100, 3).await.unwrap();
    let first = ranges(pool).await[0].0;
    // ...and two full ranges below the newest job.
    jobs_upto(pool, workflow, first + 200).await;
    let live = first + 150;
    sqlx::query("UPDATE jobs SET status = 'running', finished_at = NULL WHERE id = $1")
        .bind(live)
        .execute(pool)
        .await
        .unwrap();

    let pruned = drop_expired(pool, WEEK, 10).await.unwrap();
    // The first range, and the migration's empty range 0.
    assert_eq!(pruned.dropped, 2, "{pruned:?}");
    assert_eq!(pruned.jobs, 100, "{pruned:?}");
    let in_first = format!("SELECT count(*) FROM jobs WHERE id >= {first} AND id < {first} + 100");
    assert_eq!(count(pool, &in_first).await, 0);
    let partition = format!("SELECT count(*) FROM pg_class WHERE relname = 'job_logs_p{first}'");
    assert_eq!(count(pool, &partition).await, 0, "the partition is gone");
    // The range holding a running job keeps its jobs, logs and steps.
    let second = format!(
        "SELECT count(*) FROM job_logs_p{} l JOIN job_steps_p{} s USING (job_id)",
        first + 100,
        first + 100
    );
    assert_eq!(count(pool, &second).await, 100);
    assert_eq!(drop_expired(pool, WEEK, 10).await.unwrap().dropped, 0);

    // What no dropped range covers goes row by row: the jobs before the
    // first range, and the finished jobs of the held range.
    let before = count(
        pool,
        &format!("SELECT count(*) FROM jobs WHERE id < {first}"),
    )
    .await;
    assert!(before >= 50, "{before}");
    let pruned = prune(pool, WEEK, 10_000).await.unwrap();
    assert_eq!(
        pruned as i64,
        before + 99 + 1,
        "all finished jobs but the running one"
    );
    assert_eq!(count(pool, "SELECT count(*) FROM jobs").await, 1);
    assert_eq!(count(pool, "SELECT count(*) FROM job_logs").await, 1);
}
