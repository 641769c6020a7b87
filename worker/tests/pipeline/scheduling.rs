//! Time and delivery: delayed jobs, two schedulers, cron slots, duplicate
//! messages and a broker outage.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crust_model::Id;
use crust_queue::{AmqpConfig, Outgoing, Publisher};
use crust_testing::{amqp_url, Proxy};
use serde_json::json;

use crate::helpers::{ready_messages, start, Options, DEADLINE};

fn at(value: &serde_json::Value) -> DateTime<Utc> {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_delayed_job_does_not_start_before_its_start_at() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "later", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let start_at = Utc::now() + chrono::Duration::milliseconds(1500);
    let job = system
        .job(&workflow, json!({"startAt": start_at.to_rfc3339()}))
        .await;
    assert_eq!(system.get_job(&job).await["status"], "queued");
    let done = system.wait_status(&job, "ok").await;
    assert!(
        at(&done["startedAt"]) >= start_at,
        "started {} before {start_at}",
        done["startedAt"]
    );
}

#[tokio::test]
async fn moving_start_at_later_withdraws_the_earlier_release() {
    // No worker yet: the api publishes the job at once, and the message
    // waits in the queue while the job is moved later.
    let mut system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "later", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let later = Utc::now() + chrono::Duration::seconds(2);
    let (status, body) = system
        .call(
            reqwest::Method::POST,
            &format!("/job/{job}"),
            Some(json!({"startAt": later.to_rfc3339()})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    // The worker now receives the earlier message, finds the job not yet
    // due, and leaves it to the scheduler's release at the new time.
    system.start_worker(1_000, 10).await;
    let done = system.wait_status(&job, "ok").await;
    assert!(
        at(&done["startedAt"]) >= later,
        "started {} before {later}",
        done["startedAt"]
    );
    assert_eq!(done["attempt"], 1);
}

#[tokio::test]
async fn two_schedulers_release_each_delayed_job_exactly_once() {
    let system = start(Options {
        workers: 0,
        schedulers: 2,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "batch", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let start_at = (Utc::now() + chrono::Duration::seconds(1)).to_rfc3339();
    let mut jobs = Vec::new();
    for _ in 0..40 {
        jobs.push(system.job(&workflow, json!({"startAt": start_at})).await);
    }
    let queue = system.names().jobs_queue("default");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut db = system.db.connect().await;
        let unpublished: i64 =
            sqlx::query_scalar("SELECT count(*) FROM jobs WHERE published_at IS NULL")
                .fetch_one(&mut db)
                .await
                .unwrap();
        if unpublished == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{unpublished} jobs never released"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Let any second release land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        ready_messages(&system.amqp_url, &queue).await,
        40,
        "one message per job"
    );
}

#[tokio::test]
async fn two_schedulers_fire_each_cron_slot_once() {
    let mut system = start(Options {
        workers: 1,
        schedulers: 2,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "tick", "schedule": "* * * * * *",
                         "tasks": [{"name": "hi", "kind": "log", "params": {"message": "tick"}}]}))
        .await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    let slots: Vec<DateTime<Utc>> = loop {
        let mut db = system.db.connect().await;
        let slots: Vec<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT cron_slot FROM jobs WHERE workflow_id = $1 ORDER BY cron_slot",
        )
        .bind(workflow.parse::<i64>().unwrap())
        .fetch_all(&mut db)
        .await
        .unwrap();
        if slots.len() >= 4 {
            break slots;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cron fired only {} times",
            slots.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    system.stop_schedulers();
    let distinct: BTreeSet<_> = slots.iter().collect();
    assert_eq!(distinct.len(), slots.len(), "a slot fired twice: {slots:?}");
    for pair in slots.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            chrono::Duration::seconds(1),
            "a slot was skipped: {slots:?}"
        );
    }
}

#[tokio::test]
async fn a_duplicate_message_runs_the_job_once() {
    let mut system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "once", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "ran"}}]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let publisher = Publisher::new(&AmqpConfig {
        amqp_url: amqp_url(),
        queue_prefix: system.db.name.clone(),
    });
    let duplicate = Outgoing::run(Id(job.parse().unwrap()), "default", None);
    publisher
        .publish(&[duplicate.clone(), duplicate])
        .await
        .unwrap();
    system.start_worker(1_000, 10).await;
    system.wait_status(&job, "ok").await;
    let queue = system.names().jobs_queue("default");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while ready_messages(&system.amqp_url, &queue).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "duplicates never consumed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let done = system.get_job(&job).await;
    assert_eq!(done["attempt"], 1);
    let runs = system
        .logs(&job)
        .await
        .iter()
        .filter(|l| l["message"] == "ran")
        .count();
    assert_eq!(runs, 1);
}

#[tokio::test]
async fn jobs_created_while_the_broker_is_down_all_run_after_it_returns() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let broker = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let system = start(Options {
        amqp_url: Some(broker),
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "resilient", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let warm = system.job(&workflow, json!({})).await;
    system.wait_status(&warm, "ok").await;
    proxy.down();
    let mut jobs = Vec::new();
    for _ in 0..10 {
        // Each create still succeeds: the row commits, publishing waits.
        jobs.push(system.job(&workflow, json!({})).await);
    }
    proxy.up();
    for job in &jobs {
        let done = system.wait_status(job, "ok").await;
        assert_eq!(done["attempt"], 1);
    }
}

#[tokio::test]
async fn a_job_whose_hint_was_purged_from_the_broker_still_runs_once() {
    // No worker yet: the api publishes the hint, then it is dropped on
    // purpose (as a broker restart drops transient hints).
    let system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "lost", "queue": "lost_hints",
                         "tasks": [{"name": "hi", "kind": "log", "params": {"message": "ran"}}]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let queue = system.names().jobs_queue("lost_hints");
    let publisher = Publisher::new(&AmqpConfig {
        amqp_url: amqp_url(),
        queue_prefix: system.db.name.clone(),
    });
    let deadline = tokio::time::Instant::now() + DEADLINE;
    // The api publishes after it answers, declaring the queue first.
    while publisher
        .queue_stats(&["lost_hints".to_owned()])
        .await
        .unwrap()[0]
        .is_none_or(|stats| stats.ready < 1)
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "hint never published"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connection = crust_queue::connect(&system.amqp_url).await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .queue_purge(&queue, lapin::options::QueuePurgeOptions::default())
        .await
        .unwrap();
    let _ = connection.close(200, "purged").await;
    assert_eq!(ready_messages(&system.amqp_url, &queue).await, 0);
    publisher.close().await;
    // A worker of that queue: it gets no hint until the scheduler sees the
    // broker hold fewer hints than Postgres has published jobs.
    let mut system = system;
    system.start_worker_on(1_000, 10, &["lost_hints"]).await;
    system.wait_status(&job, "ok").await;
    let done = system.get_job(&job).await;
    assert_eq!(done["attempt"], 1, "{done}");
    assert_eq!(done["queue"], "lost_hints", "{done}");
}
