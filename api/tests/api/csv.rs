//! CSV through the API alone: an export's header, quoting and order, its
//! 400s and 404s; an import's checks before anything is stored (content
//! type, header row) and its 202 with the job that will run it, stored with
//! its upload in one transaction; the built-in import workflow cannot be
//! edited or deleted.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{message, read, spawn_app, TestApp};

async fn send_csv(
    app: &TestApp,
    path: &str,
    body: &str,
    content_type: &str,
) -> (StatusCode, serde_json::Value) {
    let response = app
        .client
        .post(format!("{}{path}", app.base))
        .bearer_auth(&app.token)
        .header("content-type", content_type)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    read(response).await
}

#[tokio::test]
async fn an_export_has_a_header_quotes_what_it_must_and_follows_the_sort() {
    let app = spawn_app().await;
    let module = app
        .create_module(
            "people",
            json!([{"name": "name", "kind": "String"},
                   {"name": "tags", "kind": "String", "isMulti": true}]),
        )
        .await;
    app.create_record(&module, json!({"name": "plain", "tags": ["a", "b"]}))
        .await;
    let quoted = app
        .create_record(&module, json!({"name": "Ann, \"A\"\nSmith"}))
        .await;
    let response = app
        .client
        .get(format!(
            "{}/module/{module}/record/export?sort=name",
            app.base
        ))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    let text = response.text().await.unwrap();
    assert!(text.starts_with("recordID,name,tags\r\n"), "{text}");
    assert!(
        text.contains(&format!("{quoted},\"Ann, \"\"A\"\"\nSmith\",\r\n")),
        "{text}"
    );
    assert!(text.ends_with(",plain,a;b\r\n"), "{text}");

    for (query, says) in [
        ("?filter=nope%20%3D%201", "filter:"),
        ("?sort=nope", "sort:"),
        ("?after=5", "after"),
    ] {
        let (status, body) = app
            .get(&format!("/module/{module}/record/export{query}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(message(&body).contains(says), "{query}: {body}");
    }
    let (status, _) = app.get("/module/999/record/export").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_import_is_checked_before_it_is_stored_and_answers_its_job() {
    let app = spawn_app().await;
    let module = app
        .create_module("people", json!([{"name": "name", "kind": "String"}]))
        .await;
    let path = format!("/module/{module}/record/import");
    let (status, body) = send_csv(&app, &path, "name\nann\n", "application/json").await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    for (csv, says) in [
        ("", "header row"),
        ("nme\nann\n", "column \"nme\" is not a field"),
        ("name,name\nann,bob\n", "appears twice"),
    ] {
        let (status, body) = send_csv(&app, &path, csv, "text/csv").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{csv:?}: {body}");
        assert!(message(&body).contains(says), "{csv:?}: {body}");
    }
    let mut db = app.db().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM record_imports")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "a refused upload leaves nothing");

    // An export's recordID column and a spreadsheet's byte-order mark pass.
    let (status, body) = send_csv(
        &app,
        &format!("{path}?dryRun=true"),
        "\u{feff}recordID,name\n1,ann\n",
        "text/csv; charset=utf-8",
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let job = body["response"]["jobID"].as_str().unwrap().to_owned();
    let (_, job) = app.get(&format!("/job/{job}")).await;
    assert_eq!(job["response"]["parameters"]["dryRun"], true, "{job}");
    assert_eq!(job["response"]["parameters"]["moduleID"], module.as_str());

    // The job's workflow is built in: it can be read, not changed.
    let workflow = job["response"]["workflowID"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            &format!("/workflow/{workflow}"),
            json!({"name": "mine now"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = app.delete(&format!("/workflow/{workflow}")).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = app.get("/module/999/record/import").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}
