//! Steps: every write is fenced on the run's attempt; a sleep's end is fixed
//! by its first try; outputs and reruns read only finished steps.

use crate::support::Store;
use chrono::{Duration as Span, Utc};
use crust_model::step::StepStatus;
use crust_model::Id;
use crust_store::steps::{self, TASK_ITEM};
use serde_json::value::RawValue;
use serde_json::{json, Value};

impl Store {
    /// A job running under `attempt`, straight in SQL.
    async fn running_job(&self, attempt: i32) -> Id {
        let workflow: Id =
            sqlx::query_scalar("INSERT INTO workflows (name) VALUES ('w') RETURNING id")
                .fetch_one(&self.pool)
                .await
                .unwrap();
        sqlx::query_scalar(
            "INSERT INTO jobs (workflow_id, status, attempt) VALUES ($1, 'running', $2) RETURNING id",
        )
        .bind(workflow)
        .bind(attempt)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn set_attempt(&self, job: Id, attempt: i32) {
        sqlx::query("UPDATE jobs SET attempt = $2 WHERE id = $1")
            .bind(job)
            .bind(attempt)
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

fn raw(value: Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(&value).unwrap()
}

#[tokio::test]
async fn a_run_that_lost_its_claim_writes_no_step() {
    let store = Store::new().await;
    let job = store.running_job(1).await;
    assert!(steps::start(&store.pool, job, 1, "a", TASK_ITEM, None)
        .await
        .unwrap()
        .is_some());
    // Another run claimed the job (attempt 2): the old run's writes do nothing.
    store.set_attempt(job, 2).await;
    let output = raw(json!({"n": 1}));
    assert!(!steps::record(
        &store.pool,
        job,
        1,
        "a",
        TASK_ITEM,
        StepStatus::Ok,
        Some(&output),
        None
    )
    .await
    .unwrap());
    assert!(steps::start(&store.pool, job, 1, "b", TASK_ITEM, None)
        .await
        .unwrap()
        .is_none());
    let rows = steps::list(&store.pool, job).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].status(), StepStatus::Running);
    // The new run starts the same step again: a second try.
    assert!(steps::start(&store.pool, job, 2, "a", TASK_ITEM, None)
        .await
        .unwrap()
        .is_some());
    assert!(steps::record(
        &store.pool,
        job,
        2,
        "a",
        TASK_ITEM,
        StepStatus::Ok,
        Some(&output),
        None
    )
    .await
    .unwrap());
    let step = steps::list(&store.pool, job)
        .await
        .unwrap()
        .remove(0)
        .view();
    assert_eq!((step.status, step.tries), (StepStatus::Ok, 2));
    assert_eq!(step.output.unwrap().get(), r#"{"n": 1}"#);
}

#[tokio::test]
async fn a_finished_job_takes_no_step_writes() {
    let store = Store::new().await;
    let job = store.running_job(1).await;
    sqlx::query("UPDATE jobs SET status = 'ok' WHERE id = $1")
        .bind(job)
        .execute(&store.pool)
        .await
        .unwrap();
    assert!(steps::start(&store.pool, job, 1, "a", TASK_ITEM, None)
        .await
        .unwrap()
        .is_none());
    assert!(!steps::record(
        &store.pool,
        job,
        1,
        "a",
        TASK_ITEM,
        StepStatus::Skipped,
        None,
        None
    )
    .await
    .unwrap());
}

#[tokio::test]
async fn the_first_try_fixes_a_sleeps_end() {
    let store = Store::new().await;
    let job = store.running_job(1).await;
    let first = Utc::now() + Span::seconds(60);
    let until = steps::start(&store.pool, job, 1, "nap", TASK_ITEM, Some(first))
        .await
        .unwrap();
    let until = until.unwrap().unwrap();
    assert!((until - first).num_milliseconds().abs() < 1);
    store.set_attempt(job, 2).await;
    let later = first + Span::seconds(600);
    let again = steps::start(&store.pool, job, 2, "nap", TASK_ITEM, Some(later))
        .await
        .unwrap();
    assert_eq!(again, Some(Some(until)));
}

#[tokio::test]
async fn outputs_and_reruns_read_only_finished_steps() {
    let store = Store::new().await;
    let job = store.running_job(1).await;
    let write = |task: &'static str, item: i32, status: StepStatus, output: Option<Value>| {
        let pool = store.pool.clone();
        async move {
            let output = output.map(raw);
            assert!(
                steps::record(&pool, job, 1, task, item, status, output.as_deref(), None)
                    .await
                    .unwrap()
            );
        }
    };
    assert_eq!(
        steps::outputs(&store.pool, job)
            .await
            .unwrap()
            .map(|r| r.get().to_owned()),
        None
    );
    write("a", TASK_ITEM, StepStatus::Ok, Some(json!(1))).await;
    write("b", TASK_ITEM, StepStatus::Skipped, None).await;
    write("c", TASK_ITEM, StepStatus::Error, None).await;
    write("each", 0, StepStatus::Ok, Some(json!("x"))).await;
    write("each", TASK_ITEM, StepStatus::Ok, Some(json!(["x"]))).await;
    let outputs: Value = serde_json::from_str(
        steps::outputs(&store.pool, job)
            .await
            .unwrap()
            .unwrap()
            .get(),
    )
    .unwrap();
    assert_eq!(outputs, json!({"a": 1, "b": null, "each": ["x"]}));

    let rerun = store.running_job(0).await;
    let copied = steps::copy_done(
        &store.pool,
        job,
        rerun,
        &["a".into(), "c".into(), "each".into()],
    )
    .await
    .unwrap();
    assert_eq!(copied, 3, "a, and each with its item; c failed");
    let tasks: Vec<(String, i32)> = steps::list(&store.pool, rerun)
        .await
        .unwrap()
        .into_iter()
        .map(|step| (step.task, step.item))
        .collect();
    assert_eq!(
        tasks,
        vec![("a".into(), -1), ("each".into(), -1), ("each".into(), 0)]
    );
}

#[tokio::test]
async fn batched_writes_keep_the_fence_of_each_step() {
    let store = Store::new().await;
    let held = store.running_job(1).await;
    let lost = store.running_job(2).await;
    let start = |job: Id, attempt: i32, task: &str| steps::Start {
        job,
        attempt,
        task: task.into(),
        item: TASK_ITEM,
        until: None,
    };
    // The second job's run is attempt 2: attempt 1 lost its claim.
    let started = steps::start_many(
        &store.pool,
        &[
            start(held, 1, "a"),
            start(lost, 1, "a"),
            start(held, 1, "b"),
        ],
    )
    .await
    .unwrap();
    assert_eq!(started, vec![Some(None), None, Some(None)]);
    let record = |job: Id, attempt: i32, task: &str, output: Value| steps::Record {
        job,
        attempt,
        task: task.into(),
        item: TASK_ITEM,
        status: StepStatus::Ok,
        output: Some(raw(output)),
        error: None,
    };
    // No two writes of one batch name the same step (the step writer sees to it).
    let recorded = steps::record_many(
        &store.pool,
        &[
            record(held, 1, "a", json!(1)),
            record(lost, 1, "a", json!(2)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(recorded, vec![true, false]);
    let recorded = steps::record_many(&store.pool, &[record(lost, 2, "a", json!(3))])
        .await
        .unwrap();
    assert_eq!(recorded, vec![true]);
    let outputs: Value = serde_json::from_str(
        steps::outputs(&store.pool, held)
            .await
            .unwrap()
            .unwrap()
            .get(),
    )
    .unwrap();
    assert_eq!(outputs, json!({"a": 1}));
    let outputs: Value = serde_json::from_str(
        steps::outputs(&store.pool, lost)
            .await
            .unwrap()
            .unwrap()
            .get(),
    )
    .unwrap();
    assert_eq!(outputs, json!({"a": 3}));
}
