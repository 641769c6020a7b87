//! `/job`: list, create, read, update (log, status, definition), cancel and
//! read logs. Creating a job commits it first and publishes after.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use crust_model::job::{Job, JobInput, JobStatus, JobUpdate, LogEntry, RerunInput, SignalInput};
use crust_model::paging::Paging;
use crust_model::step::Step;
use crust_model::Id;
use crust_store::jobs;
use crust_store::jobs::search::JobSearch;
use serde::{Deserialize, Serialize};

use super::{created, ok, ApiResult};
use crate::access::Access;
use crate::error::ApiError;
use crate::extract::{Body, Ids, Query};
use crate::AppState;
use crust_model::access::{Operation, Resource};

/// Most jobs per page and most log entries per page.
pub const MAX_PER_PAGE: i64 = 100;
pub const MAX_LOGS_PER_PAGE: i64 = 1000;

/// `GET /job/` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Filter in the query language over `jobID, workflowID, status, attempt,
    /// key, worker, error, createdAt, startAt, startedAt, finishedAt,
    /// parentJobID` and `parameters.<name>` (JSON values), e.g.
    /// `status = 'error' AND parameters.customer = 'acme'`.
    pub filter: Option<String>,
    /// Sort list, e.g. `createdAt DESC`; default newest first.
    pub sort: Option<String>,
    /// Only jobs in this status: queued, running, waiting, ok, error or cancelled
    /// (empty = any); ANDed with `filter`.
    #[param(pattern = "^(queued|running|waiting|ok|error|cancelled)?$")]
    pub status: Option<String>,
    /// Only jobs of this workflow; ANDed with `filter`.
    #[serde(rename = "workflowID")]
    #[param(rename = "workflowID", pattern = "^[1-9][0-9]{0,18}$")]
    pub workflow_id: Option<String>,
    /// 0-based page (default 0).
    #[param(minimum = 0, maximum = 92_233_720_368_547_758_i64)]
    pub page: Option<i64>,
    /// Jobs per page (default 50); values above 100 are lowered to 100.
    #[param(minimum = 1)]
    pub per_page: Option<i64>,
}

/// `GET /job/{jobID}/logs` parameters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Only entries after this sequence number (default 0: from the first),
    /// to resume reading.
    #[param(minimum = 0, maximum = 2_147_483_647)]
    pub after: Option<i64>,
    /// `true`: answer `text/event-stream` and follow the log live (old
    /// entries first, then new ones as they are written; `event: status`
    /// with the job once it is finished). `Last-Event-ID` resumes.
    pub follow: Option<bool>,
    /// 0-based page (default 0).
    #[param(minimum = 0, maximum = 9_223_372_036_854_775_i64)]
    pub page: Option<i64>,
    /// Entries per page (default 50); values above 1000 are lowered to 1000.
    #[param(minimum = 1)]
    pub per_page: Option<i64>,
}

/// What a job list echoes back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobListMeta {
    pub page: i64,
    pub per_page: i64,
    /// Jobs matching, over all pages: exact up to 10 000, beyond that the
    /// planner's estimate (see `countIsEstimate`).
    pub count: i64,
    /// Present (true) when `count` is an estimate.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub count_is_estimate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
    #[serde(rename = "workflowID", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub workflow_id: Option<Id>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sort: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobList {
    pub meta: JobListMeta,
    pub jobs: Vec<Job>,
}

/// What a log list echoes back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogListMeta {
    pub page: i64,
    pub per_page: i64,
    pub count: i64,
}

/// A page of log entries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogList {
    pub meta: LogListMeta,
    pub logs: Vec<LogEntry>,
}

/// Search jobs: `filter` and `sort` in the query language, `status` and
/// `workflowID` shorthands ANDed with the filter; newest first by default.
#[utoipa::path(get, path = "/job/", tag = "jobs", params(JobQuery),
    responses((status = 200, body = inline(crate::extract::Envelope<JobList>)), (status = 400, body = super::ErrorBody)))]
