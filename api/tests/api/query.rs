//! The query language through the API: record filter and sort, module
//! reports and chart data.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

/// A Deals module with five records, and an Other module with one record
/// that matches everything, to prove filters cannot escape their module.
async fn deals(app: &TestApp) -> String {
    let module = app
        .create_module(
            "Deals",
            json!([
                {"name": "title", "kind": "String"},
                {"name": "amount", "kind": "Number"},
                {"name": "status", "kind": "Select", "options": {"options": ["new", "won", "lost"]}},
                {"name": "closedAt", "kind": "DateTime"},
                {"name": "tags", "kind": "String", "isMulti": true}
            ]),
        )
        .await;
    for (title, amount, status, closed, tags) in [
        ("a", 50, "won", "2009-03-01T00:00:00Z", json!(["vip"])),
        (
            "b",
            150,
            "won",
            "2019-01-15T10:00:00Z",
            json!(["vip", "eu"]),
        ),
        ("c", 250, "lost", "2019-01-20T10:00:00Z", json!([])),
        ("d", 350, "new", "2019-02-10T10:00:00Z", json!(["eu"])),
        ("e", 450, "won", "2019-02-11T10:00:00Z", json!(null)),
    ] {
        app.create_record(&module, json!({"title": title, "amount": amount, "status": status, "closedAt": closed, "tags": tags}))
            .await;
    }
    let other = app
        .create_module("Other", json!([{"name": "amount", "kind": "Number"}]))
        .await;
    app.create_record(&other, json!({"amount": 999})).await;
    module
}

