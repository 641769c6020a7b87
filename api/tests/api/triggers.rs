//! Workflow `triggers` and `/module/{moduleID}/record/{recordID}/revisions`:
//! triggers are checked when saved, a record write through the api starts
//! (and publishes) the jobs its triggers ask for, and every change is a
//! revision.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

async fn deals(app: &TestApp) -> String {
    app.create_module(
        "Deals",
        json!([{"name": "title", "kind": "String"}, {"name": "amount", "kind": "Number"}]),
    )
    .await
}

async fn save_workflow(app: &TestApp, triggers: Value) -> (StatusCode, Value) {
    app.post(
        "/workflow/",
        json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "x"}}],
               "triggers": triggers}),
    )
    .await
}

#[tokio::test]
async fn a_record_created_through_the_api_starts_and_publishes_its_triggered_job() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let (status, body) = save_workflow(
        &app,
        json!([{"on": "record.created", "moduleID": module, "filter": "amount >= 10"}]),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let workflow = body["response"]["workflowID"].as_str().unwrap().to_owned();
    assert_eq!(
        body["response"]["triggers"],
        json!([{"on": "record.created", "moduleID": module, "filter": "amount >= 10"}])
    );

    app.create_record(&module, json!({"title": "small", "amount": 1}))
        .await;
    let record = app
        .create_record(&module, json!({"title": "big", "amount": 10}))
        .await;
    // The module's other records (none) and the small one started nothing.
    let (status, body) = app.get("/job/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jobs = body["response"]["jobs"].as_array().unwrap();
    assert_eq!(jobs[0]["workflowID"], json!(workflow));
    assert_eq!(jobs.len(), 1, "{body}");
    assert_eq!(
        jobs[0]["parameters"],
        json!({"event": "record.created", "moduleID": module, "recordID": record,
               "record": {"title": "big", "amount": 10}})
    );
    let job: i64 = jobs[0]["jobID"].as_str().unwrap().parse().unwrap();

    // The api publishes it after the commit, like any job it creates.
    let mut db = app.db().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let published: bool =
            sqlx::query_scalar("SELECT published_at IS NOT NULL FROM jobs WHERE id = $1")
                .bind(job)
                .fetch_one(&mut db)
                .await
                .unwrap();
        if published {
            break;
        }
        assert!(Instant::now() < deadline, "job {job} never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_bad_trigger_is_a_400_naming_it() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let cases = [
        (
            json!([{"on": "record.created", "moduleID": module, "filter": "nope > 1"}]),
            "triggers[0].filter: ",
        ),
        (
            json!([{"on": "record.created", "moduleID": "987654"}]),
            "triggers[0].moduleID: module 987654 does not exist",
        ),
        (
            json!([{"on": "record.updated", "moduleID": module, "fields": ["nope"]}]),
            "triggers[0].fields: ",
        ),
        (
            json!([{"on": "record.created", "moduleID": module, "fields": ["title"]}]),
            "triggers[0].fields: only a record.updated trigger compares fields",
        ),
        (
            json!([{"on": "record.updated", "moduleID": module, "debounce": 0}]),
            "triggers[0].debounce: ",
        ),
        (
            json!([{"on": "record.renamed", "moduleID": module}]),
            "triggers[0].on",
        ),
    ];
    for (triggers, expected) in cases {
        let (status, body) = save_workflow(&app, triggers.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{triggers}: {body}");
        assert!(
            message(&body).starts_with(expected),
            "{triggers}: {}",
            message(&body)
        );
    }
    let (_, body) = app.get("/workflow/").await;
    assert_eq!(body["response"], json!([]), "nothing saved");
}

#[tokio::test]
async fn revisions_list_each_change_and_who_made_it() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let record = app
        .create_record(&module, json!({"title": "a", "amount": 1}))
        .await;
    let path = format!("/module/{module}/record/{record}");
    let (status, body) = app.post(&path, json!({"fields": {"amount": 2}})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = app.delete(&path).await;
    assert_eq!(status, StatusCode::OK);

    let (status, body) = app.get(&format!("{path}/revisions")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let revisions = body["response"].as_array().unwrap();
    let user = json!({"userID": app.user.to_string()});
    let shown: Vec<Value> = revisions
        .iter()
        .map(|r| json!([r["revision"], r["operation"], r["by"], r["changes"]]))
        .collect();
    assert_eq!(
        shown,
        vec![
            json!([1, "created", user, {"title": {"old": null, "new": "a"}, "amount": {"old": null, "new": 1}}]),
            json!([2, "updated", user, {"amount": {"old": 1, "new": 2}}]),
            json!([3, "deleted", user, {"title": {"old": "a", "new": null}, "amount": {"old": 2, "new": null}}]),
        ]
    );
    assert!(revisions[0]["at"].is_string());

    let (status, body) = app
        .get(&format!("/module/{module}/record/424242/revisions"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}
