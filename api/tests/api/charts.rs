//! `/chart`: CRUD and validation.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{message, spawn_app};

#[tokio::test]
async fn a_chart_is_created_read_listed_edited_and_deleted() {
    let app = spawn_app().await;
    let module = app
        .create_module("Deals", json!([{"name": "a", "kind": "String"}]))
        .await;
    let config = json!({"type": "bar", "reports": [{"moduleID": module, "metrics": "COUNT(*)", "dimensions": "", "filter": ""}]});
    let (status, body) = app
        .post("/chart/", json!({"name": "Pipeline", "config": config}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["response"]["chartID"].as_str().unwrap().to_owned();
    assert_eq!(body["response"]["config"], config);

    let (status, body) = app.get(&format!("/chart/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["name"], "Pipeline");
    let (_, body) = app.get("/chart/").await;
    assert_eq!(body["response"].as_array().unwrap().len(), 1);

    let (status, body) = app
        .post(
            &format!("/chart/{id}"),
            json!({"name": "Funnel", "config": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["name"], "Funnel");
    assert!(body["response"]["updatedAt"].is_string());

    let (status, body) = app.delete(&format!("/chart/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"success": {"message": "OK"}}));
    assert_eq!(
        app.get(&format!("/chart/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.delete(&format!("/chart/{id}")).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn chart_validation_rules_are_400s_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (json!({"name": "", "config": {}}), "name: must not be empty"),
        (json!({"name": "x"}), "request body: missing field `config`"),
        (
            json!({"name": "x", "config": []}),
            "config: must be a JSON object",
        ),
        (
            json!({"name": "x", "config": {"reports": {}}}),
            "config.reports: must be a list",
        ),
        (
            json!({"name": "x", "config": {"reports": [{"metrics": "COUNT(*)"}]}}),
            "config.reports[0]: missing field `moduleID`",
        ),
        (
            json!({"name": "x", "config": {"reports": [{"moduleID": "999"}]}}),
            "config.reports[0]: module 999 does not exist",
        ),
    ];
    for (input, expected) in cases {
        let (status, body) = app.post("/chart/", input.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{input}");
        assert!(message(&body).starts_with(expected), "{input}: {body}");
    }
    assert_eq!(app.get("/chart/abc").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(
        app.post("/chart/77", json!({"name": "x", "config": {}}))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

/// A small well-formedness check of XML: tags balance, attributes are
/// quoted, text and attributes hold no raw `<` or stray `&`. Returns the
/// text content, joined by spaces.
fn well_formed(xml: &str) -> Result<String, String> {
    let entity = regex::Regex::new(r"^&(amp|lt|gt|quot|apos|#[0-9]+|#x[0-9a-fA-F]+);").unwrap();
    let check_text = |text: &str| -> Result<(), String> {
        for (at, _) in text.match_indices('&') {
            if !entity.is_match(&text[at..]) {
                return Err(format!("stray & in {text:?}"));
            }
        }
        if text.contains('>') && text.contains('<') {
            return Err(format!("raw markup in {text:?}"));
        }
        Ok(())
    };
    let attribute = regex::Regex::new(r#"^\s+[A-Za-z_:][-A-Za-z0-9_:.]*="[^"<]*""#).unwrap();
    let mut open: Vec<String> = Vec::new();
    let mut texts = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        check_text(text)?;
        if !text.trim().is_empty() {
            texts.push(text.to_owned());
        }
        let end = rest[start..].find('>').ok_or("unclosed tag")? + start;
        let tag = &rest[start + 1..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            if open.pop().as_deref() != Some(name) {
                return Err(format!("</{name}> closes nothing open"));
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name_end = tag.find(char::is_whitespace).unwrap_or(tag.len());
        let (name, mut attributes) = tag.split_at(name_end);
        while !attributes.trim().is_empty() {
            let found = attribute
                .find(attributes)
                .ok_or_else(|| format!("bad attributes in <{name}{attributes}>"))?;
            check_text(found.as_str())?;
            attributes = &attributes[found.end()..];
        }
        if !self_closing {
            open.push(name.to_owned());
        }
    }
    if !open.is_empty() || !rest.trim().is_empty() {
        return Err(format!("unclosed: {open:?}"));
    }
    Ok(texts.join(" "))
}

#[tokio::test]
async fn a_chart_renders_as_readable_svg_and_an_empty_one_says_no_data() {
    let app = spawn_app().await;
    let module = app
        .create_module(
            "Deals",
            json!([{"name": "stage", "kind": "String"}, {"name": "amount", "kind": "Number"}]),
        )
        .await;
    for (stage, amount) in [
        ("won", 1200),
        ("lost <&>", 300),
        ("won", 800),
        ("open", 450),
    ] {
        app.create_record(&module, json!({"stage": stage, "amount": amount}))
            .await;
    }
    let mut examples = Vec::new();
    for kind in ["bar", "line", "pie"] {
        let config = json!({"type": kind, "reports": [{"moduleID": module,
            "metrics": "SUM(amount) AS total", "dimensions": "stage", "filter": ""}]});
        let (status, body) = app
            .post(
                "/chart/",
                json!({"name": format!("Deals by stage ({kind})"), "config": config}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["response"]["chartID"].as_str().unwrap().to_owned();
        let response = app
            .client
            .get(format!("{}/chart/{id}/render.svg", app.base))
            .bearer_auth(&app.token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "image/svg+xml");
        let svg = response.text().await.unwrap();
        let text = well_formed(&svg).unwrap_or_else(|err| panic!("{kind}: {err}\n{svg}"));
        assert!(text.contains(&format!("Deals by stage ({kind})")), "{text}");
        assert!(text.contains("won") && text.contains("open"), "{text}");
        assert!(text.contains("lost &lt;&amp;&gt;"), "{text}");
        if kind == "pie" {
            assert!(text.contains("won — 2000 (73%)"), "{text}");
        } else {
            // The legend names the metric; the axis has tick labels.
            assert!(text.contains("total") && text.contains("2000"), "{text}");
        }
        examples.push(svg);
    }
    // The bar chart is the documented example (docs/charts/example.svg).
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/charts/example.svg");
    if std::env::var_os("CRUST_WRITE_CHART_EXAMPLE").is_some() {
        std::fs::create_dir_all(example.parent().unwrap()).unwrap();
        std::fs::write(&example, &examples[0]).unwrap();
    }

    let config = json!({"type": "line", "reports": [{"moduleID": module,
        "metrics": "COUNT(*)", "dimensions": "stage", "filter": "amount > 100000"}]});
    let (_, body) = app
        .post("/chart/", json!({"name": "Nothing", "config": config}))
        .await;
    let id = body["response"]["chartID"].as_str().unwrap().to_owned();
    let response = app
        .client
        .get(format!("{}/chart/{id}/render.svg", app.base))
        .bearer_auth(&app.token)
        .send()
        .await
        .unwrap();
    let svg = response.text().await.unwrap();
    assert!(well_formed(&svg).unwrap().contains("no data"), "{svg}");

    let (_, body) = app
        .post(
            "/chart/",
            json!({"name": "Odd", "config": {"type": "radar"}}),
        )
        .await;
    let id = body["response"]["chartID"].as_str().unwrap().to_owned();
    let (status, body) = app.get(&format!("/chart/{id}/render.svg")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(message(&body), "config.type: must be bar, line or pie");
}
