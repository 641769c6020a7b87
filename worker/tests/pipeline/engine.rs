//! The workflow engine as its users meet it: graphs with branches and
//! joins, `when`, `forEach`, `wait` with signals, long sleeps that park,
//! child workflows, reruns from the failed step, and durable steps that a
//! SIGKILLed worker does not make run twice.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{start, Options, System, DEADLINE};

impl System {
    /// The job's steps as `GET /job/{id}/steps` shows them.
    async fn steps(&self, job: &str) -> Vec<Value> {
        let (status, body) = self
            .call(Method::GET, &format!("/job/{job}/steps"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["response"]["steps"].as_array().unwrap().clone()
    }

    /// A module with one text field `name`; returns its ID.
    async fn module(&self) -> String {
        let (status, body) = self
            .call(
                Method::POST,
                "/module/",
                Some(json!({"name": "Leads", "fields": [{"name": "name", "kind": "String"}]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["response"]["moduleID"].as_str().unwrap().to_owned()
    }

    /// How many records the module holds.
    async fn records(&self, module: &str) -> i64 {
        let (status, body) = self
            .call(Method::GET, &format!("/module/{module}/record/"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["response"]["meta"]["count"].as_i64().unwrap()
    }

    async fn signal(&self, job: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("/job/{job}/signal"), Some(body))
            .await
    }

    /// Waits until the named step has this status.
    async fn wait_step(&self, job: &str, task: &str, status: &str) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let steps = self.steps(job).await;
            if let Some(step) = steps
                .iter()
                .find(|s| s["task"] == task && s.get("index").is_none() && s["status"] == status)
            {
                return step.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "step {task} of job {job} never became {status}: {steps:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn step<'a>(steps: &'a [Value], task: &str) -> &'a Value {
    steps
        .iter()
        .find(|s| s["task"] == task && s.get("index").is_none())
        .unwrap_or_else(|| panic!("no step {task} in {steps:?}"))
}

#[tokio::test]
async fn branches_run_in_parallel_and_join_with_skipped_steps_counting_as_done() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "graph", "tasks": [
            {"name": "a", "kind": "script", "params": {"source": "21"}},
            {"name": "left", "kind": "sleep", "params": {"seconds": 1}, "needs": ["a"]},
            {"name": "right", "kind": "sleep", "params": {"seconds": 1}, "needs": ["a"]},
            {"name": "never", "kind": "fail", "needs": ["a"], "when": "outputs.a > 100"},
            {"name": "join", "kind": "script", "params": {"source": "outputs.a * 2"},
             "needs": ["left", "right", "never"]}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(
        done["outputs"],
        json!({"a": 21, "left": {"slept": 1}, "right": {"slept": 1}, "never": null, "join": 42})
    );
    let steps = system.steps(&job).await;
    let names: Vec<&str> = steps.iter().map(|s| s["task"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["a", "left", "right", "never", "join"],
        "workflow order"
    );
    assert_eq!(step(&steps, "never")["status"], "skipped");
    assert_eq!(step(&steps, "join")["status"], "ok");
    assert_eq!(step(&steps, "a")["tries"], 1);
    // The two sleeps overlapped: each started before the other finished.
    let at = |step: &Value, key: &str| {
        chrono::DateTime::parse_from_rfc3339(step[key].as_str().unwrap()).unwrap()
    };
    let (left, right) = (step(&steps, "left"), step(&steps, "right"));
    assert!(at(left, "startedAt") < at(right, "finishedAt"));
    assert!(at(right, "startedAt") < at(left, "finishedAt"));
}

#[tokio::test]
async fn for_each_runs_every_item_with_bounded_concurrency_and_keeps_their_order() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "fan", "tasks": [
            {"name": "list", "kind": "script", "params": {"source": "[3, 1, 2, 5, 4]"}},
            {"name": "each", "kind": "script", "forEach": "{{ outputs.list }}", "concurrency": 2,
             "params": {"source": "item * 10 + index"}},
            {"name": "say", "kind": "log", "forEach": "{{ outputs.list }}",
             "params": {"message": "item {{ index }} is {{ item }}"}},
            {"name": "bad", "kind": "log", "forEach": "{{ outputs.list.0 }}", "params": {"message": "x"}}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let done = system.wait_status(&job, "error").await;
    assert_eq!(done["outputs"]["each"], json!([30, 11, 22, 53, 44]));
    assert_eq!(done["outputs"]["say"][4], json!({"message": "item 4 is 4"}));
    assert_eq!(
        done["error"], "task bad: forEach: gave 3, not a list",
        "a forEach over a non-list is a clear task error"
    );
    let steps = system.steps(&job).await;
    let items: Vec<i64> = steps
        .iter()
        .filter(|s| s["task"] == "each" && s.get("index").is_some())
        .map(|s| s["index"].as_i64().unwrap())
        .collect();
    assert_eq!(items, [0, 1, 2, 3, 4]);
    // Never more than `concurrency` (2) items at once: at each item's start,
    // count the items whose run spans that instant.
    let spans: Vec<_> = steps
        .iter()
        .filter(|s| s["task"] == "each" && s.get("index").is_some())
        .map(|s| {
            let at =
                |key: &str| chrono::DateTime::parse_from_rfc3339(s[key].as_str().unwrap()).unwrap();
            (at("startedAt"), at("finishedAt"))
        })
        .collect();
    for (start, _) in &spans {
        let at_once = spans
            .iter()
            .filter(|(from, to)| from <= start && start < to)
            .count();
        assert!(at_once <= 2, "{at_once} items at once: {spans:?}");
    }
}

#[tokio::test]
async fn a_wait_parks_the_job_until_its_signal_and_a_signal_sent_early_is_kept() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "approval", "tasks": [
            {"name": "approval", "kind": "wait", "params": {"event": "approved"}},
            {"name": "second", "kind": "wait", "params": {"event": "shipped"}},
            {"name": "after", "kind": "script", "params": {"source": "outputs.approval.by"}}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let waiting = system.wait_status(&job, "waiting").await;
    assert_eq!(waiting["attempt"], 1);
    // Waiting holds no lease and no worker.
    let mut db = system.db.connect().await;
    let (lease, worker): (Option<chrono::DateTime<chrono::Utc>>, Option<String>) =
        sqlx::query_as("SELECT lease_until, worker FROM jobs WHERE id = $1")
            .bind(job.parse::<i64>().unwrap())
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((lease, worker), (None, None));
    assert_eq!(
        system.wait_step(&job, "approval", "waiting").await["tries"],
        1
    );
    // The second signal comes first: it is kept until its wait is reached.
    let (status, body) = system.signal(&job, json!({"event": "shipped"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = system
        .signal(&job, json!({"event": "approved", "data": {"by": "ann"}}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(done["outputs"]["approval"], json!({"by": "ann"}));
    assert_eq!(done["outputs"]["second"], Value::Null);
    assert_eq!(done["outputs"]["after"], "ann");
    // A finished job takes no signals; bad bodies are 400s.
    let (status, _) = system.signal(&job, json!({"event": "late"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = system.signal(&job, json!({"event": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = system.signal("999999", json!({"event": "x"})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_job_waiting_for_a_signal_survives_a_restart_of_every_process() {
    let mut system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "patient", "tasks": [
            {"name": "first", "kind": "script", "params": {"source": "1"}},
            {"name": "proceed", "kind": "wait", "params": {"event": "proceed", "timeout": 600}},
            {"name": "last", "kind": "script", "params": {"source": "outputs.proceed + outputs.first"}}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_status(&job, "waiting").await;
    system.stop_worker(0).await;
    system.stop_schedulers();
    system.start_api().await;
    system.start_scheduler().await;
    system.start_worker(1_000, 10).await;
    let (status, _) = system
        .signal(&job, json!({"event": "proceed", "data": 41}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(done["outputs"]["last"], 42);
    let steps = system.steps(&job).await;
    assert_eq!(
        step(&steps, "first")["tries"],
        1,
        "not run again after waiting"
    );
}

#[tokio::test]
async fn a_wait_times_out_and_a_long_sleep_parks_then_finishes() {
    let system = start(Options {
        limits: crust_worker::Limits {
            durable_sleep_secs: 1,
            ..Default::default()
        },
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "timers", "tasks": [
            {"name": "nap", "kind": "sleep", "params": {"seconds": 2}},
            {"name": "ask", "kind": "wait", "params": {"event": "never", "timeout": 1}}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_step(&job, "nap", "waiting").await;
    system.wait_status(&job, "waiting").await;
    let done = system.wait_status(&job, "error").await;
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .starts_with("task ask: no signal \"never\" came by"),
        "{done}"
    );
    let steps = system.steps(&job).await;
    assert_eq!(step(&steps, "nap")["status"], "ok");
    assert_eq!(step(&steps, "ask")["status"], "error");
    assert!(
        done["attempt"].as_i64().unwrap() >= 3,
        "woken twice: {done}"
    );
}

#[tokio::test]
async fn a_child_workflow_s_outputs_and_failure_reach_its_parent_and_cancel_reaches_the_child() {
    let system = start(Options::default()).await;
    let child = system
        .workflow(json!({"name": "child", "tasks": [
            {"name": "answer", "kind": "script", "params": {"source": "parameters.n + \"!\""}}
        ]}))
        .await;
    let failing = system
        .workflow(json!({"name": "failing", "tasks": [{"name": "boom", "kind": "fail", "params": {"message": "no"}}]}))
        .await;
    let blocked = system
        .workflow(json!({"name": "blocked", "tasks": [{"name": "hold", "kind": "wait", "params": {"event": "never"}}]}))
        .await;
    let parent = system
        .workflow(json!({"name": "parent", "tasks": [
            {"name": "call", "kind": "workflow", "params": {"workflowID": child, "parameters": {"n": "hi"}, "wait": true}},
            {"name": "fire", "kind": "workflow", "params": {"workflowID": child, "parameters": {"n": "x"}}}
        ]}))
        .await;
    let job = system.job(&parent, json!({})).await;
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(done["outputs"]["call"], json!({"answer": "hi!"}));
    let fired = done["outputs"]["fire"]["jobID"]
        .as_str()
        .unwrap()
        .to_owned();
    let child_job = system.wait_status(&fired, "ok").await;
    assert_eq!(child_job["parentJobID"], job.as_str());

    let parent_of_failure = system
        .workflow(json!({"name": "p2", "tasks": [
            {"name": "call", "kind": "workflow", "params": {"workflowID": failing, "wait": true}}]}))
        .await;
    let job = system.job(&parent_of_failure, json!({})).await;
    let done = system.wait_status(&job, "error").await;
    let error = done["error"].as_str().unwrap();
    assert!(
        error.starts_with("task call: child job") && error.ends_with("ended error: task boom: no"),
        "{error}"
    );

    let parent_of_blocked = system
        .workflow(json!({"name": "p3", "tasks": [
            {"name": "call", "kind": "workflow", "params": {"workflowID": blocked, "wait": true}}]}))
        .await;
    let job = system.job(&parent_of_blocked, json!({})).await;
    system.wait_status(&job, "waiting").await;
    let mut db = system.db.connect().await;
    let child_id: i64 = sqlx::query_scalar("SELECT id FROM jobs WHERE parent_job_id = $1")
        .bind(job.parse::<i64>().unwrap())
        .fetch_one(&mut db)
        .await
        .unwrap();
    system.wait_status(&child_id.to_string(), "waiting").await;
    let (status, _) = system
        .call(Method::DELETE, &format!("/job/{job}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    system.wait_status(&job, "cancelled").await;
    system.wait_status(&child_id.to_string(), "cancelled").await;
}

#[tokio::test]
async fn a_rerun_starts_at_the_failed_step_and_keeps_what_came_before() {
    let system = start(Options::default()).await;
    let module = system.module().await;
    let workflow = system
        .workflow(json!({"name": "rerunnable", "tasks": [
            {"name": "create", "kind": "record.create", "params": {"moduleID": module, "fields": {"name": "ann"}}},
            {"name": "check", "kind": "fail", "params": {"message": "not yet"}}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let failed = system.wait_status(&job, "error").await;
    let record = failed["outputs"]["create"]["recordID"].clone();
    assert_eq!(system.records(&module).await, 1);

    let (status, body) = system
        .call(Method::POST, &format!("/job/{job}/rerun"), Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let rerun = body["response"]["jobID"].as_str().unwrap().to_owned();
    assert_eq!(body["response"]["rerunOf"], job.as_str());
    let again = system.wait_status(&rerun, "error").await;
    assert_eq!(again["outputs"]["create"]["recordID"], record, "kept");
    assert_eq!(system.records(&module).await, 1, "create did not run again");

    let (status, body) = system
        .call(
            Method::POST,
            &format!("/job/{job}/rerun"),
            Some(json!({"from": "create"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let from_start = body["response"]["jobID"].as_str().unwrap().to_owned();
    system.wait_status(&from_start, "error").await;
    assert_eq!(
        system.records(&module).await,
        2,
        "from: create runs it again"
    );

    let (status, body) = system
        .call(
            Method::POST,
            &format!("/job/{job}/rerun"),
            Some(json!({"from": "nope"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        "from: no task \"nope\" in the workflow (its tasks are create, check)"
    );
}

#[tokio::test]
async fn a_killed_worker_s_graph_resumes_without_repeating_finished_steps() {
    let mut system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let module = system.module().await;
    let workflow = system
        .workflow(json!({"name": "durable", "tasks": [
            {"name": "create", "kind": "record.create", "params": {"moduleID": module, "fields": {"name": "once"}}},
            {"name": "nap", "kind": "sleep", "params": {"seconds": 3}},
            {"name": "after", "kind": "script", "params": {"source": "outputs.create.recordID"}}
        ]}))
        .await;
    let (mut doomed, _lines) = system.spawn_worker_process("doomed", 1_000);
    let job = system.job(&workflow, json!({})).await;
    system.wait_step(&job, "nap", "running").await;
    // SIGKILL in the middle of the graph: `create` is done, `nap` is not.
    doomed.kill().await.unwrap();
    system.start_worker(1_000, 10).await;
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(done["attempt"], 2);
    assert_eq!(system.records(&module).await, 1, "create ran exactly once");
    let steps = system.steps(&job).await;
    assert_eq!(step(&steps, "create")["tries"], 1);
    assert_eq!(
        step(&steps, "nap")["tries"],
        2,
        "the interrupted step ran again"
    );
    assert_eq!(
        done["outputs"]["after"],
        done["outputs"]["create"]["recordID"]
    );
}

#[tokio::test]
async fn graphs_that_cannot_run_are_refused_when_saved() {
    let system = start(Options {
        workers: 0,
        schedulers: 0,
        ..Options::default()
    })
    .await;
    let cases = [
        (
            json!([{"name": "a", "kind": "log", "needs": ["c"], "params": {"message": "x"}},
                   {"name": "b", "kind": "log", "params": {"message": "x"}},
                   {"name": "c", "kind": "log", "params": {"message": "x"}}]),
            "tasks: the needs form a cycle: a → b → c → a",
        ),
        (
            json!([{"name": "a", "kind": "log", "needs": ["ghost"], "params": {"message": "x"}}]),
            "tasks[0].needs: unknown task \"ghost\" (the tasks are a)",
        ),
        (
            json!([{"name": "a", "kind": "log", "forEach": "not a template", "params": {"message": "x"}}]),
            "tasks[0].forEach: must be a template yielding a list, such as \"{{ parameters.items }}\"",
        ),
        (
            json!([{"name": "a", "kind": "log", "concurrency": 3, "params": {"message": "x"}}]),
            "tasks[0].concurrency: only a forEach task has items to run at once",
        ),
        (
            json!([{"name": "a", "kind": "wait", "params": {}}]),
            "tasks[0].params: event: missing",
        ),
    ];
    for (tasks, message) in cases {
        let (status, body) = system
            .call(
                Method::POST,
                "/workflow/",
                Some(json!({"name": "bad", "tasks": tasks})),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{tasks}");
        assert_eq!(body["error"]["message"], message, "{tasks}");
    }
    let (status, body) = system
        .call(
            Method::POST,
            "/workflow/",
            Some(json!({"name": "bad", "tasks": [], "parallelism": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body["error"]["message"],
        "parallelism: must be between 1 and 64"
    );
}

#[tokio::test]
async fn a_when_that_does_not_parse_is_a_clear_task_error() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "w", "tasks": [{"name": "a", "kind": "log", "when": "1 +", "params": {"message": "x"}}]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let done = system.wait_status(&job, "error").await;
    assert!(
        done["error"]
            .as_str()
            .unwrap()
            .starts_with("task a: when: script: compile error"),
        "{done}"
    );
    let workflow = system
        .workflow(json!({"name": "w2", "tasks": [{"name": "a", "kind": "log", "when": "\"yes\"", "params": {"message": "x"}}]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    let done = system.wait_status(&job, "error").await;
    assert_eq!(
        done["error"],
        "task a: when: gave \"yes\", not true or false"
    );
}
