//! Task kinds: what each step of a workflow does. The job runner calls
//! [`run`] once per try, with the timeout and retries applied around it.
//!
//! [`run`] renders the templates in the parameters over the job's context
//! (the renderer is [`crust_model::template`]; [`TaskContext`] is its
//! scope), reads them into the kind's typed parameters
//! ([`crust_model::task::parse_params`]) and hands them to the kind's
//! executor: the dispatch is an exhaustive `match` on
//! [`TaskParams`], one variant per [`TaskKind`], so a kind without an
//! executor does not compile.

pub mod egress;
pub mod fail;
pub mod http;
pub mod import;
pub mod log;
pub mod record;
pub mod script;
pub mod sleep;

#[cfg(test)]
pub(crate) mod test_support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::logs::JobLogger;
use crust_model::job::Parameters;
use crust_model::secret;
use crust_model::task::{parse_params, TaskKind, TaskParams};
use crust_model::template;
use crust_model::Id;

/// What every task of every job shares.
#[derive(Clone)]
pub struct TaskEnv {
    pub pool: PgPool,
    /// The `http` task's client, with the egress policy and default timeout.
    pub http: egress::HttpClient,
    /// Largest output of a task, in bytes of JSON; also the most a task's
    /// rendered params may take and the largest `http` body read.
    pub max_output_bytes: usize,
    /// A `sleep` longer than this parks the job instead of holding a slot.
    pub durable_sleep: Duration,
    /// Where the engine's step checkpoints go: one batching writer per
    /// worker (see [`crate::step_writer`]).
    pub steps: crate::step_writer::StepWriter,
    /// What `{{ secrets.name }}` renders to.
    pub secrets: std::sync::Arc<crate::secrets::Secrets>,
}

/// The default of [`TaskEnv::durable_sleep`], in seconds.
pub const DEFAULT_DURABLE_SLEEP_SECS: u64 = 30;

/// The default of [`TaskEnv::max_output_bytes`] (1 MiB).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 1024 * 1024;

/// Outputs of the tasks that ran, by task name, as serialised JSON: a
/// `serde_json::Value` tree of small objects costs 10–20× its JSON.
pub type Outputs = BTreeMap<String, Box<RawValue>>;

/// What a task produced: a value, or JSON text already checked with
/// [`crate::storable::check_text_json`] (an `http` body), which is never
/// turned into a tree.
#[derive(Debug)]
pub enum Output {
    Value(Value),
    Raw(Box<RawValue>),
}

impl Output {
    /// The output as checked, capped JSON text.
    pub fn into_raw(self, max: usize) -> Result<Box<RawValue>, TaskError> {
        let raw = match self {
            Output::Value(value) => crate::storable::to_raw(&value, usize::MAX)
                .map_err(|reason| TaskError::failed(format!("output: {reason}")))?,
            Output::Raw(raw) => raw,
        };
        if raw.get().len() > max {
            return Err(TaskError::failed(format!(
                "output: {} bytes of JSON, more than the limit of {max} (CRUST_WORKER_MAX_OUTPUT_BYTES)",
                raw.get().len()
            )));
        }
        Ok(raw)
    }
}

/// The context of one try of one task.
pub struct TaskContext<'a> {
    pub env: &'a TaskEnv,
    pub job_id: Id,
    /// The user the job acts for (its creator); record tasks write as them.
    pub user: Id,
    /// The creator's roles, whose permissions record operations need;
    /// `None` for a system job (not restricted).
    pub roles: Option<&'a [String]>,
    pub task_name: &'a str,
    /// The job's parameters.
    pub parameters: &'a Parameters,
    /// Outputs of the tasks that ran before, by task name.
    pub outputs: &'a Outputs,
    /// In `onError` tasks: the failure being handled.
    pub error: Option<&'a str>,
    pub log: &'a JobLogger,
    /// This try's time limit, if any (the runner enforces it too).
    pub timeout: Option<Duration>,
    /// Fires when the job is cancelled or times out.
    pub cancel: &'a CancellationToken,
    /// In a `forEach` task: this item and its position.
    pub item: Option<(&'a Value, usize)>,
}