pub async fn list_jobs(
    State(state): State<AppState>,
    access: Access,
    Query(query): Query<JobQuery>,
) -> ApiResult<impl IntoResponse> {
    let paging = Paging::new(query.page, query.per_page, MAX_PER_PAGE)?;
    let status = query
        .status
        .as_deref()
        .filter(|status| !status.is_empty())
        .map(|status| {
            JobStatus::parse(status)
                .map_err(|reason| ApiError::bad_request(format!("status: {reason}")))
        })
        .transpose()?;
    let workflow_id = query
        .workflow_id
        .as_deref()
        .map(|id| {
            Id::parse(id).map_err(|reason| ApiError::bad_request(format!("workflowID: {reason}")))
        })
        .transpose()?;
    // Only the jobs of workflows the caller may read.
    let readable = allowed_workflows(&state, &access, Operation::Read).await?;
    let search = JobSearch {
        filter: query.filter.as_deref().unwrap_or_default(),
        sort: query.sort.as_deref().unwrap_or_default(),
        status,
        workflow_id,
        workflows: readable.as_deref(),
    };
    let (jobs, count) = jobs::search::search(&state.pool, &search, paging, &state.queries).await?;
    let trace_url = state.trace_url.as_deref();
    let jobs: Vec<Job> = jobs
        .into_iter()
        .map(|job| job.link_trace(trace_url))
        .collect();
    Ok(ok(JobList {
        meta: JobListMeta {
            page: paging.page,
            per_page: paging.per_page,
            count: count.value,
            count_is_estimate: !count.exact,
            status,
            workflow_id,
            filter: query.filter,
            sort: query.sort,
        },
        jobs,
    }))
}

/// The body of `POST /job/cancel` and `POST /job/rerun`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkFilter {
    /// Which jobs, in the query language of `GET /job/?filter=` (blank: all).
    pub filter: String,
}

/// The workflows whose jobs the caller may `operation`: `None` when a rule
/// on `workflow:*` decides for every workflow alike.
async fn allowed_workflows(
    state: &AppState,
    access: &Access,
    operation: Operation,
) -> Result<Option<Vec<Id>>, ApiError> {
    if access
        .permissions
        .is_uniform(Resource::Workflow(None), operation)
    {
        return Ok(None);
    }
    let mut ids = crust_store::workflows::ids(&state.pool).await?;
    ids.retain(|id| access.allows(Resource::Workflow(Some(*id)), operation));
    Ok(Some(ids))
}

/// How many jobs a bulk action touched.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkCount {
    pub count: i64,
}

/// Cancel every queued, waiting or running job the filter matches (at most
/// 10 000, else 400 and nothing changes): queued and waiting ones end
/// `cancelled` at once, running ones are stopped.
#[utoipa::path(post, path = "/job/cancel", tag = "jobs", request_body = BulkFilter,
    responses((status = 200, body = inline(crate::extract::Envelope<BulkCount>)), (status = 400, body = super::ErrorBody)))]
pub async fn cancel_jobs(
    State(state): State<AppState>,
    access: Access,
    Body(input): Body<BulkFilter>,
) -> ApiResult<impl IntoResponse> {
    // Only jobs of workflows the caller may run (cancel is `run`).
    let runnable = allowed_workflows(&state, &access, Operation::Run).await?;
    let cancelled = jobs::search::cancel_matching(
        &state.pool,
        &input.filter,
        runnable.as_deref(),
        &state.queries,
    )
    .await?;
    for id in cancelled.running {
        state.queue.cancel(id);
    }
    Ok(ok(BulkCount {
        count: cancelled.count,
    }))
}

/// Rerun every finished job the filter matches as a new job each, like
/// `POST /job/{jobID}/rerun` (at most 10 000, else 400 and nothing is
/// created); all in one transaction.
#[utoipa::path(post, path = "/job/rerun", tag = "jobs", request_body = BulkFilter,
    responses((status = 200, body = inline(crate::extract::Envelope<BulkCount>)), (status = 400, body = super::ErrorBody)))]
pub async fn rerun_jobs(
    State(state): State<AppState>,
    access: Access,
    Body(input): Body<BulkFilter>,
) -> ApiResult<impl IntoResponse> {
    let trace_parent = crust_runtime::telemetry::current_traceparent();
    let runnable = allowed_workflows(&state, &access, Operation::Run).await?;
    let created_jobs = jobs::search::rerun_matching(
        &state.pool,
        &input.filter,
        runnable.as_deref(),
        &access.actor(),
        trace_parent.as_deref(),
        &state.queries,
    )
    .await?;
    for created_job in &created_jobs {
        crust_runtime::metrics::metrics().jobs_created.inc();
        state.queue.run(
            created_job.job.id,
            &created_job.job.queue,
            trace_parent.clone(),
        );
    }
    Ok(ok(BulkCount {
        count: created_jobs.len() as i64,
    }))
}

