//! Running jobs: logs in order, retries, timeouts, onError, cancel, drain.

use serde_json::json;

use crate::helpers::{start, Options};

#[tokio::test]
async fn a_job_runs_to_ok_with_its_logs_in_order() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "greet", "tasks": [
            {"name": "hello", "kind": "log", "params": {"message": "hello {{ parameters.who }}"}},
            {"name": "again", "kind": "log", "params": {"message": "said {{ outputs.hello.message }}"}}
        ]}))
        .await;
    let job = system
        .job(&workflow, json!({"parameters": {"who": "ann"}}))
        .await;
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(done["attempt"], 1);
    assert!(done["startedAt"].is_string() && done["finishedAt"].is_string());
    let logs = system.logs(&job).await;
    let seqs: Vec<i64> = logs.iter().map(|l| l["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "gap-free and in order"
    );
    let messages: Vec<&str> = logs
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"hello ann"), "{messages:?}");
    assert!(messages.contains(&"said hello ann"), "{messages:?}");
    assert_eq!(messages.first(), Some(&"job started (attempt 1)"));
    assert_eq!(messages.last(), Some(&"job finished"));
}

#[tokio::test]
async fn a_failing_task_is_retried_after_its_delays_then_fails_the_job() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "flaky", "tasks": [
            {"name": "boom", "kind": "fail", "params": {"message": "no luck"}, "retries": [0, 1]}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let done = system.wait_status(&job, "error").await;
    assert_eq!(done["error"], "task boom: no luck");
    let logs = system.logs(&job).await;
    let tries = logs
        .iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .unwrap()
                .starts_with("task boom failed")
        })
        .count();
    assert_eq!(tries, 3, "one try and two retries: {logs:?}");
}

#[tokio::test]
async fn a_task_that_outlives_its_timeout_fails_and_is_retried() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "slow", "tasks": [
            {"name": "nap", "kind": "sleep", "params": {"seconds": 60}, "timeout": 1, "retries": [0]}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let done = system.wait_status(&job, "error").await;
    assert_eq!(done["error"], "task nap: timed out after 1 s");
    let logs = system.logs(&job).await;
    assert!(
        logs.iter().any(|l| l["message"]
            == "task nap failed (try 1 of 2): timed out after 1 s; retrying in 0 s"),
        "{logs:?}"
    );
}

#[tokio::test]
async fn the_workflow_timeout_bounds_the_whole_job() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "long", "timeout": 1, "tasks": [
            {"name": "nap", "kind": "sleep", "params": {"seconds": 60}}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let done = system.wait_status(&job, "error").await;
    assert_eq!(done["error"], "workflow timed out after 1 s");
}

