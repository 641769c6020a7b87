//! Tokens, the envelope and the limits every endpoint shares.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{message, read, spawn_app, spawn_app_with, TestApp, SECRET};
use crust_model::auth::TokenKey;
use crust_model::Id;

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
    let expired = key.sign(
        Id(1),
        &["admin"],
        chrono::Utc::now().timestamp() - 7200,
        3600,
    );
    let forged = TokenKey::new("some-other-secret-some-other-secret")
        .unwrap()
        .sign(Id(1), &["admin"], chrono::Utc::now().timestamp(), 3600);
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

/// Sends `request` as raw bytes (no client would send it) and returns the
/// status line and the body.
async fn raw(app: &TestApp, request: &str) -> (String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[tokio::test]
async fn a_request_the_http_layer_rejects_is_answered_in_the_envelope() {
    let app = spawn_app().await;
    // A raw `>` (and a raw space) in the query string, as pasted from a
    // README that did not percent-encode: hyper refuses it before routing.
    for target in [
        "/module/7/record?filter=amount>100",
        "/module/7/record?filter=a b",
    ] {
        let (status, body) = raw(
            &app,
            &format!("GET {target} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 400"), "{target}: {status}");
        let body: serde_json::Value = serde_json::from_str(&body)
            .unwrap_or_else(|err| panic!("{target}: body {body:?} is not JSON: {err}"));
        assert!(
            message(&body).contains("--data-urlencode"),
            "{target}: {body}"
        );
    }
    // The connection still serves well-formed requests as before.
    let (status, body) = raw(
        &app,
        "GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(body, r#"{"status":"ok"}"#);
}

#[tokio::test]
async fn the_docs_have_no_rustdoc_links_and_document_each_field_kind_s_options() {
    let app = spawn_app().await;
    let text = app
        .client
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("[`"), "rustdoc link syntax in /openapi.json");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let kinds = doc["components"]["schemas"]["FieldKind"]["description"]
        .as_str()
        .unwrap_or_default();
    for needle in [
        r#""kind": "Select", "options": {"options": ["#,
        r#""kind": "Record", "options": {"moduleID": "#,
        "`precision`",
        "`onlyDate`",
        "`multiLine`",
    ] {
        assert!(kinds.contains(needle), "FieldKind lacks {needle}: {kinds}");
    }
    let field = &doc["components"]["schemas"]["Field"];
    assert_eq!(
        field["example"]["options"],
        json!({"options": ["new", "won", "lost"]}),
        "{field}"
    );
    // Edits document their partial bodies.
    let edit = &doc["paths"]["/workflow/{workflowID}"]["post"]["requestBody"];
    assert!(edit.to_string().contains("WorkflowPatch"), "{edit}");
}
