//! Extractors that turn every malformed input into a 400 that says what was
//! wrong before handler code runs: path IDs, query strings, JSON bodies.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use crust_model::Id;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::AppState;

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
        // NUL was refused before routing (`refuse_nul_in_url`).
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Query)
            .map_err(|err| ApiError::bad_request(format!("query parameter {err}")))
    }
}

/// A JSON body deserialised into `T`. A body not sent as
/// `application/json` is a 415: browsers post cross-site without a CORS
/// preflight only as forms or `text/plain`, so this also keeps another
/// site's page from posting with the `jwt` cookie. Malformed JSON, a wrong type or a missing field is a 400
/// saying where; a body over the limit is a 413; one not sent within the
/// read timeout is a 408.
#[derive(Debug, Clone)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(request.headers()) {
            return Err(ApiError::UnsupportedMediaType(
                "request body must be sent with Content-Type: application/json".into(),
            ));
        }
        let bytes = tokio::time::timeout(state.read_timeout, Bytes::from_request(request, state))
            .await
            .map_err(|_| {
                ApiError::RequestTimeout(format!(
                    "request body was not received within {}s",
                    state.read_timeout.as_secs()
                ))
            })?
            .map_err(body_error)?;
        parse_json(&bytes).map(Body)
    }
}

/// Whether the `Content-Type` is `application/json`, parameters such as
/// `charset` aside.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// Refuses a URL whose path or query decodes to NUL (`%00`): no text
/// column can hold it, and no ID or parameter contains it legitimately.
pub async fn refuse_nul_in_url(
    request: Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    if request.uri().path().contains("%00") {
        return Err(ApiError::bad_request(
            "the URL path must not contain NUL (%00)",
        ));
    }
    let query = request.uri().query().unwrap_or_default();
    if let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name.contains('\0') || value.contains('\0'))
    {
        return Err(ApiError::bad_request(format!(
            "query parameter {}: must not contain NUL (%00)",
            name.escape_debug()
        )));
    }
    Ok(next.run(request).await)
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

/// Parses a JSON object body, naming the path of a misfit
/// (`fields[0].kind: …`). Anything Postgres could store but not give back
/// (see [`check_storable`]) is refused here, so no request can make a later
/// read fail.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "request body is empty; expected a JSON object",
        ));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|err| ApiError::bad_request(format!("request body is not valid JSON: {err}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(format!(
            "request body must be a JSON object, not {}",
            kind_of(&value)
        )));
    }
    check_storable(&value, &mut String::new()).map_err(ApiError::BadRequest)?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if path == "." {
            ApiError::bad_request(format!("request body: {inner}"))
        } else {
            ApiError::bad_request(format!("{path}: {inner}"))
        }
    })
}