/// Templates are rendered over `{"parameters", "outputs", "job": {"id"}}`
/// plus `"error"` in `onError` tasks, looked up in place: outputs stay
/// serialised and only the referenced part is parsed.
impl template::Scope for TaskContext<'_> {
    fn lookup(&self, path: &[String]) -> Result<Value, String> {
        match path.first().map(String::as_str) {
            Some("parameters") => match path.get(1) {
                None => Ok(json!(self.parameters)),
                Some(name) => {
                    let value = self
                        .parameters
                        .get(name)
                        .ok_or_else(|| template::missing(path, 1))?;
                    template::lookup(value, path, 2).cloned()
                }
            },
            Some("outputs") => match path.get(1) {
                None => self
                    .outputs
                    .iter()
                    .map(|(name, raw)| {
                        serde_json::from_str(raw.get())
                            .map(|value| (name.clone(), value))
                            .map_err(|err| err.to_string())
                    })
                    .collect::<Result<Map<_, _>, _>>()
                    .map(Value::Object),
                Some(name) => {
                    let raw = self
                        .outputs
                        .get(name)
                        .ok_or_else(|| template::missing(path, 1))?;
                    template::lookup_raw(raw, path, 2)
                }
            },
            Some("job") => {
                let job = json!({"job": {"id": self.job_id.to_string()}});
                template::lookup(&job, path, 0).cloned()
            }
            Some("item") if self.item.is_some() => {
                let item = json!({"item": self.item.map(|(item, _)| item)});
                template::lookup(&item, path, 0).cloned()
            }
            Some("index") if self.item.is_some() => {
                let index = json!({"index": self.item.map(|(_, index)| index)});
                template::lookup(&index, path, 0).cloned()
            }
            Some("error") if self.error.is_some() => {
                let error = json!({"error": self.error});
                template::lookup(&error, path, 0).cloned()
            }
            _ => Err(template::missing(path, 0)),
        }
    }
}

impl TaskContext<'_> {
    /// The whole template context as one JSON value (for scripts).
    pub fn template_context(&self) -> Value {
        use template::Scope;
        let mut context = json!({
            "parameters": self.parameters,
            "outputs": self.lookup(&["outputs".to_owned()]).unwrap_or(Value::Null),
            "job": {"id": self.job_id.to_string()},
        });
        if let (Some(error), Value::Object(map)) = (self.error, &mut context) {
            map.insert("error".into(), Value::String(error.to_owned()));
        }
        if let (Some((item, index)), Value::Object(map)) = (self.item, &mut context) {
            map.insert("item".into(), item.clone());
            map.insert("index".into(), json!(index));
        }
        context
    }

    /// Writes one line to the job's log under this task's name.
    pub async fn log(&self, level: &str, message: impl Into<String>, data: Option<Value>) {
        self.log
            .log(level, Some(self.task_name), message, data)
            .await;
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

/// Runs one try of a task of `kind` with `params`; returns its output as
/// checked JSON text of at most [`TaskEnv::max_output_bytes`]: a value that
/// cannot be stored or is larger fails the try.
///
/// Secret values the params used are masked in the output and the error
/// (and, through the job's logger, in every later log line of the run).
pub async fn run_to_raw(
    kind: TaskKind,
    params: &Value,
    ctx: &TaskContext<'_>,
) -> Result<Box<RawValue>, TaskError> {
    let result = match run_output(kind, params, ctx).await {
        Ok(output) => output.into_raw(ctx.env.max_output_bytes),
        Err(err) => Err(err),
    };
    let masked = ctx.log.masked();
    if masked.is_empty() {
        return result;
    }
    match result {
        Ok(raw) => Ok(crate::storable::mask_raw(raw, &masked)),
        Err(TaskError::Failed(message)) => {
            Err(TaskError::Failed(secret::redact(&message, &masked)))
        }
    }
}

/// [`run_to_raw`] as a value (tests).
pub async fn run(
    kind: TaskKind,
    params: &Value,
    ctx: &TaskContext<'_>,
) -> Result<Value, TaskError> {
    let raw = run_to_raw(kind, params, ctx).await?;
    serde_json::from_str(raw.get()).map_err(|err| TaskError::failed(err.to_string()))
}

async fn run_output(
    kind: TaskKind,
    params: &Value,
    ctx: &TaskContext<'_>,
) -> Result<Output, TaskError> {
    if !names_secrets(kind, params) {
        return execute(prepare(kind, params, ctx)?, ctx).await;
    }
    let values = ctx.env.secrets.values().await.map_err(TaskError::Failed)?;
    let scope = WithSecrets {
        ctx,
        values: &values,
        used: std::sync::Mutex::default(),
    };
    let rendered = render_in(kind, params, &scope, ctx.env.max_output_bytes);
    // Masked from here on, even if rendering failed half-way.
    let used = scope.used.into_inner().unwrap_or_default();
    ctx.log.mask(used);
    let params = parse_params(kind, &rendered?)
        .map_err(|reason| TaskError::failed(format!("params: {reason}")))?;
    execute(params, ctx).await
}

/// True when a rendered param of the task may reference `secrets`.
fn names_secrets(kind: TaskKind, params: &Value) -> bool {
    match params {
        Value::Object(map) => map
            .iter()
            .any(|(name, value)| !kind.is_raw_param(name) && mentions_secrets(value)),
        other => mentions_secrets(other),
    }
}

fn mentions_secrets(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains("secrets"),
        Value::Array(items) => items.iter().any(mentions_secrets),
        Value::Object(map) => map.values().any(mentions_secrets),
        _ => false,
    }
}

