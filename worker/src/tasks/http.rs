//! `http`: one HTTP request with the worker's shared client; the response
//! (status, lower-cased headers, JSON-parsed or text body) is the output.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, Response, Url};
use serde_json::{json, Map, Value};

use super::egress::HttpClient;
use super::{TaskContext, TaskError};
use crust_model::task::{HttpBody, HttpParams};

/// Largest response body read by default, in bytes (1 MiB): the output cap,
/// [`super::TaskEnv::max_output_bytes`], is the limit.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most characters of a failed response's body put in the log.
pub const LOGGED_BODY_CHARS: usize = 4096;

/// Sends the request; fails on a transport error, a timeout, a body over
/// the output cap ([`super::TaskEnv::max_output_bytes`]), a body that
/// cannot be stored, or a status other than the expected ones. The output
/// is built as JSON text: the body is never parsed into a tree.
pub async fn run(params: HttpParams, ctx: &TaskContext<'_>) -> Result<super::Output, TaskError> {
    let max_body = ctx.env.max_output_bytes;
    let url = Url::parse(params.url.trim())
        .map_err(|err| TaskError::failed(format!("url: {:?}: {err}", params.url)))?;
    let shown = redacted(&url);
    let what = format!("http {} {shown}", params.method);
    let method = Method::from_bytes(params.method.as_bytes()).map_err(|_| {
        TaskError::failed(format!("method: {:?} is not an HTTP method", params.method))
    })?;
    // Literal addresses are connected to without resolving: check them here
    // (names are checked as they resolve, redirects hop by hop).
    ctx.env
        .http
        .egress
        .check_url(&url)
        .map_err(|refused| TaskError::failed(refused.0))?;
    let mut request = ctx.env.http.client.request(method, url);
    for (name, value) in &params.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request = match params.body {
        None => request,
        Some(HttpBody::Raw(text)) => request.body(text),
        Some(HttpBody::Json(value)) => request.json(&value),
    };
    // The task's `timeout`, else CRUST_HTTP_TIMEOUT, so a server that
    // trickles its answer cannot hold a worker slot forever even when the
    // task and workflow set no timeout; the try's own limit when shorter.
    let requested = params
        .timeout
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .unwrap_or(ctx.env.http.timeout);
    let limit = ctx.timeout.map_or(requested, |own| own.min(requested));
    request = request.timeout(limit);
    let started = Instant::now();
    let exchange = async {
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_body(response, max_body).await?;
        Ok::<_, ReadError>((status, headers, body))
    };
    let (status, headers, body) = tokio::select! {
        result = exchange => result.map_err(|err| match err {
            ReadError::Http(err) if err.is_timeout() => TaskError::failed(format!(
                "{what}: timed out after {}",
                seconds(limit)
            )),
            // The policy refused a resolved address or a redirect hop.
            ReadError::Http(err) => match HttpClient::refusal(&err) {
                Some(refused) => TaskError::failed(refused.0),
                None => TaskError::failed(format!("{what}: {}", chain(&err.without_url()))),
            },
            ReadError::TooLarge => TaskError::failed(format!(
                "{what}: the response body is larger than {max_body} bytes (CRUST_WORKER_MAX_OUTPUT_BYTES)"
            )),
        })?,
        _ = ctx.cancel.cancelled() => return Err(TaskError::cancelled()),
    };
    let millis = started.elapsed().as_millis();
    let line = format!("{} {shown} → {status} in {millis} ms", params.method);
    if !params.expect_status.allows(status) {
        let logged = json!({
            "status": status,
            "headers": header_map(&headers),
            "body": truncate(&String::from_utf8_lossy(&body), LOGGED_BODY_CHARS),
        });
        ctx.log("error", line, Some(logged)).await;
        return Err(TaskError::failed(format!(
            "{what}: expected {}, got {status}",
            params.expect_status.describe()
        )));
    }
    // Checking a megabyte of JSON is CPU work: off the async threads, so
    // heartbeats and other runs are not held up behind it.
    let says_json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("json"));
    let body = tokio::task::spawn_blocking(move || raw_body(says_json, body))
        .await
        .map_err(|err| TaskError::failed(format!("{what}: {err}")))?
        .map_err(|reason| {
            TaskError::failed(format!(
                "{what}: the response body cannot be stored: {reason}"
            ))
        })?;
    let headers = serde_json::to_string(&header_map(&headers))
        .map_err(|err| TaskError::failed(format!("{what}: {err}")))?;
    let output = format!(
        r#"{{"status":{status},"headers":{headers},"body":{}}}"#,
        body.get()
    );
    drop(body);
    ctx.log("info", line, None).await;
    serde_json::value::RawValue::from_string(output)
        .map(super::Output::Raw)
        .map_err(|err| TaskError::failed(format!("{what}: {err}")))
}

