//! The api calls of the jobs bench.

use chrono::{DateTime, SecondsFormat, Utc};
use crust_model::Id;
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::client::{response_id, Api};
use crate::report::Op;

impl Api {
    /// `POST /workflow/` of `tasks` with no timeout; yields its ID.
    pub async fn create_workflow(&self, name: &str, tasks: &Value) -> anyhow::Result<Id> {
        let body = json!({"name": name, "tasks": tasks, "timeout": 0});
        self.create("/workflow/", &body, "workflowID").await
    }

    /// `POST /job/`, expecting 201; yields the new job's ID.
    pub async fn create_job(
        &self,
        workflow_id: Id,
        start_at: Option<String>,
    ) -> Result<Id, String> {
        let mut body = json!({"workflowID": workflow_id.to_string()});
        if let Some(at) = start_at {
            body["startAt"] = Value::String(at);
        }
        let answer = self
            .call(
                self.http.post(format!("{}/job/", self.base)).json(&body),
                StatusCode::CREATED,
            )
            .await?;
        response_id(&answer, "jobID")
    }

    /// `POST /job/bulk` of `count` jobs of `workflow_id`, expecting 201;
    /// yields their IDs.
    pub async fn create_jobs_bulk(&self, workflow_id: Id, count: usize) -> Result<Vec<Id>, String> {
        let item = json!({"workflowID": workflow_id.to_string()});
        let body = json!({"jobs": vec![item; count]});
        let answer = self
            .call(
                self.http
                    .post(format!("{}/job/bulk", self.base))
                    .json(&body),
                StatusCode::CREATED,
            )
            .await?;
        let jobs = answer
            .pointer("/response")
            .and_then(Value::as_array)
            .ok_or_else(|| "answer has no response array".to_owned())?;
        jobs.iter()
            .map(|job| {
                job.get("jobID")
                    .and_then(Value::as_str)
                    .ok_or_else(|| "a job has no jobID string".to_owned())
                    .and_then(Id::parse)
            })
            .collect()
    }

    /// `DELETE /job/{id}`, expecting 200.
    pub async fn cancel_job(&self, id: Id) -> Result<(), String> {
        self.call(
            self.http.delete(format!("{}/job/{id}", self.base)),
            StatusCode::OK,
        )
        .await
        .map(drop)
    }

    /// The status `GET /job/{id}` shows.
    pub async fn job_status(&self, id: Id) -> Result<String, String> {
        let answer = self
            .call(
                self.http.get(format!("{}/job/{id}", self.base)),
                StatusCode::OK,
            )
            .await?;
        answer
            .pointer("/response/status")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| "answer has no response.status string".to_owned())
    }
}

/// Job creates for the load driver; with `starts`, job `i` starts at
/// `first + i × step` (RFC 3339 with milliseconds).
pub fn api_create_job(
    api: &Api,
    workflow_id: Id,
    starts: Option<(DateTime<Utc>, chrono::Duration)>,
) -> impl Fn(usize) -> Op<Id> + Clone + Send + 'static {
    let api = api.clone();
    move |index| {
        let api = api.clone();
        let start_at = starts.map(|(first, step)| {
            let at = first + step * i32::try_from(index).unwrap_or(i32::MAX);
            at.to_rfc3339_opts(SecondsFormat::Millis, true)
        });
        Box::pin(async move { api.create_job(workflow_id, start_at).await })
    }
}
