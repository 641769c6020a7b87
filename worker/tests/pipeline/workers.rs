//! `GET /worker/`: live workers from their heartbeats; a stopped worker
//! leaves the list.

use reqwest::{Method, StatusCode};

use crate::helpers::{eventually, start, Options};

#[tokio::test]
async fn running_workers_are_listed_and_a_stopped_one_leaves_the_list() {
    let mut system = start(Options {
        workers: 2,
        ..Options::default()
    })
    .await;
    eventually("both workers are listed", || async {
        let (_, body) = system.call(Method::GET, "/worker/", None).await;
        body["response"]
            .as_array()
            .is_some_and(|list| list.len() == 2)
    })
    .await;
    let (status, body) = system.call(Method::GET, "/worker/", None).await;
    assert_eq!(status, StatusCode::OK);
    let first = &body["response"][0];
    assert_eq!(first["name"], "test-worker-0");
    assert_eq!(first["queues"], serde_json::json!(["default"]));
    assert_eq!(first["concurrency"], 8);
    assert_eq!(first["running"], 0);
    assert!(first["startedAt"].is_string() && first["lastSeenAt"].is_string());

    system.stop_worker(0).await;
    let (_, body) = system.call(Method::GET, "/worker/", None).await;
    let names: Vec<&str> = body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|worker| worker["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["test-worker-1"]);
}