/// "an array", "a string", … for messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Refuses what Postgres would take but could not give back, naming its
/// JSON path (`config.v: …`):
///
/// - NUL (`\u0000`) in a string or an object key: `text` and `jsonb`
///   cannot hold it.
/// - A number whose decimal form, as Postgres prints it from `jsonb`, does
///   not read back as a finite `f64`. Postgres keeps JSON numbers as
///   `numeric` and prints them without an exponent
///   (`1.7976931348623157e308` comes back as 309 digits), and serde_json
///   reads such a long integer less exactly than the short form, so the few
///   largest doubles overflow on the way back. The check runs the very
///   parser the readers use on the text Postgres would print, so it is
///   exact; in practice it refuses only the largest double,
///   `1.7976931348623157e308`, and its negative ([`MAX_STORABLE`] is the
///   largest magnitude that comes back).
///
/// `path` is the location of `value`, empty at the root.
pub fn check_storable(value: &Value, path: &mut String) -> Result<(), String> {
    match value {
        Value::String(text) if text.contains('\0') => Err(format!(
            "{}: text must not contain NUL (\\u0000)",
            shown(path)
        )),
        Value::Number(number) if !reads_back(number) => Err(format!(
            "{}: number {number} is too large to store (largest magnitude: {MAX_STORABLE:e})",
            shown(path)
        )),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{index}]"));
                check_storable(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                if key.contains('\0') {
                    return Err(format!(
                        "{}: key {key:?} must not contain NUL (\\u0000)",
                        shown(&path[..len])
                    ));
                }
                path.push_str(key);
                check_storable(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The path for a message; the root is "request body".
fn shown(path: &str) -> &str {
    if path.is_empty() {
        "request body"
    } else {
        path
    }
}

/// The largest magnitude a JSON number may have (see the shared constant).
pub use crust_model::MAX_STORABLE_NUMBER as MAX_STORABLE;

/// Whether `number` can be stored in `jsonb` and read back, however often.
fn reads_back(number: &serde_json::Number) -> bool {
    !number.is_f64() || number.as_f64().is_some_and(|x| x.abs() <= MAX_STORABLE)
}

/// What `value` reads back as after a trip through `jsonb`: serialised the
/// way serde_json writes it, printed the way Postgres prints `numeric`, and
/// parsed by serde_json again. `None` when that read fails.
#[cfg(test)]
fn postgres_round_trip(value: f64) -> Option<f64> {
    let written = serde_json::Number::from_f64(value)?.to_string();
    // Only numbers written with a positive exponent (|x| ≥ 1e16) are printed
    // differently by Postgres; the rest come back in the very same text.
    let Some((mantissa, exponent)) = written.split_once('e') else {
        return Some(value);
    };
    let Ok(exponent) = exponent.parse::<usize>() else {
        // A negative exponent: Postgres prints a long fraction, which reads
        // back (at worst rounded), never as an overflow.
        return Some(value);
    };
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", mantissa),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let zeros = exponent.checked_sub(fraction.len())?;
    // What Postgres prints for this numeric: all digits, no exponent.
    let printed = format!("{sign}{whole}{fraction}{}", "0".repeat(zeros));
    serde_json::from_str::<f64>(&printed)
        .ok()
        .filter(|back| back.is_finite())
}

/// Whether `value`, stored and read back again and again, never fails.
#[cfg(test)]
fn survives_round_trips(mut value: f64) -> bool {
    loop {
        match postgres_round_trip(value) {
            Some(back) if back == value => return true,
            Some(back) => value = back,
            None => return false,
        }
    }
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

    #[test]
    fn bodies_must_be_objects() {
        let err = parse_json::<serde_json::Value>(b"[null, null]").unwrap_err();
        assert_eq!(
            err.to_string(),
            "request body must be a JSON object, not an array"
        );
    }

    #[test]
    fn nul_anywhere_is_refused_with_its_path() {
        let err = parse_json::<Value>(br#"{"a": {"b": [1, "x\u0000y"]}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r"a.b[1]: text must not contain NUL (\u0000)"
        );
        let err = parse_json::<Value>(br#"{"a": {"k\u0000": 1}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"a: key "k\0" must not contain NUL (\u0000)"#
        );
        let err = parse_json::<Value>(br#"{"\u0000": 1}"#).unwrap_err();
        assert!(err.to_string().starts_with("request body: key"), "{err}");
    }

    #[test]
    fn numbers_that_postgres_cannot_give_back_are_refused() {
        let err = parse_json::<Value>(br#"{"config": {"v": 1.7976931348623157e308}}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.v: number 1.7976931348623157e+308 is too large to store \
             (largest magnitude: 1.7976931348623145e308)"
        );
        let err = parse_json::<Value>(br#"{"v": [-1.797693134862315e308]}"#).unwrap_err();
        assert!(err.to_string().starts_with("v[0]: number"), "{err}");
        for fine in [
            "1.7976931348623145e308",
            "-1.7976931348623145e308",
            "1e308",
            "5e-324",
            "-0.0",
            "18446744073709551615",
            "-9223372036854775808",
            "0.1",
            "1e16",
        ] {
            let body = format!(r#"{{"v": {fine}}}"#);
            assert!(parse_json::<Value>(body.as_bytes()).is_ok(), "{fine}");
        }
    }

    #[test]
    fn the_bound_is_the_largest_double_that_survives_round_trips() {
        assert_eq!(MAX_STORABLE.to_bits(), f64::MAX.to_bits() - 6);
        for above in 0..6 {
            assert!(!survives_round_trips(f64::from_bits(
                f64::MAX.to_bits() - above
            )));
        }
        // Every double in the hundred thousand steps from the bound down settles.
        let mut bits = MAX_STORABLE.to_bits();
        for _ in 0..100_000 {
            let value = f64::from_bits(bits);
            assert!(survives_round_trips(value), "{value:e}");
            bits -= 1;
        }
        assert!(survives_round_trips(1e300) && survives_round_trips(-1e300));
    }
}
