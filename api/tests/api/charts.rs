//! `/chart`: CRUD and validation.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{message, spawn_app};

#[tokio::test]
async fn a_chart_is_created_read_listed_edited_and_deleted() {
    let app = spawn_app().await;
    let module = app
        .create_module("Deals", json!([{"name": "a", "kind": "String"}]))
        .await;
    let config = json!({"type": "bar", "reports": [{"moduleID": module, "metrics": "COUNT(*)", "dimensions": "", "filter": ""}]});
    let (status, body) = app
        .post("/chart/", json!({"name": "Pipeline", "config": config}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["response"]["chartID"].as_str().unwrap().to_owned();
    assert_eq!(body["response"]["config"], config);

    let (status, body) = app.get(&format!("/chart/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["name"], "Pipeline");
    let (_, body) = app.get("/chart/").await;
    assert_eq!(body["response"].as_array().unwrap().len(), 1);

    let (status, body) = app
        .post(
            &format!("/chart/{id}"),
            json!({"name": "Funnel", "config": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["name"], "Funnel");
    assert!(body["response"]["updatedAt"].is_string());

    let (status, body) = app.delete(&format!("/chart/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"success": {"message": "OK"}}));
    assert_eq!(
        app.get(&format!("/chart/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/chart/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn chart_validation_rules_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"name": "", "config": {}}), "name: must not be empty"),
        (json!({"name": "x"}), "request body: missing field `config`"),
        (
            json!({"name": "x", "config": []}),
            "config: must be a JSON object",
        ),
        (
            json!({"name": "x", "config": {"reports": {}}}),
            "config.reports: must be a list",
        ),
        (
            json!({"name": "x", "config": {"reports": [{"metrics": "COUNT(*)"}]}}),
            "config.reports[0]: missing field `moduleID`",
        ),
        (
            json!({"name": "x", "config": {"reports": [{"moduleID": "999"}]}}),
            "config.reports[0]: module 999 does not exist",
        ),
    ];
    for (input, expected) in cases {
        let (status, body) = app.post("/chart/", input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert!(message(&body).starts_with(expected), "{input}: {body}");
    }
    assert_eq!(app.get("/chart/abc").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.post("/chart/77", json!({"name": "x", "config": {}}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}
