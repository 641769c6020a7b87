//! Record-event triggers end to end: jobs started by record writes of the
//! api, of `record.*` tasks and of scripts; loops that stop by themselves
//! (a workflow's own writes are not followed, chains end at depth 5 with a
//! log line); and revisions that say which job and task made a change.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{eventually, start, Options, System};

async fn counters(system: &System) -> String {
    let (status, body) = system
        .call(
            Method::POST,
            "/module/",
            Some(json!({"name": "counters", "fields": [
                {"name": "title", "kind": "String"}, {"name": "n", "kind": "Number"}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["moduleID"].as_str().unwrap().to_owned()
}

async fn create_record(system: &System, module: &str, fields: Value) -> String {
    let (status, body) = system
        .call(
            Method::POST,
            &format!("/module/{module}/record"),
            Some(json!({ "fields": fields })),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["recordID"].as_str().unwrap().to_owned()
}

async fn read_n(system: &System, module: &str, record: &str) -> Value {
    let (_, body) = system
        .call(
            Method::GET,
            &format!("/module/{module}/record/{record}"),
            None,
        )
        .await;
    body["response"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "n")
        .map(|f| f["value"].clone())
        .unwrap_or(Value::Null)
}

/// A script task that adds one to the triggering record's `n`.
fn increment() -> Value {
    json!([{"name": "bump", "kind": "script", "params": {"source":
        "record_update(parameters.moduleID, parameters.recordID, #{ n: parameters.record.n + 1 })"}}])
}

/// The jobs of a workflow, oldest first.
async fn jobs_of(system: &System, workflow: &str) -> Vec<Value> {
    let (status, body) = system.call(Method::GET, "/job/?perPage=100", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut jobs: Vec<Value> = body["response"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|job| job["workflowID"] == workflow)
        .cloned()
        .collect();
    jobs.reverse();
    jobs
}

async fn all_ok(system: &System, workflows: &[&str], expected: usize) -> bool {
    let mut jobs = Vec::new();
    for workflow in workflows {
        jobs.extend(jobs_of(system, workflow).await);
    }
    jobs.len() == expected && jobs.iter().all(|job| job["status"] == "ok")
}

#[tokio::test]
async fn a_workflow_that_updates_the_record_that_triggered_it_stops_by_itself() {
    let system = start(Options::default()).await;
    let module = counters(&system).await;
    let workflow = system
        .workflow(json!({"name": "self", "tasks": increment(), "triggers": [
            {"on": "record.created", "moduleID": module},
            {"on": "record.updated", "moduleID": module}]}))
        .await;
    let record = create_record(&system, &module, json!({"title": "a", "n": 0})).await;
    let watched = [workflow.as_str()];
    eventually("the triggered job ran", || all_ok(&system, &watched, 1)).await;
    // Its write committed with any job it triggered, before the job ended:
    // there is none.
    assert_eq!(jobs_of(&system, &workflow).await.len(), 1);
    assert_eq!(read_n(&system, &module, &record).await, json!(1));
}

#[tokio::test]
async fn two_workflows_updating_each_others_record_stop_at_depth_five_with_a_log_line() {
    let system = start(Options::default()).await;
    let module = counters(&system).await;
    let ping = system
        .workflow(json!({"name": "ping", "tasks": increment(), "triggers": [
            {"on": "record.created", "moduleID": module},
            {"on": "record.updated", "moduleID": module}]}))
        .await;
    let pong = system
        .workflow(json!({"name": "pong", "tasks": increment(), "triggers": [
            {"on": "record.updated", "moduleID": module}]}))
        .await;
    let record = create_record(&system, &module, json!({"title": "a", "n": 0})).await;
    // ping (depth 1) → pong (2) → ping (3) → pong (4) → ping (5), whose
    // write is not followed.
    let watched = [ping.as_str(), pong.as_str()];
    eventually("five chained jobs ran", || all_ok(&system, &watched, 5)).await;
    assert_eq!(read_n(&system, &module, &record).await, json!(5));
    let last = jobs_of(&system, &ping).await.pop().unwrap();
    assert_eq!(last["parameters"]["record"]["n"], json!(4), "{last}");
    let logs = system.logs(last["jobID"].as_str().unwrap()).await;
    assert!(
        logs.iter().any(|line| line["level"] == "warn"
            && line["message"]
                .as_str()
                .is_some_and(|m| m.contains("1 trigger(s) not followed") && m.contains("depth 5"))),
        "{logs:?}"
    );
    assert_eq!(jobs_of(&system, &pong).await.len(), 2);
}

#[tokio::test]
async fn revisions_say_whether_the_api_a_record_task_or_a_script_changed_the_record() {
    let system = start(Options::default()).await;
    let module = counters(&system).await;
    let record = create_record(&system, &module, json!({"title": "a", "n": 0})).await;
    let by_task = system
        .workflow(
            json!({"name": "task", "tasks": [{"name": "set", "kind": "record.update", "params": {
            "moduleID": "{{ parameters.moduleID }}", "recordID": "{{ parameters.recordID }}",
            "fields": {"n": 1}}}]}),
        )
        .await;
    let by_script = system
        .workflow(json!({"name": "script", "tasks": [{"name": "edit", "kind": "script", "params": {
            "source": "record_update(parameters.moduleID, parameters.recordID, #{ title: \"b\" })"}}]}))
        .await;
    let parameters = json!({"parameters": {"moduleID": module, "recordID": record}});
    let task_job = system.job(&by_task, parameters.clone()).await;
    system.wait_status(&task_job, "ok").await;
    let script_job = system.job(&by_script, parameters).await;
    system.wait_status(&script_job, "ok").await;

    let (status, body) = system
        .call(
            Method::GET,
            &format!("/module/{module}/record/{record}/revisions"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let shown: Vec<Value> = body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| json!([r["revision"], r["operation"], r["by"], r["changes"]]))
        .collect();
    assert_eq!(
        shown,
        vec![
            json!([1, "created", {"userID": "7"},
                   {"title": {"old": null, "new": "a"}, "n": {"old": null, "new": 0}}]),
            json!([2, "updated", {"jobID": task_job, "task": "set"}, {"n": {"old": 0, "new": 1}}]),
            json!([3, "updated", {"jobID": script_job, "task": "edit"},
                   {"title": {"old": "a", "new": "b"}}]),
        ]
    );
}

#[tokio::test]
async fn a_debounced_burst_of_twenty_updates_runs_one_job_with_the_last_values() {
    let system = start(Options::default()).await;
    let module = counters(&system).await;
    let workflow = system
        .workflow(
            json!({"name": "settled", "tasks": [{"name": "t", "kind": "log", "params": {
            "message": "n is {{ parameters.record.n }}"}}], "triggers": [
            {"on": "record.updated", "moduleID": module, "debounce": 3}]}),
        )
        .await;
    let record = create_record(&system, &module, json!({"title": "a", "n": 0})).await;
    for n in 1..=20 {
        let (status, body) = system
            .call(
                Method::POST,
                &format!("/module/{module}/record/{record}"),
                Some(json!({"fields": {"n": n}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Released by the scheduler at the end of the window, then run.
    let watched = [workflow.as_str()];
    eventually("the debounced job ran", || all_ok(&system, &watched, 1)).await;
    let job = jobs_of(&system, &workflow).await.remove(0);
    assert_eq!(job["parameters"]["record"]["n"], json!(20), "{job}");
    assert_eq!(job["parameters"]["previous"]["n"], json!(0), "{job}");
    let logs = system.logs(job["jobID"].as_str().unwrap()).await;
    assert!(
        logs.iter().any(|line| line["message"] == "n is 20"),
        "{logs:?}"
    );
}
