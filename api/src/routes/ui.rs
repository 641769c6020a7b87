//! The operator web UI at `/ui/`: a few static files compiled into the
//! binary (plain HTML, CSS and JavaScript modules, no CDN, no build step) and
//! the sign-in/sign-out forms that set and clear the `jwt` cookie.
//!
//! These paths are outside the token middleware; the pages fetch their data
//! from the ordinary API with the cookie. Cookie-authenticated mutations are
//! protected against CSRF twice: the cookie is `SameSite=Strict`, and the
//! token middleware requires `Content-Type: application/json` on any
//! cookie-authenticated request that is not a read, else 415 (a cross-site form cannot
//! send that type without a CORS preflight).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::AppState;

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("../../ui/index.html"),
    content_type: "text/html; charset=utf-8",
};
const LOGIN: &str = include_str!("../../ui/login.html");
const APP_JS: Asset = Asset {
    body: include_str!("../../ui/app.js"),
    content_type: "text/javascript; charset=utf-8",
};
const APP_CSS: Asset = Asset {
    body: include_str!("../../ui/app.css"),
    content_type: "text/css; charset=utf-8",
};

/// Scripts and styles only from this origin (so no inline script can run),
/// data only from this API, and no framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The sign-in form's fields.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginForm {
    /// A token as `crust-api token` prints it.
    pub token: String,
}

/// The UI's single page (jobs, a job, workflows, workers, queues, charts);
/// without a valid `jwt` cookie, a redirect to the sign-in page.
#[utoipa::path(get, path = "/ui/", tag = "ui", security(()),
    responses((status = 200, description = "The UI", content_type = "text/html", body = String),
              (status = 303, description = "Not signed in: to /ui/login")))]
pub async fn ui_index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let signed_in = crate::auth::cookie_token(&headers)
        .is_some_and(|token| state.tokens.verify(&token, now()).is_ok());
    if !signed_in {
        return Redirect::to("/ui/login").into_response();
    }
    serve(&INDEX, &headers, "no-store")
}

/// The sign-in page.
#[utoipa::path(get, path = "/ui/login", tag = "ui", security(()),
    responses((status = 200, description = "The sign-in form", content_type = "text/html", body = String)))]
pub async fn login_page() -> Response {
    login_html(StatusCode::OK, "")
}

/// Signs in: checks the token and stores it in the `jwt` cookie (HttpOnly,
/// SameSite=Strict, Path=/, Secure over https, as long-lived as the token).
#[utoipa::path(post, path = "/ui/login", tag = "ui", security(()),
    request_body(content = LoginForm, content_type = "application/x-www-form-urlencoded"),
    responses((status = 303, description = "Signed in: to /ui/"),
              (status = 400, description = "Not a form with a token field", content_type = "text/html", body = String),
              (status = 401, description = "The token is empty or not valid", content_type = "text/html", body = String)))]
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // Parsed here (not by the Form extractor) so every bad form gets the
    // page with its error, whatever its content type or bytes.
    let token = match serde_urlencoded::from_bytes::<LoginForm>(&body) {
        Ok(form) => form.token.trim().to_owned(),
        Err(err) => return login_html(StatusCode::BAD_REQUEST, &format!("form: {err}")),
    };
    // No credential at all is as unauthorised as a wrong one.
    if token.is_empty() {
        return login_html(StatusCode::UNAUTHORIZED, "field \"token\": enter a token");
    }
    let now = now();
    let claims = match state.tokens.verify(&token, now) {
        Ok(claims) => claims,
        Err(reason) => {
            return login_html(
                StatusCode::UNAUTHORIZED,
                &format!("field \"token\": {reason}"),
            )
        }
    };
    let max_age = (claims.exp - now).max(0);
    let cookie = format!(
        "jwt={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        secure_suffix(&headers)
    );
    see_other("/ui/", &cookie)
}

/// Signs out: clears the cookie.
#[utoipa::path(post, path = "/ui/logout", tag = "ui", security(()),
    responses((status = 303, description = "Signed out: to /ui/login")))]
pub async fn logout(headers: HeaderMap) -> Response {
    let cookie = format!(
        "jwt=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{}",
        secure_suffix(&headers)
    );
    see_other("/ui/login", &cookie)
}

/// The UI's script.
#[utoipa::path(get, path = "/ui/app.js", tag = "ui", security(()),
    responses((status = 200, content_type = "text/javascript", body = String),
              (status = 304, description = "Not modified")))]
pub async fn app_js(headers: HeaderMap) -> Response {
    serve(&APP_JS, &headers, "no-cache")
}

/// The UI's style sheet.
#[utoipa::path(get, path = "/ui/app.css", tag = "ui", security(()),
    responses((status = 200, content_type = "text/css", body = String),
              (status = 304, description = "Not modified")))]
pub async fn app_css(headers: HeaderMap) -> Response {
    serve(&APP_CSS, &headers, "no-cache")
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// `; Secure` when the request came over https (directly or through a
/// proxy that says so), so the cookie still works on plain-http localhost.
fn secure_suffix(headers: &HeaderMap) -> &'static str {
    let https = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    if https {
        "; Secure"
    } else {
        ""
    }
}

fn see_other(location: &str, cookie: &str) -> Response {
    let mut response = Redirect::to(location).into_response();
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// The sign-in page with `error` (escaped) shown next to the field.
fn login_html(status: StatusCode, error: &str) -> Response {
    let body = LOGIN.replace("{{error}}", &escape_html(error)).replace(
        "{{invalid}}",
        if error.is_empty() { "false" } else { "true" },
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A static file with an ETag (a hash of its bytes), answering a matching
/// `If-None-Match` with 304.
fn serve(asset: &Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let etag = format!("\"{:016x}\"", fnv1a(asset.body.as_bytes()));
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let mut response = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        asset.body.into_response()
    };
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        out.insert(header::ETAG, value);
    }
    response
}

/// FNV-1a, 64 bits: enough to tell versions of a file apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Security headers on every UI response.
async fn ui_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

/// Whether a method only reads (and so needs no CSRF check).
pub fn is_read(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The UI's routes (`/ui/` arrives here as `/ui`: trailing slashes are trimmed).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ui", get(ui_index))
        .route("/ui/login", get(login_page).post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/app.js", get(app_js))
        .route("/ui/app.css", get(app_css))
        .route_layer(middleware::from_fn(ui_headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_escaped_into_the_login_page() {
        assert_eq!(
            escape_html("<b a=\"1\">&'"),
            "&lt;b a=&quot;1&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn the_cookie_is_secure_only_over_https() {
        let mut headers = HeaderMap::new();
        assert_eq!(secure_suffix(&headers), "");
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert_eq!(secure_suffix(&headers), "; Secure");
    }

    #[test]
    fn etags_differ_between_files() {
        assert_ne!(
            fnv1a(APP_JS.body.as_bytes()),
            fnv1a(APP_CSS.body.as_bytes())
        );
    }
}
