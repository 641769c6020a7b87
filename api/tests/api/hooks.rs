//! Webhooks as an outside service sends them: a signed delivery starts a
//! job with the body and headers; a tampered body, a wrong key, a stale or
//! missing timestamp or signature is a 401 and starts nothing; a replay of
//! an accepted delivery is refused; a workflow without a webhook is a 404.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, read, spawn_app, TestApp};
use crust_model::webhook::sign;

const SECRET: &str = "whsec_test_0123456789abcdef";

async fn hooked_workflow(app: &TestApp) -> String {
    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "on deal", "webhook": {"secret": SECRET},
                   "tasks": [{"name": "t", "kind": "log", "params": {"message": "{{ parameters.body.deal }}"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["response"]["webhook"],
        json!({"secret": "***"}),
        "{body}"
    );
    body["response"]["workflowID"].as_str().unwrap().to_owned()
}

async fn deliver(
    app: &TestApp,
    workflow: &str,
    body: &str,
    timestamp: Option<i64>,
    signature: Option<String>,
) -> (StatusCode, Value) {
    let mut request = app
        .client
        .post(format!("{}/hook/{workflow}", app.base))
        .header("content-type", "application/json")
        .header("x-delivery", "abc")
        .body(body.to_owned());
    if let Some(timestamp) = timestamp {
        request = request.header("x-crust-timestamp", timestamp.to_string());
    }
    if let Some(signature) = signature {
        request = request.header("x-crust-signature", signature);
    }
    read(request.send().await.unwrap()).await
}

async fn jobs(app: &TestApp) -> i64 {
    let mut db = app.db().await;
    sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut db)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_signed_delivery_starts_a_job_with_the_body_and_headers() {
    let app = spawn_app().await;
    let workflow = hooked_workflow(&app).await;
    let body = r#"{"deal": 7, "stage": "won"}"#;
    let now = chrono::Utc::now().timestamp();
    let (status, answer) = deliver(
        &app,
        &workflow,
        body,
        Some(now),
        Some(sign(SECRET, now, body.as_bytes())),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let job = answer["response"]["jobID"].as_str().unwrap();
    let (_, job) = app.get(&format!("/job/{job}")).await;
    let parameters = &job["response"]["parameters"];
    assert_eq!(
        parameters["body"],
        json!({"deal": 7, "stage": "won"}),
        "{job}"
    );
    assert_eq!(parameters["headers"]["x-delivery"], "abc", "{job}");
    assert!(
        parameters["headers"].get("x-crust-signature").is_none(),
        "{job}"
    );

    // The same delivery again is a replay.
    let (status, answer) = deliver(
        &app,
        &workflow,
        body,
        Some(now),
        Some(sign(SECRET, now, body.as_bytes())),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(jobs(&app).await, 1);

    // A body that is not JSON arrives as text.
    let now = now + 1;
    let (status, answer) = deliver(
        &app,
        &workflow,
        "plain text",
        Some(now),
        Some(sign(SECRET, now, b"plain text")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
}

#[tokio::test]
async fn bad_or_stale_signatures_are_401s_and_start_nothing() {
    let app = spawn_app().await;
    let workflow = hooked_workflow(&app).await;
    let body = r#"{"deal": 7}"#;
    let now = chrono::Utc::now().timestamp();
    let good = sign(SECRET, now, body.as_bytes());
    for (what, sent, timestamp, signature, says) in [
        (
            "tampered body",
            r#"{"deal": 8}"#,
            Some(now),
            Some(good.clone()),
            "does not match",
        ),
        (
            "wrong key",
            body,
            Some(now),
            Some(sign("another-secret-0000", now, body.as_bytes())),
            "does not match",
        ),
        (
            "other timestamp",
            body,
            Some(now + 1),
            Some(good.clone()),
            "does not match",
        ),
        (
            "stale",
            body,
            Some(now - 301),
            Some(sign(SECRET, now - 301, body.as_bytes())),
            "stale",
        ),
        (
            "no timestamp",
            body,
            None,
            Some(good.clone()),
            "X-Crust-Timestamp is missing",
        ),
        (
            "no signature",
            body,
            Some(now),
            None,
            "X-Crust-Signature is missing",
        ),
        (
            "not hex",
            body,
            Some(now),
            Some("sha256=xyz".into()),
            "64 hex digits",
        ),
    ] {
        let (status, answer) = deliver(&app, &workflow, sent, timestamp, signature).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {answer}");
        assert!(message(&answer).contains(says), "{what}: {answer}");
    }
    assert_eq!(jobs(&app).await, 0, "no refused delivery made a job");
}

#[tokio::test]
async fn a_workflow_without_a_webhook_has_none_and_secrets_are_checked() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "plain", "tasks": [{"name": "t", "kind": "log", "params": {"message": "x"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let plain = body["response"]["workflowID"].as_str().unwrap().to_owned();
    let now = chrono::Utc::now().timestamp();
    let (status, _) = deliver(
        &app,
        &plain,
        "{}",
        Some(now),
        Some(sign(SECRET, now, b"{}")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = deliver(&app, "999", "{}", Some(now), Some(sign(SECRET, now, b"{}"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "weak", "webhook": {"secret": "short"}, "tasks": []}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).contains("webhook.secret"), "{body}");

    // "***" keeps the secret on an edit; null removes the webhook.
    let workflow = hooked_workflow(&app).await;
    let (status, body) = app
        .post(
            &format!("/workflow/{workflow}"),
            json!({"name": "renamed", "webhook": {"secret": "***"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = deliver(
        &app,
        &workflow,
        "{}",
        Some(now),
        Some(sign(SECRET, now, b"{}")),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "the secret was kept");
    let (status, body) = app
        .post(&format!("/workflow/{workflow}"), json!({"webhook": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["response"].get("webhook").is_none(), "{body}");
    let now = now + 1;
    let (status, _) = deliver(
        &app,
        &workflow,
        "{}",
        Some(now),
        Some(sign(SECRET, now, b"{}")),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
