//! One rule for every endpoint: a query parameter the OpenAPI document does
//! not list for the operation is a 400 (`unknown query parameter "after"`),
//! never silently ignored.
//!
//! The allowed names come from the document itself (built once), so what
//! the server accepts and what it documents cannot drift apart; the query
//! structs also deny unknown fields, as a second line.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::openapi::ApiDoc;

/// Query parameter names per `(METHOD, path template without a trailing
/// slash)` of every documented operation.
type Known = HashMap<(String, String), Vec<String>>;

fn known() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(|| {
        let document = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        let mut known = Known::new();
        let Some(paths) = document["paths"].as_object() else {
            return known;
        };
        for (path, item) in paths {
            let Some(operations) = item.as_object() else {
                continue;
            };
            for (method, operation) in operations {
                let names = operation["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|parameter| parameter["in"] == "query")
                    .filter_map(|parameter| parameter["name"].as_str().map(str::to_owned))
                    .collect();
                known.insert((method.to_ascii_uppercase(), normalise(path)), names);
            }
        }
        known
    })
}

fn normalise(path: &str) -> String {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    }
}

/// Refuses a request naming a query parameter its operation does not take.
/// Routes outside the document (the docs UI) are left alone.
pub async fn refuse_unknown(request: Request, next: Next) -> Result<Response, ApiError> {
    let query = request.uri().query().unwrap_or_default();
    if query.is_empty() {
        return Ok(next.run(request).await);
    }
    let Some(matched) = request.extensions().get::<MatchedPath>() else {
        return Ok(next.run(request).await);
    };
    let method = if request.method() == Method::HEAD {
        "GET".to_owned()
    } else {
        request.method().as_str().to_owned()
    };
    let Some(allowed) = known().get(&(method, normalise(matched.as_str()))) else {
        return Ok(next.run(request).await);
    };
    if let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
        .find(|(name, _)| !allowed.iter().any(|allowed| allowed == name))
    {
        let takes = if allowed.is_empty() {
            "this endpoint takes none".to_owned()
        } else {
            format!("this endpoint takes {}", allowed.join(", "))
        };
        return Err(ApiError::bad_request(format!(
            "unknown query parameter \"{}\"; {takes}",
            name.escape_debug()
        )));
    }
    Ok(next.run(request).await)
}
