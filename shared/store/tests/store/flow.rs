//! Flow control straight against the store: concurrency slots (never more
//! holders than the limit, handed on in creation order by the transaction
//! that frees one, kept across a requeue, given up by a park or an end)
//! and rate limits (start instants one step apart, computed by the store).

use std::time::Duration;

use chrono::{DateTime, Utc};
use crust_model::job::{JobStatus, NewJob};
use crust_model::workflow::WorkflowInput;
use crust_model::Id;
use crust_store::jobs::run::{self, Outcome, Park};
use crust_store::jobs::{api, schedule};
use crust_store::workflows;
use serde_json::{json, Value};

use crate::support::Store;

const LEASE: Duration = Duration::from_secs(60);
const KEY_TTL: Duration = Duration::from_secs(86_400);

async fn workflow(s: &Store, flow: Value) -> Id {
    let mut definition = json!({"name": "w",
        "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]});
    for (key, value) in flow.as_object().unwrap() {
        definition[key] = value.clone();
    }
    let input: WorkflowInput = serde_json::from_value(definition).unwrap();
    workflows::create(&s.pool, input.validate().unwrap())
        .await
        .unwrap()
        .id
}

async fn job(s: &Store, workflow: Id, parameters: Value) -> api::Created {
    let job = NewJob {
        workflow_id: workflow,
        start_at: None,
        parameters: serde_json::from_value(parameters).unwrap(),
        key: None,
    };
    api::create(&s.pool, job, Id(1), None, KEY_TTL)
        .await
        .unwrap()
}

#[derive(Debug, sqlx::FromRow)]
struct SlotState {
    status: JobStatus,
    holds_slot: bool,
    slot_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    waits_unseen: bool,
}

async fn state(s: &Store, id: Id) -> SlotState {
    sqlx::query_as(
        "SELECT status, holds_slot, slot_at, finished_at,
                release_at = 'infinity' AND published_at IS NULL AS waits_unseen
         FROM jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(&s.pool)
    .await
    .unwrap()
}

async fn claim(s: &Store, ids: &[Id]) -> Vec<(Id, i32)> {
    run::claim(&s.pool, ids, "w1", LEASE)
        .await
        .unwrap()
        .runs
        .into_iter()
        .map(|run| (run.id, run.attempt))
        .collect()
}

async fn finish(s: &Store, (id, attempt): (Id, i32), status: JobStatus) {
    let outcome = Outcome {
        id,
        attempt,
        status,
        error: None,
    };
    let done = run::finish(&s.pool, &[outcome]).await.unwrap();
    assert_eq!(done, vec![id]);
}

async fn releasable(s: &Store) -> Vec<Id> {
    let mut tx = s.pool.begin().await.unwrap();
    let ids = schedule::lock_releasable(&mut tx, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|job| job.id)
        .collect();
    tx.rollback().await.unwrap();
    ids
}

#[tokio::test]
async fn keys_are_rendered_at_creation_and_only_free_slots_are_published() {
    let s = Store::new().await;
    let w = workflow(
        &s,
        json!({"concurrency": {"key": "c-{{ parameters.customer }}", "limit": 1}}),
    )
    .await;
    let first = job(&s, w, json!({"customer": 7})).await;
    let second = job(&s, w, json!({"customer": 7})).await;
    let other = job(&s, w, json!({"customer": "x"})).await;
    assert_eq!(first.job.concurrency_key.as_deref(), Some("c-7"));
    assert_eq!(other.job.concurrency_key.as_deref(), Some("c-x"));
    // The api publishes what got a slot, and only that.
    assert!(first.due_now && other.due_now);
    assert!(!second.due_now);
    let waiting = state(&s, second.job.id).await;
    assert!(!waiting.holds_slot && waiting.waits_unseen, "{waiting:?}");
    // A stray message for the waiting job claims nothing.
    assert!(claim(&s, &[second.job.id]).await.is_empty());
    // Nor does the scheduler publish it, nor wake for it.
    api::mark_published(&s.pool, &[first.job.id, other.job.id])
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET release_at = now() - interval '1 second' WHERE id = ANY($1)")
        .bind(vec![first.job.id, other.job.id])
        .execute(&s.pool)
        .await
        .unwrap();
    assert!(releasable(&s).await.is_empty());
    assert_eq!(schedule::next_wake(&s.pool).await.unwrap().0, None);
}

#[tokio::test]
async fn a_freed_slot_is_handed_over_in_the_transaction_that_ends_the_run() {
    let s = Store::new().await;
    let w = workflow(&s, json!({"concurrency": {"limit": 1}})).await;
    let a = job(&s, w, json!({})).await.job.id;
    let b = job(&s, w, json!({})).await.job.id;
    let run_a = claim(&s, &[a, b]).await;
    assert_eq!(run_a.len(), 1, "only the slot holder runs");
    assert_eq!(run_a[0].0, a);
    finish(&s, run_a[0], JobStatus::Ok).await;
    let (a_state, b_state) = (state(&s, a).await, state(&s, b).await);
    assert!(!a_state.holds_slot);
    assert!(b_state.holds_slot, "{b_state:?}");
    // Same transaction: its grant time is the finish time of the run that
    // freed the slot, and it is due for the scheduler at once.
    assert_eq!(b_state.slot_at, a_state.finished_at);
    assert_eq!(releasable(&s).await, vec![b]);
    assert_eq!(claim(&s, &[b]).await.len(), 1);
}

#[tokio::test]
async fn a_requeued_job_keeps_its_slot_and_a_parked_one_gives_it_up() {
    let s = Store::new().await;
    let w = workflow(&s, json!({"concurrency": {"limit": 1}})).await;
    let a = job(&s, w, json!({})).await.job.id;
    let b = job(&s, w, json!({})).await.job.id;
    claim(&s, &[a]).await;
    // Its worker is lost: the rescue requeues it, slot and all.
    sqlx::query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1")
        .bind(a)
        .execute(&s.pool)
        .await
        .unwrap();
    let rescued = schedule::rescue_expired(&s.pool, 5).await.unwrap();
    assert_eq!(rescued[0].status, JobStatus::Queued);
    assert!(state(&s, a).await.holds_slot);
    assert!(!state(&s, b).await.holds_slot);
    // Handed back at shutdown: the same.
    let run_a = claim(&s, &[a, b]).await;
    assert_eq!(run_a.iter().map(|r| r.0).collect::<Vec<_>>(), vec![a]);
    assert!(run::hand_back(&s.pool, a, run_a[0].1).await.unwrap());
    assert!(state(&s, a).await.holds_slot);
    // Parked: it holds no slot while it waits, and b gets it.
    let run_a = claim(&s, &[a]).await;
    let park = Park {
        events: vec!["go".into()],
        ..Park::default()
    };
    assert!(run::park(&s.pool, a, run_a[0].1, &park).await.unwrap());
    assert_eq!(state(&s, a).await.status, JobStatus::Waiting);
    assert!(!state(&s, a).await.holds_slot);
    assert!(state(&s, b).await.holds_slot);
    // Woken, it queues again without a slot until b ends.
    assert!(api::signal(&s.pool, a, "go", None).await.unwrap().woke);
    let woken = state(&s, a).await;
    assert!(
        woken.status == JobStatus::Queued && !woken.holds_slot && woken.waits_unseen,
        "{woken:?}"
    );
    let run_b = claim(&s, &[b]).await;
    finish(&s, run_b[0], JobStatus::Error).await;
    assert!(state(&s, a).await.holds_slot);
}

#[tokio::test]
async fn cancelling_a_waiting_job_frees_nothing_and_a_running_one_frees_its_slot() {
    let s = Store::new().await;
    let w = workflow(&s, json!({"concurrency": {"limit": 1}})).await;
    let a = job(&s, w, json!({})).await.job.id;
    let b = job(&s, w, json!({})).await.job.id;
    let c = job(&s, w, json!({})).await.job.id;
    let run_a = claim(&s, &[a]).await;
    assert_eq!(
        api::cancel(&s.pool, b).await.unwrap(),
        api::Cancelled::Queued
    );
    assert!(state(&s, a).await.holds_slot);
    assert!(!state(&s, c).await.holds_slot, "b held nothing to give c");
    // A running job keeps its slot until its worker ends it cancelled.
    assert_eq!(
        api::cancel(&s.pool, a).await.unwrap(),
        api::Cancelled::Running
    );
    assert!(!state(&s, c).await.holds_slot);
    finish(&s, run_a[0], JobStatus::Cancelled).await;
    assert!(state(&s, c).await.holds_slot);
    // A job waiting for a slot cannot be started by hand either.
    let d = job(&s, w, json!({})).await.job.id;
    let update: crust_model::job::JobUpdate =
        serde_json::from_value(json!({"status": "running"})).unwrap();
    let refused = api::update(&s.pool, d, update).await.unwrap_err();
    assert!(
        refused.to_string().contains("waits for a slot"),
        "{refused}"
    );
}

#[tokio::test]
async fn raising_the_limit_starts_waiting_jobs_at_once() {
    let s = Store::new().await;
    let w = workflow(&s, json!({"concurrency": {"limit": 1}})).await;
    let ids: Vec<Id> = {
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(job(&s, w, json!({})).await.job.id);
        }
        ids
    };
    let patch = serde_json::from_value(json!({"concurrency": {"limit": 3}})).unwrap();
    workflows::update(&s.pool, w, patch).await.unwrap();
    let held: Vec<bool> = futures_holds(&s, &ids).await;
    assert_eq!(held, vec![true, true, true, false]);
    let patch = serde_json::from_value(json!({"concurrency": null})).unwrap();
    workflows::update(&s.pool, w, patch).await.unwrap();
    assert_eq!(futures_holds(&s, &ids).await, vec![true; 4]);
}

async fn futures_holds(s: &Store, ids: &[Id]) -> Vec<bool> {
    sqlx::query_scalar("SELECT holds_slot FROM jobs WHERE id = ANY($1) ORDER BY id")
        .bind(ids)
        .fetch_all(&s.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_delayed_job_takes_a_slot_when_its_time_comes_through_the_sweep() {
    let s = Store::new().await;
    let w = workflow(&s, json!({"concurrency": {"limit": 1}})).await;
    let delayed = NewJob {
        workflow_id: w,
        start_at: Some(Utc::now() + chrono::Duration::seconds(60)),
        parameters: Default::default(),
        key: None,
    };
    let created = api::create(&s.pool, delayed, Id(1), None, KEY_TTL)
        .await
        .unwrap();
    let id = created.job.id;
    assert!(!created.due_now);
    assert!(
        !state(&s, id).await.holds_slot,
        "a delayed job holds no slot"
    );
    // Its start time comes: moved back here with the triggers off, as
    // time passing touches no row.
    let mut tx = s.pool.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE jobs SET start_at = now() - interval '1 second',
                release_at = now() - interval '1 second' WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert!(releasable(&s).await.is_empty(), "not without a slot");
    assert_eq!(schedule::grant_due(&s.pool).await.unwrap(), 1);
    assert!(state(&s, id).await.holds_slot);
    assert_eq!(releasable(&s).await, vec![id]);
}

/// Eight claimers race on one key, each trying every job on every round,
/// like workers that all receive every message; the recorded running
/// intervals never overlap more than the limit, and slots go out in
/// creation order.
#[tokio::test]
async fn eight_claimers_racing_on_one_key_never_run_more_than_the_limit() {
    const LIMIT: usize = 3;
    const JOBS: usize = 60;
    let s = Store::new().await;
    let w = workflow(
        &s,
        json!({"concurrency": {"key": "{{ parameters.k }}", "limit": LIMIT}}),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        ids.push(job(&s, w, json!({"k": "same"})).await.job.id);
    }
    let mut claimers = Vec::new();
    for claimer in 0..8 {
        let pool = s.pool.clone();
        let ids = ids.clone();
        claimers.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                let open: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status <> 'ok'",
                )
                .bind(&ids)
                .fetch_one(&pool)
                .await
                .unwrap();
                if open == 0 {
                    return;
                }
                assert!(tokio::time::Instant::now() < deadline, "jobs left: {open}");
                let name = format!("c{claimer}");
                let runs = run::claim(&pool, &ids, &name, LEASE).await.unwrap().runs;
                for claimed in runs {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    let outcome = Outcome {
                        id: claimed.id,
                        attempt: claimed.attempt,
                        status: JobStatus::Ok,
                        error: None,
                    };
                    run::finish(&pool, &[outcome]).await.unwrap();
                }
            }
        }));
    }
    for claimer in claimers {
        claimer.await.unwrap();
    }
    assert_eq!(max_running(&s, &ids).await, LIMIT);
    let rounds: Vec<i64> =
        sqlx::query_scalar("SELECT slot_seq FROM jobs WHERE id = ANY($1) ORDER BY id")
            .bind(&ids)
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert!(
        rounds.windows(2).all(|pair| pair[0] <= pair[1]),
        "slots went out in creation order: {rounds:?}"
    );
}

