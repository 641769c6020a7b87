//! The web UI's server side: embedded files with their security headers,
//! sign-in and sign-out through the `jwt` cookie, and the CSRF rule for
//! cookie-authenticated writes. (The pages themselves are driven in a real
//! browser by the worker's pipeline test `ui`.)

use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, SET_COOKIE};
use reqwest::{redirect, StatusCode};
use serde_json::json;

use crate::helpers::{message, read, spawn_app, TestApp};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(redirect::Policy::none())
        .build()
        .unwrap()
}

async fn sign_in(app: &TestApp) -> reqwest::Response {
    no_redirects()
        .post(format!("{}/ui/login", app.base))
        .form(&[("token", app.token.as_str())])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_ui_without_a_cookie_sends_the_browser_to_sign_in() {
    let app = spawn_app().await;
    let response = no_redirects()
        .get(format!("{}/ui/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/ui/login");

    let login = no_redirects()
        .get(format!("{}/ui/login", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let csp = login.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(login.headers()[CACHE_CONTROL], "no-store");
    let html = login.text().await.unwrap();
    assert!(html.contains(r#"<label for="token">"#), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
}

#[tokio::test]
async fn signing_in_sets_a_strict_http_only_cookie_that_opens_the_ui() {
    let app = spawn_app().await;
    let response = sign_in(&app).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/ui/");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with(&format!("jwt={};", app.token)),
        "{cookie}"
    );
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(cookie.contains(flag), "{flag} missing: {cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");

    let page = no_redirects()
        .get(format!("{}/ui/", app.base))
        .header("cookie", format!("jwt={}", app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(html.contains(r#"src="/ui/app.js""#), "{html}");

    // Behind an https proxy the cookie is Secure.
    let secure = no_redirects()
        .post(format!("{}/ui/login", app.base))
        .header("x-forwarded-proto", "https")
        .form(&[("token", app.token.as_str())])
        .send()
        .await
        .unwrap();
    let cookie = secure.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
}

#[tokio::test]
async fn a_bad_token_is_refused_on_the_sign_in_page_naming_the_field() {
    let app = spawn_app().await;
    let response = no_redirects()
        .post(format!("{}/ui/login", app.base))
        .form(&[("token", "not-a-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(SET_COOKIE).is_none());
    let html = response.text().await.unwrap();
    assert!(html.contains("field &quot;token&quot;"), "{html}");
    assert!(html.contains(r#"aria-invalid="true""#), "{html}");

    let empty = no_redirects()
        .post(format!("{}/ui/login", app.base))
        .form(&[("token", "")])
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), StatusCode::UNAUTHORIZED);
    let html = empty.text().await.unwrap();
    assert!(html.contains("enter a token"), "{html}");

    let not_a_form = no_redirects()
        .post(format!("{}/ui/login", app.base))
        .body("tok=1&x=2")
        .send()
        .await
        .unwrap();
    assert_eq!(not_a_form.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn signing_out_clears_the_cookie() {
    let app = spawn_app().await;
    let response = no_redirects()
        .post(format!("{}/ui/logout", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[LOCATION], "/ui/login");
    let cookie = response.headers()[SET_COOKIE].to_str().unwrap();
    assert!(cookie.starts_with("jwt=;"), "{cookie}");
    assert!(cookie.contains("Max-Age=0"), "{cookie}");
}

#[tokio::test]
async fn assets_are_embedded_and_revalidated_by_etag() {
    let app = spawn_app().await;
    let client = no_redirects();
    for (path, kind) in [
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let response = client
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        assert!(response.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
        assert_eq!(response.headers()[CACHE_CONTROL], "no-cache");
        assert!(response.headers().contains_key(CONTENT_SECURITY_POLICY));
        let etag = response.headers()["etag"].clone();
        let again = client
            .get(format!("{}{path}", app.base))
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    let (status, _) = read(
        client
            .get(format!("{}/ui/nothing.js", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_cookie_authenticated_write_must_send_json() {
    let app = spawn_app().await;
    let client = no_redirects();
    let cookie = format!("jwt={}", app.token);
    let workflow = json!({"name": "csrf", "tasks": [{"name": "a", "kind": "log", "params": {"message": "hi"}}]});

    // What a cross-site form could send: refused, and nothing is created.
    let form = client
        .post(format!("{}/workflow/", app.base))
        .header("cookie", &cookie)
        .header("content-type", "text/plain")
        .body(workflow.to_string())
        .send()
        .await
        .unwrap();
    let (status, body) = read(form).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{body}");
    assert!(
        message(&body).contains("Content-Type: application/json"),
        "{body}"
    );
    let (_, list) = app.get("/workflow/").await;
    assert_eq!(list["response"].as_array().unwrap().len(), 0, "{list}");

    // Reads with the cookie, and JSON writes with it, work.
    let read_back = client
        .get(format!("{}/workflow/", app.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(read_back.status(), StatusCode::OK);
    let json_write = client
        .post(format!("{}/workflow/", app.base))
        .header("cookie", &cookie)
        .json(&workflow)
        .send()
        .await
        .unwrap();
    assert_eq!(json_write.status(), StatusCode::CREATED);

    // A bearer token needs no such rule: no browser adds it by itself.
    let (status, _) = app.delete("/workflow/999999").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
