//! `POST /hook/{workflowID}`: a signed delivery from an outside service
//! starts a job of the workflow, without a token. The signature
//! (`crust_model::webhook`) authenticates it; a signature is accepted once
//! (it becomes the job's idempotency key, so a replay inside the window
//! finds the job it made and is refused).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::csv::ImportStarted as Started;
use super::ApiResult;
use crate::error::ApiError;
use crate::extract::{check_storable, Envelope, Ids};
use crate::AppState;
use crust_model::job::NewJob;
use crust_model::webhook::{self, WINDOW_SECS};
use crust_store::{jobs, workflows};

/// Headers that never reach the job's parameters.
const HIDDEN_HEADERS: &[&str] = &["authorization", "cookie", "x-crust-signature"];

/// Start a job from a signed webhook delivery: no token, but
/// `X-Crust-Timestamp` (Unix seconds, within 300 s of the server's clock)
/// and `X-Crust-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<raw
/// body>">` keyed with the workflow's webhook secret. The job's parameters
/// are `{body (parsed JSON, else the text), headers}`. A missing, wrong or
/// stale signature is a 401 and creates nothing; a delivery accepted before
/// is a 409.
#[utoipa::path(post, path = "/hook/{workflowID}", tag = "workflows",
    params(("workflowID" = String, Path, description = "Workflow ID"),
           ("X-Crust-Timestamp" = String, Header, description = "Unix seconds when the delivery was signed"),
           ("X-Crust-Signature" = String, Header, description = "sha256=<hex HMAC-SHA256 of \"<timestamp>.<raw body>\">")),
    request_body(content = String, content_type = "application/json", description = "Any body; JSON is parsed"),
    responses((status = 202, description = "Accepted: the job it started", body = inline(crate::extract::Envelope<Started>)),
              (status = 400, body = super::ErrorBody), (status = 401, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody),
              (status = 413, body = super::ErrorBody)))]
pub async fn deliver(
    State(state): State<AppState>,
    Ids([workflow_id]): Ids<1>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (secret, editor) = workflows::webhook(&state.pool, workflow_id).await?;
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    let signature = header("x-crust-signature");
    webhook::verify(
        &secret,
        header("x-crust-timestamp"),
        signature,
        &body,
        chrono::Utc::now().timestamp(),
    )
    .map_err(ApiError::Unauthorized)?;
    let body = match serde_json::from_slice::<Value>(&body) {
        Ok(value) => value,
        Err(_) => Value::String(
            String::from_utf8(body.to_vec())
                .map_err(|_| ApiError::bad_request("body: neither JSON nor UTF-8 text"))?,
        ),
    };
    check_storable(&body, &mut "body".to_owned()).map_err(ApiError::bad_request)?;
    let mut shown = Map::new();
    for (name, value) in &headers {
        let name = name.as_str();
        if HIDDEN_HEADERS.contains(&name) {
            continue;
        }
        if let Ok(value) = value.to_str() {
            shown.insert(name.to_owned(), Value::String(value.to_owned()));
        }
    }
    let Value::Object(parameters) = json!({"body": body, "headers": shown}) else {
        unreachable!("json! of an object literal is an object")
    };
    // A job's parameters hold at most 64 KiB: the body must fit in them.
    crust_model::job::check_parameters(&parameters)
        .map_err(|err| ApiError::PayloadTooLarge(err.to_string()))?;
    let job = NewJob {
        workflow_id,
        start_at: None,
        parameters,
        // The signature is unique to this delivery: held as the job's key,
        // a replay finds the job it made.
        key: signature.map(|s| format!("hook:{}", s.trim())),
    };
    let trace_parent = crust_runtime::telemetry::current_traceparent();
    // Remembered for twice the window, whatever CRUST_JOB_KEY_TTL says.
    let ttl = state
        .job_key_ttl
        .max(std::time::Duration::from_secs(2 * WINDOW_SECS as u64));
    let created = jobs::api::create(&state.pool, job, editor, trace_parent.as_deref(), ttl).await?;
    if !created.new {
        return Err(ApiError::Conflict(format!(
            "this delivery was accepted before (job {}); sign each delivery anew",
            created.job.id
        )));
    }
    crust_runtime::metrics::metrics().jobs_created.inc();
    if created.due_now {
        state
            .queue
            .run_created(created.job.id, &created.job.queue, trace_parent);
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Envelope {
            response: Started {
                job_id: created.job.id,
            },
        }),
    )
        .into_response())
}

/// Webhook routes (outside the token check).
pub fn router() -> Router<AppState> {
    Router::new().route("/hook/{workflowID}", post(deliver))
}
