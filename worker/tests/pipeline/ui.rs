//! The operator web UI in a real browser: headless Chromium driven through
//! chromedriver (WebDriver) against a real api, scheduler and worker. An
//! operator signs in, filters jobs, watches a running job's live log, cancels
//! it, and reruns a failed job. Every wait is a bounded poll on what the page
//! shows. Each page's screenshot is saved under `docs/ui/` for the README.

use std::future::Future;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

use crate::helpers::{start, Options, System, SECRET};
use crust_model::auth::TokenKey;
use crust_model::Id;

/// How long the page may take to show anything the test waits for.
const UI_DEADLINE: Duration = Duration::from_secs(20);

/// A chromedriver child process on a free port, killed when dropped, and
/// the fresh Chromium profile it uses, removed when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

async fn start_driver() -> Driver {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let child = tokio::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver runs (deploy/local/test.sh installs chromium-driver)");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let profile =
        std::env::temp_dir().join(format!("crust-ui-test-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&profile).unwrap();
    Driver {
        _child: child,
        url: format!("http://127.0.0.1:{port}"),
        profile,
    }
}

/// A browser session: chromedriver may take a moment to listen.
async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1366,768",
                format!("--user-data-dir={}", driver.profile.display()),
            ],
        }),
    );
    let mut builder = ClientBuilder::new(HttpConnector::new());
    builder.capabilities(caps);
    until("chromedriver starts a session", || async {
        builder.connect(&driver.url).await.ok()
    })
    .await
}

/// Polls `check` until it yields something, for at most [`UI_DEADLINE`].
async fn until<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + UI_DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of the first element matching `css`, if there is one.
async fn text(browser: &Client, css: &str) -> Option<String> {
    let value = browser
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent : null;",
            vec![json!(css)],
        )
        .await
        .ok()?;
    value.as_str().map(str::to_owned)
}

/// Waits until the element matching `css` shows text for which `ok` holds.
async fn wait_text(browser: &Client, css: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    until(&format!("{css} shows {what}"), || async {
        text(browser, css).await.filter(|shown| ok(shown))
    })
    .await
}

/// Clicks the element matching `css` once it is there (pages re-render).
async fn click(browser: &Client, css: &str) {
    until(&format!("{css} can be clicked"), || async {
        let element = browser.find(Locator::Css(css)).await.ok()?;
        element.click().await.ok()
    })
    .await;
}

