//! Secrets as a workflow uses them: `{{ secrets.name }}` reaches the
//! outside service in the clear, and nothing Crust stores or answers holds
//! the value — not the log lines, the step outputs, the job's error, nor any
//! other row of any table (the whole database is searched for it).

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{start, Options};

const TOKEN: &str = "tok_live_9f8e7d6c5b4a";

/// An outside service that records the Authorization header it was sent
/// and echoes it (and its `key` query parameter) back in the body and in a
/// header.
async fn echo_server(seen: Arc<Mutex<Vec<String>>>) -> String {
    let app = Router::new()
        .route(
            "/",
            get(
                |State(seen): State<Arc<Mutex<Vec<String>>>>,
                 Query(query): Query<std::collections::HashMap<String, String>>,
                 headers: HeaderMap| async move {
                    let auth = headers
                        .get("authorization")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().unwrap().push(auth.clone());
                    (
                        [("x-echo", auth.clone())],
                        Json(json!({"seen": auth, "key": query.get("key")})),
                    )
                },
            ),
        )
        .with_state(seen);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// Rows of any table in the database whose text holds `needle`.
async fn rows_holding(pool: &PgPool, needle: &str) -> Vec<String> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables
         WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut found = Vec::new();
    for table in tables {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT t::text FROM {table} t WHERE strpos(t::text, $1) > 0"
        ))
        .bind(needle)
        .fetch_all(pool)
        .await
        .unwrap();
        found.extend(rows.into_iter().map(|row| format!("{table}: {row}")));
    }
    found
}

#[tokio::test]
async fn a_secret_reaches_the_service_and_nothing_stored_or_answered_holds_it() {
    let system = start(Options::default()).await;
    let (status, body) = system
        .call(
            Method::PUT,
            "/secret/api_token",
            Some(json!({"value": TOKEN})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let url = echo_server(seen.clone()).await;

    let workflow = system
        .workflow(json!({
            "name": "notify",
            "tasks": [
                {"name": "call", "kind": "http", "params": {
                    "url": format!("{url}?key={{{{ secrets.api_token }}}}"),
                    "headers": {"Authorization": "Bearer {{ secrets.api_token }}"}}},
                {"name": "say", "kind": "log", "params": {
                    "message": "called with {{ secrets.api_token }}; service saw {{ outputs.call.body.seen }}"}},
            ]
        }))
        .await;
    let ok_job = system.job(&workflow, json!({})).await;
    system.wait_status(&ok_job, "ok").await;

    let failing = system
        .workflow(json!({
            "name": "leaky failure",
            "tasks": [{"name": "boom", "kind": "fail",
                       "params": {"message": "rejected token {{ secrets.api_token }}"}}]
        }))
        .await;
    let failed_job = system.job(&failing, json!({})).await;
    let failed = system.wait_status(&failed_job, "error").await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("rejected token ***"),
        "{failed}"
    );

    // The service got the real value, in the header and the URL.
    assert_eq!(*seen.lock().unwrap(), vec![format!("Bearer {TOKEN}")]);

    // Every answer about the jobs masks it.
    for job in [&ok_job, &failed_job] {
        for path in [
            format!("/job/{job}"),
            format!("/job/{job}/logs"),
            format!("/job/{job}/steps"),
        ] {
            let (status, body) = system.call(Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}: {body}");
            let text = body.to_string();
            assert!(!text.contains(TOKEN), "{path} shows the secret: {text}");
        }
    }
    let logs = system.logs(&ok_job).await;
    assert!(
        logs.iter()
            .any(|line| line["message"] == json!("called with ***; service saw Bearer ***")),
        "{logs:?}"
    );
    let (_, listed) = system.call(Method::GET, "/secret/", None).await;
    assert!(!listed.to_string().contains(TOKEN), "{listed}");
    assert_eq!(listed["response"][0]["name"], json!("api_token"));

    // And no row of any table holds it, in any column.
    let pool = PgPool::connect(&system.db_url).await.unwrap();
    let leaks = rows_holding(&pool, TOKEN).await;
    assert!(
        leaks.is_empty(),
        "the secret is stored in the clear: {leaks:#?}"
    );
    // The search itself works: the masked line is found.
    assert!(!rows_holding(&pool, "called with ***").await.is_empty());
}

#[tokio::test]
async fn a_missing_secret_fails_its_task_naming_it() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({
            "name": "w",
            "tasks": [{"name": "t", "kind": "log", "params": {"message": "{{ secrets.nope }}"}}]
        }))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let failed: Value = system.wait_status(&job, "error").await;
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("secrets.nope: no secret of that name"),
        "{error}"
    );
}
