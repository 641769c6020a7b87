//! Task kinds: what each step of a workflow does. The job runner calls
//! [`run`] once per try, with the timeout and retries applied around it.

use std::time::Duration;

use serde_json::{Map, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::logs::JobLogger;
use crust_shared::model::job::Parameters;
use crust_shared::Id;

/// What every task of every job shares.
#[derive(Clone)]
pub struct TaskEnv {
    pub pool: PgPool,
    pub http: reqwest::Client,
}

/// The context of one try of one task.
pub struct TaskContext<'a> {
    pub env: &'a TaskEnv,
    pub job_id: Id,
    /// The user the job acts for (its creator); record tasks write as them.
    pub user: Id,
    pub task_name: &'a str,
    /// The job's parameters.
    pub parameters: &'a Parameters,
    /// Outputs of the tasks that ran before, by task name.
    pub outputs: &'a Map<String, Value>,
    /// In `onError` tasks: the failure being handled.
    pub error: Option<&'a str>,
    pub log: &'a JobLogger,
    /// This try's time limit, if any (the runner enforces it too).
    pub timeout: Option<Duration>,
    /// Fires when the job is cancelled or times out.
    pub cancel: &'a CancellationToken,
}

/// Why a try failed; the message goes to the job's log and error.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Failed(String),
}

/// Runs one try of a task of `kind` with `params`; returns its output.
pub async fn run(kind: &str, params: &Value, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    let _ = (params, ctx);
    Err(TaskError::Failed(format!(
        "task kind {kind:?} is not available"
    )))
}
