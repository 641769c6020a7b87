//! Bearer-token authentication: a middleware that admits a request only
//! with a valid token (header or `jwt` cookie) and records who sent it and
//! what its roles allow ([`crate::access::Access`]).

use axum::extract::{FromRequestParts, Request, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use crust_model::Id;

use crate::error::ApiError;
use crate::AppState;

/// The user a request acts for (the token's `sub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser(pub Id);

/// Refuses requests without a valid token, with a 401 that says why.
pub async fn require_token(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (token, from_cookie) = token_of(request.headers())
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    // CSRF: a browser adds the cookie by itself, so a cookie-authenticated
    // write must also carry a JSON content type, which a cross-site form
    // cannot send (and a cross-site script only after a CORS preflight).
    if from_cookie && !crate::routes::ui::is_read(request.method()) && !is_json(request.headers()) {
        return Err(ApiError::UnsupportedMediaType(
            "request body must be sent with Content-Type: application/json".into(),
        ));
    }
    let now = chrono::Utc::now().timestamp();
    let claims = state
        .tokens
        .verify(&token, now)
        .map_err(ApiError::Unauthorized)?;
    let user = claims.user_id().map_err(ApiError::Unauthorized)?;
    let access = crate::access::resolve(&state, user, claims.roles).await?;
    request.extensions_mut().insert(AuthUser(user));
    request.extensions_mut().insert(access);
    Ok(next.run(request).await)
}

/// The token from `Authorization: Bearer …`, else from the `jwt` cookie
/// (then the flag is true).
fn token_of(headers: &axum::http::HeaderMap) -> Option<(String, bool)> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| (token.trim().to_owned(), false));
    }
    cookie_token(headers).map(|token| (token, true))
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// The `jwt` cookie's value, if the request has one.
pub fn cookie_token(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .find_map(|cookie| cookie.trim().strip_prefix("jwt=").map(str::to_owned))
        .filter(|token| !token.is_empty())
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<AuthUser>()
            .copied()
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    #[test]
    fn tokens_come_from_the_header_or_the_cookie() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert_eq!(token_of(&headers), Some(("abc".into(), false)));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; jwt=xyz".parse().unwrap());
        assert_eq!(token_of(&headers), Some(("xyz".into(), true)));
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(token_of(&headers), None);
    }
}