/// The header that may carry a job's idempotency key instead of `key`.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Most jobs one `POST /job/bulk` creates.
pub const MAX_BULK_JOBS: usize = 1000;

/// Create a job: queued now, run at once or at `startAt`. With a `key` (or
/// an `Idempotency-Key` header) that a job of the same workflow created
/// within `CRUST_JOB_KEY_TTL` already has, that job is returned with 200
/// and nothing is created.
#[utoipa::path(post, path = "/job/", tag = "jobs", request_body = JobInput,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255,
            description = "The job's idempotency key, instead of `key` (if both are given they must be equal)")),
    responses((status = 201, description = "Created", body = inline(crate::extract::Envelope<Job>)),
              (status = 200, description = "A job of the workflow with this key exists: that job", body = inline(crate::extract::Envelope<Job>)),
              (status = 400, body = super::ErrorBody)))]
pub async fn create_job(
    State(state): State<AppState>,
    access: Access,
    headers: HeaderMap,
    Body(mut input): Body<JobInput>,
) -> ApiResult<Response> {
    if let Some(header) = headers.get(IDEMPOTENCY_KEY) {
        let header = header.to_str().map_err(|_| {
            ApiError::bad_request("key: the Idempotency-Key header must be visible ASCII")
        })?;
        match &input.key {
            Some(key) if key != header => {
                return Err(ApiError::bad_request(
                    "key: differs from the Idempotency-Key header (give one, or both equal)",
                ))
            }
            _ => input.key = Some(header.to_owned()),
        }
    }
    let input = input.validate()?;
    access.require(Resource::Workflow(Some(input.workflow_id)), Operation::Run)?;
    // The job's first run continues this request's trace.
    let trace_parent = crust_runtime::telemetry::current_traceparent();
    let created_job = jobs::api::create(
        &state.pool,
        input,
        access.actor(),
        trace_parent.as_deref(),
        state.job_key_ttl,
    )
    .await?;
    let job = created_job
        .job
        .clone()
        .link_trace(state.trace_url.as_deref());
    if !created_job.new {
        return Ok(ok(job).into_response());
    }
    crust_runtime::metrics::metrics().jobs_created.inc();
    if created_job.due_now {
        state
            .queue
            .run_created(created_job.job.id, &created_job.job.queue, trace_parent);
    }
    Ok(created(job).into_response())
}

/// The body of `POST /job/bulk`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkInput {
    /// 1 to 1000 jobs, each as `POST /job/` takes it.
    #[schema(min_items = 1, max_items = 1000)]
    pub jobs: Vec<JobInput>,
}

/// Create many jobs at once, in one transaction: every item is checked
/// first, and any invalid one is a 400 naming `jobs[i].field` with nothing
/// created. Keys are honoured per item (an item whose key is held answers
/// the job holding it). The jobs come back in the order given.
#[utoipa::path(post, path = "/job/bulk", tag = "jobs", request_body = BulkInput,
    responses((status = 201, body = inline(crate::extract::Envelope<Vec<Job>>)), (status = 400, body = super::ErrorBody)))]