/// The IDs of the jobs the jobs table lists, in order.
async fn listed_jobs(browser: &Client) -> Vec<String> {
    let value = browser
        .execute(
            "return [...document.querySelectorAll('#jobs-table tr[data-job]')].map(r => r.dataset.job);",
            vec![],
        )
        .await
        .unwrap_or(Value::Null);
    value
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/ui");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

async fn job_status(system: &System, id: &str) -> String {
    system.get_job(id).await["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn an_operator_signs_in_filters_follows_cancels_and_reruns_in_a_browser() {
    let system = start(Options::default()).await;
    let failing = system
        .workflow(json!({"name": "nightly-import", "tasks": [
            {"name": "fetch", "kind": "log", "params": {"message": "fetching"}},
            {"name": "load", "kind": "fail", "params": {"message": "the upstream file is missing"}},
        ]}))
        .await;
    // Waits for a signal, logs, then sleeps for less than
    // CRUST_DURABLE_SLEEP_SECS, so the job stays running until cancelled.
    let slow = system
        .workflow(json!({"name": "invoice-sync", "tasks": [
            {"name": "start", "kind": "log", "params": {"message": "syncing invoices"}},
            {"name": "gate", "kind": "wait", "params": {"event": "go"}},
            {"name": "resume", "kind": "log", "params": {"message": "resumed by {{ outputs.gate.by }}"}},
            {"name": "nap", "kind": "sleep", "params": {"seconds": 28}},
        ]}))
        .await;
    let quick = system
        .workflow(json!({"name": "send-digest", "tasks": [
            {"name": "greet", "kind": "log", "params": {"message": "hello {{ parameters.who }}"}},
        ]}))
        .await;
    let failed = system.job(&failing, json!({})).await;
    system.wait_status(&failed, "error").await;
    for who in ["ann", "bob", "cy"] {
        let done = system
            .job(&quick, json!({"parameters": {"who": who}}))
            .await;
        system.wait_status(&done, "ok").await;
    }

    let driver = start_driver().await;
    let browser = browser(&driver).await;
    let token = TokenKey::new(SECRET).unwrap().sign(
        Id(7),
        &["admin"],
        chrono::Utc::now().timestamp(),
        3600,
    );

    // Sign in: the UI sends a stranger to the sign-in form.
    browser.goto(&format!("{}/ui/", system.base)).await.unwrap();
    until("the sign-in form shows", || async {
        browser.find(Locator::Css("#token")).await.ok()
    })
    .await;
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/ui/login"));
    screenshot(&browser, "login").await;
    let field = browser.find(Locator::Css("#token")).await.unwrap();
    field.send_keys(&token).await.unwrap();
    click(&browser, "#sign-in").await;

    // Jobs: every job listed, with counts by status.
    until("the jobs table lists the 4 jobs", || async {
        (listed_jobs(&browser).await.len() == 4).then_some(())
    })
    .await;
    wait_text(&browser, "[data-count=ok] .count", "3 ok jobs", |t| {
        t == "3"
    })
    .await;
    wait_text(&browser, "[data-count=error] .count", "1 failed job", |t| {
        t == "1"
    })
    .await;
    screenshot(&browser, "jobs").await;

    // A bad filter is explained next to the box, naming what was wrong.
    let filter = browser.find(Locator::Css("#filter")).await.unwrap();
    filter.send_keys("statuss = 'error'").await.unwrap();
    click(&browser, "#filter-apply").await;
    wait_text(&browser, "#filter-error", "the unknown field", |t| {
        t.contains("statuss")
    })
    .await;
    screenshot(&browser, "jobs-filter-error").await;

    // A good filter lists only what matches.
    let filter = browser.find(Locator::Css("#filter")).await.unwrap();
    filter.clear().await.unwrap();
    filter
        .send_keys(&format!("status = 'error' AND workflowID = {failing}"))
        .await
        .unwrap();
    click(&browser, "#filter-apply").await;
    until("the filter lists only the failed job", || async {
        (listed_jobs(&browser).await == [failed.clone()]).then_some(())
    })
    .await;
    assert_eq!(text(&browser, "#filter-error").await.as_deref(), Some(""));
    // A running job: its live log shows a line written after the page
    // loaded. The job parks on a `wait` task until the test signals it, so
    // the line is written (by the worker) only once the page follows the log.
    let running = system.job(&slow, json!({})).await;
    system.wait_status(&running, "waiting").await;
    browser
        .goto(&format!("{}/ui/#/job/{running}", system.base))
        .await
        .unwrap();
    wait_text(&browser, "#logs", "the first log line", |t| {
        t.contains("syncing invoices")
    })
    .await;
    wait_text(&browser, "#log-state", "that it follows the log", |t| {
        t.starts_with("Following")
    })
    .await;
    let (status, body) = system
        .call(
            reqwest::Method::POST,
            &format!("/job/{running}/signal"),
            Some(json!({"event": "go", "data": {"by": "ann"}})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    wait_text(&browser, "#logs", "the line written later", |t| {
        t.contains("resumed by ann")
    })
    .await;
    wait_text(&browser, "#job-status", "running", |t| t == "running").await;
    screenshot(&browser, "job-running").await;

    // Cancel it: the page shows the new status, and so does the API.
    click(&browser, "#job-cancel").await;
    wait_text(&browser, "#job-status", "cancelled", |t| t == "cancelled").await;
    assert_eq!(job_status(&system, &running).await, "cancelled");

    // Rerun the failed job: the page moves to the new job, a rerun of it.
    browser
        .goto(&format!("{}/ui/#/job/{failed}", system.base))
        .await
        .unwrap();
    wait_text(&browser, "#job-error", "the failure", |t| {
        t.contains("the upstream file is missing")
    })
    .await;
    wait_text(&browser, "#job-steps", "the failed step", |t| {
        t.contains("load")
    })
    .await;
    screenshot(&browser, "job-failed").await;
    click(&browser, "#job-rerun").await;
    let rerun = until("the page moves to the rerun", || async {
        let url = browser.current_url().await.ok()?;
        let id = url.fragment()?.strip_prefix("/job/")?.to_owned();
        (id != failed).then_some(id)
    })
    .await;
    assert_eq!(system.get_job(&rerun).await["rerunOf"], json!(failed));
    wait_text(&browser, "h1", "the rerun's heading", |t| {
        t.starts_with(&format!("Job {rerun}"))
    })
    .await;
    wait_text(&browser, "#job-status", "the rerun failing too", |t| {
        t == "error"
    })
    .await;

    // Bulk: select every failed job and rerun them all at once.
    browser
        .goto(&format!(
            "{}/ui/#/jobs?filter=status%20%3D%20'error'",
            system.base
        ))
        .await
        .unwrap();
    let failures = until("the two failed jobs are listed", || async {
        let listed = listed_jobs(&browser).await;
        (listed.len() == 2).then_some(listed)
    })
    .await;
    assert!(
        failures.contains(&failed) && failures.contains(&rerun),
        "{failures:?}"
    );
    click(&browser, "#select-all").await;
    wait_text(&browser, ".toolbar [aria-live]", "2 selected", |t| {
        t == "2 selected"
    })
    .await;
    click(&browser, "#bulk-rerun").await;
    wait_text(&browser, "#flash", "two reruns started", |t| {
        t.contains("Started 2 reruns of 2 selected jobs")
    })
    .await;

    // Workflows, workers and queues show what runs; charts show their SVG.
    browser
        .goto(&format!("{}/ui/#/workflows", system.base))
        .await
        .unwrap();
    wait_text(&browser, "#workflows-table", "the workflows", |t| {
        t.contains("invoice-sync") && t.contains("nightly-import")
    })
    .await;
    screenshot(&browser, "workflows").await;
    browser
        .goto(&format!("{}/ui/#/workers", system.base))
        .await
        .unwrap();
    wait_text(&browser, "#workers-table tbody", "the live worker", |t| {
        t.contains("default")
    })
    .await;
    screenshot(&browser, "workers").await;
    browser
        .goto(&format!("{}/ui/#/queues", system.base))
        .await
        .unwrap();
    wait_text(&browser, "#queues-table tbody", "the default queue", |t| {
        t.contains("default")
    })
    .await;
    screenshot(&browser, "queues").await;
    let chart = deals_chart(&system).await;
    browser
        .goto(&format!("{}/ui/#/charts", system.base))
        .await
        .unwrap();
    until("the chart's SVG is drawn", || async {
        let drawn = browser
            .execute(
                "const i = document.querySelector(`[data-chart='${arguments[0]}'] img`); \
                 return !!i && i.complete && i.naturalWidth > 0;",
                vec![json!(chart)],
            )
            .await
            .ok()?;
        (drawn == json!(true)).then_some(())
    })
    .await;
    screenshot(&browser, "charts").await;

    // Sign out: the cookie is gone, so the UI asks to sign in again.
    click(&browser, "#sign-out").await;
    until("the sign-in page after signing out", || async {
        let url = browser.current_url().await.ok()?;
        url.path().ends_with("/ui/login").then_some(())
    })
    .await;
    browser.goto(&format!("{}/ui/", system.base)).await.unwrap();
    until("the UI still asks to sign in", || async {
        browser.find(Locator::Css("#token")).await.ok()
    })
    .await;

    browser.close().await.unwrap();
}

/// A module of deals and a bar chart of them by stage; returns the chart ID.
async fn deals_chart(system: &System) -> String {
    let (status, body) = system
        .call(
            reqwest::Method::POST,
            "/module/",
            Some(json!({"name": "Deals", "fields": [
                {"name": "stage", "kind": "String"}, {"name": "amount", "kind": "Number"}]})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    let module = body["response"]["moduleID"].as_str().unwrap().to_owned();
    for (stage, amount) in [("won", 1200), ("lost", 300), ("won", 800), ("open", 450)] {
        let (status, body) = system
            .call(
                reqwest::Method::POST,
                &format!("/module/{module}/record/"),
                Some(json!({"fields": {"stage": stage, "amount": amount}})),
            )
            .await;
        assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    }
    let (status, body) = system
        .call(
            reqwest::Method::POST,
            "/chart/",
            Some(json!({"name": "Deal value by stage", "config": {"type": "bar", "reports": [
                {"moduleID": module, "metrics": "SUM(amount) AS total", "dimensions": "stage", "filter": ""}]}})),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
    body["response"]["chartID"].as_str().unwrap().to_owned()
}
