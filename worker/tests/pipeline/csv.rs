//! CSV as users move data: 100 000 records exported from one module and
//! imported into another come back with equal values; bad rows are named
//! by line and field and counted while the good ones are imported; a dry
//! run checks without creating.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{start, Options, System};

const FIELDS: &str = r#"[
    {"name": "code", "kind": "Number"},
    {"name": "name", "kind": "String"},
    {"name": "email", "kind": "Email"},
    {"name": "won", "kind": "Bool"},
    {"name": "stage", "kind": "Select", "options": {"options": ["lead", "deal", "won"]}},
    {"name": "tags", "kind": "String", "isMulti": true}
]"#;

async fn module(system: &System, name: &str) -> String {
    let fields: Value = serde_json::from_str(FIELDS).unwrap();
    let (status, body) = system
        .call(
            Method::POST,
            "/module/",
            Some(json!({"name": name, "fields": fields})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["moduleID"].as_str().unwrap().to_owned()
}

/// The export of a module, as text.
async fn export(system: &System, module: &str, query: &str) -> String {
    let response = system
        .client
        .get(format!(
            "{}/module/{module}/record/export{query}",
            system.base
        ))
        .bearer_auth(&system.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    response.text().await.unwrap()
}

/// Starts an import of `csv`; returns its job.
async fn import(system: &System, module: &str, csv: String, query: &str) -> String {
    let response = system
        .client
        .post(format!(
            "{}/module/{module}/record/import{query}",
            system.base
        ))
        .bearer_auth(&system.token)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    body["response"]["jobID"].as_str().unwrap().to_owned()
}

/// Waits for a job to end ok, allowing a long import its time.
async fn wait_ok(system: &System, job: &str, within: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let job_now = system.get_job(job).await;
        match job_now["status"].as_str() {
            Some("ok") => return job_now,
            Some("error" | "cancelled") => panic!("import failed: {job_now}"),
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "import still running: {job_now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The rows of an export without their recordID, sorted.
fn rows_without_ids(text: &str) -> Vec<Vec<String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut rows: Vec<Vec<String>> = reader
        .records()
        .map(|row| row.unwrap().iter().skip(1).map(str::to_owned).collect())
        .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn a_hundred_thousand_records_round_trip_through_csv_with_equal_values() {
    let system = start(Options::default()).await;
    let source = module(&system, "source").await;
    let target = module(&system, "target").await;
    // The source's records, written straight into its partition (the API's
    // own create path is what the import is checked against below).
    let pool = PgPool::connect(&system.db_url).await.unwrap();
    sqlx::query(
        r#"INSERT INTO records (module_id, user_id, "values")
           SELECT $1, 7, jsonb_strip_nulls(jsonb_build_object(
               'code', i,
               'name', CASE WHEN i % 7 = 0 THEN format('Ann, "the" %s%sline', i, chr(10))
                            ELSE format('name %s', i) END,
               'email', format('p%s@example.com', i),
               'won', i % 2 = 0,
               'stage', (ARRAY['lead', 'deal', 'won'])[i % 3 + 1],
               'tags', CASE WHEN i % 5 = 0 THEN NULL ELSE jsonb_build_array('t' || i % 4, 'x') END))
           FROM generate_series(1, 100000) i"#,
    )
    .bind(source.parse::<i64>().unwrap())
    .execute(&pool)
    .await
    .unwrap();

    let exported = export(&system, &source, "").await;
    assert!(exported.starts_with("recordID,code,name,email,won,stage,tags\r\n"));
    let job = import(&system, &target, exported.clone(), "").await;
    let done = wait_ok(&system, &job, Duration::from_secs(600)).await;
    assert_eq!(
        done["outputs"]["import"],
        json!({"created": 100000, "failed": 0, "dryRun": false}),
        "{done}"
    );
    let again = export(&system, &target, "").await;
    let (before, after) = (rows_without_ids(&exported), rows_without_ids(&again));
    assert_eq!(before.len(), 100_000);
    assert!(before == after, "the values differ after the round trip");
    // The upload is gone once imported; the counts stay.
    let (chunks,): (i64,) = sqlx::query_as("SELECT count(*) FROM record_import_chunks")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(chunks, 0);
    // Filter and sort apply to exports as to lists.
    let some = export(
        &system,
        &target,
        "?filter=code%20%3C%3D%203&sort=code%20DESC",
    )
    .await;
    let codes: Vec<String> = csv::Reader::from_reader(some.as_bytes())
        .records()
        .map(|row| row.unwrap()[1].to_owned())
        .collect();
    assert_eq!(codes, ["3", "2", "1"]);
}

#[tokio::test]
async fn bad_rows_are_named_by_line_and_field_and_the_rest_is_imported() {
    let system = start(Options::default()).await;
    let target = module(&system, "target").await;
    let csv = "code,name,email,stage\n\
               1,ann,ann@example.com,lead\n\
               2,bob,not-an-email,deal\n\
               three,cy,cy@example.com,won\n\
               4,\"dee\nof two lines\",dee@example.com,nope\n\
               5,eve,eve@example.com\n\
               6,fay,fay@example.com,won\n";

    let dry = import(&system, &target, csv.to_owned(), "?dryRun=true").await;
    let done = wait_ok(&system, &dry, Duration::from_secs(30)).await;
    assert_eq!(
        done["outputs"]["import"],
        json!({"created": 2, "failed": 4, "dryRun": true})
    );
    let (_, listed) = system
        .call(Method::GET, &format!("/module/{target}/record"), None)
        .await;
    assert_eq!(
        listed["response"]["meta"]["count"], 0,
        "a dry run creates nothing"
    );

    let job = import(&system, &target, csv.to_owned(), "").await;
    let done = wait_ok(&system, &job, Duration::from_secs(30)).await;
    assert_eq!(
        done["outputs"]["import"],
        json!({"created": 2, "failed": 4, "dryRun": false})
    );
    let messages: Vec<String> = system
        .logs(&job)
        .await
        .iter()
        .filter(|line| line["level"] == "warn")
        .map(|line| line["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(
        messages[0].starts_with("line 3: field \"email\""),
        "{messages:?}"
    );
    assert!(
        messages[1].starts_with("line 4: field \"code\""),
        "{messages:?}"
    );
    assert!(
        messages[2].starts_with("line 5: field \"stage\""),
        "{messages:?}"
    );
    assert!(messages[3].starts_with("line 7: 3 cells"), "{messages:?}");
    let (_, listed) = system
        .call(
            Method::GET,
            &format!("/module/{target}/record?sort=code"),
            None,
        )
        .await;
    let names: Vec<&str> = listed["response"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|record| {
            record["fields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == "name")
                .unwrap()["value"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(names, ["ann", "fay"]);
}
