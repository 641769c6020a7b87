//! `POST /workflow/{id}/pause` and `/resume` through the API alone: the
//! flag shown, idempotence, 404s and the OpenAPI document (the pipeline
//! tests check that a paused workflow's jobs really wait).

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{read, spawn_app, TestApp};

async fn flip(app: &TestApp, path: &str) -> (StatusCode, Value) {
    app.call(Method::POST, path, None).await
}

#[tokio::test]
async fn pause_and_resume_show_the_flag_and_are_idempotent() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["response"]["paused"], false, "{body}");
    assert!(body["response"].get("pausedAt").is_none());
    let id = body["response"]["workflowID"].as_str().unwrap().to_owned();
    let path = format!("/workflow/{id}");

    let (status, first) = flip(&app, &format!("{path}/pause")).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["response"]["paused"], true);
    assert!(first["response"]["pausedAt"].is_string(), "{first}");
    let (status, again) = flip(&app, &format!("{path}/pause")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["response"]["pausedAt"], first["response"]["pausedAt"]);
    assert_eq!(app.get(&path).await.1["response"]["paused"], true);
    let listed = app.get("/workflow/").await.1;
    assert_eq!(listed["response"][0]["paused"], true, "{listed}");

    for _ in 0..2 {
        let (status, body) = flip(&app, &format!("{path}/resume")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["response"]["paused"], false);
        assert!(body["response"].get("pausedAt").is_none());
    }

    for action in ["pause", "resume"] {
        let (status, _) = flip(&app, &format!("/workflow/999999/{action}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action} of a missing one");
    }
    assert_eq!(app.delete(&path).await.0, StatusCode::OK);
    for action in ["pause", "resume"] {
        let (status, _) = flip(&app, &format!("{path}/{action}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action} of a deleted one");
    }
}

#[tokio::test]
async fn the_openapi_document_has_pause_and_resume() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    let (_, doc) = read(response).await;
    for action in ["pause", "resume"] {
        let path = format!("/workflow/{{workflowID}}/{action}");
        assert!(doc["paths"][&path]["post"].is_object(), "{path}");
    }
    let workflow = &doc["components"]["schemas"]["Workflow"]["properties"];
    assert!(workflow["paused"].is_object() && workflow["pausedAt"].is_object());
}
