//! A paused workflow end to end: its jobs stay queued (not started, not
//! spinning through the broker) until it is resumed, and its cron slots
//! are skipped.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{start, Options, System, DEADLINE};

async fn flip(system: &System, workflow: &str, action: &str) -> DateTime<Utc> {
    let (status, body) = system
        .call(
            Method::POST,
            &format!("/workflow/{workflow}/{action}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["paused"], action == "pause", "{body}");
    Utc::now()
}

#[tokio::test]
async fn a_paused_workflows_jobs_wait_queued_until_it_is_resumed() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "held", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    flip(&system, &workflow, "pause").await;
    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.push(system.job(&workflow, json!({})).await);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    for job in &jobs {
        let job = system.get_job(job).await;
        assert_eq!(job["status"], "queued", "{job}");
        assert_eq!(job["attempt"], 0, "{job}");
    }
    flip(&system, &workflow, "resume").await;
    for job in &jobs {
        system.wait_status(job, "ok").await;
    }
}

/// The cron slots of workflow `id` that fired a job.
async fn slots(system: &System, id: i64) -> Vec<DateTime<Utc>> {
    let mut db = system.db.connect().await;
    sqlx::query_scalar("SELECT cron_slot FROM jobs WHERE workflow_id = $1 ORDER BY cron_slot")
        .bind(id)
        .fetch_all(&mut db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_paused_cron_workflow_fires_no_job_for_its_slots() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "tick", "schedule": "* * * * * *",
                         "tasks": [{"name": "hi", "kind": "log", "params": {"message": "tick"}}]}))
        .await;
    let paused = flip(&system, &workflow, "pause").await;
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let resumed = flip(&system, &workflow, "resume").await;
    let id = workflow.parse::<i64>().unwrap();
    // A slot just before the pause may still fire; none a second after it
    // up to a second before the resume may, then or later.
    let skipped = |slot: &DateTime<Utc>| {
        *slot > paused + chrono::Duration::seconds(1)
            && *slot < resumed - chrono::Duration::seconds(1)
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let slots = slots(&system, id).await;
        assert!(
            !slots.iter().any(skipped),
            "a slot fired while paused ({paused} to {resumed}): {slots:?}"
        );
        // Resumed, it fires again.
        if slots.iter().any(|slot| *slot > resumed) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no slot fired after the resume: {slots:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
