//! Workers that die or stall: the job runs again elsewhere with a higher
//! attempt, and the lost run's late writes are rejected.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{start, Options, DEADLINE};

/// Waits until the job is running on the named worker.
async fn wait_running_on(system: &crate::helpers::System, job: &str, worker: &str) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut db = system.db.connect().await;
        let holder: Option<String> =
            sqlx::query_scalar("SELECT worker FROM jobs WHERE id = $1 AND status = 'running'")
                .bind(job.parse::<i64>().unwrap())
                .fetch_optional(&mut db)
                .await
                .unwrap()
                .flatten();
        if holder.as_deref() == Some(worker) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "job {job} never ran on {worker}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_killed_worker_s_job_completes_on_another_worker_with_a_higher_attempt() {
    let mut system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "survivor", "tasks": [{"name": "nap", "kind": "sleep", "params": {"seconds": 2}}]}))
        .await;
    let (mut doomed, _lines) = system.spawn_worker_process("doomed", 1_000);
    let job = system.job(&workflow, json!({})).await;
    wait_running_on(&system, &job, "doomed").await;
    // SIGKILL: no drain, no ack, no final write.
    doomed.kill().await.unwrap();
    system.start_worker(1_000, 10).await;
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(done["attempt"], 2);
    let logs = system.logs(&job).await;
    assert!(
        logs.iter()
            .any(|l| l["message"] == "worker lost; the job will run again"),
        "{logs:?}"
    );
}

#[tokio::test]
async fn a_stalled_worker_s_late_writes_are_rejected() {
    let mut system = start(Options {
        workers: 0,
        ..Options::default()
    })
    .await;
    let workflow = system
        .workflow(json!({"name": "contested", "tasks": [
            {"name": "nap", "kind": "sleep", "params": {"seconds": 2}},
            {"name": "after", "kind": "log", "params": {"message": "finished nap"}}
        ]}))
        .await;
    let (stalled, mut lines) = system.spawn_worker_process("stalled", 1_000);
    let pid = stalled.id().expect("child has a pid").to_string();
    let job = system.job(&workflow, json!({})).await;
    wait_running_on(&system, &job, "stalled").await;
    // SIGSTOP: the process is frozen mid-task and stops renewing its lease.
    assert!(std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status()
        .unwrap()
        .success());
    system.start_worker(1_000, 10).await;
    let done = system.wait_status(&job, "ok").await;
    assert_eq!(done["attempt"], 2);
    // Thaw it: its nap ends, and every write it then tries is fenced out.
    assert!(std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let line = tokio::time::timeout_at(deadline, lines.recv())
            .await
            .expect("the stalled worker noticed");
        let line = line.expect("worker output");
        if line.contains("lost its claim") {
            break;
        }
    }
    let after = system.get_job(&job).await;
    assert_eq!(after["status"], "ok");
    assert_eq!(
        after["attempt"], 2,
        "the old run did not overwrite the new one"
    );
    let mut db = system.db.connect().await;
    let late: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_logs WHERE job_id = $1 AND attempt = 1 AND message = 'finished nap'",
    )
    .bind(job.parse::<i64>().unwrap())
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(late, 0, "the stalled run's late log lines were rejected");
    drop(stalled);
}
