//! Extractors that turn every malformed input into a 400 that says what was
//! wrong before handler code runs: path IDs, query strings, JSON bodies.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use crust_shared::Id;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::ApiError;

/// The IDs in the path, in order, each parsed and checked.
#[derive(Debug, Clone, Copy)]
pub struct Ids<const N: usize>(pub [Id; N]);

impl<S: Send + Sync, const N: usize> FromRequestParts<S> for Ids<N> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params): Path<Vec<(String, String)>> = Path::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        if params.len() != N {
            return Err(ApiError::Internal(format!(
                "route has {} path parameters, handler expects {N}",
                params.len()
            )));
        }
        let mut ids = [Id::ZERO; N];
        for (slot, (name, value)) in ids.iter_mut().zip(params) {
            *slot = Id::parse(&value)
                .map_err(|reason| ApiError::bad_request(format!("{name}: {reason}")))?;
        }
        Ok(Ids(ids))
    }
}

/// A query string deserialised into `T`; a bad one is a 400 naming the
/// parameter.
#[derive(Debug, Clone)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        // Postgres text cannot hold NUL: refuse it here, naming the parameter.
        if let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
            .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            return Err(ApiError::bad_request(format!(
                "query parameter {name:?}: must not contain NUL (\\u0000)"
            )));
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|err| ApiError::bad_request(format!("query parameter {err}")))
    }
}

/// A JSON body deserialised into `T`. Malformed JSON, a wrong type or a
/// missing field is a 400 saying where; a body over the limit is a 413.
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(body_error)?;
        parse_json(&bytes).map(Body)
    }
}

fn body_error(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge("request body is larger than the limit".into())
    } else {
        ApiError::bad_request(format!(
            "cannot read request body: {}",
            rejection.body_text()
        ))
    }
}

/// Parses JSON, naming the path of a misfit (`fields[0].kind: …`).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; expected a JSON object",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("request body is not valid JSON: {inner}")
            }
            _ if path == "." => format!("request body: {inner}"),
            _ => format!("{path}: {inner}"),
        };
        ApiError::bad_request(message)
    })?;
    deserializer
        .end()
        .map_err(|err| ApiError::bad_request(format!("request body is not valid JSON: {err}")))?;
    Ok(value)
}

/// The `{"response": …}` envelope.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Envelope<T> {
    pub response: T,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_errors_name_the_path() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Input {
            items: Vec<u8>,
        }
        let err = parse_json::<Input>(br#"{"items": [1, "x"]}"#).unwrap_err();
        assert!(
            err.to_string().starts_with("items[1]: invalid type"),
            "{err}"
        );
        let err = parse_json::<Input>(b"{").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("request body is not valid JSON"),
            "{err}"
        );
        let err = parse_json::<Input>(b"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "request body is empty; expected a JSON object"
        );
    }
}
