//! Workflow `concurrency` and `rateLimit` through the API: checked at save
//! time with a 400 naming the field, shown on the workflow and its
//! version, removable by an edit, the rendered keys shown on the job, a
//! job waiting for a slot not startable by hand, and the OpenAPI schemas
//! (the pipeline tests check the limits end to end).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, read, spawn_app};

fn workflow(flow: Value) -> Value {
    let mut definition =
        json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]});
    for (key, value) in flow.as_object().unwrap() {
        definition[key] = value.clone();
    }
    definition
}

#[tokio::test]
async fn bad_flow_control_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"concurrency": {"limit": 0}}), "concurrency.limit:"),
        (
            json!({"concurrency": {"limit": 10_001}}),
            "concurrency.limit:",
        ),
        (
            json!({"concurrency": {"limit": 1, "key": "{{ outputs.t }}"}}),
            "concurrency.key:",
        ),
        (
            json!({"concurrency": {"limit": 1, "key": "{{ parameters.x"}}),
            "concurrency.key:",
        ),
        (json!({"concurrency": {"key": "k"}}), "concurrency"),
        (json!({"rateLimit": {}}), "rateLimit.perSecond:"),
        (
            json!({"rateLimit": {"perSecond": 1, "perMinute": 1}}),
            "rateLimit:",
        ),
        (
            json!({"rateLimit": {"perMinute": 0}}),
            "rateLimit.perMinute:",
        ),
        (
            json!({"rateLimit": {"perSecond": 2, "key": "{{ secrets.s }}"}}),
            "rateLimit.key:",
        ),
    ];
    for (flow, field) in cases {
        let (status, body) = app.post("/workflow/", workflow(flow.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{flow}: {body}");
        assert!(message(&body).contains(field), "{flow}: {body}");
    }
}

#[tokio::test]
async fn flow_control_is_shown_versioned_and_removable_and_keys_are_shown_on_jobs() {
    let app = spawn_app().await;
    let flow = json!({"concurrency": {"key": "c-{{ parameters.customer }}", "limit": 1},
                      "rateLimit": {"perMinute": 600}});
    let (status, body) = app.post("/workflow/", workflow(flow)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let shown = &body["response"];
    assert_eq!(
        shown["concurrency"],
        json!({"key": "c-{{ parameters.customer }}", "limit": 1})
    );
    assert_eq!(shown["rateLimit"], json!({"perMinute": 600}));
    let id = shown["workflowID"].as_str().unwrap().to_owned();

    let (status, first) = app
        .post(
            "/job/",
            json!({"workflowID": id, "parameters": {"customer": "acme"}}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["response"]["concurrencyKey"], "c-acme");
    assert_eq!(first["response"]["rateKey"], "");
    let (_, second) = app
        .post(
            "/job/",
            json!({"workflowID": id, "parameters": {"customer": "acme"}}),
        )
        .await;
    let second = second["response"]["jobID"].as_str().unwrap().to_owned();
    // No worker runs here: the first job holds the one slot, so the
    // second may not be started by hand either.
    let (status, body) = app
        .post(&format!("/job/{second}"), json!({"status": "running"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(message(&body).contains("waits for a slot"), "{body}");

    let (status, body) = app
        .post(&format!("/workflow/{id}"), json!({"concurrency": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["response"].get("concurrency").is_none(), "{body}");
    assert_eq!(body["response"]["rateLimit"], json!({"perMinute": 600}));
    // The limit is gone, so the waiting job has its slot now.
    let (status, body) = app
        .post(&format!("/job/{second}"), json!({"status": "running"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, versions) = app.get(&format!("/workflow/{id}/versions")).await;
    let versions = versions["response"]["versions"].as_array().unwrap().clone();
    assert!(versions[0]["definition"].get("concurrency").is_none());
    assert_eq!(versions[1]["definition"]["concurrency"]["limit"], 1);
}

#[tokio::test]
async fn the_openapi_document_describes_concurrency_and_rate_limits() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    let (_, doc) = read(response).await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["Concurrency"]["properties"]["limit"]["minimum"], 1);
    assert!(schemas["RateLimit"]["properties"]["perSecond"].is_object());
    for schema in ["Workflow", "WorkflowInput", "WorkflowPatch"] {
        let properties = &schemas[schema]["properties"];
        assert!(
            properties["concurrency"].is_object() && properties["rateLimit"].is_object(),
            "{schema}: {properties}"
        );
    }
    let job = &schemas["Job"]["properties"];
    assert!(job["concurrencyKey"].is_object() && job["rateKey"].is_object());
}
