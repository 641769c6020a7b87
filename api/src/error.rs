//! The API's one error type, rendered as the `{"error": {"message": …}}`
//! envelope with the status code that fits. Internal details are logged once
//! here, with the request id, and never sent to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

tokio::task_local! {
    /// The id of the request being served, for error messages and logs.
    pub static REQUEST_ID: String;
}

/// Every way a request can fail.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the database is unavailable; try again shortly")]
    Unavailable,
    /// A 503 that says which setting is missing.
    #[error("{0}")]
    Disabled(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Shorthand for a 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable | ApiError::Disabled(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<crust_model::Error> for ApiError {
    fn from(err: crust_model::Error) -> Self {
        use crust_model::Error;
        match err {
            Error::Invalid(message) => ApiError::BadRequest(message),
            Error::NotFound(message) => ApiError::NotFound(message),
            Error::Conflict(message) => ApiError::Conflict(message),
        }
    }
}

impl From<crust_store::Error> for ApiError {
    fn from(err: crust_store::Error) -> Self {
        use crust_store::Error;
        if err.is_unavailable() {
            tracing::warn!(error = %err, "database unavailable");
            return ApiError::Unavailable;
        }
        match err {
            Error::Domain(err) => err.into(),
            Error::Database(db) => ApiError::Internal(db.to_string()),
            Error::Secrets(reason) => ApiError::Internal(reason),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let request_id = REQUEST_ID.try_with(Clone::clone).unwrap_or_default();
        let message = match &self {
            ApiError::Internal(detail) => {
                tracing::error!(request_id = %request_id, error = %detail, "internal error");
                format!("internal error (request id {request_id})")
            }
            other => other.to_string(),
        };
        let mut response = (status, Json(json!({"error": {"message": message}}))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
