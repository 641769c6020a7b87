//! Hostile input at the edge: values Postgres cannot give back, NUL, bodies
//! that are not JSON objects or not declared JSON, tokens for user 0, CORS,
//! slow and idle connections, the connection bound and the CLI's secrets.

use std::time::Duration;

use crust_model::auth::TokenKey;
use crust_model::Id;
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{message, read, spawn_app, spawn_app_with, TestApp, SECRET};

/// The largest double: Postgres stores it, but it does not read back.
const POISON: &str = "1.7976931348623157e308";

async fn queued_job(app: &TestApp) -> String {
    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "m"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let workflow = body["response"]["workflowID"].as_str().unwrap().to_owned();
    let (status, body) = app
        .post(
            "/job/",
            json!({"workflowID": workflow, "startAt": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["jobID"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_chart_with_a_number_postgres_cannot_give_back_is_refused_and_the_list_still_works() {
    let app = spawn_app().await;
    let (status, body) = app
        .post_raw(
            "/chart/",
            format!(r#"{{"name":"x","config":{{"v":{POISON}}}}}"#),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        message(&body).starts_with("config.v: number 1.7976931348623157e+308 is too large"),
        "{body}"
    );
    // The largest accepted magnitude is stored and comes back unchanged.
    let (status, body) = app
        .post_raw(
            "/chart/",
            r#"{"name":"y","config":{"v":1.7976931348623145e308,"w":-1.7976931348623145e308}}"#,
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app.get("/chart/").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let charts = body["response"].as_array().unwrap();
    assert_eq!(charts.len(), 1);
    assert_eq!(charts[0]["config"]["v"], json!(1.7976931348623145e308));
}

/// The unit tests replay Postgres's printing of `numeric`; this checks the
/// replay against Postgres itself: `f64::MAX` fails to read back, the
/// documented bound reads back unchanged.
#[tokio::test]
async fn postgres_itself_gives_back_the_bound_but_not_the_largest_double() {
    let app = spawn_app().await;
    let mut db = app.db().await;
    let read_back = |text: &'static str| {
        sqlx::query_scalar::<_, sqlx::types::Json<Value>>("SELECT $1::text::jsonb").bind(text)
    };
    let err = read_back(POISON).fetch_one(&mut db).await.unwrap_err();
    assert!(err.to_string().contains("number out of range"), "{err}");
    let back = read_back("1.7976931348623145e308")
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(back.0, json!(1.7976931348623145e308));
}

#[tokio::test]
async fn records_workflow_params_page_blocks_module_meta_and_job_logs_refuse_poison() {
    let app = spawn_app().await;
    let module = app
        .create_module("Deals", json!([{"name": "amount", "kind": "Number"}]))
        .await;
    let job = queued_job(&app).await;
    let cases = [
        (
            format!("/module/{module}/record"),
            format!(r#"{{"fields":{{"amount":{POISON}}}}}"#),
            "fields.amount: number",
        ),
        (
            "/workflow/".to_owned(),
            format!(
                r#"{{"name":"w2","tasks":[{{"name":"t","kind":"log","params":{{"message":"m","n":[{POISON}]}}}}]}}"#
            ),
            "tasks[0].params.n[0]: number",
        ),
        (
            "/page/".to_owned(),
            format!(r#"{{"title":"p","selfID":"0","blocks":[{{"kind":"text","n":{POISON}}}]}}"#),
            "blocks[0].n: number",
        ),
        (
            "/module/".to_owned(),
            format!(r#"{{"name":"M","meta":{{"n":-{POISON}}},"fields":[]}}"#),
            "meta.n: number",
        ),
        (
            format!("/job/{job}"),
            format!(r#"{{"log":{{"message":"m","data":{{"v":{POISON}}}}}}}"#),
            "log.data.v: number",
        ),
        (
            "/job/".to_owned(),
            format!(r#"{{"workflowID":"1","parameters":{{"p":{POISON}}}}}"#),
            "parameters.p: number",
        ),
    ];
    for (path, body_text, expected) in cases {
        let (status, body) = app.post_raw(&path, body_text.clone()).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{path} {body_text}: {body}"
        );
        assert!(message(&body).starts_with(expected), "{path}: {body}");
    }
    for path in [
        format!("/module/{module}/record"),
        "/workflow/".into(),
        "/page/".into(),
        "/module/".into(),
        format!("/job/{job}/logs"),
        "/job/".into(),
    ] {
        let (status, body) = app.get(&path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
}

#[tokio::test]
async fn nul_in_text_keys_query_parameters_or_the_path_is_a_400() {
    let app = spawn_app().await;
    let module = app
        .create_module("Deals", json!([{"name": "title", "kind": "String"}]))
        .await;
    let job = queued_job(&app).await;
    let cases = [
        (
            "/chart/".to_owned(),
            json!({"name": "a\u{0}b", "config": {}}),
            r"name: text must not contain NUL (\u0000)",
        ),
        (
            format!("/module/{module}/record"),
            json!({"fields": {"title": "x\u{0}"}}),
            "fields.title: text must not contain NUL",
        ),
        (
            "/page/".to_owned(),
            json!({"title": "p", "selfID": "0", "blocks": [{"k\u{0}": 1}]}),
            r#"blocks[0]: key "k\0" must not contain NUL"#,
        ),
        (
            format!("/job/{job}"),
            json!({"log": "line\u{0}"}),
            "log: text must not contain NUL",
        ),
    ];
    for (path, input, expected) in cases {
        let (status, body) = app.post(&path, input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}: {body}");
        assert!(message(&body).starts_with(expected), "{input}: {body}");
    }
    let (status, body) = app
        .get(&format!(
            "/module/{module}/record?filter=title%20%3D%20%27a%00%27"
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        message(&body),
        "query parameter filter: must not contain NUL (%00)"
    );
    let (status, body) = app.get("/chart/1%00").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(message(&body), "the URL path must not contain NUL (%00)");
    assert_eq!(app.get(&format!("/job/{job}/logs")).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_job_update_that_is_not_an_object_is_a_400() {
    let app = spawn_app().await;
    let job = queued_job(&app).await;
    for input in [json!([null, null]), json!(null), json!("ok"), json!(1)] {
        let (status, body) = app.post(&format!("/job/{job}"), input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}: {body}");
        assert!(
            message(&body).starts_with("request body must be a JSON object, not "),
            "{body}"
        );
    }
}

#[tokio::test]
async fn a_json_endpoint_refuses_a_body_not_sent_as_json_even_with_the_cookie() {
    let app = spawn_app().await;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut request = app
            .client
            .post(format!("{}/chart/", app.base))
            .header("cookie", format!("jwt={}", app.token))
            .body(r#"{"name":"x","config":{}}"#);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let (status, body) = read(request.send().await.unwrap()).await;
        assert_eq!(
            status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}"
        );
        assert_eq!(
            message(&body),
            "request body must be sent with Content-Type: application/json"
        );
    }
    let (status, body) = app.get("/chart/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"], json!([]));
    // Parameters after the media type are fine.
    let (status, body) = read(
        app.client
            .post(format!("{}/chart/", app.base))
            .bearer_auth(&app.token)
            .header("content-type", "Application/JSON; charset=utf-8")
            .body(r#"{"name":"x","config":{}}"#)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

#[tokio::test]
async fn a_token_for_user_zero_is_a_401() {
    let app = spawn_app().await;
    let token = TokenKey::new(SECRET).unwrap().sign(
        Id(0),
        &["admin"],
        chrono::Utc::now().timestamp(),
        3600,
    );
    let response = app
        .client
        .get(format!("{}/chart/", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        message(&body),
        r#"token subject "0" is not a user ID (must be positive)"#
    );
}

async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(reqwest::Method::OPTIONS, format!("{}/chart/", app.base))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_configured() {
    let app = spawn_app().await;
    let response = preflight(&app, "https://app.example.com").await;
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    assert_ne!(response.status(), StatusCode::NO_CONTENT);
    let response = app
        .client
        .get(format!("{}/chart/", app.base))
        .bearer_auth(&app.token)
        .header("origin", "https://app.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

#[tokio::test]
async fn cors_answers_listed_origins_only() {
    let app = spawn_app_with(|config| {
        config.cors_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let response = preflight(&app, "https://app.example.com").await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(headers["access-control-allow-methods"], "GET, POST, DELETE");
    assert!(headers.get("access-control-allow-credentials").is_none());

    let response = preflight(&app, "https://evil.example").await;
    assert!(response
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let (status, body) = read(response).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        "this origin may not call the API cross-site"
    );

    for (origin, allowed) in [
        ("https://app.example.com", true),
        ("https://evil.example", false),
    ] {
        let response = app
            .client
            .get(format!("{}/chart/", app.base))
            .bearer_auth(&app.token)
            .header("origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_some(),
            allowed,
            "{origin}"
        );
    }
}

fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the connection (or resets it); what was
/// read, or `None` if it was still open at the deadline.
async fn read_until_closed(stream: &mut TcpStream, deadline: Duration) -> Option<String> {
    let mut received = Vec::new();
    let reading = async {
        let mut buf = [0u8; 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(deadline, reading).await.ok()?;
    Some(String::from_utf8_lossy(&received).into_owned())
}

#[tokio::test]
async fn a_connection_sending_headers_a_byte_at_a_time_is_closed() {
    let app = spawn_app_with(|config| config.http_read_timeout = Duration::from_secs(1)).await;
    let stream = TcpStream::connect(address(&app)).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let trickle = tokio::spawn(async move {
        let head = format!(
            "GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: {}",
            "a".repeat(600)
        );
        for byte in head.bytes() {
            if writer.write_all(&[byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    // The server gives up long before the 60 s the whole head would take.
    let mut buf = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the slow connection was still open after 30 s"
    );
    trickle.abort();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let app = spawn_app_with(|config| config.http_read_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let received = read_until_closed(&mut stream, Duration::from_secs(30))
        .await
        .expect("the idle connection was still open after 30 s");
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_a_408() {
    let app = spawn_app_with(|config| config.http_read_timeout = Duration::from_secs(1)).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let head = format!(
        "POST /chart/ HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\"",
        app.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let received = read_until_closed(&mut stream, Duration::from_secs(30))
        .await
        .expect("the half-sent request was still open after 30 s");
    assert!(received.starts_with("HTTP/1.1 408"), "{received}");
    assert!(
        received.contains(r#"{"error":{"message":"request body was not received within 1s"}}"#),
        "{received}"
    );
}

#[tokio::test]
async fn connections_beyond_the_bound_wait_for_a_free_slot() {
    let app = spawn_app_with(|config| config.max_connections = 1).await;
    // The one slot, held by a connection that sends nothing.
    let holder = TcpStream::connect(address(&app)).await.unwrap();
    // Wait until the server has accepted it: a request on a second
    // connection is not answered while the slot is taken.
    let mut waiting = TcpStream::connect(address(&app)).await.unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let early = tokio::time::timeout(Duration::from_millis(500), waiting.read(&mut buf)).await;
    assert!(early.is_err(), "answered while the only slot was taken");
    drop(holder);
    let received = read_until_closed(&mut waiting, Duration::from_secs(30))
        .await
        .expect("not answered after the slot was freed");
    assert!(received.starts_with("HTTP/1.1 200"), "{received}");
}

#[test]
fn help_shows_no_secrets_and_a_token_for_user_zero_is_refused() {
    let binary = env!("CARGO_BIN_EXE_crust-api");
    let output = std::process::Command::new(binary)
        .arg("--help")
        .env("DATABASE_URL", "postgres://crust:db-hunter2@db/crust")
        .env("AMQP_URL", "amqp://crust:mq-hunter2@mq/%2f")
        .env("CRUST_JWT_SECRET", SECRET)
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.contains("DATABASE_URL") && help.contains("AMQP_URL"),
        "{help}"
    );
    assert!(!help.contains("hunter2"), "{help}");
    assert!(!help.contains(SECRET), "{help}");

    let output = std::process::Command::new(binary)
        .args(["token", "--sub", "0"])
        .env("CRUST_JWT_SECRET", SECRET)
        // A backtrace is what these ask for; without them the error is one line.
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "a token was printed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(r#"--sub: "0" is not a user ID (must be positive)"#),
        "{stderr}"
    );
}
