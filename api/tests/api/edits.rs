//! Edits of workflows, modules, pages and charts are partial, as record
//! updates are: absent keys keep their value. And one rule for unknown IDs:
//! in the path a 404, referenced from a body a 400 naming the field.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{message, spawn_app};

#[tokio::test]
async fn a_module_edit_changes_only_the_keys_it_names() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/module/",
            json!({"name": "Leads", "meta": {"icon": "user"}, "fields": [
                {"name": "email", "kind": "Email"}, {"name": "score", "kind": "Number"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let before = body["response"].clone();
    let id = before["moduleID"].as_str().unwrap();
    let record = app
        .create_record(id, json!({"email": "ann@example.com", "score": 3}))
        .await;

    let (status, body) = app
        .post(&format!("/module/{id}"), json!({"name": "Prospects"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["name"], "Prospects");
    assert_eq!(body["response"]["fields"], before["fields"]);
    assert_eq!(body["response"]["meta"], json!({"icon": "user"}));
    let (status, body) = app
        .post(&format!("/module/{id}"), json!({"meta": {"icon": "star"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["name"], "Prospects");
    assert_eq!(body["response"]["meta"], json!({"icon": "star"}));
    // The record kept its values through both edits.
    let (_, body) = app.get(&format!("/module/{id}/record/{record}")).await;
    assert_eq!(body["response"]["fields"][1]["value"], 3, "{body}");

    // The merged result is validated as a whole.
    let (status, body) = app
        .post(&format!("/module/{id}"), json!({"fields": []}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "fields: a module needs at least one field");
}

#[tokio::test]
async fn a_page_edit_changes_only_the_keys_it_names() {
    let app = spawn_app().await;
    let (_, body) = app
        .post("/page/", json!({"title": "Home", "blocks": []}))
        .await;
    let home = body["response"]["pageID"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            "/page/",
            json!({"title": "Leads", "selfID": home, "description": "all leads",
                   "visible": true, "blocks": [{"kind": "list"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["response"]["pageID"].as_str().unwrap().to_owned();

    let (status, body) = app
        .post(&format!("/page/{id}"), json!({"title": "Open leads"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let page = &body["response"];
    assert_eq!(page["title"], "Open leads");
    assert_eq!(page["selfID"], json!(home));
    assert_eq!(page["description"], "all leads");
    assert_eq!(page["visible"], true);
    assert_eq!(page["blocks"], json!([{"kind": "list"}]));

    let (status, body) = app
        .post(&format!("/page/{id}"), json!({"selfID": "0"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["selfID"], "0");
    assert_eq!(body["response"]["title"], "Open leads");
}

#[tokio::test]
async fn a_chart_edit_changes_only_the_keys_it_names() {
    let app = spawn_app().await;
    let module = app
        .create_module("Deals", json!([{"name": "a", "kind": "String"}]))
        .await;
    let config = json!({"type": "bar", "reports": [{"moduleID": module, "metrics": "COUNT(*)"}]});
    let (_, body) = app
        .post("/chart/", json!({"name": "Pipeline", "config": config}))
        .await;
    let id = body["response"]["chartID"].as_str().unwrap().to_owned();

    let (status, body) = app
        .post(&format!("/chart/{id}"), json!({"name": "Funnel"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["name"], "Funnel");
    assert_eq!(body["response"]["config"], config);

    let (status, body) = app
        .post(&format!("/chart/{id}"), json!({"config": {"type": "pie"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["name"], "Funnel");
    assert_eq!(body["response"]["config"], json!({"type": "pie"}));

    // A given config must still compile.
    let (status, body) = app
        .post(
            &format!("/chart/{id}"),
            json!({"config": {"reports": [{"moduleID": module, "metrics": "SUM(nope)"}]}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).starts_with("config.reports[0]: "), "{body}");
}

#[tokio::test]
async fn a_workflow_edit_is_validated_as_a_whole_and_unknown_keys_are_refused() {
    let app = spawn_app().await;
    let (_, body) = app
        .post("/workflow/", json!({"name": "greet", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let id = body["response"]["workflowID"].as_str().unwrap().to_owned();
    let cases = [
        (json!({"name": ""}), "name: must not be empty"),
        (
            json!({"schedule": "every tuesday"}),
            "schedule: \"every tuesday\" is not a valid cron expression",
        ),
        (json!({"bogus": 1}), "bogus: unknown field `bogus`"),
    ];
    for (input, expected) in cases {
        let (status, body) = app.post(&format!("/workflow/{id}"), input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert!(message(&body).starts_with(expected), "{input}: {body}");
    }
    let (_, body) = app.get(&format!("/workflow/{id}")).await;
    assert_eq!(body["response"]["name"], "greet");
}

#[tokio::test]
async fn unknown_ids_are_404_in_the_path_and_400_naming_the_field_in_a_body() {
    let app = spawn_app().await;
    for path in ["/workflow/999", "/module/999", "/page/999", "/chart/999"] {
        let (status, body) = app.post(path, json!({})).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    assert_eq!(app.get("/job/999").await.0, StatusCode::NOT_FOUND);
    let cases = [
        (
            "/job/",
            json!({"workflowID": "999"}),
            "workflowID: workflow 999 does not exist",
        ),
        (
            "/page/",
            json!({"title": "x", "selfID": "999", "blocks": []}),
            "selfID: page 999 does not exist",
        ),
        (
            "/page/",
            json!({"title": "x", "moduleID": "999", "blocks": []}),
            "moduleID: module 999 does not exist",
        ),
        (
            "/module/",
            json!({"name": "x", "fields": [{"name": "r", "kind": "Record", "options": {"moduleID": "999"}}]}),
            "fields[0].options.moduleID: module 999 does not exist",
        ),
    ];
    for (path, input, expected) in cases {
        let (status, body) = app.post(path, input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert_eq!(message(&body), expected, "{input}");
    }
}
