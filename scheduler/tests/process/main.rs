//! The real `crust-scheduler` binary against real Postgres and RabbitMQ:
//! it counts the jobs it creates, stops silently, and refuses a bad
//! configuration in one line.

use std::process::Command;
use std::time::Duration;

use crust_testing::{amqp_url, free_port, wait_until_ok, warnings_and_errors, Process, TestDb};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn crust_scheduler(db: &TestDb, addr: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crust-scheduler"));
    command
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", amqp_url())
        .env("CRUST_QUEUE_PREFIX", &db.name)
        .env("CRUST_HTTP_ADDR", addr)
        .env("CRUST_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env("RUST_BACKTRACE", "1");
    command
}

/// The body of `GET http://{addr}{path}`.
async fn get(addr: &str, path: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

/// The value of an unlabelled counter in Prometheus text.
fn counter(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from {metrics}"))
}

#[tokio::test]
async fn a_clean_stop_logs_no_warnings_or_errors() {
    let db = TestDb::new().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let scheduler = Process::start(crust_scheduler(&db, &addr));
    // Ready means its broker connection is open: the one whose teardown
    // used to log errors.
    wait_until_ok(&addr, "/readyz").await;
    let (status, stderr) = scheduler.terminate().await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("crust-scheduler stopped"), "{stderr}");
    assert_eq!(warnings_and_errors(&stderr), Vec::<&str>::new(), "{stderr}");
}

#[tokio::test]
async fn jobs_the_scheduler_creates_for_cron_slots_count_as_created() {
    let db = TestDb::new().await;
    let mut conn = db.connect().await;
    let workflow: i64 = sqlx::query_scalar(
        "INSERT INTO workflows (name, tasks, on_error, timeout_secs, schedule, next_fire_at)
         VALUES ('tick', '[]', '[]', 0, '* * * * * *', now()) RETURNING id",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let scheduler = Process::start(crust_scheduler(&db, &addr));
    wait_until_ok(&addr, "/healthz").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        // Read the metric first: every job counted was created before.
        let created = counter(&get(&addr, "/metrics").await, "crust_jobs_created_total");
        let cron_jobs: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE workflow_id = $1 AND cron_slot IS NOT NULL",
        )
        .bind(workflow)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if created >= 1.0 {
            assert!(created <= cron_jobs as f64, "{created} > {cron_jobs}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "crust_jobs_created_total stayed {created} while {cron_jobs} cron jobs exist"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(scheduler);
}

#[test]
fn a_bad_database_url_is_one_line_and_exit_code_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_crust-scheduler"))
        .env("DATABASE_URL", "postgres://[nope")
        .env("CRUST_HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("crust-scheduler runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("crust-scheduler: DATABASE_URL is not a valid Postgres URL"),
        "{stderr}"
    );
}

#[test]
fn a_setting_out_of_range_is_one_line_naming_the_variable_and_exit_code_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_crust-scheduler"))
        .env("CRUST_MAX_ATTEMPTS", "0")
        .env("CRUST_HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("crust-scheduler runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("crust-scheduler: CRUST_MAX_ATTEMPTS: invalid value '0'"),
        "{stderr}"
    );
}
