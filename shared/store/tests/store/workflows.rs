//! Workflow versions: every save records one in its own transaction, a job
//! is pinned to the version current at its creation, and a claim hands the
//! worker that version's definition, whatever the workflow holds now.

use std::time::Duration;

use crust_model::job::NewJob;
use crust_model::paging::Paging;
use crust_model::workflow::{WorkflowInput, WorkflowPatch};
use crust_model::Id;
use crust_store::{jobs, workflows};
use crust_testing::TestDb;
use serde_json::{json, Value};
use sqlx::PgPool;

fn input(definition: Value) -> crust_model::workflow::ValidWorkflow {
    serde_json::from_value::<WorkflowInput>(definition)
        .unwrap()
        .validate()
        .unwrap()
}

fn patch(body: Value) -> WorkflowPatch {
    serde_json::from_value(body).unwrap()
}

fn log(message: &str) -> Value {
    json!([{"name": "t", "kind": "log", "params": {"message": message}}])
}

async fn versions(pool: &PgPool, id: Id) -> Vec<i32> {
    sqlx::query_scalar(
        "SELECT version FROM workflow_versions WHERE workflow_id = $1 ORDER BY version",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn each_save_is_a_version_and_a_refused_edit_is_none() {
    let db = TestDb::new().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let created = workflows::create(
        &pool,
        input(json!({"name": "w", "tasks": log("one"), "parameters": {"n": 1}})),
    )
    .await
    .unwrap();
    assert_eq!(created.version, 1);
    assert_eq!(versions(&pool, created.id).await, [1]);
    let edited = workflows::update(&pool, created.id, patch(json!({"tasks": log("two")})))
        .await
        .unwrap();
    assert_eq!(edited.version, 2);
    let err = workflows::update(&pool, created.id, patch(json!({"timeout": -1})))
        .await
        .unwrap_err();
    assert!(err.to_string().starts_with("timeout:"), "{err}");
    assert_eq!(
        versions(&pool, created.id).await,
        [1, 2],
        "nothing recorded"
    );
    assert_eq!(workflows::get(&pool, created.id).await.unwrap().version, 2);

    let paging = Paging::new(None, Some(1), 100).unwrap();
    let (page, count) = workflows::versions(&pool, created.id, paging)
        .await
        .unwrap();
    assert_eq!(count, 2);
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].version, 2);
    assert_eq!(page[0].definition.tasks, edited.tasks);
    assert_eq!(page[0].definition.parameters, created.parameters);
    assert_eq!(page[0].definition.name.as_deref(), Some("w"));
}

#[tokio::test]
async fn a_claim_runs_the_version_the_job_was_created_with() {
    let db = TestDb::new().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    let workflow = workflows::create(
        &pool,
        input(json!({"name": "w", "tasks": log("old"), "timeout": 7})),
    )
    .await
    .unwrap();
    let new_job = NewJob {
        workflow_id: workflow.id,
        start_at: None,
        parameters: serde_json::from_value(json!({"n": 5, "deep": {"a": [1]}})).unwrap(),
        key: None,
    };
    let job = jobs::api::create(
        &pool,
        new_job,
        Id(1),
        None,
        std::time::Duration::from_secs(86_400),
    )
    .await
    .unwrap()
    .job;
    assert_eq!(job.workflow_version, 1);
    workflows::update(
        &pool,
        workflow.id,
        patch(json!({"tasks": log("new"), "onError": log("oops"), "timeout": 9})),
    )
    .await
    .unwrap();
    let claims = jobs::run::claim(&pool, &[job.id], "w1", Duration::from_secs(60))
        .await
        .unwrap();
    assert!(claims.unreadable.is_empty());
    let run = &claims.runs[0];
    assert_eq!(run.tasks[0].params, json!({"message": "old"}));
    assert!(run.on_error.is_empty());
    assert_eq!(run.timeout, 7);
    assert_eq!(run.parameters["deep"], json!({"a": [1]}));
    assert_eq!(run.parameters["n"], json!(5));
}
