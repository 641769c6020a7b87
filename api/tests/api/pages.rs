//! `/page`: CRUD, the tree, reorder semantics, record pages and deletes.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{message, spawn_app, TestApp};

async fn page(app: &TestApp, title: &str, parent: &str) -> String {
    let (status, body) = app
        .post(
            "/page/",
            json!({"title": title, "selfID": parent, "blocks": [{"kind": "text"}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["response"]["pageID"].as_str().unwrap().to_owned()
}

fn titles(pages: &Value) -> Vec<String> {
    pages
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["title"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn pages_are_created_read_edited_and_listed_by_parent_in_weight_order() {
    let app = spawn_app().await;
    let home = page(&app, "Home", "0").await;
    let a = page(&app, "A", &home).await;
    page(&app, "B", &home).await;
    let (status, body) = app.get(&format!("/page/{a}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["selfID"], json!(home));
    assert_eq!(body["response"]["moduleID"], "0");
    assert_eq!(body["response"]["weight"], 1);
    assert_eq!(body["response"]["blocks"], json!([{"kind": "text"}]));

    let (_, body) = app.get(&format!("/page/?selfID={home}")).await;
    assert_eq!(titles(&body["response"]), ["A", "B"]);
    let (_, body) = app.get("/page/?selfID=0").await;
    assert_eq!(titles(&body["response"]), ["Home"]);
    let (_, body) = app.get("/page/").await;
    assert_eq!(body["response"].as_array().unwrap().len(), 3);

    let (status, body) = app
        .post(
            &format!("/page/{a}"),
            json!({"title": "A2", "selfID": home, "visible": true, "blocks": []}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["response"]["title"], "A2");
    assert_eq!(body["response"]["visible"], true);
    assert_eq!(body["response"]["weight"], 1, "editing keeps the weight");
}

#[tokio::test]
async fn the_tree_nests_every_page_under_its_parent() {
    let app = spawn_app().await;
    let root = page(&app, "Root", "0").await;
    let child = page(&app, "Child", &root).await;
    page(&app, "Grandchild", &child).await;
    page(&app, "Other", "0").await;
    let (status, body) = app.get("/page/tree").await;
    assert_eq!(status, StatusCode::OK);
    let tree = &body["response"];
    assert_eq!(titles(tree), ["Root", "Other"]);
    assert_eq!(titles(&tree[0]["children"]), ["Child"]);
    assert_eq!(titles(&tree[0]["children"][0]["children"]), ["Grandchild"]);
    assert_eq!(tree[1]["children"], json!([]));
}

#[tokio::test]
async fn reorder_sets_weights_and_keeps_unlisted_children_after_in_order() {
    let app = spawn_app().await;
    let parent = page(&app, "P", "0").await;
    let a = page(&app, "A", &parent).await;
    let b = page(&app, "B", &parent).await;
    let c = page(&app, "C", &parent).await;
    let d = page(&app, "D", &parent).await;
    let (status, body) = app
        .post(
            &format!("/page/{parent}/reorder"),
            json!({"pageIDs": [c, a]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"success": {"message": "OK"}}));
    let (_, body) = app.get(&format!("/page/?selfID={parent}")).await;
    assert_eq!(titles(&body["response"]), ["C", "A", "B", "D"]);
    let weights: Vec<i64> = body["response"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["weight"].as_i64().unwrap())
        .collect();
    assert_eq!(weights, [1, 2, 3, 4]);
    let _ = (b, d);
}

#[tokio::test]
async fn reorder_rejects_pages_of_another_parent_duplicates_and_unknown_parents() {
    let app = spawn_app().await;
    let parent = page(&app, "P", "0").await;
    let a = page(&app, "A", &parent).await;
    let stranger = page(&app, "S", "0").await;
    let (status, body) = app
        .post(
            &format!("/page/{parent}/reorder"),
            json!({"pageIDs": [a, stranger]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        format!("pageIDs[1]: page {stranger} is not a child of page {parent}")
    );
    let (status, body) = app
        .post(
            &format!("/page/{parent}/reorder"),
            json!({"pageIDs": [a, a]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message(&body),
        format!("pageIDs[1]: page {a} is listed twice")
    );
    let (status, _) = app.post("/page/9999/reorder", json!({"pageIDs": []})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .post(
            &format!("/page/{parent}/reorder"),
            json!({"pageIDs": ["x"]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&body).starts_with("pageIDs[0]:"), "{body}");
    // The top level can be reordered too.
    let (status, _) = app
        .post("/page/0/reorder", json!({"pageIDs": [stranger]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = app.get("/page/?selfID=0").await;
    assert_eq!(titles(&body["response"]), ["S", "P"]);
}

#[tokio::test]
async fn page_validation_rules_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let home = page(&app, "Home", "0").await;
    let child = page(&app, "Child", &home).await;
    let cases = [
        (
            json!({"title": "", "blocks": []}),
            "title: must not be empty".to_owned(),
        ),
        (
            json!({"title": "x"}),
            "request body: missing field `blocks`".to_owned(),
        ),
        (
            json!({"title": "x", "blocks": {}}),
            "blocks: must be a JSON array".to_owned(),
        ),
        (
            json!({"title": "x", "blocks": [], "selfID": "555"}),
            "selfID: page 555 does not exist".to_owned(),
        ),
        (
            json!({"title": "x", "blocks": [], "moduleID": "555"}),
            "moduleID: module 555 does not exist".to_owned(),
        ),
        (
            json!({"title": "x", "blocks": [], "selfID": "abc"}),
            "selfID: \"abc\" is not an ID".to_owned(),
        ),
    ];
    for (input, expected) in cases {
        let (status, body) = app.post("/page/", input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert!(message(&body).starts_with(&expected), "{input}: {body}");
    }
    // A page cannot move under its own descendant.
    let (status, body) = app
        .post(
            &format!("/page/{home}"),
            json!({"title": "Home", "selfID": child, "blocks": []}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&body).contains("cannot be its own ancestor"),
        "{body}"
    );
    assert_eq!(app.get("/page/404404").await.0, StatusCode::NOT_FOUND);
    assert_eq!(
        app.post("/page/404404", json!({"title": "x", "blocks": []}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn a_module_has_at_most_one_record_page() {
    let app = spawn_app().await;
    let module = app
        .create_module("Leads", json!([{"name": "a", "kind": "String"}]))
        .await;
    let (status, _) = app
        .post(
            "/page/",
            json!({"title": "Lead", "moduleID": module, "blocks": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = app
        .post(
            "/page/",
            json!({"title": "Lead 2", "moduleID": module, "blocks": []}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        message(&body),
        format!("module {module} already has a record page")
    );
}

#[tokio::test]
async fn deleting_a_page_with_children_needs_force_which_deletes_the_subtree() {
    let app = spawn_app().await;
    let parent = page(&app, "P", "0").await;
    let child = page(&app, "C", &parent).await;
    let (status, body) = app.delete(&format!("/page/{parent}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        message(&body),
        format!("page {parent} has 1 child page(s); delete with ?force=true to remove them too")
    );
    assert_eq!(
        app.delete(&format!("/page/{parent}?force=true")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.get(&format!("/page/{child}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/page/{parent}")).await.0,
        StatusCode::NOT_FOUND
    );
}
