//! CORS, off unless `CRUST_CORS_ORIGINS` lists origins. Then those origins
//! (and only they) may call the API from a browser with a bearer token:
//! preflights are answered and responses carry `Access-Control-Allow-Origin`.
//! Credentials (the `jwt` cookie) are never allowed cross-site.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The origins allowed to call the API cross-site.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Arc<[HeaderValue]>,
}

impl Cors {
    /// Checks each origin (`scheme://host[:port]`, nothing after); `None`
    /// when the list is empty, which leaves CORS off.
    pub fn new(origins: &[String]) -> Result<Option<Self>, String> {
        let mut parsed = Vec::new();
        for origin in origins.iter().map(|origin| origin.trim()) {
            if origin.is_empty() {
                continue;
            }
            let rest = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"));
            let valid = rest.is_some_and(|host| {
                !host.is_empty() && !host.contains(['/', '?', '#', '*', ' ', '@'])
            });
            if !valid {
                return Err(format!(
                    "CRUST_CORS_ORIGINS: {origin:?} is not an origin \
                     (expected scheme://host[:port], e.g. https://app.example.com)"
                ));
            }
            let value = HeaderValue::from_str(&origin.to_ascii_lowercase())
                .map_err(|_| format!("CRUST_CORS_ORIGINS: {origin:?} is not an origin"))?;
            parsed.push(value);
        }
        Ok((!parsed.is_empty()).then(|| Self {
            origins: parsed.into(),
        }))
    }

    /// The request's `Origin` if it is one of ours.
    fn allowed(&self, request: &Request) -> Option<HeaderValue> {
        let origin = request.headers().get(header::ORIGIN)?;
        self.origins
            .iter()
            .find(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes()))
            .cloned()
    }
}

/// Answers preflights from allowed origins and marks their responses; an
/// unlisted origin's preflight is a 403, its other requests get no CORS
/// headers (so the browser withholds the response).
pub async fn cors(State(cors): State<Cors>, request: Request, next: Next) -> Response {
    let origin = cors.allowed(&request);
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let Some(origin) = origin else {
            return ApiError::Forbidden("this origin may not call the API cross-site".into())
                .into_response();
        };
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, DELETE"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(origin) = origin {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("x-request-id"),
        );
        headers.append(header::VARY, HeaderValue::from_static("origin"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_at_start() {
        assert!(Cors::new(&[]).unwrap().is_none());
        assert!(Cors::new(&[" ".into()]).unwrap().is_none());
        let cors = Cors::new(&[
            "https://App.example.com".into(),
            "http://localhost:5173".into(),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(cors.origins.len(), 2);
        for bad in [
            "*",
            "app.example.com",
            "https://a.example/",
            "ftp://a",
            "https://",
        ] {
            let err = Cors::new(&[bad.into()]).unwrap_err();
            assert!(err.starts_with("CRUST_CORS_ORIGINS: "), "{err}");
        }
    }
}
