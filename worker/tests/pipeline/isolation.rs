//! One job cannot hurt another: rows corrupted through SQL end their own
//! job and nothing else; a poisoned workflow can be deleted; what a task
//! brings in from outside that cannot be stored fails that task; a job's
//! log is capped.

use axum::routing::get;
use axum::Router;
use serde_json::json;
use sqlx::PgConnection;

use crate::helpers::{eventually, start, Options, DEADLINE};

/// (status, error, attempt) of a job, read with SQL (the api cannot read
/// a corrupted row).
async fn job_row(db: &mut PgConnection, id: &str) -> (String, Option<String>, i32) {
    sqlx::query_as("SELECT status, error, attempt FROM jobs WHERE id = $1")
        .bind(id.parse::<i64>().unwrap())
        .fetch_one(db)
        .await
        .unwrap()
}

async fn wait_row(db: &mut PgConnection, id: &str, status: &str) -> (String, Option<String>, i32) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let row = job_row(db, id).await;
        if row.0 == status {
            return row;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {id} never became {status}: {row:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn jobs_that_cannot_be_read_end_error_alone_and_their_batch_runs() {
    let mut system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let good = system
        .workflow(json!({"name": "good", "tasks": [
            {"name": "hello", "kind": "log", "params": {"message": "hello {{ parameters.who }}"}}
        ]}))
        .await;
    let bad = system
        .workflow(json!({"name": "bad", "tasks": [
            {"name": "hello", "kind": "log", "params": {"message": "hi"}}
        ]}))
        .await;
    let mut db = system.db.connect().await;
    // A job runs its workflow version's definition: poison that.
    sqlx::query(
        "UPDATE workflow_versions SET definition = '{\"tasks\": [{\"name\": 1}]}'
         WHERE workflow_id = $1",
    )
    .bind(bad.parse::<i64>().unwrap())
    .execute(&mut db)
    .await
    .unwrap();
    // Innocent and poisoned jobs interleaved, all waiting in the queue
    // before any worker runs, so they are claimed in the same batches.
    let (mut innocent, mut bad_params, mut bad_workflow) = (Vec::new(), Vec::new(), Vec::new());
    for n in 0..24 {
        match n % 8 {
            3 => {
                let id = system.job(&good, json!({"parameters": {"who": "x"}})).await;
                sqlx::query(
                    // Parameters are any JSON object, but a number beyond
                    // a double's range cannot be read back.
                    "UPDATE jobs SET parameters = '{\"who\": 1e400}' WHERE id = $1",
                )
                .bind(id.parse::<i64>().unwrap())
                .execute(&mut db)
                .await
                .unwrap();
                bad_params.push(id);
            }
            6 => bad_workflow.push(system.job(&bad, json!({})).await),
            _ => innocent.push(
                system
                    .job(&good, json!({"parameters": {"who": "ann"}}))
                    .await,
            ),
        }
    }
    system.start_worker(1_000, 10).await;
    for id in &innocent {
        let done = system.wait_status(id, "ok").await;
        assert_eq!(done["attempt"], 1, "{done}");
    }
    for id in &bad_params {
        let (_, error, attempt) = wait_row(&mut db, id, "error").await;
        let error = error.unwrap();
        assert!(
            error.starts_with("the job's parameters cannot be read: "),
            "{error}"
        );
        assert_eq!(attempt, 1, "ended at once, not retried as a lost run");
    }
    for id in &bad_workflow {
        let (_, error, attempt) = wait_row(&mut db, id, "error").await;
        let error = error.unwrap();
        assert!(
            error.starts_with(&format!(
                "workflow {bad} version 1: its definition cannot be read: "
            )),
            "{error}"
        );
        assert_eq!(attempt, 1);
        let logs = system.logs(id).await;
        assert_eq!(
            logs[0]["message"],
            format!("job cannot run: {error}"),
            "{logs:?}"
        );
    }
}

#[tokio::test]
async fn a_poisoned_workflow_on_a_cron_is_deleted_and_stops_firing() {
    let system = start(Options::default()).await;
    let cron = system
        .workflow(
            json!({"name": "every second", "schedule": "* * * * * *", "tasks": [
                {"name": "hello", "kind": "log", "params": {"message": "tick"}}
            ]}),
        )
        .await;
    let cron_id = cron.parse::<i64>().unwrap();
    let mut db = system.db.connect().await;
    sqlx::query("UPDATE workflow_versions SET definition = '{\"tasks\": \"not a list\"}' WHERE workflow_id = $1")
        .bind(cron_id)
        .execute(&mut db)
        .await
        .unwrap();
    // It keeps firing, and each of its jobs ends error by itself.
    let url = system.db.url.clone();
    eventually("two of the poisoned workflow's jobs ended error", || {
        let url = url.clone();
        async move {
            let mut db = <PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            let ended: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM jobs WHERE workflow_id = $1 AND status = 'error'",
            )
            .bind(cron_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
            ended >= 2
        }
    })
    .await;
    let good = system
        .workflow(json!({"name": "good", "tasks": [
            {"name": "hello", "kind": "log", "params": {"message": "hello"}}
        ]}))
        .await;
    let innocent = system.job(&good, json!({})).await;
    system.wait_status(&innocent, "ok").await;

    let (status, body) = system
        .call(reqwest::Method::DELETE, &format!("/workflow/{cron}"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let (deleted, next_fire): (bool, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT deleted_at IS NOT NULL, next_fire_at FROM workflows WHERE id = $1")
            .bind(cron_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(deleted);
    assert_eq!(next_fire, None, "its schedule stopped with the delete");
    eventually("none of its jobs is queued or running", || {
        let url = url.clone();
        async move {
            let mut db = <PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            let active: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM jobs WHERE workflow_id = $1 AND status IN ('queued', 'running')",
            )
            .bind(cron_id)
            .fetch_one(&mut db)
            .await
            .unwrap();
            active == 0
        }
    })
    .await;
}

/// Serves `body` as JSON at `/` on 127.0.0.1; returns the URL.
async fn serve_json(body: &'static str) -> String {
    let app = Router::new().route(
        "/",
        get(move || async move { ([("content-type", "application/json")], body) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[tokio::test]
async fn a_response_that_cannot_be_stored_fails_its_task_and_reaches_no_table() {
    let system = start(Options::default()).await;
    for (body, reason) in [
        (
            r#"{"v": [1, 1.7976931348623157e308]}"#,
            "$.v[1]: the number 1.7976931348623157e308 cannot be stored and read back (out of range)",
        ),
        (r#"{"k": "a\u0000b"}"#, "$.k: contains a NUL character (\\u0000)"),
    ] {
        let url = serve_json(body).await;
        let workflow = system
            .workflow(json!({"name": "fetch", "tasks": [
                {"name": "fetch", "kind": "http", "params": {"url": url}},
                {"name": "use", "kind": "log", "params": {"message": "{{ outputs.fetch.body }}"}}
            ]}))
            .await;
        let job = system.job(&workflow, json!({})).await;
        let done = system.wait_status(&job, "error").await;
        let error = done["error"].as_str().unwrap();
        assert!(
            error.starts_with("task fetch: http GET ")
                && error.contains(&format!("the response body cannot be stored: {reason}")),
            "{error}"
        );
        // Every log line reads back: nothing unstorable was written.
        let (status, body) = system
            .call(reqwest::Method::GET, &format!("/job/{job}/logs"), None)
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    }
}

#[tokio::test]
async fn a_job_log_is_capped_with_one_final_line() {
    let system = start(Options {
        limits: crust_worker::Limits {
            job_log_max_lines: 25,
            job_log_max_bytes: 1 << 20,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "chatty", "tasks": [
            {"name": "talk", "kind": "script", "params": {"source": "for i in 0..500 { log(`line ${i}`); } 1"}}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_status(&job, "ok").await;
    let logs = system.logs(&job).await;
    assert_eq!(logs.len(), 26, "{logs:?}");
    assert_eq!(
        logs[25]["message"],
        "log truncated: a job may write 25 lines and 1048576 bytes; later lines are dropped"
    );

    // The byte cap: 64 KiB lines stop at 1 MiB.
    let workflow = system
        .workflow(json!({"name": "loud", "tasks": [
            {"name": "talk", "kind": "script", "params": {"source": "let s = \"x\"; for i in 0..16 { s += s; } for i in 0..20 { log(s); } 1"}}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_status(&job, "ok").await;
    let logs = system.logs(&job).await;
    let total: usize = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    assert!(total <= 1 << 20, "{total}");
    assert!(logs.last().unwrap()["message"]
        .as_str()
        .unwrap()
        .starts_with("log truncated"));
}