async fn titles(app: &TestApp, module: &str, query: &str) -> (StatusCode, Vec<String>, Value) {
    let url = format!("/module/{module}/record?{query}");
    let (status, body) = app.get(&url).await;
    let titles = body["response"]["records"]
        .as_array()
        .map(|records| {
            records
                .iter()
                .map(|r| {
                    r["fields"][0]["value"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    (status, titles, body)
}

fn q(text: &str) -> String {
    text.replace('%', "%25")
        .replace(' ', "%20")
        .replace('\'', "%27")
        .replace('=', "%3D")
        .replace('>', "%3E")
        .replace('<', "%3C")
        .replace('(', "%28")
        .replace(')', "%29")
        .replace(',', "%2C")
        .replace('*', "%2A")
        .replace(';', "%3B")
}

#[tokio::test]
async fn filters_and_sorts_select_and_order_records() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let (status, got, body) = titles(
        &app,
        &module,
        &format!(
            "filter={}&sort={}",
            q("amount > 100 AND status = 'won'"),
            q("amount ASC")
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(got, ["b", "e"]);
    assert_eq!(
        body["response"]["meta"]["filter"],
        "amount > 100 AND status = 'won'"
    );
    assert_eq!(body["response"]["meta"]["sort"], "amount ASC");
    assert_eq!(body["response"]["meta"]["count"], 2);

    let (_, got, _) = titles(&app, &module, "").await;
    assert_eq!(got, ["e", "d", "c", "b", "a"], "default sort is id DESC");
    let (_, got, _) = titles(&app, &module, &format!("filter={}", q("'vip' IN tags"))).await;
    assert_eq!(got, ["b", "a"]);
    let (_, got, _) = titles(
        &app,
        &module,
        &format!(
            "filter={}",
            q("title LIKE 'A%' OR amount BETWEEN 300 AND 400")
        ),
    )
    .await;
    assert_eq!(got, ["d", "a"]);
    let (_, got, _) = titles(
        &app,
        &module,
        &format!(
            "filter={}",
            q("DATE(closedAt) > 2010 AND status IN ('lost', 'new')")
        ),
    )
    .await;
    assert_eq!(got, ["d", "c"]);
}

#[tokio::test]
async fn parentheses_and_precedence_are_kept() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    // Without the parentheses this would also match "a" (amount 50, won).
    let (_, got, _) = titles(
        &app,
        &module,
        &format!(
            "filter={}&sort={}",
            q("amount > 100 AND (status = 'won' OR status = 'lost')"),
            q("title")
        ),
    )
    .await;
    assert_eq!(got, ["b", "c", "e"]);
    let (_, got, _) = titles(
        &app,
        &module,
        &format!(
            "filter={}&sort={}",
            q("amount > 100 AND status = 'won' OR status = 'lost'"),
            q("title")
        ),
    )
    .await;
    assert_eq!(got, ["b", "c", "e"]);
    let (_, got, _) = titles(
        &app,
        &module,
        &format!(
            "filter={}&sort={}",
            q("status = 'lost' OR status = 'won' AND amount < 100"),
            q("title")
        ),
    )
    .await;
    assert_eq!(got, ["a", "c"], "AND binds tighter than OR");
}

#[tokio::test]
async fn an_or_in_a_filter_cannot_escape_the_module_or_see_deleted_records() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let (_, body) = app.get(&format!("/module/{module}/record?perPage=1")).await;
    let newest = body["response"]["records"][0]["recordID"]
        .as_str()
        .unwrap()
        .to_owned();
    app.delete(&format!("/module/{module}/record/{newest}"))
        .await;
    let (_, got, body) = titles(
        &app,
        &module,
        &format!("filter={}", q("amount > 0 OR 1 = 1")),
    )
    .await;
    assert_eq!(got, ["d", "c", "b", "a"], "{body}");
    let (_, body) = app
        .get(&format!(
            "/module/{module}/report?metrics={}&filter={}",
            q("SUM(amount) AS total"),
            q("1 = 1 OR amount = 999")
        ))
        .await;
    assert_eq!(body["response"], json!([{"count": 4, "total": 800}]));
}

#[tokio::test]
async fn bad_filters_and_sorts_are_400s_that_say_where() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let cases = [
        (
            "filter",
            "amout > 1",
            "filter: unknown field \"amout\" at column 1",
        ),
        (
            "filter",
            "(amount > 1",
            "filter: unexpected end of input, expected ')'",
        ),
        (
            "filter",
            "(amount > 1 status = 'won'",
            "filter: expected ')' at column 13",
        ),
        (
            "filter",
            "SLEEP(10) = 1",
            "filter: function SLEEP is not allowed at column 1",
        ),
        (
            "filter",
            "pg_sleep(10) = 1",
            "filter: function PG_SLEEP is not allowed",
        ),
        ("filter", "amount = 'x'; DROP TABLE records; --", "filter:"),
        ("filter", "amount > 'abc'", "filter:"),
        ("filter", "closedAt > 'not a date'", "filter:"),
        (
            "filter",
            "COUNT(*) > 1",
            "filter: aggregate COUNT is only allowed in metrics",
        ),
        ("sort", "nope DESC", "sort: unknown field \"nope\""),
        ("sort", "amount SIDEWAYS", "sort:"),
    ];
    for (param, text, expected) in cases {
        let (status, body) = app
            .get(&format!("/module/{module}/record?{param}={}", q(text)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{text}: {body}");
        assert!(message(&body).starts_with(expected), "{text}: {body}");
    }
    let deep = format!("{}amount > 1{}", "(".repeat(10_000), ")".repeat(10_000));
    let (status, body) = app
        .get(&format!("/module/{module}/record?filter={}", q(&deep)))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (_, body) = app.get(&format!("/module/{module}/record")).await;
    assert_eq!(body["response"]["meta"]["count"], 5, "the table is intact");
}

#[tokio::test]
async fn the_seed_report_examples_work() {
    let app = spawn_app().await;
    let module = app
        .create_module("Sales", json!([
            {"name": "money", "kind": "Number"}, {"name": "foo", "kind": "DateTime"}, {"name": "status", "kind": "String"}]))
        .await;
    for (money, foo, status) in [
        (10, "2019-01-01T10:00:00Z", "won"),
        (20, "2019-01-01T12:00:00Z", "won"),
        (5, "2019-01-02T00:00:00Z", "lost"),
        (7, "2009-01-02T00:00:00Z", "won"),
    ] {
        app.create_record(
            &module,
            json!({"money": money, "foo": foo, "status": status}),
        )
        .await;
    }
    let url = format!(
        "/module/{module}/report?metrics={}&dimensions={}&filter={}",
        q("COUNT(*) AS count, SUM(money)"),
        q("DATE(foo), status"),
        q("DATE(foo) > 2010")
    );
    let (status, body) = app.get(&url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["response"],
        json!([
            {"count": 2, "metric_2": 30, "dimension_1": "2019-01-01", "dimension_2": "won"},
            {"count": 1, "metric_2": 5, "dimension_1": "2019-01-02", "dimension_2": "lost"}
        ])
    );
    let url = format!(
        "/module/{module}/report?metrics={}&dimensions={}",
        q("AVG(money) AS avg, STD(money)"),
        q("YEAR(foo) AS year")
    );
    let (_, body) = app.get(&url).await;
    assert_eq!(body["response"][0]["year"], "2009");
    assert_eq!(body["response"][1]["avg"], json!(35.0 / 3.0));
    let (status, body) = app
        .get(&format!(
            "/module/{module}/report?metrics={}",
            q("SUM(nope)")
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).starts_with("metrics: unknown field \"nope\""),
        "{body}"
    );
    let (status, _) = app.get("/module/999/report").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn chart_data_runs_each_report_in_order() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let config = json!({"reports": [
        {"moduleID": module, "metrics": "SUM(amount) AS total", "dimensions": "status AS status", "filter": "status != 'new'"},
        {"moduleID": module, "metrics": "MAX(amount)"}
    ]});
    let (status, body) = app
        .post("/chart/", json!({"name": "By status", "config": config}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["response"]["chartID"].as_str().unwrap();
    let (status, body) = app.get(&format!("/chart/{id}/data")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["response"],
        json!([
            [{"count": 1, "total": 250, "status": "lost"}, {"count": 3, "total": 650, "status": "won"}],
            [{"count": 5, "metric_1": 450}]
        ])
    );
    let bad = json!({"reports": [{"moduleID": module, "filter": "amout > 1"}]});
    let (status, body) = app
        .post("/chart/", json!({"name": "Bad", "config": bad}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).starts_with("config.reports[0]: filter: unknown field \"amout\""),
        "{body}"
    );
    assert_eq!(app.get("/chart/4242/data").await.0, StatusCode::NOT_FOUND);
}
