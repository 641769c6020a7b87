//! Workflow versions, workflow default parameters and JSON job parameters
//! through the API alone (no worker runs here; the pipeline tests run them).

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

async fn create(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, body) = app.post(path, body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"].clone()
}

async fn edit(app: &TestApp, path: &str, body: Value) -> Value {
    let (status, body) = app.post(path, body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["response"].clone()
}

fn hello(message: &str) -> Value {
    json!([{"name": "hello", "kind": "log", "params": {"message": message}}])
}

#[tokio::test]
async fn every_save_of_a_workflow_is_a_version_listed_newest_first() {
    let app = spawn_app().await;
    let created = create(
        &app,
        "/workflow/",
        json!({"name": "greet", "tasks": hello("one"), "parameters": {"who": "ann"}, "timeout": 5}),
    )
    .await;
    assert_eq!(created["version"], 1, "{created}");
    assert_eq!(created["parameters"], json!({"who": "ann"}));
    let id = created["workflowID"].as_str().unwrap();
    let path = format!("/workflow/{id}");
    assert_eq!(
        edit(&app, &path, json!({"name": "renamed"})).await["version"],
        2
    );
    let edited = edit(&app, &path, json!({"tasks": hello("three")})).await;
    assert_eq!(edited["version"], 3);
    assert_eq!(
        edited["parameters"],
        json!({"who": "ann"}),
        "kept when not named"
    );
    assert_eq!(app.get(&path).await.1["response"]["version"], 3);

    let (status, body) = app.get(&format!("{path}/versions")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let list = &body["response"];
    assert_eq!(list["meta"], json!({"page": 0, "perPage": 50, "count": 3}));
    let versions = list["versions"].as_array().unwrap();
    let numbers: Vec<i64> = versions
        .iter()
        .map(|v| v["version"].as_i64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 2, 1]);
    assert!(versions[0]["createdAt"].is_string());
    assert_eq!(
        versions[0]["definition"],
        json!({"name": "renamed", "tasks": edited["tasks"], "onError": [], "timeout": 5,
               "parallelism": 8, "parameters": {"who": "ann"}})
    );
    assert_eq!(versions[2]["definition"]["name"], "greet");
    assert_eq!(versions[2]["definition"]["tasks"], created["tasks"]);

    let (_, body) = app.get(&format!("{path}/versions?page=1&perPage=1")).await;
    assert_eq!(body["response"]["versions"][0]["version"], 2, "{body}");
    assert_eq!(body["response"]["meta"]["count"], 3);
    let (status, body) = app.get(&format!("{path}/versions?perPage=0")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "perPage: must be at least 1");
    assert_eq!(
        app.get("/workflow/999/versions").await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.delete(&path).await.0, StatusCode::OK);
    assert_eq!(
        app.get(&format!("{path}/versions")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_job_records_the_version_it_runs_and_a_new_workflow_id_re_pins_it() {
    let app = spawn_app().await;
    let first = create(
        &app,
        "/workflow/",
        json!({"name": "a", "tasks": hello("a")}),
    )
    .await;
    let first = first["workflowID"].as_str().unwrap().to_owned();
    let other = create(
        &app,
        "/workflow/",
        json!({"name": "b", "tasks": hello("b")}),
    )
    .await;
    let other = other["workflowID"].as_str().unwrap().to_owned();
    let later = json!("2999-01-01T00:00:00Z");
    let job = create(
        &app,
        "/job/",
        json!({"workflowID": first, "startAt": later}),
    )
    .await;
    assert_eq!(job["workflowVersion"], 1, "{job}");
    edit(
        &app,
        &format!("/workflow/{first}"),
        json!({"tasks": hello("a2")}),
    )
    .await;
    let job_path = format!("/job/{}", job["jobID"].as_str().unwrap());
    assert_eq!(
        app.get(&job_path).await.1["response"]["workflowVersion"],
        1,
        "editing the workflow does not touch jobs already created"
    );
    edit(&app, &format!("/workflow/{other}"), json!({"name": "b2"})).await;
    edit(&app, &format!("/workflow/{other}"), json!({"name": "b3"})).await;
    let moved = edit(&app, &job_path, json!({"workflowID": other})).await;
    assert_eq!(moved["workflowID"], json!(other));
    assert_eq!(moved["workflowVersion"], 3, "{moved}");
}

#[tokio::test]
async fn job_parameters_are_any_json_object_of_at_most_64_kib() {
    let app = spawn_app().await;
    let id = create(
        &app,
        "/workflow/",
        json!({"name": "w", "tasks": hello("hi")}),
    )
    .await;
    let id = id["workflowID"].as_str().unwrap().to_owned();
    let parameters = json!({"n": 5, "ratio": 0.5, "ok": true, "none": null, "list": [1, "two"],
                            "customer": {"email": "a@b.io", "address": {"city": "Oslo"}}});
    let job = create(
        &app,
        "/job/",
        json!({"workflowID": id, "parameters": parameters}),
    )
    .await;
    assert_eq!(job["parameters"], parameters);
    let job_path = format!("/job/{}", job["jobID"].as_str().unwrap());
    assert_eq!(
        app.get(&job_path).await.1["response"]["parameters"],
        parameters
    );

    // 64 KiB as compact JSON: `{"big":"…"}` takes 10 bytes around the text.
    let fits = "x".repeat(65_536 - 10);
    create(
        &app,
        "/job/",
        json!({"workflowID": id, "parameters": {"big": fits}}),
    )
    .await;
    for body in [
        json!({"workflowID": id, "parameters": {"big": "x".repeat(65_536 - 9)}}),
        json!({"workflowID": id, "parameters": {"deep": {"big": ["x".repeat(70_000)]}}}),
    ] {
        let (status, body) = app.post("/job/", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            message(&body).starts_with("parameters: 65537 bytes as JSON")
                || message(&body).starts_with("parameters: 700"),
            "{body}"
        );
    }
    let (status, body) = app
        .post(
            &job_path,
            json!({"parameters": {"big": "x".repeat(70_000)}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).starts_with("parameters: "), "{body}");
    let (status, body) = app
        .post(&job_path, json!({"parameters": {"n": [1, {"m": 2}]}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["parameters"], json!({"n": [1, {"m": 2}]}));
    // Numbers are checked for being storable wherever they are.
    let (status, body) = app
        .post_raw(
            "/job/",
            format!(r#"{{"workflowID":"{id}","parameters":{{"a":{{"b":[1e309]}}}}}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn workflow_parameters_merge_under_a_job_s_own_and_a_cron_job_gets_them() {
    let app = spawn_app().await;
    let defaults = json!({"a": 1, "b": {"c": 2}, "who": "ann"});
    let workflow = create(
        &app,
        "/workflow/",
        json!({"name": "tick", "schedule": "0 3 * * *", "tasks": hello("hi"), "parameters": defaults}),
    )
    .await;
    let id = workflow["workflowID"].as_str().unwrap().to_owned();
    let job = create(
        &app,
        "/job/",
        json!({"workflowID": id, "parameters": {"b": {"d": 3}, "e": "x"}}),
    )
    .await;
    assert_eq!(
        job["parameters"],
        json!({"a": 1, "b": {"d": 3}, "e": "x", "who": "ann"}),
        "shallow: the job's keys win whole"
    );
    let plain = create(&app, "/job/", json!({"workflowID": id})).await;
    assert_eq!(plain["parameters"], defaults);

    // A cron job gets exactly the workflow's parameters, and its version.
    edit(
        &app,
        &format!("/workflow/{id}"),
        json!({"parameters": {"who": "cron"}}),
    )
    .await;
    let mut db = app.db().await;
    sqlx::query("UPDATE workflows SET next_fire_at = now() - interval '1 second'")
        .execute(&mut db)
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    let fired = crust_store::jobs::schedule::fire_schedules(&pool, |_, _| None)
        .await
        .unwrap();
    assert_eq!(fired, 1);
    pool.close().await;
    let (_, body) = app.get("/job/").await;
    let cron = &body["response"]["jobs"][0];
    assert!(cron["cronSlot"].is_string(), "{body}");
    assert_eq!(cron["parameters"], json!({"who": "cron"}));
    assert_eq!(cron["workflowVersion"], 2);
}

#[tokio::test]
async fn workflow_parameters_and_template_defaults_are_checked_at_save_time() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"name": "w", "parameters": [1]}),
            "parameters: invalid type: sequence".to_owned(),
        ),
        (
            json!({"name": "w", "parameters": {"": 1}}),
            "parameters: keys must be 1 to 255 bytes".to_owned(),
        ),
        (
            json!({"name": "w", "parameters": {"big": "x".repeat(70_000)}}),
            "parameters: 70010 bytes as JSON, more than the limit of 65536".to_owned(),
        ),
        (
            json!({"name": "w", "tasks": hello("{{ parameters.who | default: ann }}")}),
            "tasks[0].params: message: template {{ parameters.who | default: ann }}: \
             default: \"ann\" is not a JSON string, number, true, false or null"
                .to_owned(),
        ),
        (
            json!({"name": "w", "tasks": hello("{{ parameters.who | upper }}")}),
            "tasks[0].params: message: template {{ parameters.who | upper }}: unknown filter"
                .to_owned(),
        ),
    ];
    for (input, expected) in cases {
        let (status, body) = app.post("/workflow/", input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert!(message(&body).starts_with(&expected), "{expected}: {body}");
    }
    let created = create(
        &app,
        "/workflow/",
        json!({"name": "w", "tasks": hello("hi {{ parameters.who | default: \"ann\" }}")}),
    )
    .await;
    let path = format!("/workflow/{}", created["workflowID"].as_str().unwrap());
    let (status, body) = app
        .post(&path, json!({"parameters": {"big": "x".repeat(70_000)}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(message(&body).starts_with("parameters: "), "{body}");
    assert_eq!(
        app.get(&path).await.1["response"]["version"],
        1,
        "nothing saved"
    );
}