pub async fn create_jobs(
    State(state): State<AppState>,
    access: Access,
    Body(input): Body<BulkInput>,
) -> ApiResult<impl IntoResponse> {
    if input.jobs.is_empty() || input.jobs.len() > MAX_BULK_JOBS {
        return Err(ApiError::bad_request(format!(
            "jobs: must hold 1 to {MAX_BULK_JOBS} jobs (got {})",
            input.jobs.len()
        )));
    }
    let new_jobs = input
        .jobs
        .into_iter()
        .enumerate()
        .map(|(index, job)| job.validate_at(&format!("jobs[{index}].")))
        .collect::<Result<Vec<_>, _>>()?;
    for job in &new_jobs {
        access.require(Resource::Workflow(Some(job.workflow_id)), Operation::Run)?;
    }
    let trace_parent = crust_runtime::telemetry::current_traceparent();
    let created_jobs = jobs::api::create_many(
        &state.pool,
        new_jobs,
        access.actor(),
        trace_parent.as_deref(),
        state.job_key_ttl,
    )
    .await?;
    let mut answer = Vec::with_capacity(created_jobs.len());
    for created_job in created_jobs {
        if created_job.new {
            crust_runtime::metrics::metrics().jobs_created.inc();
            if created_job.due_now {
                state.queue.run_created(
                    created_job.job.id,
                    &created_job.job.queue,
                    trace_parent.clone(),
                );
            }
        }
        answer.push(created_job.job.link_trace(state.trace_url.as_deref()));
    }
    Ok(created(answer))
}

/// Read a job.
#[utoipa::path(get, path = "/job/{jobID}", tag = "jobs",
    params(("jobID" = String, Path, description = "Job ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Job>)), (status = 404, body = super::ErrorBody)))]
pub async fn read_job(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(jobs::api::get_with_outputs(&state.pool, id)
        .await?
        .link_trace(state.trace_url.as_deref())))
}

/// Update a job: append a `log` entry, move `status` along a legal edge,
/// or change `workflowID`/`startAt`/`parameters` while it is queued.
#[utoipa::path(post, path = "/job/{jobID}", tag = "jobs", request_body = JobUpdate,
    params(("jobID" = String, Path, description = "Job ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<Job>)), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn update_job(
    State(state): State<AppState>,
    access: Access,
    Ids([id]): Ids<1>,
    Body(input): Body<JobUpdate>,
) -> ApiResult<impl IntoResponse> {
    // Moving a job to another workflow needs the right to run that one too.
    if let Some(workflow) = input.workflow_id {
        access.require(Resource::Workflow(Some(workflow)), Operation::Run)?;
    }
    let updated = jobs::api::update(&state.pool, id, input).await?;
    if updated.publish {
        state.queue.run(id, &updated.job.queue, None);
    }
    if updated.cancel {
        state.queue.cancel(id);
    }
    Ok(ok(updated.job.link_trace(state.trace_url.as_deref())))
}

/// Cancel a job: a queued one never starts; a running one is stopped within
/// a second and ends `cancelled`. A finished job cannot be cancelled (409).
#[utoipa::path(delete, path = "/job/{jobID}", tag = "jobs",
    params(("jobID" = String, Path, description = "Job ID")),
    responses((status = 200, body = super::Success), (status = 404, body = super::ErrorBody),
              (status = 409, body = super::ErrorBody)))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    if jobs::api::cancel(&state.pool, id).await? == jobs::api::Cancelled::Running {
        state.queue.cancel(id);
    }
    Ok(super::success())
}

/// One Server-Sent Event of a followed log, as a client parses it: `event`
/// is `log` (then `data` is the entry as JSON and `id` its `seq`) or
/// `status` (then `data` is the finished job as JSON).
#[derive(Serialize, utoipa::ToSchema)]
pub struct LogEvent {
    #[schema(example = "log")]
    pub event: String,
    /// JSON text.
    pub data: String,
    pub id: Option<String>,
}

/// A job's log entries, in order; with `follow=true` a live
/// `text/event-stream` of them instead.
#[utoipa::path(get, path = "/job/{jobID}/logs", tag = "jobs",
    params(("jobID" = String, Path, description = "Job ID"), LogQuery,
           ("Last-Event-ID" = Option<String>, Header, description = "With follow: resume after this seq")),
    responses((status = 200, content((inline(crate::extract::Envelope<LogList>) = "application/json"),
                                     (LogEvent = "text/event-stream"))),
              (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody)))]
