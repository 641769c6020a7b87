//! `/module`: CRUD, validation, conflicts and field-kind changes.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{message, spawn_app};

#[tokio::test]
async fn a_module_is_created_read_listed_edited_and_deleted() {
    let app = spawn_app().await;
    let (status, body) = app
        .post(
            "/module/",
            json!({"name": "Leads", "meta": {"icon": "user"}, "fields": [
                {"name": "email", "kind": "Email", "isRequired": true},
                {"name": "score", "kind": "Number"}
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let module = &body["response"];
    let id = module["moduleID"].as_str().unwrap();
    assert!(id.parse::<u64>().is_ok(), "IDs are decimal strings");
    assert_eq!(module["meta"], json!({"icon": "user"}));
    assert_eq!(module["fields"][0]["label"], "email");
    assert!(module["createdAt"].as_str().unwrap().ends_with('Z'));

    let (status, body) = app.get(&format!("/module/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["name"], "Leads");

    app.create_module("Deals", json!([{"name": "title", "kind": "String"}]))
        .await;
    let (_, body) = app.get("/module/?query=LEA").await;
    let names: Vec<_> = body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("Leads")]);
    let (_, body) = app.get("/module/?query=%25").await;
    assert_eq!(
        body["response"],
        json!([]),
        "LIKE wildcards match literally"
    );

    let (status, body) = app
        .post(
            &format!("/module/{id}"),
            json!({"name": "Prospects", "fields": [{"name": "email", "kind": "Email"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["name"], "Prospects");
    assert!(body["response"]["updatedAt"].is_string());

    let (status, body) = app.delete(&format!("/module/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"success": {"message": "OK"}}));
    assert_eq!(
        app.get(&format!("/module/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn each_module_validation_rule_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            json!({"name": "", "fields": [{"name": "a", "kind": "String"}]}),
            "name: must not be empty",
        ),
        (
            json!({"name": "x".repeat(300), "fields": [{"name": "a", "kind": "String"}]}),
            "name: is 300 characters long; the limit is 255",
        ),
        (
            json!({"name": "M", "fields": []}),
            "fields: a module needs at least one field",
        ),
        (json!({"name": "M"}), "request body: missing field `fields`"),
        (
            json!({"name": "M", "fields": [{"name": "a b", "kind": "String"}]}),
            "fields[0].name: \"a b\" is not an identifier",
        ),
        (
            json!({"name": "M", "fields": [{"name": "a", "kind": "Nope"}]}),
            "fields[0].kind: unknown variant `Nope`",
        ),
        (
            json!({"name": "M", "fields": [{"name": "a", "kind": "String"}, {"name": "a", "kind": "Bool"}]}),
            "fields[1].name: \"a\" is used twice",
        ),
        (
            json!({"name": "M", "fields": [{"name": "s", "kind": "Select"}]}),
            "fields[0].options.options",
        ),
        (
            json!({"name": "M", "fields": [{"name": "r", "kind": "Record", "options": {"moduleID": "999"}}]}),
            "fields[0].options.moduleID: module 999 does not exist",
        ),
        (
            json!({"name": 5, "fields": []}),
            "name: invalid type: integer `5`, expected a string",
        ),
        (
            json!({"name": "M", "fields": [{"name": "a", "kind": "String", "bogus": 1}]}),
            "fields[0].bogus: unknown field `bogus`",
        ),
    ];
    for (input, expected) in cases {
        let (status, body) = app.post("/module/", input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert!(message(&body).starts_with(expected), "{input}: {body}");
    }
    assert_eq!(
        app.get("/module/").await.1["response"],
        json!([]),
        "nothing was written"
    );
}

#[tokio::test]
async fn module_ids_that_are_not_numbers_or_unknown_are_rejected() {
    let app = spawn_app().await;
    let (status, body) = app.get("/module/abc").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "moduleID: \"abc\" is not an ID (expected a decimal number)"
    );
    let (status, body) = app.get("/module/99999999999999999999").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).contains("out of range"));
    let (status, body) = app.get("/module/42").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), "module 42 does not exist");
    let fields = json!([{"name": "a", "kind": "String"}]);
    assert_eq!(
        app.post("/module/42", json!({"name": "x", "fields": fields}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.delete("/module/42").await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn two_live_modules_cannot_share_a_name() {
    let app = spawn_app().await;
    let fields = json!([{"name": "a", "kind": "String"}]);
    app.create_module("Leads", fields.clone()).await;
    let (status, body) = app
        .post("/module/", json!({"name": "leads", "fields": fields}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(message(&body), "a module named \"leads\" already exists");
}

#[tokio::test]
async fn deleting_a_module_with_records_needs_force_which_deletes_them_too() {
    let app = spawn_app().await;
    let module = app
        .create_module("Leads", json!([{"name": "a", "kind": "String"}]))
        .await;
    let record = app.create_record(&module, json!({"a": "x"})).await;
    let (status, body) = app.delete(&format!("/module/{module}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        message(&body),
        format!("module {module} has 1 record(s); delete with ?force=true to remove them too")
    );
    assert_eq!(
        app.get(&format!("/module/{module}/record/{record}"))
            .await
            .0,
        StatusCode::OK
    );

    let (status, _) = app.delete(&format!("/module/{module}?force=true")).await;
    assert_eq!(status, StatusCode::OK);
    let mut db = app.db().await;
    let deleted: bool =
        sqlx::query_scalar("SELECT deleted_at IS NOT NULL FROM records WHERE id = $1")
            .bind(record.parse::<i64>().unwrap())
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert!(deleted, "records are soft-deleted with their module");
    let (status, body) = app
        .post(
            &format!("/module/{module}/record"),
            json!({"fields": {"a": "y"}}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(message(&body), format!("module {module} does not exist"));
}

#[tokio::test]
async fn a_module_with_a_record_page_needs_force_to_delete() {
    let app = spawn_app().await;
    let module = app
        .create_module("Leads", json!([{"name": "a", "kind": "String"}]))
        .await;
    let (status, page) = app
        .post(
            "/page/",
            json!({"title": "Lead", "moduleID": module, "blocks": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app.delete(&format!("/module/{module}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(message(&body).contains("a record page"));
    assert_eq!(
        app.delete(&format!("/module/{module}?force=true")).await.0,
        StatusCode::OK
    );
    let page_id = page["response"]["pageID"].as_str().unwrap();
    assert_eq!(
        app.get(&format!("/page/{page_id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn changing_a_field_kind_converts_values_that_fit() {
    let app = spawn_app().await;
    let module = app
        .create_module("Deals", json!([{"name": "amount", "kind": "String"}]))
        .await;
    let record = app.create_record(&module, json!({"amount": "125"})).await;
    let (status, body) = app
        .post(
            &format!("/module/{module}"),
            json!({"name": "Deals", "fields": [{"name": "amount", "kind": "Number"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, body) = app.get(&format!("/module/{module}/record/{record}")).await;
    assert_eq!(
        body["response"]["fields"],
        json!([{"name": "amount", "value": 125}])
    );
}

#[tokio::test]
async fn changing_a_field_kind_is_refused_when_values_do_not_fit() {
    let app = spawn_app().await;
    let module = app
        .create_module("Deals", json!([{"name": "amount", "kind": "String"}]))
        .await;
    app.create_record(&module, json!({"amount": "12"})).await;
    let bad = app.create_record(&module, json!({"amount": "lots"})).await;
    let (status, body) = app
        .post(
            &format!("/module/{module}"),
            json!({"name": "Deals", "fields": [{"name": "amount", "kind": "Number"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        message(&body).contains(&format!("record {bad} (amount: \"lots\" is not a number)")),
        "{body}"
    );
    let (_, body) = app.get(&format!("/module/{module}")).await;
    assert_eq!(
        body["response"]["fields"][0]["kind"], "String",
        "the edit was not applied"
    );
}

#[tokio::test]
async fn removing_a_field_drops_its_values() {
    let app = spawn_app().await;
    let fields = json!([{"name": "a", "kind": "String"}, {"name": "b", "kind": "String"}]);
    let module = app.create_module("M", fields).await;
    let record = app
        .create_record(&module, json!({"a": "1", "b": "2"}))
        .await;
    app.post(
        &format!("/module/{module}"),
        json!({"name": "M", "fields": [{"name": "a", "kind": "String"}]}),
    )
    .await;
    // Re-adding the field must not resurrect the old value.
    app.post(
        &format!("/module/{module}"),
        json!({"name": "M", "fields": [
        {"name": "a", "kind": "String"}, {"name": "b", "kind": "Number"}]}),
    )
    .await;
    let (_, body) = app.get(&format!("/module/{module}/record/{record}")).await;
    assert_eq!(
        body["response"]["fields"],
        json!([{"name": "a", "value": "1"}])
    );
}

#[tokio::test]
async fn path_ids_are_digits_only_as_the_document_says() {
    let app = spawn_app().await;
    for path in [
        "/module/%2042",
        "/module/42%20",
        "/module/+42",
        "/module/%0942",
    ] {
        let (status, body) = app.get(path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert!(message(&body).contains("is not an ID"), "{path}: {body}");
    }
    let (status, _) = app.get("/module/0042").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "leading zeros are an ID");
}

#[tokio::test]
async fn nul_in_a_query_parameter_is_a_400_naming_it() {
    let app = spawn_app().await;
    let (status, body) = app.get("/module/?query=a%00b").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        "query parameter query: must not contain NUL (%00)"
    );
}