enum ReadError {
    Http(reqwest::Error),
    TooLarge,
}

impl From<reqwest::Error> for ReadError {
    fn from(err: reqwest::Error) -> Self {
        ReadError::Http(err)
    }
}

/// Reads the body, refusing more than `max` bytes.
async fn read_body(mut response: Response, max: usize) -> Result<Vec<u8>, ReadError> {
    if response
        .content_length()
        .is_some_and(|length| length > max as u64)
    {
        return Err(ReadError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Headers by lower-cased name; repeated headers are joined with ", ".
fn header_map(headers: &HeaderMap) -> Value {
    let mut map = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match map.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push_str(", ");
                existing.push_str(&value);
            }
            _ => {
                map.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    Value::Object(map)
}

/// The body as JSON text: the JSON itself when the server says so (or
/// the text plainly is an object or array) and it parses, else the text
/// as a JSON string. Either must be storable (no NUL, no number that
/// cannot be read back).
fn raw_body(says_json: bool, body: Vec<u8>) -> Result<Box<serde_json::value::RawValue>, String> {
    let text = match String::from_utf8(body) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    };
    let looks_json = matches!(text.trim_start().chars().next(), Some('{' | '['));
    if says_json || looks_json {
        // Not JSON after all (or not storable JSON): a storable string
        // is still a fine output; an unstorable JSON value is an error.
        match crate::storable::check_text_json(&text) {
            Ok(()) => {
                let text = if text.trim().len() == text.len() {
                    text
                } else {
                    text.trim().to_owned()
                };
                return serde_json::value::RawValue::from_string(text)
                    .map_err(|err| err.to_string());
            }
            Err(reason) if serde_json::from_str::<serde::de::IgnoredAny>(&text).is_ok() => {
                return Err(reason)
            }
            Err(_) => {}
        }
    }
    crate::storable::to_raw(&Value::String(text), usize::MAX)
}

/// The URL without a password, for logs and errors.
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    url.to_string()
}

fn seconds(duration: Duration) -> String {
    format!("{} s", duration.as_secs_f64())
}

/// The error and its causes, `: `-separated.
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::extract::Request;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use axum::routing::{any, get};
    use axum::{Json, Router};
    use serde_json::json;

    use crate::tasks::egress::{Egress, HttpClient};
    use crate::tasks::test_support::Harness;

    /// Serves a few endpoints on 127.0.0.1:0; returns the base URL.
    async fn server() -> String {
        let app = Router::new()
            .route(
                "/json",
                get(|| async { Json(json!({"items": [{"id": 1}, {"id": 2}]})) }),
            )
            .route("/text", get(|| async { "plain text" }))
            .route(
                "/status/503",
                get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "down for maintenance") }),
            )
            .route(
                "/created",
                any(|| async { (StatusCode::CREATED, [("X-Thing", "yes")], "") }),
            )
            .route(
                "/echo",
                any(|headers: HeaderMap, request: Request| async move {
                    let method = request.method().to_string();
                    let body = axum::body::to_bytes(request.into_body(), 1 << 20).await.unwrap();
                    Json(json!({
                        "method": method,
                        "contentType": headers.get("content-type").map(|v| v.to_str().unwrap().to_owned()),
                        "token": headers.get("x-token").map(|v| v.to_str().unwrap().to_owned()),
                        "body": String::from_utf8_lossy(&body),
                    }))
                    .into_response()
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(10)).await;
                    "late"
                }),
            )
            .route("/big", get(|| async { "x".repeat(super::MAX_BODY_BYTES + 1) }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    #[tokio::test]
    async fn parses_json_and_logs_a_line() {
        let base = server().await;
        let mut h = Harness::new();
        let out = h
            .run("http", json!({"url": format!("{base}/json")}))
            .await
            .unwrap();
        assert_eq!(out["status"], json!(200));
        assert_eq!(out["body"]["items"][1]["id"], json!(2));
        assert_eq!(out["headers"]["content-type"], json!("application/json"));
        let logged = h.logged();
        assert_eq!(logged.len(), 1);
        assert_eq!(logged[0].0, "info");
        assert!(
            logged[0]
                .1
                .starts_with(&format!("GET {base}/json → 200 in ")),
            "{}",
            logged[0].1
        );
        assert!(logged[0].1.ends_with(" ms"));

        let out = h
            .run("http", json!({"url": format!("{base}/text")}))
            .await
            .unwrap();
        assert_eq!(out["body"], json!("plain text"));
    }

    #[tokio::test]
    async fn sends_headers_and_bodies() {
        let base = server().await;
        let h = Harness::new();
        let out = h
            .run(
                "http",
                json!({"method": "post", "url": format!("{base}/echo"), "headers": {"X-Token": "s3cret"}, "body": {"a": [1, 2]}}),
            )
            .await
            .unwrap();
        assert_eq!(
            out["body"],
            json!({"method": "POST", "contentType": "application/json", "token": "s3cret", "body": "{\"a\":[1,2]}"})
        );
        let out = h
            .run(
                "http",
                json!({"method": "PUT", "url": format!("{base}/echo"), "body": "raw text"}),
            )
            .await
            .unwrap();
        assert_eq!(out["body"]["body"], json!("raw text"));
        assert_eq!(out["body"]["method"], json!("PUT"));
    }

    #[tokio::test]
    async fn checks_the_status() {
        let base = server().await;
        let mut h = Harness::new();
        let err = h
            .run("http", json!({"url": format!("{base}/status/503")}))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("http GET {base}/status/503: expected 2xx, got 503")
        );
        let logged = h.logged();
        assert_eq!(logged[0].0, "error");
        let data = logged[0].2.clone().unwrap();
        assert_eq!(data["status"], json!(503));
        assert_eq!(data["body"], json!("down for maintenance"));

        let out = h
            .run(
                "http",
                json!({"method": "POST", "url": format!("{base}/created"), "expectStatus": 201}),
            )
            .await
            .unwrap();
        assert_eq!(out["status"], json!(201));
        assert_eq!(out["headers"]["x-thing"], json!("yes"));
        assert_eq!(out["body"], json!(""));
        let err = h
            .run(
                "http",
                json!({"url": format!("{base}/json"), "expectStatus": [201, 204]}),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string().ends_with("expected 201 or 204, got 200"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn times_out_and_caps_the_body() {
        let base = server().await;
        let mut h = Harness::new();
        let err = h
            .run(
                "http",
                json!({"url": format!("{base}/slow"), "timeout": 0.2}),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("http GET {base}/slow: timed out after 0.2 s")
        );
        // The try's own timeout applies when it is shorter.
        h.timeout = Some(Duration::from_millis(100));
        let err = h
            .run("http", json!({"url": format!("{base}/slow"), "timeout": 5}))
            .await
            .unwrap_err();
        assert!(err.to_string().ends_with("timed out after 0.1 s"), "{err}");
        h.timeout = None;
        let err = h
            .run("http", json!({"url": format!("{base}/big")}))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("larger than 1048576 bytes"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn reports_connection_errors_and_redacts_passwords() {
        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let h = Harness::new();
        let err = h
            .run(
                "http",
                json!({"url": format!("http://u:pw@127.0.0.1:{port}/x")}),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(&format!("http GET http://u:***@127.0.0.1:{port}/x: ")),
            "{err}"
        );
        assert!(!err.contains("pw"));
    }

    /// A server on 127.0.0.1 that counts the requests it gets and can
    /// redirect: `/redirect?to=URL`. Returns the port and the counter.
    async fn counted_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let app = Router::new()
            .route("/json", get(|| async { Json(json!({"ok": true})) }))
            .route(
                "/redirect",
                get(
                    |axum::extract::Query(query): axum::extract::Query<
                        std::collections::HashMap<String, String>,
                    >| async move {
                        axum::response::Redirect::to(&query["to"]).into_response()
                    },
                ),
            )
            .layer(axum::middleware::from_fn(
                move |request: Request, next: axum::middleware::Next| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    next.run(request)
                },
            ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (port, hits)
    }

    /// A harness whose `http` client follows `allow` (CRUST_HTTP_ALLOW).
    fn allowing(allow: &str, timeout: Duration) -> Harness {
        let mut h = Harness::new();
        h.env.http = HttpClient::new(Egress::parse(allow).unwrap(), timeout).unwrap();
        h
    }

    #[tokio::test]
    async fn every_spelling_of_loopback_is_refused_by_default() {
        let (port, hits) = counted_server().await;
        let h = allowing("", Duration::from_secs(30));
        for (host, shown) in [
            ("127.0.0.1", "127.0.0.1"),
            ("127.1", "127.0.0.1"),
            ("2130706433", "127.0.0.1"),
            ("0x7f000001", "127.0.0.1"),
            ("0177.0.0.1", "127.0.0.1"),
            ("[::1]", "::1"),
            ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
            ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
        ] {
            let err = h
                .run("http", json!({"url": format!("http://{host}:{port}/json")}))
                .await
                .unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("http: {shown} is a loopback address; allow it with CRUST_HTTP_ALLOW"),
                "{host}"
            );
        }
        for host in ["0.0.0.0", "0", "[::]"] {
            let err = h
                .run("http", json!({"url": format!("http://{host}:{port}/json")}))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.ends_with(" is an unspecified address; allow it with CRUST_HTTP_ALLOW"),
                "{host}: {err}"
            );
        }
        // A name is checked on the addresses it resolves to.
        for (host, shown) in [("localhost", "localhost"), ("LocalHost", "localhost")] {
            let err = h
                .run("http", json!({"url": format!("http://{host}:{port}/json")}))
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with(&format!("http: {shown} resolves to ")),
                "{err}"
            );
            assert!(
                err.ends_with(", a loopback address; allow it with CRUST_HTTP_ALLOW"),
                "{err}"
            );
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_allowed_block_or_host_name_is_reached() {
        let (port, hits) = counted_server().await;
        for (allow, host) in [
            ("127.0.0.1/32", "127.0.0.1"),
            ("127.0.0.0/8", "127.1"),
            ("localhost", "localhost"),
        ] {
            let h = allowing(allow, Duration::from_secs(30));
            let out = h
                .run("http", json!({"url": format!("http://{host}:{port}/json")}))
                .await
                .unwrap_or_else(|err| panic!("{allow} {host}: {err}"));
            assert_eq!(out["body"], json!({"ok": true}));
        }
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 3);
        // A block allows only itself.
        let h = allowing("127.0.0.1/32", Duration::from_secs(30));
        let err = h
            .run(
                "http",
                json!({"url": format!("http://127.0.0.2:{port}/json")}),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "http: 127.0.0.2 is a loopback address; allow it with CRUST_HTTP_ALLOW"
        );
    }

    #[tokio::test]
    async fn every_redirect_hop_is_checked() {
        let (port, hits) = counted_server().await;
        let (other, other_hits) = counted_server().await;
        let redirect = |from: &str, to: String| json!({"url": format!("http://{from}:{port}/redirect?to={to}")});
        // Allowed by name; the hop to another port by address is not.
        let h = allowing("localhost", Duration::from_secs(30));
        let err = h
            .run(
                "http",
                redirect("localhost", format!("http://127.0.0.1:{other}/json")),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "http: 127.0.0.1 is a loopback address; allow it with CRUST_HTTP_ALLOW"
        );
        // Allowed by block; hops outside it are refused in any spelling.
        let h = allowing("127.0.0.1/32", Duration::from_secs(30));
        for to in [
            format!("http://127.0.0.2:{other}/json"),
            format!("http://[::1]:{other}/json"),
            format!("http://0x7f000002:{other}/json"),
        ] {
            let err = h
                .run("http", redirect("127.0.0.1", to.clone()))
                .await
                .unwrap_err();
            assert!(
                err.to_string()
                    .ends_with("is a loopback address; allow it with CRUST_HTTP_ALLOW"),
                "{to}: {err}"
            );
        }
        assert_eq!(other_hits.load(std::sync::atomic::Ordering::SeqCst), 0);
        // A hop the policy allows is followed, across ports too.
        let out = h
            .run(
                "http",
                redirect("127.0.0.1", format!("http://127.0.0.1:{other}/json")),
            )
            .await
            .unwrap();
        assert_eq!(out["body"], json!({"ok": true}));
        assert_eq!(other_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_trickling_server_is_cut_at_the_default_timeout() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Answers at once, then sends its body a byte at a time, forever.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = socket.read(&mut request).await;
                    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000000\r\n\r\n";
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    while socket.write_all(b"x").await.is_ok() {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
            }
        });
        // No task or try timeout: only CRUST_HTTP_TIMEOUT bounds it.
        let h = allowing("127.0.0.1/32", Duration::from_millis(300));
        let run = h.run("http", json!({"url": format!("http://127.0.0.1:{port}/")}));
        let err = tokio::time::timeout(Duration::from_secs(30), run)
            .await
            .expect("the request ends by itself")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("http GET http://127.0.0.1:{port}/: timed out after 0.3 s")
        );
    }
}
