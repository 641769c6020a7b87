//! Jobs act with their creator's permissions: a record task of a job whose
//! creator may not write (or delete in) a module fails, naming the
//! permission, and the module is untouched.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{start, Options, System};
use crust_model::Id;

async fn module(system: &System, name: &str) -> String {
    let (status, body) = system
        .call(
            Method::POST,
            "/module/",
            Some(json!({"name": name, "fields": [{"name": "name", "kind": "String"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["moduleID"].as_str().unwrap().to_owned()
}

async fn count(system: &System, module: &str) -> i64 {
    let (status, body) = system
        .call(Method::GET, &format!("/module/{module}/record"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["response"]["meta"]["count"].as_i64().unwrap()
}

/// Creates a job of `workflow` with `token`; returns its ID.
async fn job_as(system: &System, token: &str, workflow: &str) -> String {
    let (status, body) = system
        .call_as(
            token,
            Method::POST,
            "/job/",
            Some(json!({"workflowID": workflow})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["jobID"].as_str().unwrap().to_owned()
}

fn creates_in(module: &str) -> Value {
    json!({"name": format!("create in {module}"), "tasks": [
        {"name": "create", "kind": "record.create", "params": {"moduleID": module, "fields": {"name": "ann"}}}
    ]})
}

#[tokio::test]
async fn a_job_created_by_an_editor_cannot_touch_a_module_the_editor_may_not_write() {
    let system = start(Options::default()).await;
    let open = module(&system, "Open").await;
    let closed = module(&system, "Closed").await;
    // The editor of one module, who may also run workflows.
    let (status, body) = system
        .call(
            Method::PUT,
            "/role/open-editor",
            Some(json!({"rules": [
                {"resource": format!("record:{open}"), "operations": ["read", "write"], "allow": true},
                {"resource": "workflow:*", "operations": ["read", "run"], "allow": true}
            ]})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let editor = system.token_for(Id(21), &["open-editor"]);
    let into_open = system.workflow(creates_in(&open)).await;
    let into_closed = system.workflow(creates_in(&closed)).await;

    let allowed = job_as(&system, &editor, &into_open).await;
    let done = system.wait_status(&allowed, "ok").await;
    assert_eq!(done["outputs"]["create"]["userID"], "21", "{done}");
    assert_eq!(count(&system, &open).await, 1);

    let denied = job_as(&system, &editor, &into_closed).await;
    let failed = system.wait_status(&denied, "error").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains(&format!(
            "forbidden: this needs permission \"write\" on \"record:{closed}\""
        )),
        "{error}"
    );
    assert!(error.contains("[open-editor]"), "{error}");
    assert_eq!(count(&system, &closed).await, 0);

    // The same workflow run by an admin writes.
    let by_admin = system.job(&into_closed, json!({})).await;
    system.wait_status(&by_admin, "ok").await;
    assert_eq!(count(&system, &closed).await, 1);
}

#[tokio::test]
async fn a_viewer_s_job_cannot_delete_records_even_from_a_script() {
    let system = start(Options::default()).await;
    let leads = module(&system, "Leads").await;
    let (status, body) = system
        .call(
            Method::POST,
            &format!("/module/{leads}/record"),
            Some(json!({"fields": {"name": "ann"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let record = body["response"]["recordID"].as_str().unwrap().to_owned();
    let deletes = system
        .workflow(json!({"name": "delete", "tasks": [
            {"name": "gone", "kind": "record.delete", "params": {"moduleID": leads, "recordID": record}}
        ]}))
        .await;
    let scripted = system
        .workflow(json!({"name": "script delete", "tasks": [
            {"name": "gone", "kind": "script", "params": {"source": format!("record_delete(\"{leads}\", \"{record}\")")}}
        ]}))
        .await;
    // A viewer who may run workflows (the operator role adds that).
    let viewer = system.token_for(Id(22), &["viewer", "operator"]);
    for workflow in [&deletes, &scripted] {
        let job = job_as(&system, &viewer, workflow).await;
        let failed = system.wait_status(&job, "error").await;
        let error = failed["error"].as_str().unwrap();
        assert!(
            error.contains(&format!(
                "forbidden: this needs permission \"delete\" on \"record:{leads}\""
            )),
            "{error}"
        );
    }
    assert_eq!(count(&system, &leads).await, 1);
}
