//! Workflow versions and parameters end to end: a job runs the version it
//! was created with, and JSON parameters (the workflow's defaults merged
//! under the job's own) reach templates and scripts typed.

use serde_json::json;

use crate::helpers::{start, Options};

#[tokio::test]
async fn a_job_runs_the_workflow_version_it_was_created_with() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "greet", "parameters": {"who": "ann"}, "tasks": [
            {"name": "hello", "kind": "log", "params": {"message": "first {{ parameters.who }}"}}
        ]}))
        .await;
    let start_at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let delayed = system.job(&workflow, json!({"startAt": start_at})).await;
    let shown = system.get_job(&delayed).await;
    assert_eq!(shown["workflowVersion"], 1, "{shown}");
    assert_eq!(shown["parameters"], json!({"who": "ann"}), "{shown}");

    // Edited while the job waits for its start time.
    let (status, body) = system
        .call(
            reqwest::Method::POST,
            &format!("/workflow/{workflow}"),
            Some(json!({"parameters": {"who": "bob"}, "tasks": [
                {"name": "hello", "kind": "log", "params": {"message": "second {{ parameters.who }}"}}
            ]})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_eq!(body["response"]["version"], 2, "{body}");

    let done = system.wait_status(&delayed, "ok").await;
    assert_eq!(done["workflowVersion"], 1, "{done}");
    let messages: Vec<String> = system
        .logs(&delayed)
        .await
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(messages.contains(&"first ann".to_owned()), "{messages:?}");
    assert!(
        !messages.iter().any(|m| m.starts_with("second")),
        "{messages:?}"
    );

    // A job created after the edit runs the new version.
    let fresh = system.job(&workflow, json!({})).await;
    let done = system.wait_status(&fresh, "ok").await;
    assert_eq!(done["workflowVersion"], 2, "{done}");
    let messages: Vec<String> = system
        .logs(&fresh)
        .await
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(messages.contains(&"second bob".to_owned()), "{messages:?}");
}

#[tokio::test]
async fn json_parameters_reach_templates_and_scripts_typed() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "typed",
            "parameters": {"n": 1, "customer": {"email": "default@x.io"}, "who": null, "kept": [1, 2]},
            "tasks": [
                {"name": "hello", "kind": "log", "params": {"message":
                    "{{ parameters.customer.email }} n={{ parameters.n }} who={{ parameters.who | default: \"ann\" }} \
                     kept={{ parameters.kept }} tag={{ parameters.customer.tags.0 | default: \"none\" }}"}},
                {"name": "double", "kind": "script", "params": {"source": "parameters.n * 2 + parameters.kept[1]"}},
                {"name": "report", "kind": "log", "params": {"message": "double={{ outputs.double }}"}}
            ]}))
        .await;
    let job = system
        .job(
            &workflow,
            json!({"parameters": {"n": 5, "customer": {"email": "a@b.io", "tags": ["vip"]}}}),
        )
        .await;
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(
        done["parameters"],
        json!({"n": 5, "customer": {"email": "a@b.io", "tags": ["vip"]}, "who": null, "kept": [1, 2]}),
        "the job's keys win, whole"
    );
    let messages: Vec<String> = system
        .logs(&job)
        .await
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        messages.contains(&"a@b.io n=5 who=ann kept=[1,2] tag=vip".to_owned()),
        "{messages:?}"
    );
    assert!(messages.contains(&"double=12".to_owned()), "{messages:?}");
}
