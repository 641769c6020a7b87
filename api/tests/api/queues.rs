//! Named queues through the API alone: a workflow's `queue` (validated,
//! defaulted, kept on its jobs) and `GET /queue/` counting them (the
//! pipeline tests check that workers consume only their queues).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

const TASKS: &str = r#"[{"name": "t", "kind": "log", "params": {"message": "hi"}}]"#;

#[tokio::test]
async fn a_workflow_queue_is_validated_defaulted_and_kept_on_its_jobs() {
    let app = spawn_app().await;
    let tasks: serde_json::Value = serde_json::from_str(TASKS).unwrap();
    let (status, body) = app
        .post("/workflow/", json!({"name": "plain", "tasks": tasks}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["response"]["queue"], "default");
    for bad in [
        json!(""),
        json!("a.b"),
        json!("-x"),
        json!("q".repeat(65)),
        json!(7),
    ] {
        let (status, body) = app
            .post(
                "/workflow/",
                json!({"name": "bad", "tasks": tasks, "queue": bad}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains("queue"),
            "{body}"
        );
    }
    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "mail", "tasks": tasks, "queue": "mail_out"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["response"]["queue"], "mail_out");
    let workflow = body["response"]["workflowID"].as_str().unwrap().to_owned();
    let (status, job) = app.post("/job/", json!({"workflowID": workflow})).await;
    assert_eq!(status, StatusCode::CREATED, "{job}");
    assert_eq!(job["response"]["queue"], "mail_out");
    // A later change of queue is for new jobs; the first keeps its queue.
    let (status, body) = app
        .post(&format!("/workflow/{workflow}"), json!({"queue": "other"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["queue"], "other");
    let id = job["response"]["jobID"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/job/{id}")).await.1["response"]["queue"],
        "mail_out"
    );
}

#[tokio::test]
async fn listing_queues_counts_their_jobs_by_state() {
    let app = spawn_app().await;
    let tasks: serde_json::Value = serde_json::from_str(TASKS).unwrap();
    let (_, body) = app
        .post(
            "/workflow/",
            json!({"name": "mail", "tasks": tasks, "queue": "mail"}),
        )
        .await;
    let workflow = body["response"]["workflowID"].as_str().unwrap().to_owned();
    for _ in 0..2 {
        let (status, body) = app.post("/job/", json!({"workflowID": workflow})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (status, body) = app
        .post("/job/", json!({"workflowID": workflow, "startAt": later}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (status, body) = app.get("/queue/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let queues = body["response"].as_array().unwrap();
    let names: Vec<&str> = queues.iter().map(|q| q["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["default", "mail"], "{body}");
    let mail = &queues[1];
    assert_eq!(mail["ready"], 2, "{body}");
    assert_eq!(mail["delayed"], 1, "{body}");
    assert_eq!(mail["running"], 0, "{body}");
    assert_eq!(mail["waiting"], 0, "{body}");
    assert!(
        mail["oldestReadyAgeSeconds"].as_f64().unwrap() >= 0.0,
        "{body}"
    );
    // No worker consumes it; the broker is up, so this is a number.
    assert_eq!(mail["consumers"], 0, "{body}");
    let default = &queues[0];
    assert_eq!(default["ready"], 0, "{body}");
    assert!(default["oldestReadyAgeSeconds"].is_null(), "{body}");
}

#[tokio::test]
async fn the_openapi_document_has_the_queue_list() {
    let app = spawn_app().await;
    let (_, doc) = app.get("/openapi.json").await;
    assert!(
        doc["paths"]["/queue/"]["get"].is_object(),
        "{}",
        doc["paths"]
    );
    let schema = &doc["components"]["schemas"]["QueueInfo"]["properties"];
    for key in [
        "name",
        "ready",
        "running",
        "waiting",
        "delayed",
        "consumers",
        "oldestReadyAgeSeconds",
    ] {
        assert!(schema[key].is_object(), "{key}: {schema}");
    }
}