/// The most jobs running at once according to their recorded
/// `[started_at, finished_at)` intervals (an end sorts before a start at
/// the same instant).
pub async fn max_running(s: &Store, ids: &[Id]) -> usize {
    let intervals: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        sqlx::query_as("SELECT started_at, finished_at FROM jobs WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&s.pool)
            .await
            .unwrap();
    let mut events: Vec<(DateTime<Utc>, i32)> = intervals
        .iter()
        .flat_map(|(start, end)| [(*start, 1), (*end, -1)])
        .collect();
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, step) in events {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test]
async fn rate_limited_jobs_get_start_instants_one_step_apart_in_creation_order() {
    let s = Store::new().await;
    let w = workflow(
        &s,
        json!({"rateLimit": {"key": "{{ parameters.k }}", "perSecond": 20}}),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(job(&s, w, json!({"k": "a"})).await.job.id);
    }
    let other = job(&s, w, json!({"k": "b"})).await.job.id;
    let mut all = ids.clone();
    all.push(other);
    // One claim of everything: the first of each key starts now, the rest
    // are handed back unpublished to start at their instants.
    let started: Vec<Id> = claim(&s, &all).await.into_iter().map(|r| r.0).collect();
    assert_eq!(started, vec![ids[0], other]);
    let instants: Vec<(DateTime<Utc>, DateTime<Utc>, bool)> = sqlx::query_as(
        "SELECT rate_at, release_at, published_at IS NULL FROM jobs WHERE id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&s.pool)
    .await
    .unwrap();
    for (at, pair) in instants.windows(2).enumerate() {
        let step = pair[1].0 - pair[0].0;
        assert_eq!(step, chrono::Duration::milliseconds(50), "job {at}");
    }
    for (rate_at, release_at, unpublished) in &instants[1..] {
        assert_eq!(rate_at, release_at);
        assert!(*unpublished);
    }
    // Claimed again once due, each uses the instant it holds: none starts
    // before it, and no new instant is taken.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut done = vec![ids[0]];
    while done.len() < ids.len() {
        assert!(tokio::time::Instant::now() < deadline);
        for (id, _) in claim(&s, &ids).await {
            done.push(id);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let late: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM jobs WHERE id = ANY($1) AND (started_at < rate_at OR rate_at IS NULL)",
    )
    .bind(&ids)
    .fetch_one(&s.pool)
    .await
    .unwrap();
    assert_eq!(late, 0, "every job started at or after its instant");
    let next: DateTime<Utc> = sqlx::query_scalar("SELECT next_at FROM rate_keys WHERE key = 'a'")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(next - instants[4].0, chrono::Duration::milliseconds(50));
}

#[tokio::test]
async fn a_paused_workflow_keeps_its_slots_and_resume_releases_only_slot_holders() {
    let s = Store::new().await;
    let w = workflow(&s, json!({"concurrency": {"limit": 1}})).await;
    let a = job(&s, w, json!({})).await.job.id;
    let b = job(&s, w, json!({})).await.job.id;
    workflows::pause(&s.pool, w).await.unwrap();
    // The holder's message arrives while paused: handed back, slot kept.
    assert!(claim(&s, &[a, b]).await.is_empty());
    assert!(state(&s, a).await.holds_slot);
    workflows::resume(&s.pool, w).await.unwrap();
    assert_eq!(releasable(&s).await, vec![a]);
    let waiting = state(&s, b).await;
    assert!(!waiting.holds_slot && waiting.waits_unseen, "{waiting:?}");
}

#[tokio::test]
async fn moving_a_slot_holder_later_gives_its_slot_to_the_next_job() {
    let s = Store::new().await;
    let w = workflow(&s, json!({"concurrency": {"limit": 1}})).await;
    let a = job(&s, w, json!({})).await.job.id;
    let b = job(&s, w, json!({})).await.job.id;
    assert!(state(&s, a).await.holds_slot);
    let later = (Utc::now() + chrono::Duration::seconds(60)).to_rfc3339();
    let update: crust_model::job::JobUpdate =
        serde_json::from_value(json!({"startAt": later})).unwrap();
    api::update(&s.pool, a, update).await.unwrap();
    assert!(!state(&s, a).await.holds_slot);
    assert!(state(&s, b).await.holds_slot);
}
