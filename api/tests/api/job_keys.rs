//! Flow control on job creation: idempotency keys (`key`, the
//! `Idempotency-Key` header, `CRUST_JOB_KEY_TTL`) and `POST /job/bulk`.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, read, spawn_app, spawn_app_with, TestApp};

async fn workflow(app: &TestApp) -> String {
    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "w", "tasks": [{"name": "hello", "kind": "log", "params": {"message": "hi"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["workflowID"].as_str().unwrap().to_owned()
}

/// Posts a job with an `Idempotency-Key` header.
async fn post_with_header(app: &TestApp, key: &str, body: Value) -> (StatusCode, Value) {
    let response = app
        .client
        .post(format!("{}/job/", app.base))
        .bearer_auth(&app.token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .unwrap();
    read(response).await
}

async fn job_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&mut app.db().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_same_key_twice_answers_the_first_job_with_200() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let body = json!({"workflowID": id, "key": "order-17", "parameters": {"n": 1}});
    let (status, first) = app.post("/job/", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["response"]["key"], "order-17");
    let (status, second) = app.post("/job/", body).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["response"]["jobID"], first["response"]["jobID"]);
    assert_eq!(second["response"]["key"], "order-17");
    // Other parameters do not make it a new job: the key decides.
    let (status, third) = app
        .post(
            "/job/",
            json!({"workflowID": id, "key": "order-17", "parameters": {"n": 2}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_eq!(third["response"]["parameters"], json!({"n": 1}));
    // Without a key, or with another, a job is created as before.
    assert_eq!(
        app.post("/job/", json!({"workflowID": id})).await.0,
        StatusCode::CREATED
    );
    let (status, body) = app
        .post("/job/", json!({"workflowID": id, "key": "order-18"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(job_count(&app).await, 3);
}

#[tokio::test]
async fn concurrent_creates_with_one_key_make_exactly_one_job() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let body = json!({"workflowID": id, "key": "once"});
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let request = app
            .client
            .post(format!("{}/job/", app.base))
            .bearer_auth(&app.token)
            .json(&body);
        tasks.spawn(async move { read(request.send().await.unwrap()).await });
    }
    let answers = tasks.join_all().await;
    let created: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .map(|(_, body)| body)
        .collect();
    assert_eq!(created.len(), 1, "{answers:?}");
    let job_id = &created[0]["response"]["jobID"];
    for (status, body) in &answers {
        assert!(
            matches!(*status, StatusCode::CREATED | StatusCode::OK),
            "{body}"
        );
        assert_eq!(&body["response"]["jobID"], job_id, "{body}");
    }
    assert_eq!(job_count(&app).await, 1);
}

#[tokio::test]
async fn a_key_belongs_to_its_workflow() {
    let app = spawn_app().await;
    let one = workflow(&app).await;
    let two = workflow(&app).await;
    let (status, first) = app
        .post("/job/", json!({"workflowID": one, "key": "k"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, second) = app
        .post("/job/", json!({"workflowID": two, "key": "k"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_ne!(first["response"]["jobID"], second["response"]["jobID"]);
}

#[tokio::test]
async fn the_header_and_the_body_carry_the_same_key() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let (status, first) = post_with_header(&app, "h-1", json!({"workflowID": id})).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["response"]["key"], "h-1");
    // The body's key finds the header's job, and both together (equal) too.
    let (status, again) = app
        .post("/job/", json!({"workflowID": id, "key": "h-1"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["response"]["jobID"], first["response"]["jobID"]);
    let (status, both) =
        post_with_header(&app, "h-1", json!({"workflowID": id, "key": "h-1"})).await;
    assert_eq!(status, StatusCode::OK, "{both}");
    assert_eq!(both["response"]["jobID"], first["response"]["jobID"]);
    // Different ones are refused.
    let (status, body) =
        post_with_header(&app, "h-1", json!({"workflowID": id, "key": "h-2"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).starts_with("key: "), "{body}");
    assert_eq!(job_count(&app).await, 1);
}

#[tokio::test]
async fn a_bad_key_is_a_400_naming_key() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    for key in [json!(""), json!("x".repeat(256)), json!(5)] {
        let (status, body) = app
            .post("/job/", json!({"workflowID": id, "key": key}))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&body).starts_with("key: "), "{body}");
    }
    let (status, body) = post_with_header(&app, &"x".repeat(256), json!({"workflowID": id})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).starts_with("key: "), "{body}");
    // 255 characters (not bytes) are fine.
    let (status, body) = app
        .post("/job/", json!({"workflowID": id, "key": "é".repeat(255)}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(job_count(&app).await, 1);
}

#[tokio::test]
async fn a_key_past_its_ttl_makes_a_new_job_and_moves_to_it() {
    let app = spawn_app_with(|config| config.job_key_ttl = Duration::from_secs(60)).await;
    let id = workflow(&app).await;
    let body = json!({"workflowID": id, "key": "daily"});
    let (status, first) = app.post("/job/", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let first_id = first["response"]["jobID"].as_str().unwrap().to_owned();
    sqlx::query("UPDATE jobs SET created_at = now() - interval '61 seconds' WHERE id = $1::bigint")
        .bind(&first_id)
        .execute(&mut app.db().await)
        .await
        .unwrap();
    let (status, second) = app.post("/job/", body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{second}");
    assert_ne!(second["response"]["jobID"], json!(first_id));
    // The key now names the new job; the old one keeps everything else.
    let (status, third) = app.post("/job/", body).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    assert_eq!(third["response"]["jobID"], second["response"]["jobID"]);
    let (_, old) = app.get(&format!("/job/{first_id}")).await;
    assert!(old["response"].get("key").is_none(), "{old}");
}

/// Waits until the broker confirmed every one of these jobs' messages.
async fn published(app: &TestApp, ids: &[i64]) -> bool {
    for _ in 0..100 {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE id = ANY($1) AND published_at IS NOT NULL",
        )
        .bind(ids)
        .fetch_one(&mut app.db().await)
        .await
        .unwrap();
        if count == ids.len() as i64 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn a_bulk_create_makes_every_job_in_order_and_publishes_them() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let (status, body) = app
        .post(
            "/job/bulk",
            json!({"jobs": [
                {"workflowID": id, "parameters": {"n": 0}},
                {"workflowID": id, "parameters": {"n": 1}, "key": "b"},
                {"workflowID": id, "parameters": {"n": 2}},
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let jobs = body["response"].as_array().unwrap();
    assert_eq!(jobs.len(), 3);
    let ids: Vec<i64> = jobs
        .iter()
        .enumerate()
        .map(|(at, job)| {
            assert_eq!(job["parameters"], json!({"n": at}));
            assert_eq!(job["status"], "queued");
            job["jobID"].as_str().unwrap().parse().unwrap()
        })
        .collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    assert_eq!(jobs[1]["key"], "b");
    assert!(published(&app, &ids).await, "the jobs were not published");
    // A held key answers its job inside a bulk too, even twice in one call.
    let (status, body) = app
        .post(
            "/job/bulk",
            json!({"jobs": [{"workflowID": id, "key": "b"}, {"workflowID": id, "key": "c"}, {"workflowID": id, "key": "c"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["response"][0]["jobID"], jobs[1]["jobID"]);
    assert_eq!(body["response"][1]["jobID"], body["response"][2]["jobID"]);
    assert_eq!(job_count(&app).await, 4);
}

#[tokio::test]
async fn an_invalid_bulk_item_is_a_400_naming_it_and_creates_nothing() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let good = json!({"workflowID": id});
    let cases = [
        (
            json!({"jobs": [good, good, {"workflowID": id, "startAt": "soon"}]}),
            "jobs[2].startAt: ",
        ),
        (
            json!({"jobs": [good, good, {"workflowID": id, "key": ""}]}),
            "jobs[2].key: ",
        ),
        (
            json!({"jobs": [good, good, {"workflowID": "999999"}]}),
            "jobs[2].workflowID: workflow 999999 does not exist",
        ),
        (
            json!({"jobs": [good, good, {"workflowID": id, "bogus": 1}]}),
            "jobs[2]",
        ),
        (
            json!({"jobs": []}),
            "jobs: must hold 1 to 1000 jobs (got 0)",
        ),
        (
            json!({"jobs": vec![good.clone(); 1001]}),
            "jobs: must hold 1 to 1000 jobs (got 1001)",
        ),
    ];
    for (input, expected) in cases {
        let (status, body) = app.post("/job/bulk", input).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(message(&body).contains(expected), "{expected}: {body}");
    }
    assert_eq!(job_count(&app).await, 0);
    // 1000 is allowed.
    let (status, body) = app
        .post("/job/bulk", json!({"jobs": vec![good.clone(); 1000]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["response"].as_array().unwrap().len(), 1000);
}
