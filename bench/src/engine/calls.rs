//! The engine bench's api calls, and running one job at a time.

use std::time::Duration;

use anyhow::Context;
use crust_model::Id;
use reqwest::StatusCode;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::client::{response_id, Api};
use crate::jobs::rows::{job_spans, wait_ok, Batch};

impl Api {
    /// `POST /job/` of `workflow_id` with these `parameters`; yields its ID.
    pub async fn create_job_with(&self, workflow_id: Id, parameters: &Value) -> anyhow::Result<Id> {
        let body = json!({"workflowID": workflow_id.to_string(), "parameters": parameters});
        let answer = self
            .call(
                self.http.post(self.url("/job/")).json(&body),
                StatusCode::CREATED,
            )
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("POST {}", self.url("/job/")))?;
        response_id(&answer, "jobID").map_err(anyhow::Error::msg)
    }
}

/// Creates one job, waits until it is ok and returns its run time,
/// `finished_at - started_at` on the database clock, in seconds.
pub async fn run_one(
    api: &Api,
    db: &PgPool,
    workflow_id: Id,
    parameters: &Value,
    limit: Duration,
    what: &str,
) -> anyhow::Result<f64> {
    let id = api.create_job_with(workflow_id, parameters).await?;
    let batch = Batch::of(workflow_id, &[id]).context("one job makes a batch")?;
    wait_ok(db, &batch, limit, what).await?;
    let spans = job_spans(db, &batch, "finished_at - started_at").await?;
    spans
        .first()
        .copied()
        .with_context(|| format!("job {id} has no run time"))
}

/// The nearest-rank median of `values` (zero when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n => sorted[n.div_ceil(2) - 1],
    }
}

/// Smallest and largest of `values` (zeros when empty).
pub fn min_max(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_use_the_nearest_rank() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.0);
        assert_eq!(median(&[]), 0.0);
        assert_eq!(min_max(&[2.0, 5.0, 1.0]), (1.0, 5.0));
    }
}
