//! `/secret` through the API: values go in and never come out, are stored
//! sealed (not in the clear), names and values are checked, and without
//! `CRUST_SECRETS_KEY` the endpoints say how to enable them.

use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::Row;

use crate::helpers::{message, spawn_app, spawn_app_with};

const VALUE: &str = "sk_test_51Hxyz-secret";

#[tokio::test]
async fn a_secret_is_set_replaced_listed_without_its_value_and_deleted() {
    let app = spawn_app().await;
    let (status, body) = app
        .call(Method::PUT, "/secret/stripe", Some(json!({"value": VALUE})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["response"]["name"], "stripe");
    assert!(!body.to_string().contains(VALUE), "{body}");
    let (status, body) = app
        .call(
            Method::PUT,
            "/secret/stripe",
            Some(json!({"value": "another-value"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "replaced: {body}");
    assert!(body["response"]["updatedAt"].is_string(), "{body}");

    let (status, body) = app.get("/secret/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"].as_array().unwrap().len(), 1);
    assert!(!body.to_string().contains("another-value"), "{body}");

    // Stored sealed: neither value is in the row.
    let mut db = app.db().await;
    let row = sqlx::query("SELECT sealed, nonce, key_id FROM secrets WHERE name = 'stripe'")
        .fetch_one(&mut db)
        .await
        .unwrap();
    let sealed: Vec<u8> = row.get("sealed");
    assert!(!String::from_utf8_lossy(&sealed).contains("another-value"));
    assert_eq!(row.get::<Vec<u8>, _>("nonce").len(), 24);

    let (status, _) = app.delete("/secret/stripe").await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app.delete("/secret/stripe").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn bad_names_and_values_are_400s_naming_what_is_wrong() {
    let app = spawn_app().await;
    for (path, body, says) in [
        ("/secret/9lives", json!({"value": VALUE}), "name:"),
        (
            "/secret/ok_name",
            json!({"value": "abc"}),
            "value: must be 6",
        ),
        (
            "/secret/ok_name",
            json!({"value": VALUE, "extra": 1}),
            "extra",
        ),
        ("/secret/ok_name", json!({}), "value"),
    ] {
        let (status, answer) = app.call(Method::PUT, path, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {answer}");
        assert!(message(&answer).contains(says), "{path}: {answer}");
    }
    let (status, answer) = app.delete("/secret/bad-name").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
}

#[tokio::test]
async fn without_a_key_the_endpoints_say_how_to_enable_secrets() {
    let app = spawn_app_with(|config| config.secrets.secrets_key = None).await;
    for (method, path) in [
        (Method::GET, "/secret/"),
        (Method::PUT, "/secret/stripe"),
        (Method::DELETE, "/secret/stripe"),
    ] {
        let body = (method == Method::PUT).then(|| json!({"value": VALUE}));
        let (status, answer) = app.call(method, path, body).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {answer}");
        assert!(message(&answer).contains("CRUST_SECRETS_KEY"), "{answer}");
    }
}

#[tokio::test]
async fn a_workflow_may_reference_secrets_in_its_task_params() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "w", "tasks": [{"name": "t", "kind": "http",
                   "params": {"url": "https://example.com/", "headers": {"Authorization": "Bearer {{ secrets.token }}"}}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}
