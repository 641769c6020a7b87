//! `/workflow` and `/job` through the API alone (no worker runs here): CRUD,
//! validation, legal status moves, log appends and cancelling queued jobs.

use reqwest::StatusCode;
use serde_json::{json, Value};

use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::helpers::{message, spawn_app, TestApp};

async fn workflow(app: &TestApp) -> String {
    let (status, body) = app
        .post("/workflow/", json!({"name": "greet", "tasks": [{"name": "hello", "kind": "log", "params": {"message": "hi {{ parameters.who }}"}}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["workflowID"].as_str().unwrap().to_owned()
}

async fn job(app: &TestApp, body: Value) -> Value {
    let (status, body) = app.post("/job/", body).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"].clone()
}

#[tokio::test]
async fn a_workflow_is_created_read_listed_updated_and_deleted() {
    let app = spawn_app().await;
    let (status, body) = app
        .post("/workflow/", json!({"name": "nightly", "timeout": 60, "schedule": "0 3 * * *",
            "tasks": [{"name": "wait", "kind": "sleep", "params": {"seconds": 1}, "retries": [1, 5], "timeout": 10}],
            "onError": [{"name": "note", "kind": "log", "params": {"message": "{{ error }}"}}]}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created = &body["response"];
    let id = created["workflowID"].as_str().unwrap();
    assert_eq!(created["tasks"][0]["retries"], json!([1, 5]));
    assert_eq!(created["schedule"], "0 3 * * *");
    assert_eq!(created["onError"][0]["name"], "note");

    assert_eq!(
        app.get(&format!("/workflow/{id}")).await.1["response"]["name"],
        "nightly"
    );
    assert_eq!(
        app.get("/workflow/").await.1["response"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // An edit changes only what it names.
    let (status, body) = app
        .post(&format!("/workflow/{id}"), json!({"name": "renamed"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["name"], "renamed");
    assert_eq!(body["response"]["tasks"], created["tasks"]);
    assert_eq!(body["response"]["onError"], created["onError"]);
    assert_eq!(body["response"]["timeout"], 60);
    assert_eq!(body["response"]["schedule"], "0 3 * * *");
    // An explicit null removes the schedule and keeps the rest.
    let (status, body) = app
        .post(&format!("/workflow/{id}"), json!({"schedule": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body["response"].get("schedule").is_none(), "{body}");
    assert_eq!(body["response"]["name"], "renamed");
    assert_eq!(body["response"]["tasks"], created["tasks"]);
    assert_eq!(
        app.delete(&format!("/workflow/{id}")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/workflow/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn workflow_validation_rules_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let task = |kind: &str| json!([{"name": "t", "kind": kind}]);
    let cases = [
        (json!({"name": ""}), "name: must not be empty"),
        (
            json!({"name": "w", "tasks": task("teleport")}),
            "tasks[0].kind: unknown task kind \"teleport\"",
        ),
        (
            json!({"name": "w", "onError": task("nope")}),
            "onError[0].kind: unknown task kind",
        ),
        (
            json!({"name": "w", "timeout": -1}),
            "timeout: must be between 0 and 86400 seconds",
        ),
        (
            json!({"name": "w", "schedule": "every tuesday"}),
            "schedule: \"every tuesday\" is not a valid cron expression",
        ),
        (
            json!({"name": "w", "tasks": [{"name": "a b", "kind": "log"}]}),
            "tasks[0].name: \"a b\" is not an identifier",
        ),
        (
            json!({"name": "w", "tasks": [{"name": "a", "kind": "fail"}, {"name": "a", "kind": "fail"}]}),
            "tasks[1].name: \"a\" is used twice",
        ),
        (
            json!({"name": "w", "tasks": [{"name": "a", "kind": "fail", "timeout": -5}]}),
            "tasks[0].timeout: invalid value: integer `-5`",
        ),
        (
            json!({"name": "w", "tasks": [{"name": "a", "kind": "fail", "retries": [100000]}]}),
            "tasks[0].retries: delays must be at most 86400 seconds",
        ),
        (
            json!({"name": "w", "tasks": [{"name": "a", "kind": "fail", "params": []}]}),
            "tasks[0].params: must be an object",
        ),
        (
            json!({"name": "w", "bogus": 1}),
            "bogus: unknown field `bogus`",
        ),
    ];
    for (input, expected) in cases {
        let (status, body) = app.post("/workflow/", input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert!(message(&body).starts_with(expected), "{input}: {body}");
    }
    assert_eq!(app.get("/workflow/").await.1["response"], json!([]));
}

#[tokio::test]
async fn deleting_a_workflow_cancels_its_queued_jobs_and_stops_its_schedule() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let queued = job(
        &app,
        json!({"workflowID": id, "startAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let (status, body) = app
        .post(
            &format!("/workflow/{id}"),
            json!({"name": "greet", "schedule": "* * * * * *",
            "tasks": [{"name": "hello", "kind": "log", "params": {"message": "hi"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The definition is unreadable and a job is queued: delete still works.
    let mut db = app.db().await;
    sqlx::query("UPDATE workflows SET tasks = '\"not a list\"' WHERE id = $1")
        .bind(id.parse::<i64>().unwrap())
        .execute(&mut db)
        .await
        .unwrap();
    let (status, body) = app.delete(&format!("/workflow/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let next_fire: Option<chrono::DateTime<chrono::Utc>> =
        sqlx::query_scalar("SELECT next_fire_at FROM workflows WHERE id = $1")
            .bind(id.parse::<i64>().unwrap())
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(next_fire, None, "the schedule stopped");
    let job_id = queued["jobID"].as_str().unwrap();
    let (_, body) = app.get(&format!("/job/{job_id}")).await;
    assert_eq!(body["response"]["status"], "cancelled", "{body}");
    assert_eq!(
        app.delete(&format!("/workflow/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = app.post("/job/", json!({"workflowID": id})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        format!("workflowID: workflow {id} does not exist")
    );
}

#[tokio::test]
async fn a_job_is_created_queued_read_and_listed_by_status() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let created = job(&app, json!({"workflowID": id, "parameters": {"who": "ann"}, "startAt": "2999-01-01T00:00:00+01:00"})).await;
    assert_eq!(created["status"], "queued");
    assert_eq!(created["attempt"], 0);
    assert_eq!(created["workflowID"], json!(id));
    assert_eq!(created["parameters"], json!({"who": "ann"}));
    assert_eq!(created["startAt"], "2998-12-31T23:00:00Z");
    let job_id = created["jobID"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/job/{job_id}")).await.1["response"],
        created
    );

    job(
        &app,
        json!({"workflowID": id, "startAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    app.delete(&format!("/job/{job_id}")).await;
    let (_, body) = app.get("/job/?status=queued").await;
    assert_eq!(
        body["response"]["meta"],
        json!({"page": 0, "perPage": 50, "count": 1, "status": "queued"})
    );
    let (_, body) = app.get("/job/?perPage=1&page=1").await;
    assert_eq!(
        body["response"]["jobs"][0]["jobID"],
        json!(job_id),
        "newest first"
    );
    let (status, body) = app.get("/job/?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).starts_with("status: \"done\" is not a job status"));
}

#[tokio::test]
async fn job_validation_rules_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let cases = [
        (
            json!({}),
            "request body: missing field `workflowID`".to_owned(),
        ),
        (
            json!({"workflowID": "999"}),
            "workflowID: workflow 999 does not exist".to_owned(),
        ),
        (
            json!({"workflowID": "abc"}),
            "workflowID: \"abc\" is not an ID".to_owned(),
        ),
        (
            json!({"workflowID": id, "startAt": "tomorrow"}),
            "startAt: \"tomorrow\" is not an RFC 3339 date-time".to_owned(),
        ),
        (
            json!({"workflowID": id, "parameters": {"": 5}}),
            "parameters: keys must be 1 to 255 bytes".to_owned(),
        ),
        (
            json!({"workflowID": id, "parameters": []}),
            "parameters: invalid type: sequence".to_owned(),
        ),
    ];
    for (input, expected) in cases {
        let (status, body) = app.post("/job/", input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert!(message(&body).starts_with(&expected), "{input}: {body}");
    }
    assert_eq!(app.get("/job/abc").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(app.get("/job/12345").await.0, StatusCode::NOT_FOUND);
    assert_eq!(app.get("/job/12345/logs").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get("/job/").await.1["response"]["meta"]["count"],
        0,
        "nothing was written"
    );
}

#[tokio::test]
async fn log_entries_are_appended_in_order_and_paged() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let created = job(
        &app,
        json!({"workflowID": id, "startAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let job_id = created["jobID"].as_str().unwrap();
    for n in 0..3 {
        let (status, body) = app
            .post(
                &format!("/job/{job_id}"),
                json!({"log": format!("line {n}")}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, _) = app
        .post(
            &format!("/job/{job_id}"),
            json!({"log": {"level": "warn", "message": "careful", "task": "t", "data": {"k": 1}}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = app
        .get(&format!("/job/{job_id}/logs?perPage=2&page=1"))
        .await;
    assert_eq!(
        body["response"]["meta"],
        json!({"page": 1, "perPage": 2, "count": 4})
    );
    let logs = body["response"]["logs"].as_array().unwrap();
    assert_eq!(logs[0]["seq"], 3);
    assert_eq!(logs[0]["message"], "line 2");
    assert_eq!(logs[1]["level"], "warn");
    assert_eq!(logs[1]["data"], json!({"k": 1}));
    let (status, body) = app
        .post(
            &format!("/job/{job_id}"),
            json!({"log": {"level": "loud", "message": "x"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).starts_with("log.level: \"loud\""), "{body}");
    let (_, body) = app.get(&format!("/job/{job_id}/logs?perPage=5000")).await;
    assert_eq!(
        body["response"]["meta"]["perPage"], 1000,
        "perPage is capped at 1000 for logs"
    );
}

#[tokio::test]
async fn status_moves_only_along_legal_edges() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let created = job(
        &app,
        json!({"workflowID": id, "startAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let job_id = created["jobID"].as_str().unwrap();
    let path = format!("/job/{job_id}");
    let (status, body) = app.post(&path, json!({"status": "ok"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        message(&body),
        format!("job {job_id} is queued and cannot become ok")
    );
    let (status, body) = app.post(&path, json!({"status": "running"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["attempt"], 1);
    let (status, body) = app.post(&path, json!({"parameters": {"a": "b"}})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        message(&body).contains("can change only while it is queued"),
        "{body}"
    );
    let (status, body) = app
        .post(&path, json!({"status": "ok", "log": "done by hand"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["status"], "ok");
    assert!(body["response"]["finishedAt"].is_string());
    let (status, _) = app.post(&path, json!({"status": "queued"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = app.post(&path, json!({"status": "paused"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).starts_with("status: \"paused\" is not a job status"));
}

#[tokio::test]
async fn a_queued_job_can_be_redefined_and_cancelled_once() {
    let app = spawn_app().await;
    let id = workflow(&app).await;
    let created = job(
        &app,
        json!({"workflowID": id, "startAt": "2999-01-01T00:00:00Z"}),
    )
    .await;
    let job_id = created["jobID"].as_str().unwrap();
    let path = format!("/job/{job_id}");
    let (status, body) = app
        .post(
            &path,
            json!({"parameters": {"who": "bob"}, "startAt": "2998-06-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["parameters"], json!({"who": "bob"}));
    assert_eq!(body["response"]["startAt"], "2998-06-01T00:00:00Z");
    let (status, body) = app.post(&path, json!({"workflowID": "777"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "workflowID: workflow 777 does not exist");

    let (status, body) = app.delete(&path).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"success": {"message": "OK"}}));
    assert_eq!(app.get(&path).await.1["response"]["status"], "cancelled");
    let (status, body) = app.delete(&path).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        message(&body),
        format!("job {job_id} is cancelled and cannot be cancelled")
    );
}

#[tokio::test]
async fn creating_or_editing_a_scheduled_workflow_wakes_the_scheduler() {
    let app = spawn_app().await;
    let mut listener = PgListener::connect(&app.db.url).await.unwrap();
    listener
        .listen(crust_store::jobs::RELEASE_CHANNEL)
        .await
        .unwrap();
    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "tick", "schedule": "0 3 * * *"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(woken(&mut listener).await, "create did not notify");
    let id = body["response"]["workflowID"].as_str().unwrap();
    let (status, body) = app
        .post(
            &format!("/workflow/{id}"),
            json!({"schedule": "*/5 * * * * *"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(woken(&mut listener).await, "edit did not notify");
}

#[tokio::test]
async fn a_job_the_scheduler_created_for_a_cron_slot_shows_the_slot() {
    let app = spawn_app().await;
    let (_, body) = app
        .post(
            "/workflow/",
            json!({"name": "tick", "schedule": "0 3 * * *"}),
        )
        .await;
    let workflow = body["response"]["workflowID"].as_str().unwrap().to_owned();
    let by_hand = job(&app, json!({"workflowID": workflow})).await;
    assert!(by_hand.get("cronSlot").is_none(), "{by_hand}");

    // Make the slot due and fire it as the scheduler's pass does.
    let mut db = app.db().await;
    let slot: chrono::DateTime<chrono::Utc> = sqlx::query_scalar(
        "UPDATE workflows SET next_fire_at = date_trunc('second', now()) - interval '1 second'
         RETURNING next_fire_at",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    let pool = sqlx::PgPool::connect(&app.db.url).await.unwrap();
    assert_eq!(
        crust_store::jobs::schedule::fire_schedules(&pool, |_, _| None)
            .await
            .unwrap(),
        1
    );
    pool.close().await;

    let (status, body) = app.get("/job/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let jobs = body["response"]["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2, "{body}");
    let cron = &jobs[0];
    assert_ne!(cron["jobID"], by_hand["jobID"]);
    let shown: chrono::DateTime<chrono::Utc> = cron["cronSlot"].as_str().unwrap().parse().unwrap();
    assert_eq!(shown, slot);
    let (_, body) = app
        .get(&format!("/job/{}", cron["jobID"].as_str().unwrap()))
        .await;
    assert_eq!(body["response"]["cronSlot"], cron["cronSlot"]);
}

/// Whether a notification arrives within 10 s.
async fn woken(listener: &mut PgListener) -> bool {
    let wait = tokio::time::timeout(Duration::from_secs(10), listener.recv());
    matches!(wait.await, Ok(Ok(_)))
}

#[tokio::test]
async fn a_page_past_the_documented_last_one_is_a_400_whatever_the_page_size() {
    let app = spawn_app().await;
    let last = crust_model::paging::Paging::max_page(100);
    let (status, body) = app.get(&format!("/job/?page={last}&perPage=1")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app.get(&format!("/job/?page={}&perPage=1", last + 1)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        format!("page: must be at most {last}")
    );
}

#[tokio::test]
async fn a_job_with_an_unreadable_stored_status_is_a_server_error_on_every_route() {
    let app = spawn_app().await;
    let workflow = workflow(&app).await;
    let id = job(&app, json!({"workflowID": workflow})).await["jobID"]
        .as_str()
        .unwrap()
        .to_owned();
    // Only a bypassed CHECK can store such a value: the data is wrong, not
    // the request, so every route answers the same 500.
    let mut db = app.db().await;
    sqlx::query("ALTER TABLE jobs DROP CONSTRAINT jobs_status_check")
        .execute(&mut db)
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET status = 'paused' WHERE id = $1::bigint")
        .bind(&id)
        .execute(&mut db)
        .await
        .unwrap();
    let path = format!("/job/{id}");
    for (route, (status, body)) in [
        ("read", app.get(&path).await),
        ("list", app.get("/job/").await),
        ("log", app.post(&path, json!({"log": "a line"})).await),
        (
            "status",
            app.post(&path, json!({"status": "cancelled"})).await,
        ),
        ("cancel", app.delete(&path).await),
    ] {
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{route}: {body}");
        assert!(
            message(&body).starts_with("internal error"),
            "{route}: {body}"
        );
    }
}
