//! Steps: the durable record of a job's progress. A step is one task of the
//! job's workflow, or one item of a `forEach` task; its outcome is committed
//! as it happens, so a job that resumes (after a lost worker, after
//! waiting, or as a rerun) never runs a finished step again.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Where a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    /// Not started yet (shown for tasks without a stored step).
    Pending,
    /// A try is under way, or was when its worker was lost.
    Running,
    /// Parked: waiting for a signal, a child job or the end of a sleep.
    Waiting,
    Ok,
    Error,
    /// Its `when` was false: output `null`, and it satisfies its dependents.
    Skipped,
    Cancelled,
}

impl StepStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Waiting => "waiting",
            StepStatus::Ok => "ok",
            StepStatus::Error => "error",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored status.
    pub fn parse(text: &str) -> Result<StepStatus, String> {
        [
            StepStatus::Pending,
            StepStatus::Running,
            StepStatus::Waiting,
            StepStatus::Ok,
            StepStatus::Error,
            StepStatus::Skipped,
            StepStatus::Cancelled,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
        .ok_or_else(|| format!("{text:?} is not a step status"))
    }

    /// Finished for good: a resumed job does not run it again.
    pub fn is_done(self) -> bool {
        matches!(self, StepStatus::Ok | StepStatus::Skipped)
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step as `GET /job/{id}/steps` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// The task's name.
    pub task: String,
    /// For the items of a `forEach` task: the item's position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<u32>,
    pub status: StepStatus,
    /// Tries started so far (across runs of the job).
    pub tries: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// What the step produced (ok steps; `null` for skipped ones).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub output: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Step {
    /// A task that has no stored step yet.
    pub fn pending(task: &str) -> Step {
        Step {
            task: task.to_owned(),
            index: None,
            status: StepStatus::Pending,
            tries: 0,
            started_at: None,
            finished_at: None,
            output: None,
            error: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_by_name() {
        for status in [
            StepStatus::Pending,
            StepStatus::Running,
            StepStatus::Waiting,
            StepStatus::Ok,
            StepStatus::Error,
            StepStatus::Skipped,
            StepStatus::Cancelled,
        ] {
            assert_eq!(StepStatus::parse(status.as_str()), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert!(StepStatus::parse("done").is_err());
        assert!(StepStatus::Skipped.is_done() && !StepStatus::Waiting.is_done());
    }
}
