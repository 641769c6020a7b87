//! `/module/{moduleID}/record`: CRUD, each validation rule, paging, soft delete.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

async fn deals(app: &TestApp) -> String {
    let companies = app
        .create_module("Companies", json!([{"name": "name", "kind": "String"}]))
        .await;
    app.create_module(
        "Deals",
        json!([
            {"name": "title", "kind": "String", "isRequired": true, "maxLength": 20},
            {"name": "amount", "kind": "Number", "options": {"precision": 2}},
            {"name": "won", "kind": "Bool"},
            {"name": "closeAt", "kind": "DateTime"},
            {"name": "day", "kind": "DateTime", "options": {"onlyDate": true}},
            {"name": "contact", "kind": "Email"},
            {"name": "site", "kind": "Url"},
            {"name": "stage", "kind": "Select", "options": {"options": ["new", "won", "lost"]}, "defaultValue": "new"},
            {"name": "company", "kind": "Record", "options": {"moduleID": companies}},
            {"name": "owner", "kind": "User"},
            {"name": "tags", "kind": "String", "isMulti": true}
        ]),
    )
    .await
}

async fn company_module(app: &TestApp) -> String {
    let (_, body) = app.get("/module/?query=Companies").await;
    body["response"][0]["moduleID"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_record_with_every_kind_is_stored_normalised_and_in_field_order() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let company = app
        .create_record(&company_module(&app).await, json!({"name": "ACME"}))
        .await;
    let (status, body) = app
        .post(
            &format!("/module/{module}/record"),
            json!({"fields": [
                {"name": "tags", "value": ["a", "b"]},
                {"name": "title", "value": "Big deal"},
                {"name": "amount", "value": "1200.50"},
                {"name": "won", "value": true},
                {"name": "closeAt", "value": "2019-05-01T12:00:00+02:00"},
                {"name": "day", "value": "2019-05-01"},
                {"name": "contact", "value": "ann@example.com"},
                {"name": "site", "value": "https://example.com"},
                {"name": "company", "value": company},
                {"name": "owner", "value": 12}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let record = &body["response"];
    assert_eq!(record["moduleID"], json!(module));
    assert_eq!(record["userID"], json!(app.user.to_string()));
    let names: Vec<&str> = record["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "title", "amount", "won", "closeAt", "day", "contact", "site", "stage", "company",
            "owner", "tags"
        ]
    );
    let value = |name: &str| -> Value {
        record["fields"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["value"]
            .clone()
    };
    assert_eq!(value("amount"), json!(1200.5));
    assert_eq!(value("closeAt"), json!("2019-05-01T10:00:00Z"));
    assert_eq!(value("stage"), json!("new"), "default applied");
    assert_eq!(value("company"), json!(company));
    assert_eq!(value("owner"), json!("12"));

    let id = record["recordID"].as_str().unwrap();
    let (status, body) = app.get(&format!("/module/{module}/record/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["fields"], record["fields"]);
}

#[tokio::test]
async fn each_record_validation_rule_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let cases = [
        (json!({"amount": 1}), "field \"title\": is required"),
        (
            json!({"title": "x", "nope": 1}),
            "field \"nope\": module \"Deals\" has no such field",
        ),
        (
            json!({"title": "x".repeat(21)}),
            "field \"title\": is 21 characters long; the limit is 20",
        ),
        (
            json!({"title": 5}),
            "field \"title\": expected a string, got a number",
        ),
        (
            json!({"title": "x", "amount": "ten"}),
            "field \"amount\": \"ten\" is not a number",
        ),
        (
            json!({"title": "x", "amount": 1.005}),
            "field \"amount\": has more than 2 decimal places",
        ),
        (
            json!({"title": "x", "won": "maybe"}),
            "field \"won\": expected true or false, got a string",
        ),
        (
            json!({"title": "x", "closeAt": "tomorrow"}),
            "field \"closeAt\": \"tomorrow\" is not an RFC 3339 date-time",
        ),
        (
            json!({"title": "x", "contact": "not-an-email"}),
            "field \"contact\": not a valid email address",
        ),
        (
            json!({"title": "x", "site": "ftp://x"}),
            "field \"site\": not a valid http(s) URL",
        ),
        (
            json!({"title": "x", "stage": "maybe"}),
            "field \"stage\": \"maybe\" is not one of the options (new, won, lost)",
        ),
        (
            json!({"title": "x", "company": "424242"}),
            "field \"company\": record 424242 does not exist in module",
        ),
        (
            json!({"title": "x", "company": "abc"}),
            "field \"company\": \"abc\" is not an ID",
        ),
        (
            json!({"title": "x", "tags": "one"}),
            "field \"tags\": holds several values; send a list",
        ),
        (
            json!({"title": "x", "won": [true]}),
            "field \"won\": holds one value, not a list",
        ),
    ];
    for (fields, expected) in cases {
        let (status, body) = app
            .post(
                &format!("/module/{module}/record"),
                json!({"fields": fields}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{fields}");
        assert!(message(&body).starts_with(expected), "{fields}: {body}");
    }
    let (status, body) = app
        .post(&format!("/module/{module}/record"), json!({"values": {}}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("unknown field `values`"), "{body}");
    let (_, body) = app.get(&format!("/module/{module}/record")).await;
    assert_eq!(body["response"]["meta"]["count"], 0, "nothing was written");
}

#[tokio::test]
async fn a_reference_to_a_deleted_record_is_rejected() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let companies = company_module(&app).await;
    let company = app.create_record(&companies, json!({"name": "ACME"})).await;
    app.delete(&format!("/module/{companies}/record/{company}"))
        .await;
    let (status, body) = app
        .post(
            &format!("/module/{module}/record"),
            json!({"fields": {"title": "x", "company": company}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains(&format!("record {company} does not exist")));
}

#[tokio::test]
async fn an_update_replaces_given_fields_clears_nulls_and_keeps_the_rest() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let id = app
        .create_record(&module, json!({"title": "x", "amount": 5, "won": false}))
        .await;
    let (status, body) = app
        .post(
            &format!("/module/{module}/record/{id}"),
            json!({"fields": {"amount": null, "won": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["response"]["fields"],
        json!([{"name": "title", "value": "x"}, {"name": "won", "value": true}, {"name": "stage", "value": "new"}])
    );
    assert!(body["response"]["updatedAt"].is_string());
    let (status, body) = app
        .post(
            &format!("/module/{module}/record/{id}"),
            json!({"fields": {"title": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "field \"title\": is required");
    let (status, _) = app
        .post(
            &format!("/module/{module}/record/999999"),
            json!({"fields": {"title": "y"}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn deleted_records_vanish_and_cannot_be_deleted_twice() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let id = app.create_record(&module, json!({"title": "x"})).await;
    let (status, body) = app.delete(&format!("/module/{module}/record/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"success": {"message": "OK"}}));
    let (status, body) = app.get(&format!("/module/{module}/record/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        message(&body),
        format!("record {id} does not exist in module {module}")
    );
    assert_eq!(
        app.delete(&format!("/module/{module}/record/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, body) = app.get(&format!("/module/{module}/record")).await;
    assert_eq!(body["response"]["records"], json!([]));
}

#[tokio::test]
async fn a_record_is_only_found_under_its_own_module() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let other = company_module(&app).await;
    let id = app.create_record(&module, json!({"title": "x"})).await;
    assert_eq!(
        app.get(&format!("/module/{other}/record/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/module/{module}/record/abc")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(app.get("/module/777/record").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn records_are_paged_newest_first_with_a_meta_block() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        ids.push(
            app.create_record(&module, json!({"title": format!("deal {n}")}))
                .await,
        );
    }
    let (status, body) = app
        .get(&format!("/module/{module}/record?page=1&perPage=2"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["response"]["meta"],
        json!({"page": 1, "perPage": 2, "count": 5})
    );
    let got: Vec<&str> = body["response"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recordID"].as_str().unwrap())
        .collect();
    assert_eq!(got, [ids[2].as_str(), ids[1].as_str()]);

    let (_, body) = app
        .get(&format!("/module/{module}/record?perPage=1000"))
        .await;
    assert_eq!(
        body["response"]["meta"]["perPage"], 100,
        "perPage is capped"
    );
    for bad in ["page=-1", "perPage=0", "page=abc"] {
        let (status, _) = app.get(&format!("/module/{module}/record?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn fields_given_twice_in_the_list_form_are_rejected() {
    let app = spawn_app().await;
    let module = deals(&app).await;
    let (status, body) = app
        .post(
            &format!("/module/{module}/record"),
            json!({"fields": [{"name": "title", "value": "a"}, {"name": "title", "value": "b"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "fields[1]: field \"title\" is given twice");
}
