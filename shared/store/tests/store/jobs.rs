//! Claim, heartbeat, finish, hand back, log appends, release, rescue and
//! cron, each against its rule.

use std::time::Duration;

use chrono::Utc;
use crust_model::job::JobStatus;
use crust_model::workflow::WorkflowInput;
use crust_model::Id;
use crust_store::jobs::{self, Outcome, APPEND_LOGS_SQL};
use crust_store::workflows;
use crust_testing::TestDb;
use serde_json::{json, Value};
use sqlx::PgPool;

const LEASE: Duration = Duration::from_secs(60);

struct Store {
    pool: PgPool,
    _db: TestDb,
}

async fn store() -> Store {
    let db = TestDb::new().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    Store { pool, _db: db }
}

impl Store {
    async fn workflow(&self, definition: Value) -> Id {
        let input: WorkflowInput = serde_json::from_value(definition).unwrap();
        workflows::create(&self.pool, input.validate().unwrap())
            .await
            .unwrap()
            .id
    }

    async fn job(&self) -> Id {
        let workflow = self
            .workflow(json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}))
            .await;
        jobs::create(&self.pool, workflow, Id(1), None, Default::default(), None)
            .await
            .unwrap()
            .job
            .id
    }

    async fn status(&self, id: Id) -> (JobStatus, i32, Option<String>) {
        let job = jobs::get(&self.pool, id).await.unwrap();
        (job.status, job.attempt, job.error)
    }

    /// Moves a running job's lease into the past, as if its worker died.
    async fn expire(&self, id: Id) {
        sqlx::query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn append(&self, id: Id, attempt: i32, messages: &[&str]) -> u64 {
        append(&self.pool, id, attempt, messages).await
    }

    async fn seqs(&self, id: Id) -> Vec<i32> {
        sqlx::query_scalar("SELECT seq FROM job_logs WHERE job_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

/// Appends log lines of one run with the worker's statement; returns how
/// many were written.
async fn append(pool: &PgPool, id: Id, attempt: i32, messages: &[&str]) -> u64 {
    let n = messages.len();
    sqlx::query(APPEND_LOGS_SQL)
        .bind(vec![id; n])
        .bind(vec![attempt; n])
        .bind(vec![Utc::now(); n])
        .bind(vec!["info"; n])
        .bind(vec![None::<String>; n])
        .bind(messages)
        .bind(vec![None::<Value>; n])
        .execute(pool)
        .await
        .unwrap()
        .rows_affected()
}

fn outcome(id: Id, attempt: i32, status: JobStatus) -> Outcome {
    Outcome {
        id,
        attempt,
        status,
        error: None,
    }
}

#[tokio::test]
async fn a_claim_bumps_the_attempt_and_a_second_claim_gets_nothing() {
    let s = store().await;
    let id = s.job().await;
    let claimed = jobs::claim(&s.pool, &[id], "w1", LEASE).await.unwrap().runs;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);
    assert_eq!(
        claimed[0].tasks.len(),
        1,
        "the definition comes with the claim"
    );
    assert_eq!(s.status(id).await.0, JobStatus::Running);
    let again = jobs::claim(&s.pool, &[id], "w2", LEASE).await.unwrap().runs;
    assert!(again.is_empty(), "a running job cannot be claimed twice");
}

#[tokio::test]
async fn every_write_of_a_run_is_fenced_on_its_attempt() {
    let s = store().await;
    let id = s.job().await;
    jobs::claim(&s.pool, &[id], "old", LEASE).await.unwrap();
    s.expire(id).await;
    jobs::rescue_expired(&s.pool, 3).await.unwrap();
    let second = jobs::claim(&s.pool, &[id], "new", LEASE)
        .await
        .unwrap()
        .runs;
    assert_eq!(second[0].attempt, 2);

    // The first run lost its claim: none of its writes apply.
    assert!(jobs::heartbeat(&s.pool, &[(id, 1)], LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.append(id, 1, &["late line"]).await, 0);
    assert!(!jobs::hand_back(&s.pool, id, 1).await.unwrap());
    assert!(jobs::finish(&s.pool, &[outcome(id, 1, JobStatus::Ok)])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.status(id).await.0, JobStatus::Running);

    // The live run's do.
    assert_eq!(s.append(id, 2, &["line"]).await, 1);
    assert_eq!(
        jobs::finish(&s.pool, &[outcome(id, 2, JobStatus::Ok)])
            .await
            .unwrap(),
        [id]
    );
    assert_eq!(s.status(id).await.0, JobStatus::Ok);
}

#[tokio::test]
async fn heartbeats_extend_only_live_leases() {
    let s = store().await;
    let live = s.job().await;
    let done = s.job().await;
    jobs::claim(&s.pool, &[live, done], "w", Duration::from_secs(1))
        .await
        .unwrap();
    jobs::finish(&s.pool, &[outcome(done, 1, JobStatus::Ok)])
        .await
        .unwrap();
    let before: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT lease_until FROM jobs WHERE id = $1")
            .bind(live)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    let held = jobs::heartbeat(&s.pool, &[(live, 1), (done, 1)], LEASE)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, live);
    let (after, finished_lease): (chrono::DateTime<Utc>, Option<chrono::DateTime<Utc>>) =
        sqlx::query_as(
            "SELECT (SELECT lease_until FROM jobs WHERE id = $1),
                    (SELECT lease_until FROM jobs WHERE id = $2)",
        )
        .bind(live)
        .bind(done)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert!(after > before + chrono::Duration::seconds(30));
    assert_eq!(finished_lease, None, "a finished run holds no lease");
}

#[tokio::test]
async fn rescue_requeues_a_lost_run_then_ends_it_worker_lost_at_the_bound() {
    let s = store().await;
    let id = s.job().await;
    jobs::claim(&s.pool, &[id], "w", LEASE).await.unwrap();
    s.expire(id).await;
    let rescued = jobs::rescue_expired(&s.pool, 2).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].status, JobStatus::Queued);
    assert_eq!(s.status(id).await.0, JobStatus::Queued);

    jobs::claim(&s.pool, &[id], "w", LEASE).await.unwrap();
    s.expire(id).await;
    let rescued = jobs::rescue_expired(&s.pool, 2).await.unwrap();
    assert_eq!(rescued[0].status, JobStatus::Error);
    assert_eq!(
        s.status(id).await,
        (JobStatus::Error, 2, Some("worker lost".into()))
    );
    // Each rescue wrote one log line, numbered after the run's own.
    assert_eq!(s.seqs(id).await, [1, 2]);
    assert!(jobs::rescue_expired(&s.pool, 2).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_due_job_is_released_once_with_two_schedulers_racing() {
    let s = store().await;
    let id = s.job().await;
    // Past the api's publish grace, unpublished: the scheduler's to release.
    sqlx::query("UPDATE jobs SET release_at = now() - interval '1 second' WHERE id = $1")
        .bind(id)
        .execute(&s.pool)
        .await
        .unwrap();
    let mut first = s.pool.begin().await.unwrap();
    let mut second = s.pool.begin().await.unwrap();
    let taken = jobs::lock_releasable(&mut first, 10).await.unwrap();
    let skipped = jobs::lock_releasable(&mut second, 10).await.unwrap();
    assert_eq!(taken.iter().map(|job| job.id).collect::<Vec<_>>(), [id]);
    assert!(
        skipped.is_empty(),
        "the second scheduler skips the locked row"
    );
    jobs::mark_released(&mut first, &[id]).await.unwrap();
    first.commit().await.unwrap();
    second.rollback().await.unwrap();
    let mut third = s.pool.begin().await.unwrap();
    assert!(jobs::lock_releasable(&mut third, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_cron_slot_fires_once_with_schedulers_racing() {
    let s = store().await;
    let workflow = s
        .workflow(json!({"name": "cron", "schedule": "0 3 * * *",
                         "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    sqlx::query("UPDATE workflows SET next_fire_at = now() - interval '1 second' WHERE id = $1")
        .bind(workflow)
        .execute(&s.pool)
        .await
        .unwrap();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let pool = s.pool.clone();
            tokio::spawn(async move { jobs::fire_schedules(&pool, |_, _| None).await.unwrap() })
        })
        .collect();
    let mut fired = 0;
    for racer in racers {
        fired += racer.await.unwrap();
    }
    assert_eq!(fired, 1);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE workflow_id = $1")
        .bind(workflow)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let next: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT next_fire_at FROM workflows WHERE id = $1")
            .bind(workflow)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert!(next > Utc::now(), "the workflow moved on to its next slot");
}

#[tokio::test]
async fn log_seq_is_gap_free_under_concurrent_appends() {
    let s = store().await;
    let id = s.job().await;
    jobs::claim(&s.pool, &[id], "w", LEASE).await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let pool = s.pool.clone();
            tokio::spawn(async move {
                let mut written = 0;
                for batch in 0..10 {
                    let messages: Vec<String> =
                        (0..5).map(|n| format!("w{writer} b{batch} l{n}")).collect();
                    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
                    written += append(&pool, id, 1, &messages).await;
                }
                written
            })
        })
        .collect();
    let mut written = 0;
    for writer in writers {
        written += writer.await.unwrap();
    }
    assert_eq!(written, 400);
    assert_eq!(s.seqs(id).await, (1..=400).collect::<Vec<i32>>());
}
