//! The real `crust-api` binary: configuration errors are one line and exit
//! code 2, and a clean stop logs no warnings or errors.

use std::process::Command;

use crust_testing::{amqp_url, free_port, wait_until_ok, warnings_and_errors, Process, TestDb};

use crate::helpers::SECRET;

/// The binary with a clean environment: nothing inherited from the shell
/// that runs the tests decides what it sees, and backtraces are on, as in a
/// developer's shell.
fn crust_api() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_crust-api"));
    for name in [
        "CRUST_JWT_SECRET",
        "DATABASE_URL",
        "AMQP_URL",
        "CRUST_HTTP_ADDR",
        "CRUST_BODY_LIMIT",
        "CRUST_TRACE_URL",
    ] {
        command.env_remove(name);
    }
    command
        .env("RUST_BACKTRACE", "1")
        .env("CRUST_LOG_FORMAT", "json");
    command
}

/// Runs to the end; returns exit code and stderr.
fn run(mut command: Command) -> (Option<i32>, String) {
    let output = command.output().expect("crust-api runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_token_without_a_secret_is_one_line_naming_the_variable_and_exit_code_2() {
    let mut command = crust_api();
    command.args(["token", "--sub", "1", "--ttl", "24h"]);
    let (code, stderr) = run(command);
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("crust-api: CRUST_JWT_SECRET is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("deploy/local/.jwt-secret"), "{stderr}");
}

#[test]
fn token_grants_admin_without_role_and_the_roles_given_otherwise() {
    use crust_model::auth::TokenKey;
    let key = TokenKey::new(SECRET).unwrap();
    let roles_of = |extra: &[&str]| {
        let mut command = crust_api();
        command
            .args(["token", "--sub", "7"])
            .args(extra)
            .env("CRUST_JWT_SECRET", SECRET);
        let output = command.output().expect("crust-api runs");
        assert!(output.status.success(), "{output:?}");
        let token = String::from_utf8(output.stdout).unwrap();
        key.verify(token.trim(), chrono::Utc::now().timestamp())
            .unwrap()
            .roles
    };
    assert_eq!(roles_of(&[]), ["admin"]);
    assert_eq!(
        roles_of(&["--role", "editor", "--role", "sales-team"]),
        ["editor", "sales-team"]
    );
}

/// Arguments, environment, and how stderr must start.
type Case = (
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[test]
fn every_configuration_error_is_one_line_and_exit_code_2() {
    let cases: [Case; 7] = [
        (&["serve"], &[], "crust-api: CRUST_JWT_SECRET is not set"),
        (
            &["serve"],
            &[("CRUST_JWT_SECRET", "short")],
            "crust-api: CRUST_JWT_SECRET must be at least 32 bytes long",
        ),
        (
            &["migrate"],
            &[("DATABASE_URL", "postgres://[nope")],
            "crust-api: DATABASE_URL is not a valid Postgres URL",
        ),
        (
            &["token", "--sub", "x"],
            &[("CRUST_JWT_SECRET", SECRET)],
            "crust-api: --sub:",
        ),
        (
            &["token", "--sub", "1", "--role", "a b"],
            &[("CRUST_JWT_SECRET", SECRET)],
            "crust-api: --role: \"a b\" is not a role name",
        ),
        (
            &["serve"],
            &[("CRUST_JWT_SECRET", SECRET), ("CRUST_BODY_LIMIT", "0")],
            "crust-api: CRUST_BODY_LIMIT: invalid value '0'",
        ),
        (
            &["serve"],
            &[
                ("CRUST_JWT_SECRET", SECRET),
                ("CRUST_TRACE_URL", "https://grafana.example/explore"),
            ],
            "crust-api: CRUST_TRACE_URL must contain {traceID}",
        ),
    ];
    for (args, env, expected) in cases {
        let mut command = crust_api();
        command.args(args).envs(env.iter().copied());
        let (code, stderr) = run(command);
        assert_eq!(code, Some(2), "{args:?} {env:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.starts_with(expected), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn a_clean_stop_logs_no_warnings_or_errors() {
    let db = TestDb::new().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let mut command = crust_api();
    command
        .env("DATABASE_URL", &db.url)
        .env("AMQP_URL", amqp_url())
        .env("CRUST_QUEUE_PREFIX", &db.name)
        .env("CRUST_JWT_SECRET", SECRET)
        .env("CRUST_HTTP_ADDR", &addr)
        .env("RUST_LOG", "info");
    let api = Process::start(command);
    // Ready means Postgres answered and the broker connection is open: the
    // one whose teardown used to log errors.
    wait_until_ok(&addr, "/readyz").await;
    let (status, stderr) = api.terminate().await;
    assert!(status.success(), "{status}: {stderr}");
    assert!(stderr.contains("crust-api stopped"), "{stderr}");
    assert_eq!(warnings_and_errors(&stderr), Vec::<&str>::new(), "{stderr}");
}