#[tokio::test]
async fn on_error_tasks_run_with_the_error_before_the_job_ends_in_error() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "guarded",
            "tasks": [{"name": "boom", "kind": "fail", "params": {"message": "disk full"}},
                      {"name": "never", "kind": "log", "params": {"message": "unreachable"}}],
            "onError": [{"name": "alert", "kind": "log", "params": {"message": "handling: {{ error }}"}}]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let done = system.wait_status(&job, "error").await;
    assert_eq!(done["error"], "task boom: disk full");
    let messages: Vec<String> = system
        .logs(&job)
        .await
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(!messages.contains(&"unreachable".to_owned()));
    // The log reads in the order things happened: the failure, the
    // handlers, and the job's end last.
    let tail: Vec<&str> = messages[messages.len() - 5..]
        .iter()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "running onError tasks",
            "task alert (log) started",
            "handling: task boom: disk full",
            "task alert ok",
            "job failed: task boom: disk full",
        ],
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_cancelled_queued_job_never_starts() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "later", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let soon = (chrono::Utc::now() + chrono::Duration::milliseconds(500)).to_rfc3339();
    let cancelled = system.job(&workflow, json!({"startAt": soon})).await;
    let (status, _) = system
        .call(reqwest::Method::DELETE, &format!("/job/{cancelled}"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    // A job created after it and due at the same time runs; by then the
    // cancelled one would have run too.
    let witness = system.job(&workflow, json!({"startAt": soon})).await;
    system.wait_status(&witness, "ok").await;
    let job = system.get_job(&cancelled).await;
    assert_eq!(job["status"], "cancelled");
    assert_eq!(job["attempt"], 0, "it never started");
    assert!(system.logs(&cancelled).await.is_empty());
}

#[tokio::test]
async fn a_cancelled_running_job_stops_and_ends_cancelled() {
    let system = start(Options::default()).await;
    let workflow = system
        // 25 s: a sleep longer than CRUST_DURABLE_SLEEP_SECS (30) would park
        // the job instead of keeping it running.
        .workflow(json!({"name": "long", "tasks": [{"name": "nap", "kind": "sleep", "params": {"seconds": 25}}],
                         "onError": [{"name": "never", "kind": "log", "params": {"message": "onError ran"}}]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_status(&job, "running").await;
    let (status, _) = system
        .call(reqwest::Method::DELETE, &format!("/job/{job}"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let done = system.wait_status(&job, "cancelled").await;
    assert_eq!(done["attempt"], 1);
    let messages: Vec<String> = system
        .logs(&job)
        .await
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        messages.contains(&"job cancelled".to_owned()),
        "{messages:?}"
    );
    assert!(
        !messages.contains(&"onError ran".to_owned()),
        "cancel is not an error"
    );
    let (status, _) = system
        .call(reqwest::Method::DELETE, &format!("/job/{job}"), None)
        .await;
    assert_eq!(status, reqwest::StatusCode::CONFLICT);
}

#[tokio::test]
async fn a_draining_worker_lets_running_jobs_finish() {
    let mut system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let worker = system.start_worker(1_000, 20).await;
    let workflow = system
        .workflow(json!({"name": "short", "tasks": [{"name": "nap", "kind": "sleep", "params": {"seconds": 1}}]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_status(&job, "running").await;
    system.stop_worker(worker).await;
    let done = system.get_job(&job).await;
    assert_eq!(
        done["status"], "ok",
        "the worker exited only after the job finished"
    );
    assert_eq!(done["attempt"], 1);
}

#[tokio::test]
async fn a_draining_worker_hands_back_what_outlives_the_grace_period() {
    let mut system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let first = system.start_worker(1_000, 0).await;
    let workflow = system
        .workflow(json!({"name": "medium", "tasks": [{"name": "nap", "kind": "sleep", "params": {"seconds": 2}}]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_status(&job, "running").await;
    system.stop_worker(first).await;
    let handed_back = system.get_job(&job).await;
    assert_eq!(handed_back["status"], "queued", "{handed_back}");
    system.start_worker(1_000, 10).await;
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(done["attempt"], 2);
}

#[tokio::test]
async fn an_http_task_cannot_reach_internal_addresses_unless_allowed() {
    // The api's own port on loopback stands for any internal service.
    for (allow, outcome) in [("", "error"), ("127.0.0.1/32", "ok")] {
        let system = start(Options {
            http_allow: allow,
            ..Options::default()
        })
        .await;
        let url = format!("{}/healthz", system.base);
        let workflow = system
            .workflow(json!({"name": "peek", "tasks": [
                {"name": "fetch", "kind": "http", "params": {"url": url}}
            ]}))
            .await;
        let job = system.job(&workflow, json!({})).await;
        let done = system.wait_status(&job, outcome).await;
        if outcome == "error" {
            assert_eq!(
                done["error"],
                "task fetch: http: 127.0.0.1 is a loopback address; allow it with CRUST_HTTP_ALLOW"
            );
        }
    }
}

#[tokio::test]
async fn a_bulk_create_runs_every_job_and_a_repeated_key_runs_once() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "greet", "tasks": [
            {"name": "hello", "kind": "log", "params": {"message": "hello {{ parameters.who }}"}}
        ]}))
        .await;
    let (status, body) = system
        .call(
            reqwest::Method::POST,
            "/job/bulk",
            Some(json!({"jobs": [
                {"workflowID": workflow, "parameters": {"who": "ann"}, "key": "k"},
                {"workflowID": workflow, "parameters": {"who": "bob"}},
                {"workflowID": workflow, "parameters": {"who": "cy"}, "key": "k"},
            ]})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let ids: Vec<String> = body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["jobID"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids[0], ids[2], "the repeated key is the first job");
    for id in &ids[..2] {
        let done = system.wait_status(id, "ok").await;
        assert_eq!(done["attempt"], 1, "{done}");
    }
    let logs = system.logs(&ids[0]).await;
    assert!(logs.iter().any(|l| l["message"] == "hello ann"), "{logs:?}");
}
