//! Pausing a workflow: a claim hands its queued jobs back unpublished, the
//! scheduler neither releases them, nor wakes for them, nor fires its cron
//! slots, and resuming makes them due at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use crust_model::job::{JobStatus, NewJob};
use crust_model::workflow::WorkflowInput;
use crust_model::Id;
use crust_store::{jobs, workflows};
use serde_json::json;

use crate::support::Store;

const LEASE: Duration = Duration::from_secs(60);

async fn workflow(s: &Store, schedule: Option<&str>) -> Id {
    let mut definition = json!({"name": "w",
        "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]});
    if let Some(schedule) = schedule {
        definition["schedule"] = json!(schedule);
    }
    let input: WorkflowInput = serde_json::from_value(definition).unwrap();
    workflows::create(&s.pool, input.validate().unwrap())
        .await
        .unwrap()
        .id
}

async fn job(s: &Store, workflow: Id) -> Id {
    let job = NewJob {
        workflow_id: workflow,
        start_at: None,
        parameters: Default::default(),
        key: None,
    };
    let key_ttl = std::time::Duration::from_secs(86_400);
    jobs::api::create(&s.pool, job, Id(1), None, key_ttl)
        .await
        .unwrap()
        .job
        .id
}

/// `(published, release_at <= now)` of a job.
async fn release_state(s: &Store, id: Id) -> (bool, bool) {
    sqlx::query_as("SELECT published_at IS NOT NULL, release_at <= now() FROM jobs WHERE id = $1")
        .bind(id)
        .fetch_one(&s.pool)
        .await
        .unwrap()
}

async fn releasable(s: &Store) -> Vec<Id> {
    let mut tx = s.pool.begin().await.unwrap();
    let ids = jobs::schedule::lock_releasable(&mut tx, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    tx.rollback().await.unwrap();
    ids
}

async fn next_release(s: &Store) -> Option<DateTime<Utc>> {
    jobs::schedule::next_wake(&s.pool).await.unwrap().0
}

#[tokio::test]
async fn pause_and_resume_are_idempotent_and_shown() {
    let s = Store::new().await;
    let w = workflow(&s, None).await;
    assert!(!workflows::get(&s.pool, w).await.unwrap().paused);
    let first = workflows::pause(&s.pool, w).await.unwrap();
    assert!(first.paused);
    let again = workflows::pause(&s.pool, w).await.unwrap();
    assert_eq!(
        again.paused_at, first.paused_at,
        "a second pause keeps the first"
    );
    assert!(workflows::get(&s.pool, w).await.unwrap().paused);
    let resumed = workflows::resume(&s.pool, w).await.unwrap();
    assert!(!resumed.paused && resumed.paused_at.is_none());
    assert!(!workflows::resume(&s.pool, w).await.unwrap().paused);
    assert!(workflows::pause(&s.pool, Id(999_999)).await.is_err());
    workflows::delete(&s.pool, w).await.unwrap();
    assert!(
        workflows::pause(&s.pool, w).await.is_err(),
        "a deleted one is missing"
    );
    assert!(workflows::resume(&s.pool, w).await.is_err());
}

#[tokio::test]
async fn a_claim_hands_a_paused_workflows_job_back_and_resume_releases_it() {
    let s = Store::new().await;
    let paused = workflow(&s, None).await;
    let other = workflow(&s, None).await;
    workflows::pause(&s.pool, paused).await.unwrap();
    let held = job(&s, paused).await;
    let free = job(&s, other).await;
    // The api published both; a worker got both messages.
    sqlx::query("UPDATE jobs SET published_at = now() WHERE id = ANY($1)")
        .bind([held, free])
        .execute(&s.pool)
        .await
        .unwrap();
    let claims = jobs::run::claim(&s.pool, &[held, free], "w1", LEASE)
        .await
        .unwrap();
    assert_eq!(claims.runs.iter().map(|r| r.id).collect::<Vec<_>>(), [free]);
    let job = jobs::api::get(&s.pool, held).await.unwrap();
    assert_eq!((job.status, job.attempt), (JobStatus::Queued, 0));
    assert!(!release_state(&s, held).await.0, "handed back unpublished");

    // Even once due, the scheduler neither releases it nor wakes for it.
    sqlx::query("UPDATE jobs SET release_at = now() - interval '1 second' WHERE id = $1")
        .bind(held)
        .execute(&s.pool)
        .await
        .unwrap();
    assert!(releasable(&s).await.is_empty());
    // (The other job's lease, a minute ahead, is the only thing to wake for.)
    let wake = next_release(&s).await.unwrap();
    assert!(
        wake > Utc::now() + chrono::Duration::seconds(30),
        "nothing to wake for while paused"
    );

    workflows::resume(&s.pool, paused).await.unwrap();
    assert_eq!(releasable(&s).await, [held]);
    assert!(next_release(&s).await.unwrap() <= Utc::now(), "due at once");
}

#[tokio::test]
async fn resume_makes_a_handed_back_job_due_at_once() {
    let s = Store::new().await;
    let w = workflow(&s, None).await;
    workflows::pause(&s.pool, w).await.unwrap();
    // Created due: stored as published (the api publishes its hint after
    // the commit), its release time the api's publish grace ahead.
    let id = job(&s, w).await;
    assert_eq!(release_state(&s, id).await, (true, false));
    assert!(jobs::run::claim(&s.pool, &[id], "w1", LEASE)
        .await
        .unwrap()
        .runs
        .is_empty());
    assert!(releasable(&s).await.is_empty());
    workflows::resume(&s.pool, w).await.unwrap();
    assert_eq!(release_state(&s, id).await, (false, true));
    assert_eq!(releasable(&s).await, [id]);
    let claims = jobs::run::claim(&s.pool, &[id], "w1", LEASE).await.unwrap();
    assert_eq!(claims.runs.len(), 1, "runs once resumed");
}

#[tokio::test]
async fn a_paused_workflows_cron_slot_is_skipped_not_fired_later() {
    let s = Store::new().await;
    let w = workflow(&s, Some("0 3 * * *")).await;
    workflows::pause(&s.pool, w).await.unwrap();
    sqlx::query("UPDATE workflows SET next_fire_at = now() - interval '1 second' WHERE id = $1")
        .bind(w)
        .execute(&s.pool)
        .await
        .unwrap();
    let fired = jobs::schedule::fire_schedules(&s.pool, |_, _| None)
        .await
        .unwrap();
    assert_eq!(fired, 0);
    let next: DateTime<Utc> =
        sqlx::query_scalar("SELECT next_fire_at FROM workflows WHERE id = $1")
            .bind(w)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert!(next > Utc::now(), "the slot was advanced");
    workflows::resume(&s.pool, w).await.unwrap();
    assert_eq!(
        jobs::schedule::fire_schedules(&s.pool, |_, _| None)
            .await
            .unwrap(),
        0,
        "the skipped slot does not fire on resume"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE workflow_id = $1")
        .bind(w)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
}
