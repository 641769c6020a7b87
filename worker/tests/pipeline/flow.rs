//! Flow control end to end: eight workers racing on one concurrency key
//! never run more than the limit (checked on every job's recorded running
//! interval, not a sample), slots go out in creation order and a freed slot
//! is handed on by the very transaction that ends the run (no poll); a rate
//! limit spaces starts by at least its step.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::helpers::{start, Options, System};

async fn bulk(system: &System, jobs: Vec<Value>) -> Vec<i64> {
    let (status, body) = system
        .call(
            reqwest::Method::POST,
            "/job/bulk",
            Some(json!({ "jobs": jobs })),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["jobID"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[derive(Debug, sqlx::FromRow)]
struct Run {
    id: i64,
    started_at: DateTime<Utc>,
    finished_at: DateTime<Utc>,
    slot_at: Option<DateTime<Utc>>,
    slot_seq: Option<i64>,
    rate_at: Option<DateTime<Utc>>,
}

async fn runs(system: &System, ids: &[i64]) -> Vec<Run> {
    let mut db = system.db.connect().await;
    sqlx::query_as(
        "SELECT id, started_at, finished_at, slot_at, slot_seq, rate_at FROM jobs
         WHERE id = ANY($1) ORDER BY id",
    )
    .bind(ids)
    .fetch_all(&mut db)
    .await
    .unwrap()
}

/// The most runs at once by their `[started_at, finished_at)` intervals.
fn most_at_once(runs: &[Run]) -> usize {
    let mut events: Vec<(DateTime<Utc>, i32)> = runs
        .iter()
        .flat_map(|run| [(run.started_at, 1), (run.finished_at, -1)])
        .collect();
    events.sort();
    let (mut now, mut most) = (0, 0);
    for (_, step) in events {
        now += step;
        most = most.max(now);
    }
    most as usize
}

#[tokio::test]
async fn eight_workers_on_one_key_never_run_more_than_the_limit_and_hand_slots_on_in_order() {
    const LIMIT: usize = 2;
    const JOBS: usize = 40;
    let system = start(Options {
        workers: 8,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "limited",
            "concurrency": {"key": "{{ parameters.tenant }}", "limit": LIMIT},
            "tasks": [{"name": "nap", "kind": "sleep", "params": {"seconds": 0.05}}]}))
        .await;
    let jobs = (0..JOBS)
        .map(|_| json!({"workflowID": workflow, "parameters": {"tenant": "acme"}}))
        .collect();
    let ids = bulk(&system, jobs).await;
    for id in &ids {
        system.wait_status(&id.to_string(), "ok").await;
    }
    let runs = runs(&system, &ids).await;
    assert!(
        most_at_once(&runs) <= LIMIT,
        "more than {LIMIT} at once: {runs:#?}"
    );
    // Creation order: grant rounds never go backwards as ids grow.
    let rounds: Vec<i64> = runs.iter().map(|run| run.slot_seq.unwrap()).collect();
    assert!(
        rounds.windows(2).all(|pair| pair[0] <= pair[1]),
        "{rounds:?}"
    );
    // Causality: every slot after the first LIMIT was granted in the
    // transaction that ended an earlier job (same statement time as its
    // finish), so it started without waiting for any sweep.
    let finishes: std::collections::HashSet<DateTime<Utc>> =
        runs.iter().map(|run| run.finished_at).collect();
    for run in &runs[LIMIT..] {
        let granted = run.slot_at.unwrap();
        assert!(
            finishes.contains(&granted),
            "job {} got its slot at {granted}, when no job finished",
            run.id
        );
    }
}

#[tokio::test]
async fn a_rate_limited_key_starts_no_faster_than_its_rate() {
    const PER_SECOND: i64 = 10;
    const JOBS: usize = 6;
    let system = start(Options {
        workers: 3,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "paced",
            "rateLimit": {"key": "{{ parameters.tenant }}", "perSecond": PER_SECOND},
            "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let jobs = (0..JOBS)
        .map(|_| json!({"workflowID": workflow, "parameters": {"tenant": "acme"}}))
        .collect();
    let ids = bulk(&system, jobs).await;
    for id in &ids {
        system.wait_status(&id.to_string(), "ok").await;
    }
    let runs = runs(&system, &ids).await;
    let step = chrono::Duration::microseconds(1_000_000 / PER_SECOND);
    let first = runs.iter().map(|run| run.rate_at.unwrap()).min().unwrap();
    let mut starts: Vec<DateTime<Utc>> = runs.iter().map(|run| run.started_at).collect();
    starts.sort();
    // Each start is at or after its own instant, and instants are a step
    // apart: the i-th start comes at least i steps after the first instant.
    for (i, started) in starts.iter().enumerate() {
        assert!(
            *started >= first + step * i as i32,
            "start {i} at {started}, before {}",
            first + step * i as i32
        );
    }
}
