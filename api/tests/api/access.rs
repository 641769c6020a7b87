//! Access control: every documented route against every built-in role (a
//! written matrix), custom roles, deny wins, `token --role` rules, and the
//! audit log.

use std::collections::BTreeSet;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};
use crust_model::Id;

/// The built-in roles, each with the letter the matrix uses for it.
const ROLES: [(&str, char); 5] = [
    ("admin", 'a'),
    ("designer", 'd'),
    ("editor", 'e'),
    ("operator", 'o'),
    ("viewer", 'v'),
];

/// Which built-in roles may call each route of the OpenAPI document: the
/// letters of the roles that get a 2xx; every other role gets a 403. A
/// route of the document without a row here (or a row without a route)
/// fails the test. `fresh`: the call changes or removes its target, so it
/// gets fixtures of its own.
const MATRIX: &[(&str, &str, &str, bool)] = &[
    ("GET", "/healthz", "adeov", false),
    ("GET", "/readyz", "adeov", false),
    ("GET", "/metrics", "adeov", false),
    // Module lists are filtered (the operator sees none), never refused.
    ("GET", "/module/", "adeov", false),
    ("POST", "/module/", "ad", false),
    ("GET", "/module/{moduleID}", "adev", false),
    ("POST", "/module/{moduleID}", "ad", false),
    ("DELETE", "/module/{moduleID}", "ad", true),
    ("GET", "/module/{moduleID}/record", "adev", false),
    ("POST", "/module/{moduleID}/record", "ade", false),
    ("GET", "/module/{moduleID}/record/{recordID}", "adev", false),
    ("POST", "/module/{moduleID}/record/{recordID}", "ade", false),
    ("DELETE", "/module/{moduleID}/record/{recordID}", "ad", true),
    ("GET", "/module/{moduleID}/report", "adev", false),
    ("GET", "/module/{moduleID}/record/export", "adev", false),
    (
        "GET",
        "/module/{moduleID}/record/{recordID}/revisions",
        "adev",
        false,
    ),
    // Sent as text/csv (see `send`).
    ("POST", "/module/{moduleID}/record/import", "ade", false),
    ("GET", "/page/", "adev", false),
    ("POST", "/page/", "ad", false),
    ("GET", "/page/tree", "adev", false),
    ("GET", "/page/{pageID}", "adev", false),
    ("POST", "/page/{pageID}", "ad", false),
    ("DELETE", "/page/{pageID}", "ad", true),
    ("POST", "/page/{selfID}/reorder", "ad", false),
    ("GET", "/chart/", "adev", false),
    ("POST", "/chart/", "ad", false),
    ("GET", "/chart/{chartID}", "adev", false),
    ("POST", "/chart/{chartID}", "ad", false),
    ("DELETE", "/chart/{chartID}", "ad", true),
    ("GET", "/chart/{chartID}/data", "adev", false),
    ("GET", "/workflow/", "adeov", false),
    ("POST", "/workflow/", "ad", false),
    ("GET", "/workflow/{workflowID}", "adeov", false),
    ("POST", "/workflow/{workflowID}", "ad", false),
    ("DELETE", "/workflow/{workflowID}", "ad", true),
    ("GET", "/workflow/{workflowID}/versions", "adeov", false),
    ("POST", "/workflow/{workflowID}/pause", "ad", true),
    ("POST", "/workflow/{workflowID}/resume", "ad", true),
    ("GET", "/job/", "adeov", false),
    ("POST", "/job/", "ao", false),
    ("POST", "/job/bulk", "ao", false),
    ("GET", "/job/{jobID}", "adeov", false),
    ("POST", "/job/{jobID}", "ao", false),
    ("DELETE", "/job/{jobID}", "ao", true),
    ("GET", "/job/{jobID}/logs", "adeov", false),
    ("GET", "/job/{jobID}/steps", "adeov", false),
    ("POST", "/job/{jobID}/signal", "ao", false),
    ("POST", "/job/{jobID}/rerun", "ao", false),
    ("GET", "/role/", "adev", false),
    ("GET", "/role/{name}", "adev", false),
    ("PUT", "/role/{name}", "a", false),
    ("DELETE", "/role/{name}", "a", true),
    ("GET", "/audit", "a", false),
    // Bulk actions answer everyone; they act only on the jobs of workflows
    // the caller may run (a viewer's count is 0).
    ("POST", "/job/cancel", "adeov", false),
    ("POST", "/job/rerun", "adeov", false),
    ("GET", "/worker/", "adeov", false),
    ("GET", "/queue/", "adeov", false),
    ("GET", "/chart/{chartID}/render.svg", "adev", false),
    // The web UI's pages take no token (sign-in sets a cookie; see `send`).
    ("GET", "/ui/", "adeov", false),
    ("GET", "/ui/app.css", "adeov", false),
    ("GET", "/ui/app.js", "adeov", false),
    ("GET", "/ui/login", "adeov", false),
    ("POST", "/ui/login", "adeov", false),
    ("POST", "/ui/logout", "adeov", false),
    // Secrets: the admin's alone (a viewer reads everything but these).
    ("GET", "/secret/", "a", false),
    ("PUT", "/secret/{name}", "a", false),
    ("DELETE", "/secret/{name}", "a", true),
    // No token involved: a signed delivery is accepted whoever sends it
    // (signed per call, see `send`).
    ("POST", "/hook/{workflowID}", "adeov", false),
];