pub async fn job_logs(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    headers: HeaderMap,
    Query(query): Query<LogQuery>,
) -> ApiResult<Response> {
    let after = i32::try_from(query.after.unwrap_or(0))
        .ok()
        .filter(|after| *after >= 0)
        .ok_or_else(|| ApiError::bad_request("after: must be 0 to 2147483647"))?;
    // Checked whether or not the log is followed: a bad header is a 400.
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                // Any ID (the document's schema for it): a seq past the
                // last line just resumes at the end.
                .and_then(|text| text.trim().parse::<i64>().ok())
                .filter(|seq| *seq >= 0)
                .map(|seq| i32::try_from(seq).unwrap_or(i32::MAX))
                .ok_or_else(|| {
                    ApiError::bad_request("Last-Event-ID: must be a log sequence number")
                })?,
        ),
        None => None,
    };
    if query.follow == Some(true) {
        let after = resume.unwrap_or(after);
        return crate::follow::follow(state, id, after).await;
    }
    let paging = Paging::new(query.page, query.per_page, MAX_LOGS_PER_PAGE)?;
    let (logs, count) = jobs::api::logs(&state.pool, id, after, paging).await?;
    Ok(ok(LogList {
        meta: LogListMeta {
            page: paging.page,
            per_page: paging.per_page,
            count,
        },
        logs,
    })
    .into_response())
}

/// A job's steps in workflow order: each task (`pending` until it starts)
/// and the items of its `forEach`, with tries, times, output and error.
#[utoipa::path(get, path = "/job/{jobID}/steps", tag = "jobs",
    params(("jobID" = String, Path, description = "Job ID")),
    responses((status = 200, body = inline(crate::extract::Envelope<StepList>)), (status = 404, body = super::ErrorBody)))]
pub async fn job_steps(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
) -> ApiResult<impl IntoResponse> {
    Ok(ok(StepList {
        steps: jobs::api::steps(&state.pool, id).await?,
    }))
}

/// A job's steps.
#[derive(Serialize, utoipa::ToSchema)]
pub struct StepList {
    pub steps: Vec<Step>,
}

/// Send a signal to a job: a `wait` task for `event` takes it, now if the
/// job waits for it, else when it gets there. A finished job takes none (409).
#[utoipa::path(post, path = "/job/{jobID}/signal", tag = "jobs", request_body = SignalInput,
    params(("jobID" = String, Path, description = "Job ID")),
    responses((status = 200, body = super::Success), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn signal_job(
    State(state): State<AppState>,
    Ids([id]): Ids<1>,
    Body(input): Body<SignalInput>,
) -> ApiResult<impl IntoResponse> {
    let input = input.validate()?;
    let signalled = jobs::api::signal(&state.pool, id, &input.event, input.data.as_ref()).await?;
    if signalled.woke {
        state.queue.run(id, &signalled.queue, None);
    }
    Ok(super::success())
}

/// Rerun a finished job as a new job (`rerunOf`), from the task `from` (by
/// default the first that did not end ok): the tasks before it keep their
/// outputs and do not run again.
#[utoipa::path(post, path = "/job/{jobID}/rerun", tag = "jobs", request_body = RerunInput,
    params(("jobID" = String, Path, description = "Job ID")),
    responses((status = 201, body = inline(crate::extract::Envelope<Job>)), (status = 400, body = super::ErrorBody),
              (status = 404, body = super::ErrorBody), (status = 409, body = super::ErrorBody)))]
pub async fn rerun_job(
    State(state): State<AppState>,
    access: Access,
    Ids([id]): Ids<1>,
    Body(input): Body<RerunInput>,
) -> ApiResult<impl IntoResponse> {
    let trace_parent = crust_runtime::telemetry::current_traceparent();
    let created_job = jobs::api::rerun(
        &state.pool,
        id,
        input.from.as_deref(),
        access.actor(),
        trace_parent.as_deref(),
    )
    .await?;
    crust_runtime::metrics::metrics().jobs_created.inc();
    state
        .queue
        .run(created_job.job.id, &created_job.job.queue, trace_parent);
    Ok(created(
        created_job.job.link_trace(state.trace_url.as_deref()),
    ))
}

/// Job routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/job", get(list_jobs).post(create_job))
        .route("/job/bulk", post(create_jobs))
        .route("/job/cancel", post(cancel_jobs))
        .route("/job/rerun", post(rerun_jobs))
        .route(
            "/job/{jobID}",
            get(read_job).post(update_job).delete(cancel_job),
        )
        .route("/job/{jobID}/logs", get(job_logs))
        .route("/job/{jobID}/steps", get(job_steps))
        .route("/job/{jobID}/signal", post(signal_job))
        .route("/job/{jobID}/rerun", post(rerun_job))
}
