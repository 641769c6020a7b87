//! Live logs: `GET /job/{id}/logs?follow=true` read as a stream by a real
//! HTTP client while a real worker writes the lines.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{start, Options, System, DEADLINE};

/// One server-sent event.
#[derive(Debug)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
    /// When the client read it.
    at: tokio::time::Instant,
}

/// Reads events until the stream ends (or the deadline passes).
async fn read_events(mut response: reqwest::Response) -> Vec<Sse> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .expect("the stream ended before the deadline")
            .expect("the stream reads");
        let Some(chunk) = chunk else {
            return events;
        };
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("event:") {
                    event = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            // A keep-alive comment carries no data.
            if data.is_empty() {
                continue;
            }
            events.push(Sse {
                id,
                event,
                data: serde_json::from_str(&data).unwrap(),
                at: tokio::time::Instant::now(),
            });
        }
    }
}

async fn follow(system: &System, job: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let response = system
        .open(&format!("/job/{job}/logs?follow=true"), headers)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    response
}

#[tokio::test]
async fn a_follower_sees_old_lines_then_new_ones_then_the_status() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "talks", "tasks": [
            {"name": "first", "kind": "log", "params": {"message": "first"}},
            {"name": "nap", "kind": "sleep", "params": {"seconds": 2}, "needs": ["first"]},
            {"name": "second", "kind": "log", "params": {"message": "second"}, "needs": ["nap"]},
            {"name": "rest", "kind": "sleep", "params": {"seconds": 2}, "needs": ["second"]}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    // Follow once the first line is written, so the stream has old lines
    // and lines written while it is open.
    let mut before = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while before == 0 {
        before = system.logs(&job).await.len();
        assert!(tokio::time::Instant::now() < deadline, "no first line");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let response = follow(&system, &job, &[]).await;
    // Read the stream while watching for the job's end: a line must reach
    // the follower while the job still runs (the job sleeps 2 s after
    // "second"), not only with the final catch-up.
    let (events, ended) = tokio::join!(read_events(response), async {
        system.wait_status(&job, "ok").await;
        tokio::time::Instant::now()
    });
    let second = events
        .iter()
        .find(|event| event.data["message"] == "second")
        .expect("the line written while following arrives");
    assert!(
        second.at + Duration::from_secs(1) < ended,
        "\"second\" arrived only as the job ended"
    );

    let (logs, last) = events.split_at(events.len() - 1);
    assert_eq!(last[0].event, "status");
    assert_eq!(last[0].data["status"], "ok");
    assert_eq!(last[0].data["jobID"], job.as_str());
    // Every line once, in order, each with its seq as the event id.
    let stored = system.logs(&job).await;
    assert!(stored.len() > before, "lines were written while following");
    assert_eq!(logs.len(), stored.len());
    for (event, entry) in logs.iter().zip(&stored) {
        assert_eq!(event.event, "log");
        assert_eq!(event.data, *entry);
        assert_eq!(event.id.as_deref(), Some(entry["seq"].to_string().as_str()));
    }
    let messages: Vec<String> = logs
        .iter()
        .map(|event| {
            event.data["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(
        messages.iter().any(|m| m.contains("second")),
        "{messages:?}"
    );
}

#[tokio::test]
async fn a_follower_resumes_after_last_event_id_and_a_finished_job_ends_at_once() {
    let system = start(Options::default()).await;
    let workflow = system
        .workflow(json!({"name": "short", "tasks": [
            {"name": "a", "kind": "log", "params": {"message": "a"}},
            {"name": "b", "kind": "log", "params": {"message": "b"}, "needs": ["a"]}
        ]}))
        .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_status(&job, "ok").await;
    let stored = system.logs(&job).await;
    assert!(stored.len() >= 2, "{stored:?}");

    let response = follow(&system, &job, &[("last-event-id", "1")]).await;
    let events = read_events(response).await;
    let seqs: Vec<i64> = events
        .iter()
        .filter(|event| event.event == "log")
        .map(|event| event.data["seq"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = (2..=stored.len() as i64).collect();
    assert_eq!(seqs, expected);
    assert_eq!(events.last().unwrap().event, "status");

    // `after` does the same without the header; a bad header is a 400.
    let response = system
        .open(
            &format!("/job/{job}/logs?follow=true&after={}", stored.len()),
            &[],
        )
        .await;
    let events = read_events(response).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "status");
    let response = system
        .open(
            &format!("/job/{job}/logs?follow=true"),
            &[("last-event-id", "x")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