/// The webhook secret of the fixtures' workflows.
const HOOK_SECRET: &str = "whsec_matrix_0123456789";

/// Real objects for every path parameter, made with the admin token.
struct Fixtures {
    module: String,
    record: String,
    page: String,
    chart: String,
    workflow: String,
    /// A queued job (nothing runs it in this test).
    job: String,
    /// A cancelled job, for rerun.
    finished_job: String,
    role: String,
    secret: String,
}

async fn created(app: &TestApp, path: &str, body: Value, key: &str) -> String {
    let (status, answer) = app.post(path, body).await;
    assert!(status.is_success(), "{path}: {status} {answer}");
    answer["response"][key].as_str().unwrap().to_owned()
}

async fn fixtures(app: &TestApp, tag: usize) -> Fixtures {
    let module = app
        .create_module(
            &format!("Deals{tag}"),
            json!([{"name": "amount", "kind": "Number"}]),
        )
        .await;
    let record = app.create_record(&module, json!({"amount": 5})).await;
    let page = created(
        app,
        "/page/",
        json!({"title": format!("P{tag}"), "blocks": []}),
        "pageID",
    )
    .await;
    let report = json!({"moduleID": module, "metrics": "COUNT(*)", "dimensions": "", "filter": ""});
    let chart = created(
        app,
        "/chart/",
        json!({"name": "c", "config": {"type": "bar", "reports": [report]}}),
        "chartID",
    )
    .await;
    let workflow = created(
        app,
        "/workflow/",
        json!({"name": "w", "tasks": [{"name": "hello", "kind": "log", "params": {"message": "hi"}}]}),
        "workflowID",
    )
    .await;
    let job = created(app, "/job/", json!({"workflowID": workflow}), "jobID").await;
    let finished_job = created(app, "/job/", json!({"workflowID": workflow}), "jobID").await;
    let (status, _) = app.delete(&format!("/job/{finished_job}")).await;
    assert_eq!(status, StatusCode::OK);
    let role = format!("custom-{tag}");
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/role/{role}"),
            Some(json!({"rules": [{"resource": "page:*", "operations": ["read"], "allow": true}]})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let secret = format!("secret_{tag}");
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/secret/{secret}"),
            Some(json!({"value": "a-secret-value"})),
        )
        .await;
    assert!(status.is_success(), "{body}");
    let mut db = app.db().await;
    sqlx::query("UPDATE workflows SET webhook_secret = $1 WHERE id = $2")
        .bind(HOOK_SECRET)
        .bind(workflow.parse::<i64>().unwrap())
        .execute(&mut db)
        .await
        .unwrap();
    Fixtures {
        module,
        record,
        page,
        chart,
        workflow,
        job,
        finished_job,
        role,
        secret,
    }
}

