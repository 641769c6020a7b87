//! Every process recovers by itself when Postgres or RabbitMQ comes back,
//! and its `/readyz` says it is not ready meanwhile.

use serde_json::json;

use crust_testing::Proxy;

use crate::helpers::{eventually, probe, start, Options};

#[tokio::test]
async fn every_process_recovers_after_postgres_comes_back() {
    let proxy = Proxy::start("127.0.0.1:5432").await;
    let system = start(Options {
        db_port: Some(proxy.port),
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "steady", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let api = system.base.trim_start_matches("http://").parse().unwrap();
    let (scheduler, worker) = (system.scheduler_health[0], system.worker_health[0]);
    eventually("all ready", || async {
        probe(api, "/readyz").await == 200
            && probe(scheduler, "/readyz").await == 200
            && probe(worker, "/readyz").await == 200
    })
    .await;

    proxy.down();
    let (status, body) = system.call(reqwest::Method::GET, "/workflow/", None).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        body["error"]["message"],
        "the database is unavailable; try again shortly"
    );
    eventually("everyone reports not ready", || async {
        probe(api, "/readyz").await == 503
            && probe(scheduler, "/readyz").await == 503
            && probe(worker, "/readyz").await == 503
    })
    .await;

    proxy.up();
    eventually("everyone ready again", || async {
        probe(api, "/readyz").await == 200
            && probe(scheduler, "/readyz").await == 200
            && probe(worker, "/readyz").await == 200
    })
    .await;
    let job = system.job(&workflow, json!({})).await;
    system.wait_status(&job, "ok").await;
}

#[tokio::test]
async fn the_worker_and_scheduler_recover_after_rabbitmq_comes_back() {
    let proxy = Proxy::start("127.0.0.1:5672").await;
    let broker = format!("amqp://guest:guest@127.0.0.1:{}/%2f", proxy.port);
    let system = start(Options {
        amqp_url: Some(broker),
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "steady", "tasks": [{"name": "hi", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let api = system.base.trim_start_matches("http://").parse().unwrap();
    let (scheduler, worker) = (system.scheduler_health[0], system.worker_health[0]);
    eventually("worker ready", || async {
        probe(worker, "/readyz").await == 200
    })
    .await;

    proxy.down();
    eventually("worker and scheduler report not ready", || async {
        probe(worker, "/readyz").await == 503 && probe(scheduler, "/readyz").await == 503
    })
    .await;
    assert_eq!(
        probe(api, "/readyz").await,
        200,
        "the api keeps taking jobs during a broker outage"
    );
    let job = system.job(&workflow, json!({})).await;

    proxy.up();
    eventually("worker and scheduler ready again", || async {
        probe(worker, "/readyz").await == 200 && probe(scheduler, "/readyz").await == 200
    })
    .await;
    system.wait_status(&job, "ok").await;
    eventually("the worker's metrics count the finished job", || async {
        let text = reqwest::get(format!("http://{worker}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("crust_jobs_finished_total{status=\"ok\"}")
    })
    .await;
}
