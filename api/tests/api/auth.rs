//! Tokens, the envelope and the limits every endpoint shares.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{message, read, spawn_app, spawn_app_with, SECRET};
use crust_shared::auth::TokenKey;
use crust_shared::Id;

#[tokio::test]
async fn requests_without_a_token_are_refused_with_401() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/module/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["www-authenticate"].to_str().unwrap(),
        "Bearer"
    );
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(message(&body), "missing bearer token");
}

#[tokio::test]
async fn expired_and_forged_tokens_are_refused() {
    let app = spawn_app().await;
    let key = TokenKey::new(SECRET).unwrap();
    let expired = key.sign(Id(1), chrono::Utc::now().timestamp() - 7200, 3600);
    let forged = TokenKey::new("some-other-secret-some-other-secret")
        .unwrap()
        .sign(Id(1), chrono::Utc::now().timestamp(), 3600);
    for (token, expected) in [
        (expired, "token has expired"),
        (forged, "token signature is invalid"),
        ("garbage".to_owned(), "token is not a JWT"),
    ] {
        let response = app
            .client
            .get(format!("{}/module/", app.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let (status, body) = read(response).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(message(&body), expected);
    }
}

#[tokio::test]
async fn a_jwt_cookie_is_accepted_instead_of_the_header() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/module/", app.base))
        .header("cookie", format!("jwt={}", app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn health_probes_and_docs_need_no_token() {
    let app = spawn_app().await;
    for path in ["/healthz", "/readyz", "/openapi.json", "/docs/"] {
        let response = app
            .client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    let (_, doc) = read(response).await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/module/", "get"),
        ("/module/", "post"),
        ("/module/{moduleID}", "delete"),
        ("/module/{moduleID}/record", "get"),
        ("/module/{moduleID}/record/{recordID}", "post"),
        ("/page/tree", "get"),
        ("/page/{selfID}/reorder", "post"),
        ("/chart/{chartID}", "delete"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path}"
        );
    }
    assert!(doc["components"]["schemas"]["Module"].is_object());
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn unknown_endpoints_are_404_in_the_envelope() {
    let app = spawn_app().await;
    let (status, body) = app.get("/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "no such endpoint");
}

#[tokio::test]
async fn trailing_slashes_are_optional() {
    let app = spawn_app().await;
    assert_eq!(app.get("/module").await.0, StatusCode::OK);
    assert_eq!(app.get("/module/").await.0, StatusCode::OK);
    assert_eq!(app.get("/chart/").await.0, StatusCode::OK);
}

#[tokio::test]
async fn malformed_json_is_a_400_that_says_so() {
    let app = spawn_app().await;
    let (status, body) = app.post_raw("/module/", "{\"name\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).starts_with("request body is not valid JSON"),
        "{body}"
    );
    let (status, body) = app.post_raw("/module/", "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "request body is empty; expected a JSON object"
    );
}

#[tokio::test]
async fn oversize_bodies_are_413_and_the_limit_is_configurable() {
    let app = spawn_app_with(|config| config.body_limit = 1024).await;
    let big = json!({"name": "x".repeat(2000), "config": {}});
    let (status, body) = app.post("/chart/", big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(message(&body), "request body is larger than the limit");
    assert_eq!(app.get("/chart/").await.1["response"], json!([]));
}

#[tokio::test]
async fn a_down_database_is_a_503_not_a_500() {
    let app = spawn_app_with(|config| {
        config.db.database_url = "postgres://postgres@127.0.0.1:1/nowhere".into();
    })
    .await;
    let (status, body) = app.get("/module/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        message(&body),
        "the database is unavailable; try again shortly"
    );
    let response = app
        .client
        .get(format!("{}/readyz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}