/// A task's scope plus `secrets`, remembering which values were used.
struct WithSecrets<'a> {
    ctx: &'a TaskContext<'a>,
    values: &'a crate::secrets::Values,
    used: std::sync::Mutex<Vec<String>>,
}

impl template::Scope for WithSecrets<'_> {
    fn lookup(&self, path: &[String]) -> Result<Value, String> {
        if path.first().map(String::as_str) != Some("secrets") {
            return self.ctx.lookup(path);
        }
        let name = path
            .get(1)
            .ok_or("secrets: name one secret, as {{ secrets.name }}")?;
        if path.len() > 2 {
            return Err(format!(
                "secrets.{name}: a secret is a string; it has no fields"
            ));
        }
        let value = self.values.get(name).ok_or_else(|| {
            format!("secrets.{name}: no secret of that name (PUT /secret/{name} sets one)")
        })?;
        if let Ok(mut used) = self.used.lock() {
            used.push(value.clone());
        }
        Ok(Value::String(value.clone()))
    }
}

/// Renders `params` over the context and reads them into the kind's typed
/// parameters.
pub fn prepare(
    kind: TaskKind,
    params: &Value,
    ctx: &TaskContext<'_>,
) -> Result<TaskParams, TaskError> {
    let params = render_params(kind, params, ctx)?;
    parse_params(kind, &params).map_err(|reason| TaskError::failed(format!("params: {reason}")))
}

/// Runs one try of a task whose parameters are ready. The kinds that park
/// the job (`wait`, `workflow`) are the job runner's own: it handles them
/// before a try starts.
pub async fn execute(params: TaskParams, ctx: &TaskContext<'_>) -> Result<Output, TaskError> {
    let value = match params {
        TaskParams::Log(params) => log::run(params, ctx).await,
        TaskParams::Sleep(params) => sleep::run(params, ctx).await,
        TaskParams::Fail(params) => fail::run(params),
        TaskParams::Http(params) => return http::run(params, ctx).await,
        TaskParams::RecordCreate(params) => record::create(params, ctx).await,
        TaskParams::RecordUpdate(params) => record::update(params, ctx).await,
        TaskParams::RecordDelete(params) => record::delete(params, ctx).await,
        TaskParams::RecordQuery(params) => record::query(params, ctx).await,
        TaskParams::RecordImport(params) => import::run(params, ctx).await,
        TaskParams::Script(params) => script::run(params, ctx).await,
        TaskParams::Workflow(_) | TaskParams::Wait(_) => Err(TaskError::failed(
            "this kind runs only as a step of a job (the job runner handles it)",
        )),
    };
    value.map(Output::Value)
}

