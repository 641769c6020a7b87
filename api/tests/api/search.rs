//! Job search (`GET /job/?filter=`), `after` on the log list, and the bulk
//! cancel and rerun of what a filter matches (no worker runs here).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

async fn workflow(app: &TestApp, name: &str) -> String {
    let (status, body) = app
        .post("/workflow/", json!({"name": name, "tasks": [{"name": "hello", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["workflowID"].as_str().unwrap().to_owned()
}

/// A job that stays queued (it starts in a day).
async fn later_job(app: &TestApp, workflow: &str, parameters: Value) -> String {
    let start = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
    let (status, body) = app
        .post(
            "/job/",
            json!({"workflowID": workflow, "parameters": parameters, "startAt": start}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["jobID"].as_str().unwrap().to_owned()
}

fn ids(body: &Value) -> Vec<String> {
    body["response"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["jobID"].as_str().unwrap().to_owned())
        .collect()
}

fn query(filter: &str) -> String {
    form_urlencoded::byte_serialize(filter.as_bytes()).collect()
}

#[tokio::test]
async fn jobs_are_found_by_columns_and_parameters_and_shorthands_are_anded() {
    let app = spawn_app().await;
    let first = workflow(&app, "first").await;
    let second = workflow(&app, "second").await;
    let acme = later_job(&app, &first, json!({"customer": "acme", "n": 5})).await;
    let other = later_job(&app, &first, json!({"customer": "other", "n": 7})).await;
    let acme_too = later_job(&app, &second, json!({"customer": "acme"})).await;

    let (status, body) = app
        .get(&format!(
            "/job/?filter={}",
            query("parameters.customer = 'acme'")
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(ids(&body), [acme_too.clone(), acme.clone()]);
    assert_eq!(body["response"]["meta"]["count"], 2);

    let (_, body) = app
        .get(&format!(
            "/job/?workflowID={first}&filter={}",
            query("parameters.customer = 'acme'")
        ))
        .await;
    assert_eq!(ids(&body), [acme.as_str()]);
    let (_, body) = app
        .get(&format!(
            "/job/?filter={}&sort={}",
            query("parameters.n >= 5"),
            query("parameters.n DESC")
        ))
        .await;
    assert_eq!(ids(&body), [other.clone(), acme.clone()]);
    let (_, body) = app
        .get(&format!(
            "/job/?status=queued&filter={}",
            query(&format!("workflowID = {second} OR jobID = {other}"))
        ))
        .await;
    assert_eq!(ids(&body), [acme_too.clone(), other.clone()]);
    let (_, body) = app
        .get(&format!("/job/?filter={}", query("status = 'error'")))
        .await;
    assert_eq!(ids(&body), Vec::<String>::new());
    let (_, body) = app.get(&format!("/job/?workflowID={second}")).await;
    assert_eq!(ids(&body), [acme_too]);
}

#[tokio::test]
async fn bad_searches_are_400s_naming_the_column() {
    let app = spawn_app().await;
    let (status, body) = app
        .get(&format!("/job/?filter={}", query("stauts = 'error'")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "filter: unknown field \"stauts\" at column 1"
    );
    let (status, body) = app.get(&format!("/job/?sort={}", query("nope"))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "sort: unknown field \"nope\" at column 1");
    let (status, body) = app.get("/job/?workflowID=abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).starts_with("workflowID: "), "{body}");
    // The complaint of issue 14: a misspelt parameter was ignored.
    let (status, body) = app.get("/job/?workflowId=3").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).starts_with(
            "unknown query parameter \"workflowId\"; this endpoint takes filter, sort, status, workflowID"
        ),
        "{body}"
    );
}

#[tokio::test]
async fn the_log_list_resumes_after_a_sequence_number() {
    let app = spawn_app().await;
    let flow = workflow(&app, "logs").await;
    let job = later_job(&app, &flow, json!({})).await;
    for line in ["one", "two", "three"] {
        let (status, body) = app
            .post(&format!("/job/{job}"), json!({"log": {"message": line}}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = app.get(&format!("/job/{job}/logs?after=1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let messages: Vec<&str> = body["response"]["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["message"].as_str().unwrap())
        .collect();
    assert_eq!(messages, ["two", "three"]);
    let (status, _) = app.get(&format!("/job/{job}/logs?after=-1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = app.get(&format!("/job/{job}/logs?afterr=1")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).starts_with("unknown query parameter \"afterr\""),
        "{body}"
    );
}

#[tokio::test]
async fn bulk_cancel_and_rerun_touch_what_the_filter_matches() {
    let app = spawn_app().await;
    let flow = workflow(&app, "bulk").await;
    let acme = later_job(&app, &flow, json!({"customer": "acme"})).await;
    let acme_too = later_job(&app, &flow, json!({"customer": "acme"})).await;
    let other = later_job(&app, &flow, json!({"customer": "other"})).await;

    let (status, body) = app
        .post(
            "/job/cancel",
            json!({"filter": "parameters.customer = 'acme'"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["count"], 2);
    for id in [&acme, &acme_too] {
        assert_eq!(
            app.get(&format!("/job/{id}")).await.1["response"]["status"],
            "cancelled"
        );
    }
    assert_eq!(
        app.get(&format!("/job/{other}")).await.1["response"]["status"],
        "queued"
    );
    // Cancelled jobs are not cancelled again.
    let (_, body) = app
        .post(
            "/job/cancel",
            json!({"filter": "parameters.customer = 'acme'"}),
        )
        .await;
    assert_eq!(body["response"]["count"], 0);

    // Only finished jobs are rerun: the queued one is not.
    let (status, body) = app.post("/job/rerun", json!({"filter": ""})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["count"], 2);
    let (_, body) = app
        .get(&format!(
            "/job/?filter={}",
            query(&format!("jobID > {other}"))
        ))
        .await;
    let reruns = body["response"]["jobs"].as_array().unwrap();
    assert_eq!(reruns.len(), 2);
    for job in reruns {
        assert_eq!(job["status"], "queued");
        assert!([&acme, &acme_too].contains(&&job["rerunOf"].as_str().unwrap().to_owned()));
    }

    let (status, body) = app
        .post("/job/cancel", json!({"filter": "stauts = 1"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "filter: unknown field \"stauts\" at column 1"
    );
    let (status, _) = app
        .post("/job/rerun", json!({"filter": "x", "extra": 1}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Every documented operation refuses a query parameter it does not take,
/// before anything else (auth aside) looks at the request.
#[tokio::test]
async fn every_endpoint_refuses_an_unknown_query_parameter() {
    let app = spawn_app().await;
    let (status, document) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut checked = 0;
    let path_parameter = regex::Regex::new(r"\{[^}]+\}").unwrap();
    for (path, item) in document["paths"].as_object().unwrap() {
        let concrete = path_parameter.replace_all(path, "1").into_owned();
        for method in item.as_object().unwrap().keys() {
            let method =
                reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).unwrap();
            let (status, body) = app
                .call(
                    method.clone(),
                    &format!("{concrete}?bogusParameter=1"),
                    Some(json!({})),
                )
                .await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {body}");
            assert!(
                message(&body).starts_with("unknown query parameter \"bogusParameter\""),
                "{method} {path}: {body}"
            );
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} operations");
}