/// Calls a route as `token`: JSON in general, CSV for an import, a signed
/// delivery for a webhook.
async fn send(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    if path.ends_with("/record/import") {
        let response = app
            .client
            .post(format!("{}{path}", app.base))
            .bearer_auth(token)
            .header("content-type", "text/csv")
            .body("amount\n3\n")
            .send()
            .await
            .unwrap();
        return crate::helpers::read(response).await;
    }
    if path.starts_with("/ui/") {
        let request = app.client.request(method, format!("{}{path}", app.base));
        let request = if path == "/ui/login" && body.is_some() {
            request.form(&[("token", token)])
        } else {
            request
        };
        let response = request.send().await.unwrap();
        return (response.status(), Value::Null);
    }
    if path.starts_with("/hook/") {
        let body = body.unwrap_or_default().to_string();
        let now = chrono::Utc::now().timestamp();
        let response = app
            .client
            .post(format!("{}{path}", app.base))
            .bearer_auth(token)
            .header("x-crust-timestamp", now.to_string())
            .header(
                "x-crust-signature",
                crust_model::webhook::sign(HOOK_SECRET, now, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        return crate::helpers::read(response).await;
    }
    app.call_as(token, method, path, body).await
}

/// The concrete request for a documented route: its path with real IDs,
/// and a valid body.
fn request(method: &str, route: &str, f: &Fixtures, n: usize) -> (String, Option<Value>) {
    let job = if route.ends_with("/rerun") {
        &f.finished_job
    } else {
        &f.job
    };
    let path = route
        .replace("{moduleID}", &f.module)
        .replace("{recordID}", &f.record)
        .replace("{pageID}", &f.page)
        .replace("{selfID}", "0")
        .replace("{chartID}", &f.chart)
        .replace("{workflowID}", &f.workflow)
        .replace("{jobID}", job);
    let path = if route.starts_with("/secret/") {
        path.replace("{name}", &f.secret)
    } else {
        path.replace("{name}", &f.role)
    };
    // A module with records is deleted only with force.
    let path = if (method, route) == ("DELETE", "/module/{moduleID}") {
        format!("{path}?force=true")
    } else {
        path
    };
    let body = match (method, route) {
        ("POST", "/module/") => {
            json!({"name": format!("New{n}"), "fields": [{"name": "a", "kind": "String"}]})
        }
        ("POST", "/module/{moduleID}") => json!({"name": "Renamed"}),
        ("POST", "/module/{moduleID}/record" | "/module/{moduleID}/record/{recordID}") => {
            json!({"fields": {"amount": 9}})
        }
        ("POST", "/page/") => json!({"title": "New page", "blocks": []}),
        ("POST", "/page/{pageID}") => json!({"title": "Renamed"}),
        ("POST", "/page/{selfID}/reorder") => json!({"pageIDs": [f.page]}),
        ("POST", "/chart/") => json!({"name": "New", "config": {}}),
        ("POST", "/chart/{chartID}") => json!({"name": "Renamed"}),
        ("POST", "/workflow/") => {
            json!({"name": "new", "tasks": [{"name": "a", "kind": "log", "params": {"message": "x"}}]})
        }
        ("POST", "/workflow/{workflowID}") => json!({"name": "renamed"}),
        ("POST", "/job/") => json!({"workflowID": f.workflow}),
        ("POST", "/job/bulk") => json!({"jobs": [{"workflowID": f.workflow}]}),
        ("POST", "/job/{jobID}") => json!({"log": "a line"}),
        ("POST", "/job/{jobID}/signal") => json!({"event": "go"}),
        ("POST", "/job/{jobID}/rerun") => json!({}),
        ("PUT", "/role/{name}") => {
            json!({"rules": [{"resource": "chart:*", "operations": ["read"], "allow": true}]})
        }
        ("PUT", "/secret/{name}") => json!({"value": "another-secret-value"}),
        ("POST", "/job/cancel" | "/job/rerun") => json!({"filter": "jobID = 0"}),
        // Each delivery differs, so none is taken for a replay.
        ("POST", "/hook/{workflowID}") => json!({"delivery": n}),
        ("POST" | "PUT", _) => json!({}),
        _ => return (path, None),
    };
    (path, Some(body))
}

#[tokio::test]
async fn every_documented_route_answers_each_built_in_role_as_the_matrix_says() {
    let app = spawn_app().await;
    let (status, doc) = app.get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let written: BTreeSet<(String, String)> = MATRIX
        .iter()
        .map(|(method, path, _, _)| (method.to_string(), path.to_string()))
        .collect();
    let missing: Vec<_> = documented.difference(&written).collect();
    assert!(
        missing.is_empty(),
        "routes without a matrix row: {missing:?}"
    );
    let stale: Vec<_> = written.difference(&documented).collect();
    assert!(
        stale.is_empty(),
        "matrix rows of no documented route: {stale:?}"
    );

    let shared = fixtures(&app, 0).await;
    let mut failures = Vec::new();
    let mut tag = 1;
    for (role, letter) in ROLES {
        let token = app.token_for(Id(40), &[role]);
        for (method, route, allowed, fresh) in MATRIX {
            let own;
            let f = if *fresh {
                tag += 1;
                own = fixtures(&app, tag).await;
                &own
            } else {
                &shared
            };
            tag += 1;
            let (path, body) = request(method, route, f, tag);
            let method_of = Method::from_bytes(method.as_bytes()).unwrap();
            let (status, answer) = send(&app, &token, method_of, &path, body).await;
            let expected_ok = allowed.contains(letter);
            let right = if expected_ok {
                status.is_success()
            } else {
                status == StatusCode::FORBIDDEN
                    && message(&answer).starts_with("forbidden: this needs permission")
            };
            if !right {
                failures.push(format!("{role} {method} {path}: {status} {answer}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_token_without_roles_may_do_nothing_and_lists_show_only_what_may_be_read() {
    let app = spawn_app().await;
    let f = fixtures(&app, 0).await;
    let nobody = app.token_for(Id(41), &[]);
    for path in ["/module/", "/workflow/", "/job/", "/page/", "/role/"] {
        let (status, body) = app.call_as(&nobody, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(message(&body).contains("grants no roles"), "{body}");
    }
    // HEAD is a read; a method no route has is a 405, not a 403.
    let viewer = app.token_for(Id(44), &["viewer"]);
    let (status, _) = app.call_as(&viewer, Method::HEAD, "/module/", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call_as(&viewer, Method::PATCH, "/module/", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    // The operator reads workflows and jobs but no module.
    let operator = app.token_for(Id(42), &["operator"]);
    let (status, body) = app.call_as(&operator, Method::GET, "/module/", None).await;
    assert_eq!(
        (status, body["response"].clone()),
        (StatusCode::OK, json!([]))
    );
    let (_, body) = app.call_as(&operator, Method::GET, "/job/", None).await;
    assert_eq!(body["response"]["meta"]["count"], json!(2), "{body}");
    // A custom role reading one workflow sees only its jobs.
    let other = created(
        &app,
        "/workflow/",
        json!({"name": "other", "tasks": [{"name": "a", "kind": "log", "params": {"message": "x"}}]}),
        "workflowID",
    )
    .await;
    created(&app, "/job/", json!({"workflowID": other}), "jobID").await;
    put_role(
        &app,
        "one-flow",
        json!([{"resource": format!("workflow:{}", f.workflow), "operations": ["read"], "allow": true}]),
    )
    .await;
    let one = app.token_for(Id(43), &["one-flow"]);
    let (_, body) = app.call_as(&one, Method::GET, "/workflow/", None).await;
    let listed: Vec<&Value> = body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| &w["workflowID"])
        .collect();
    assert_eq!(listed, [&json!(f.workflow)]);
    let (_, body) = app.call_as(&one, Method::GET, "/job/", None).await;
    assert_eq!(body["response"]["meta"]["count"], json!(2), "{body}");
    assert!(body["response"]["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|job| job["workflowID"] == json!(f.workflow)));
}

async fn put_role(app: &TestApp, name: &str, rules: Value) {
    let (status, body) = app
        .call(
            Method::PUT,
            &format!("/role/{name}"),
            Some(json!({"rules": rules})),
        )
        .await;
    assert!(status.is_success(), "{body}");
}

#[tokio::test]
async fn a_custom_role_with_rules_on_one_module_reaches_that_module_only() {
    let app = spawn_app().await;
    let open = app
        .create_module("Open", json!([{"name": "a", "kind": "String"}]))
        .await;
    let closed = app
        .create_module("Closed", json!([{"name": "a", "kind": "String"}]))
        .await;
    put_role(
        &app,
        "open-writer",
        json!([
            {"resource": format!("module:{open}"), "operations": ["read"], "allow": true},
            {"resource": format!("record:{open}"), "operations": ["read", "write"], "allow": true},
        ]),
    )
    .await;
    let token = app.token_for(Id(50), &["open-writer"]);
    let (status, body) = app
        .call_as(
            &token,
            Method::POST,
            &format!("/module/{open}/record"),
            Some(json!({"fields": {"a": "x"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let record = body["response"]["recordID"].as_str().unwrap().to_owned();
    let (status, body) = app
        .call_as(
            &token,
            Method::POST,
            &format!("/module/{closed}/record"),
            Some(json!({"fields": {"a": "x"}})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        format!("forbidden: this needs permission \"write\" on \"record:{closed}\"")
    );
    // Reading the other module's records or report is a 403 too.
    for path in [
        format!("/module/{closed}/record"),
        format!("/module/{closed}/report?metrics=COUNT(*)"),
    ] {
        let (status, _) = app.call_as(&token, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
    }
    // The module list shows the one module it may read.
    let (_, body) = app.call_as(&token, Method::GET, "/module/", None).await;
    let names: Vec<&Value> = body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["name"])
        .collect();
    assert_eq!(names, [&json!("Open")]);
    // No delete was granted, nor a schema edit.
    let (status, body) = app
        .call_as(
            &token,
            Method::DELETE,
            &format!("/module/{open}/record/{record}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(message(&body).contains("\"delete\" on \"record:"), "{body}");
    let (status, _) = app
        .call_as(
            &token,
            Method::POST,
            &format!("/module/{open}"),
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn deny_wins_over_an_allow_in_the_same_or_another_role() {
    let app = spawn_app().await;
    let secret = app
        .create_module("Salaries", json!([{"name": "a", "kind": "String"}]))
        .await;
    let other = app
        .create_module("Deals", json!([{"name": "a", "kind": "String"}]))
        .await;
    put_role(
        &app,
        "no-salaries",
        json!([{"resource": format!("record:{secret}"), "operations": ["read", "write", "delete"], "allow": false}]),
    )
    .await;
    // Deny in another role than the allow (editor), and with admin's `*`.
    for roles in [&["editor", "no-salaries"][..], &["admin", "no-salaries"]] {
        let token = app.token_for(Id(60), roles);
        let (status, body) = app
            .call_as(
                &token,
                Method::GET,
                &format!("/module/{secret}/record"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{roles:?}");
        assert_eq!(
            message(&body),
            format!("forbidden: this needs permission \"read\" on \"record:{secret}\"")
        );
        let (status, _) = app
            .call_as(
                &token,
                Method::GET,
                &format!("/module/{other}/record"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{roles:?}");
    }
    // Changing the role takes effect at once on this replica.
    put_role(
        &app,
        "no-salaries",
        json!([{"resource": "page:*", "operations": ["read"], "allow": false}]),
    )
    .await;
    let token = app.token_for(Id(60), &["editor", "no-salaries"]);
    let (status, _) = app
        .call_as(
            &token,
            Method::GET,
            &format!("/module/{secret}/record"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.call_as(&token, Method::GET, "/page/", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn built_in_roles_cannot_be_redefined_and_bad_rules_are_400s() {
    let app = spawn_app().await;
    for name in ["admin", "viewer"] {
        let (status, body) = app
            .call(
                Method::PUT,
                &format!("/role/{name}"),
                Some(json!({"rules": []})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        let (status, _) = app.delete(&format!("/role/{name}")).await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
    for (rules, expected) in [
        (
            json!([{"resource": "page:3", "operations": ["read"], "allow": true}]),
            "rules[0].resource: \"page:3\": pages are governed as a whole, write \"page:*\"",
        ),
        (
            json!([{"resource": "*", "operations": [], "allow": true}]),
            "rules[0].operations: must name at least one of read, write, delete, run",
        ),
    ] {
        let (status, body) = app
            .call(Method::PUT, "/role/x", Some(json!({"rules": rules})))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(message(&body), expected);
    }
    let (status, body) = app
        .call(
            Method::PUT,
            "/role/x",
            Some(
                json!({"rules": [{"resource": "module:*", "operations": ["fly"], "allow": true}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("rules[0].operations"), "{body}");
    // Created, then replaced; listed after the built-in ones.
    put_role(&app, "x", json!([])).await;
    let (status, body) = app
        .call(Method::PUT, "/role/x", Some(json!({"rules": []})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = app.get("/role/").await;
    let names: Vec<&str> = body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|role| role["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["admin", "designer", "editor", "operator", "viewer", "x"]
    );
    let (status, _) = app.delete("/role/x").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.get("/role/x").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The audit entries, oldest first.
async fn audit(app: &TestApp, filter: &str) -> Vec<Value> {
    let (status, body) = app
        .get(&format!(
            "/audit?perPage=100&sort=id&filter={}",
            urlencode(filter)
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["response"]["entries"].as_array().unwrap().clone()
}

fn urlencode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[tokio::test]
async fn every_mutating_request_has_one_audit_entry_and_reads_have_none() {
    let app = spawn_app().await;
    let editor = app.token_for(Id(70), &["editor"]);
    // Admin's writes: a create, a failing create (400), an edit.
    let module = app
        .create_module("Deals", json!([{"name": "a", "kind": "String"}]))
        .await;
    let (status, _) = app
        .post("/module/", json!({"name": "", "fields": []}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = app
        .post(&format!("/module/{module}"), json!({"name": "Renamed"}))
        .await;
    assert_eq!(status, StatusCode::OK);
    // The editor: a record create, a refused module delete (403), a missing
    // record's update (404), and reads.
    let (status, _) = app
        .call_as(
            &editor,
            Method::POST,
            &format!("/module/{module}/record"),
            Some(json!({"fields": {"a": "x"}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = app
        .call_as(&editor, Method::DELETE, &format!("/module/{module}"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = app
        .call_as(
            &editor,
            Method::POST,
            &format!("/module/{module}/record/999"),
            Some(json!({"fields": {"a": "y"}})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for path in [
        "/module/".to_owned(),
        format!("/module/{module}/record"),
        format!("/module/{module}"),
    ] {
        let (status, _) = app.call_as(&editor, Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK);
    }

    let entries = audit(&app, "").await;
    let seen: Vec<(String, String, String, String, i64)> = entries
        .iter()
        .map(|entry| {
            (
                entry["userID"].as_str().unwrap().to_owned(),
                entry["method"].as_str().unwrap().to_owned(),
                entry["path"].as_str().unwrap().to_owned(),
                entry["resource"].as_str().unwrap().to_owned(),
                entry["status"].as_i64().unwrap(),
            )
        })
        .collect();
    let row = |user: &str, method: &str, path: String, resource: String, status: i64| {
        (user.to_owned(), method.to_owned(), path, resource, status)
    };
    assert_eq!(
        seen,
        [
            row("7", "POST", "/module".into(), "module:*".into(), 201),
            row("7", "POST", "/module".into(), "module:*".into(), 400),
            row(
                "7",
                "POST",
                format!("/module/{module}"),
                format!("module:{module}"),
                200
            ),
            row(
                "70",
                "POST",
                format!("/module/{module}/record"),
                format!("record:{module}"),
                201
            ),
            row(
                "70",
                "DELETE",
                format!("/module/{module}"),
                format!("module:{module}"),
                403
            ),
            row(
                "70",
                "POST",
                format!("/module/{module}/record/999"),
                format!("record:{module}"),
                404
            ),
        ]
    );
    // The query language over the entries' fields.
    let failed = audit(
        &app,
        "status >= 400 AND userID = 70 AND at > NOW() - INTERVAL 1 DAY",
    )
    .await;
    assert_eq!(failed.len(), 2);
    let creates = audit(&app, "method = 'POST' AND resource LIKE 'record:%'").await;
    assert_eq!(creates.len(), 2);
    let (status, body) = app.get("/audit?filter=colour%20%3D%201").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).starts_with("filter: unknown field \"colour\""),
        "{body}"
    );
    // Only admins read it.
    let (status, body) = app.call_as(&editor, Method::GET, "/audit", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        message(&body),
        "forbidden: this needs permission \"read\" on \"audit\""
    );
}

#[tokio::test]
async fn a_change_and_its_audit_entry_commit_together() {
    let app = spawn_app().await;
    let module = app
        .create_module("Deals", json!([{"name": "a", "kind": "String"}]))
        .await;
    // Every record in the table has the entry of the request that made it,
    // written by the same transaction (the rows' xmin is that transaction).
    for _ in 0..5 {
        app.create_record(&module, json!({"a": "x"})).await;
    }
    let mut db = app.db().await;
    let unpaired: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM records r
         WHERE NOT EXISTS (SELECT 1 FROM audit_log a
                           WHERE a.xmin::text = r.xmin::text
                             AND a.resource = 'record:' || r.module_id)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(unpaired, 0);
    let module_entries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log a JOIN modules m ON a.xmin::text = m.xmin::text",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(module_entries, 1);
    // A job without a key is one statement, entry included; with a key it
    // is a transaction that writes the entry at its commit. Either way the
    // job and its request's entry share a transaction (no worker runs here,
    // so the rows are as their create left them).
    let (status, body) = app
        .post(
            "/workflow/",
            json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "m"}}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let workflow = body["response"]["workflowID"].as_str().unwrap().to_owned();
    for key in [None, None, Some("k1"), Some("k2")] {
        let mut job = json!({"workflowID": workflow});
        if let Some(key) = key {
            job["key"] = json!(key);
        }
        let (status, body) = app.post("/job/", job).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (jobs, unpaired): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (
                    SELECT 1 FROM audit_log a
                    WHERE a.xmin::text = j.xmin::text AND a.method = 'POST' AND a.status = 201))
         FROM jobs j",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((jobs, unpaired), (4, 0));
    let entries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM audit_log WHERE method = 'POST' AND path LIKE '/job%'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(entries, 4, "one entry per create, not two");
}
