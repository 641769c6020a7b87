//! Bounded queries: the statement timeout, the report row cap and the
//! compiler's limits, each a 400 that names the limit, never a 500.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{message, spawn_app, spawn_app_with, TestApp};

/// Percent-encodes a query-language text for a URL.
fn q(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A module with one `title` field and `rows` records written straight
/// through SQL (fast), titles `md5(i)`.
async fn titled(app: &TestApp, rows: i64) -> String {
    let module = app
        .create_module("Titles", json!([{"name": "title", "kind": "String"}]))
        .await;
    let id: i64 = module.parse().unwrap();
    let mut db = app.db().await;
    sqlx::query(
        r#"INSERT INTO records (module_id, user_id, "values")
           SELECT $1, 7, jsonb_build_object('title', md5(i::text)) FROM generate_series(1, $2) i"#,
    )
    .bind(id)
    .bind(rows)
    .execute(&mut db)
    .await
    .unwrap();
    module
}

/// A filter that reads every title many times over: far slower than the
/// few milliseconds the tests allow.
fn slow_filter() -> String {
    format!(
        "CONCAT({}) LIKE '{}%x'",
        vec!["title"; 99].join(", "),
        "%a".repeat(20)
    )
}

/// How many statements of other sessions are running in this database.
async fn running_elsewhere(app: &TestApp) -> i64 {
    let mut db = app.db().await;
    sqlx::query_scalar(
        "SELECT count(*) FROM pg_stat_activity
         WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()",
    )
    .fetch_one(&mut db)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_query_past_the_timeout_is_a_400_and_postgres_stops_it() {
    let app = spawn_app_with(|config| {
        config.queries.query_timeout = Duration::from_millis(100);
    })
    .await;
    let module = titled(&app, 20_000).await;
    let filter = q(&slow_filter());

    for path in [
        format!("/module/{module}/record?filter={filter}"),
        format!("/module/{module}/report?dimensions=title&filter={filter}"),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(
            message(&body),
            "the query took too long: it was stopped after 100ms (CRUST_QUERY_TIMEOUT); \
             narrow the filter or simplify the expressions"
        );
        assert_eq!(running_elsewhere(&app).await, 0, "{path}");
    }

    // Chart data runs its reports under the same timeout.
    let config = json!({"reports": [{"moduleID": module, "filter": slow_filter()}]});
    let (status, body) = app
        .post("/chart/", json!({"name": "Slow", "config": config}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let chart = body["response"]["chartID"].as_str().unwrap().to_owned();
    let (status, body) = app.get(&format!("/chart/{chart}/data")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).starts_with("the query took too long"),
        "{body}"
    );

    // Quick queries still answer, on connections the timeouts left usable.
    let small = app
        .create_module("Small", json!([{"name": "n", "kind": "Number"}]))
        .await;
    app.create_record(&small, json!({"n": 1})).await;
    for _ in 0..10 {
        let (status, body) = app.get(&format!("/module/{small}/record")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["response"]["records"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn a_report_with_more_groups_than_the_cap_is_a_400_naming_it() {
    let app = spawn_app_with(|config| config.queries.report_max_rows = 3).await;
    let module = titled(&app, 4).await;
    let (status, body) = app
        .get(&format!("/module/{module}/report?dimensions=title"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        message(&body),
        "the report has more than 3 groups (CRUST_REPORT_MAX_ROWS); \
         use fewer or coarser dimensions or a narrower filter"
    );
    // Exactly the cap is fine.
    let filter = q("title <> 'c4ca4238a0b923820dcc509a6f75849b'");
    let (status, body) = app
        .get(&format!(
            "/module/{module}/report?dimensions=title&filter={filter}"
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn a_report_larger_than_the_byte_cap_is_a_400_naming_it() {
    let app = spawn_app_with(|config| config.queries.report_max_bytes = 100_000).await;
    let module = titled(&app, 100).await;
    // 100 groups of 32-character titles fit; 30 copies of each do not.
    let (status, body) = app
        .get(&format!("/module/{module}/report?dimensions=title"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let wide = q(&format!("CONCAT({})", vec!["title"; 40].join(",")));
    let (status, body) = app
        .get(&format!("/module/{module}/report?dimensions={wide}"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        message(&body),
        "the report is larger than 100000 bytes (CRUST_REPORT_MAX_BYTES); \
         use fewer or shorter dimensions or a narrower filter"
    );
}

#[tokio::test]
async fn postgres_limits_are_400s_that_name_ours() {
    let app = spawn_app().await;
    let module = titled(&app, 3).await;
    let concat = |n: usize| format!("CONCAT({})", vec!["title"; n].join(","));

    // 100 arguments is what Postgres takes; 101 is our 400, not its 500.
    let path = format!(
        "/module/{module}/record?filter={}",
        q(&format!("{} = 'x'", concat(100)))
    );
    assert_eq!(app.get(&path).await.0, StatusCode::OK);
    for path in [
        format!(
            "/module/{module}/record?filter={}",
            q(&format!("{} = 'x'", concat(101)))
        ),
        format!("/module/{module}/report?dimensions={}", q(&concat(101))),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            message(&body).contains("function CONCAT takes at most 100 arguments at column 1"),
            "{body}"
        );
    }

    // 2 000 dimensions pass Postgres's 1 664 columns; we stop at 100.
    let dimensions = |n: usize| {
        (0..n)
            .map(|i| format!("title AS d{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (status, body) = app
        .get(&format!(
            "/module/{module}/report?dimensions={}",
            q(&dimensions(100))
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .get(&format!(
            "/module/{module}/report?dimensions={}",
            q(&vec!["1"; 2000].join(","))
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        message(&body),
        "dimensions: at most 100 expressions are allowed at column 201"
    );
    let (status, body) = app
        .get(&format!(
            "/module/{module}/report?metrics={}",
            q(&vec!["COUNT(title)"; 101].join(","))
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).starts_with("metrics: at most 100 expressions are allowed"),
        "{body}"
    );

    // The longest arithmetic chain the input length allows stays within
    // Postgres's stack.
    let chain = format!("1 = {}1", "1+".repeat(2040));
    let (status, body) = app
        .get(&format!("/module/{module}/record?filter={}", q(&chain)))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Holds an exclusive lock on `table` until the returned connection is
/// dropped, so any query of it waits (and a statement timeout ends the wait).
async fn lock_table(app: &TestApp, table: &str) -> sqlx::PgConnection {
    let mut db = app.db().await;
    sqlx::query("BEGIN").execute(&mut db).await.unwrap();
    sqlx::query(&format!("LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
        .execute(&mut db)
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn the_job_list_is_bounded_by_the_timeout_too() {
    let app = spawn_app_with(|config| {
        config.queries.query_timeout = Duration::from_millis(200);
    })
    .await;
    let _lock = lock_table(&app, "jobs").await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), app.get("/job/"))
        .await
        .expect("the listing ends by itself");
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).starts_with("the query took too long: it was stopped after 200ms"),
        "{body}"
    );
}

#[tokio::test]
async fn postgres_stops_the_query_of_a_client_that_went_away() {
    let app = spawn_app_with(|config| {
        config.queries.query_timeout = Duration::from_secs(2);
    })
    .await;
    let module = titled(&app, 3).await;
    let _lock = lock_table(&app, "records").await;
    // The client gives up long before the statement timeout.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let gave_up = impatient
        .get(format!("{}/module/{module}/record", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap_err();
    assert!(gave_up.is_timeout(), "{gave_up}");
    // The api's query waits on the lock (seen while the timeout runs)...
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while running_elsewhere(&app).await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the api's query never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...and Postgres ends it at the timeout although nobody waits for the
    // answer any more.
    while running_elsewhere(&app).await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the abandoned query is still running"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
