//! The real `crust-worker` binary stopping: SIGTERM is a silent, clean
//! exit, and a bad configuration is refused in one line.

use std::process::Command;

use crust_testing::{amqp_url, free_port, wait_until_ok, warnings_and_errors, Process, TestDb};

#[tokio::test]
async fn a_worker_stopped_with_sigterm_logs_no_warnings_or_errors() {
    let db = TestDb::new().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_crust-worker"));
    command
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", amqp_url())
        .env("CRUST_QUEUE_PREFIX", &db.name)
        .env("CRUST_HTTP_ADDR", &addr)
        .env("CRUST_LOG_FORMAT", "json")
        .env("RUST_LOG", "info");
    let worker = Process::start(command);
    // Ready means consuming, with its broker connection and channels open.
    wait_until_ok(&addr, "/readyz").await;
    let (status, stderr) = worker.terminate().await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("crust-worker stopped"), "{stderr}");
    assert_eq!(warnings_and_errors(&stderr), Vec::<&str>::new(), "{stderr}");
}

#[test]
fn a_bad_amqp_url_is_one_line_and_exit_code_2() {
    let output = Command::new(env!("CARGO_BIN_EXE_crust-worker"))
        .env("AMQP_URL", "not a url")
        .env("CRUST_HTTP_ADDR", "127.0.0.1:0")
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("crust-worker runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("crust-worker: AMQP_URL is not a valid AMQP URL"),
        "{stderr}"
    );
}

#[test]
fn a_setting_out_of_range_is_one_line_naming_the_variable_and_exit_code_2() {
    for (env, value) in [
        ("CRUST_WORKER_CONCURRENCY", "0"),
        ("CRUST_WORKER_LEASE_MS", "100"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_crust-worker"))
            .env(env, value)
            .env("CRUST_HTTP_ADDR", "127.0.0.1:0")
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("crust-worker runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{env}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{env}: {stderr}");
        assert!(
            stderr.starts_with(&format!("crust-worker: {env}: invalid value '{value}'")),
            "{stderr}"
        );
    }
}
