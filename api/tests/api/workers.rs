//! `GET /worker/` without workers running: a row past its time is not live
//! and is pruned (the live listing with real workers is a pipeline test).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::spawn_app;

#[tokio::test]
async fn a_worker_past_its_time_is_not_listed_and_its_row_is_pruned() {
    let app = spawn_app().await;
    let mut db = app.db().await;
    sqlx::query(
        "INSERT INTO workers (name, concurrency, started_at, expires_at) VALUES
         ('gone', 4, now() - interval '1 hour', now() - interval '1 second'),
         ('here', 2, now(), now() + interval '1 minute')",
    )
    .execute(&mut db)
    .await
    .unwrap();
    let (status, body) = app.get("/worker/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed = &body["response"];
    assert_eq!(listed.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(listed[0]["name"], "here");
    assert_eq!(listed[0]["queues"], json!(["default"]));
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM workers")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(left, 1);
}
