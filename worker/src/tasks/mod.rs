//! Task kinds: what each step of a workflow does. The job runner calls
//! [`run`] once per try, with the timeout and retries applied around it.
//!
//! [`run`] renders the templates in the parameters over the job's context,
//! reads them into the kind's typed parameters
//! ([`crust_shared::model::task::parse_params`]) and hands them to the kind.

pub mod egress;
pub mod fail;
pub mod http;
pub mod log;
pub mod record;
pub mod script;
pub mod sleep;
pub mod template;

#[cfg(test)]
pub(crate) mod test_support;

use std::time::Duration;

use serde_json::{json, Map, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::logs::JobLogger;
use crust_shared::model::job::Parameters;
use crust_shared::model::task::{is_raw_param, parse_params, TaskParams};
use crust_shared::Id;

/// What every task of every job shares.
#[derive(Clone)]
pub struct TaskEnv {
    pub pool: PgPool,
    /// The `http` task's client, with the egress policy and default timeout.
    pub http: egress::HttpClient,
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

impl TaskContext<'_> {
    /// The JSON templates are rendered over: `{"parameters", "outputs",
    /// "job": {"id"}}` plus `"error"` in `onError` tasks.
    pub fn template_context(&self) -> Value {
        let mut context = json!({
            "parameters": self.parameters,
            "outputs": self.outputs,
            "job": {"id": self.job_id.to_string()},
        });
        if let (Some(error), Value::Object(map)) = (self.error, &mut context) {
            map.insert("error".into(), Value::String(error.to_owned()));
        }
        context
    }

    /// Writes one line to the job's log under this task's name.
    pub fn log(&self, level: &str, message: impl Into<String>, data: Option<Value>) {
        self.log.log(level, Some(self.task_name), message, data);
    }
}

/// Why a try failed; the message goes to the job's log and error.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error("{0}")]
    Failed(String),
}

impl TaskError {
    /// Shorthand for [`TaskError::Failed`].
    pub fn failed(message: impl Into<String>) -> Self {
        TaskError::Failed(message.into())
    }

    /// The error of a try stopped by [`TaskContext::cancel`].
    pub fn cancelled() -> Self {
        TaskError::Failed("cancelled".into())
    }
}

/// Runs one try of a task of `kind` with `params`; returns its output.
pub async fn run(kind: &str, params: &Value, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    let params = render_params(kind, params, ctx)?;
    let params = parse_params(kind, &params)
        .map_err(|reason| TaskError::failed(format!("params: {reason}")))?;
    match params {
        TaskParams::Log(params) => log::run(params, ctx),
        TaskParams::Sleep(params) => sleep::run(params, ctx).await,
        TaskParams::Fail(params) => fail::run(params),
        TaskParams::Http(params) => http::run(params, ctx).await,
        TaskParams::RecordCreate(params) => record::create(params, ctx).await,
        TaskParams::RecordUpdate(params) => record::update(params, ctx).await,
        TaskParams::RecordDelete(params) => record::delete(params, ctx).await,
        TaskParams::RecordQuery(params) => record::query(params, ctx).await,
        TaskParams::Script(params) => script::run(params, ctx).await,
    }
}

/// Renders the templates in `params`, leaving raw ones (a script's source)
/// as they are.
pub fn render_params(
    kind: &str,
    params: &Value,
    ctx: &TaskContext<'_>,
) -> Result<Value, TaskError> {
    let context = ctx.template_context();
    match params {
        Value::Object(map) => map
            .iter()
            .map(|(name, value)| {
                let rendered = if is_raw_param(kind, name) {
                    value.clone()
                } else {
                    template::render(value, &context).map_err(TaskError::Failed)?
                };
                Ok((name.clone(), rendered))
            })
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        other => template::render(other, &context).map_err(TaskError::Failed),
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::Harness;
    use serde_json::json;

    #[tokio::test]
    async fn run_renders_templates_before_the_kind_sees_them() {
        let mut h = Harness::new();
        h.parameters.insert("who".into(), "Ada".into());
        h.outputs.insert("prev".into(), json!({"n": 3}));
        let out = h
            .run(
                "log",
                json!({"message": "hi {{ parameters.who }} x{{ outputs.prev.n }}"}),
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"message": "hi Ada x3"}));
        let err = h
            .run("log", json!({"message": "{{ outputs.prev.m }}"}))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "template {{ outputs.prev.m }}: outputs.prev has no \"m\""
        );
    }

    #[tokio::test]
    async fn rendered_params_are_checked_again() {
        let mut h = Harness::new();
        h.parameters.insert("s".into(), "soon".into());
        let err = h
            .run("sleep", json!({"seconds": "{{ parameters.s }}"}))
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("params: seconds: must be a number"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_error_is_in_the_context_of_on_error_tasks() {
        let mut h = Harness::new();
        h.error = Some("boom".into());
        let out = h
            .run(
                "log",
                json!({"message": "failed: {{ error }} in job {{ job.id }}"}),
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"message": "failed: boom in job 1"}));
    }
}