/// Renders the templates in `params`, leaving raw ones (a script's source)
/// as they are. What the templates produce may take at most
/// [`TaskEnv::max_output_bytes`] in all.
pub fn render_params(
    kind: TaskKind,
    params: &Value,
    ctx: &TaskContext<'_>,
) -> Result<Value, TaskError> {
    render_in(kind, params, ctx, ctx.env.max_output_bytes)
}

/// [`render_params`] over any scope, with `left` bytes to render into.
fn render_in(
    kind: TaskKind,
    params: &Value,
    ctx: &(impl template::Scope + ?Sized),
    mut left: usize,
) -> Result<Value, TaskError> {
    match params {
        Value::Object(map) => map
            .iter()
            .map(|(name, value)| {
                let rendered = if kind.is_raw_param(name) {
                    value.clone()
                } else {
                    template::render_limited(value, ctx, &mut left).map_err(TaskError::Failed)?
                };
                Ok((name.clone(), rendered))
            })
            .collect::<Result<Map<_, _>, _>>()
            .map(Value::Object),
        other => template::render_limited(other, ctx, &mut left).map_err(TaskError::Failed),
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
        h.output("prev", json!({"n": 3}));
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
    async fn parameters_of_any_json_type_render_at_any_depth() {
        let mut h = Harness::new();
        h.parameters.insert("n".into(), json!(5));
        h.parameters.insert(
            "customer".into(),
            json!({"email": "a@b.io", "tags": ["vip"]}),
        );
        let out = h
            .run(
                "log",
                json!({"message": "{{ parameters.customer.email }} {{ parameters.n }} \
                    {{ parameters.customer.tags.0 }} {{ parameters.who | default: \"ann\" }}"}),
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"message": "a@b.io 5 vip ann"}));
        let err = h
            .run("log", json!({"message": "{{ parameters.customer.phone }}"}))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "template {{ parameters.customer.phone }}: parameters.customer has no \"phone\""
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
    async fn outputs_over_the_cap_or_unstorable_fail_the_task() {
        let mut h = Harness::new();
        h.env.max_output_bytes = 1024;
        let out = h
            .run(
                "script",
                json!({"source": "let s = \"\"; for i in 0..1000 { s += \"y\"; } s"}),
            )
            .await
            .unwrap();
        assert_eq!(out.as_str().unwrap().len(), 1000);
        let err = h
            .run(
                "script",
                json!({"source": "let s = \"\"; for i in 0..2000 { s += \"y\"; } s"}),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "output: 2002 bytes of JSON, more than the limit of 1024 (CRUST_WORKER_MAX_OUTPUT_BYTES)"
        );
        let err = h
            .run(
                "script",
                json!({"source": "#{v: [1.7976931348623157e308]}"}),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "output: $.v[0]: the number 1.7976931348623157e308 cannot be stored and read back (out of range)"
        );
        let err = h
            .run("script", json!({"source": "\"a\\x00b\""}))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "output: $: contains a NUL character (\\u0000)"
        );
    }

    #[tokio::test]
    async fn rendering_is_capped_and_outputs_are_read_in_place() {
        let mut h = Harness::new();
        h.parameters
            .insert("big".into(), "x".repeat(64 * 1024).into());
        let message = "{{ parameters.big }}".repeat(2_000);
        let err = h.run("log", json!({"message": message})).await.unwrap_err();
        assert!(
            err.to_string().ends_with(
                "renders to more than the limit of bytes a task's params may take (CRUST_WORKER_MAX_OUTPUT_BYTES)"
            ),
            "{err}"
        );
        h.output(
            "fetch",
            json!({"body": [{"id": 1}, {"id": 2, "name": "b"}]}),
        );
        let out = h
            .run(
                "log",
                json!({"message": "{{ outputs.fetch.body.1.name }}", "data": "{{ outputs.fetch.body }}"}),
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"message": "b"}));
        assert_eq!(
            h.logged(),
            vec![(
                "info".into(),
                "b".into(),
                Some(json!([{"id": 1}, {"id": 2, "name": "b"}]))
            )]
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
