//! The workflow engine of one run: walks the task graph (a task starts once
//! every task it `needs` is done or skipped, at most `parallelism` at a
//! time), evaluates `when`, fans a `forEach` task out over its items, and
//! checkpoints every step in `job_steps` as it starts and ends. A step found
//! finished (ok or skipped) when the run starts is not run again: after a
//! lost worker, after waiting, in a rerun. A step that cannot finish now (a
//! `wait` for a signal, a child job, a long `sleep`) parks: the run ends
//! with [`Ending::Park`](crate::runner::Ending) and the job waits holding no
//! worker, until the scheduler or a signal puts it back in the queue.
//!
//! Every step write is fenced on the run's attempt; a fenced-out write
//! means another run owns the job, and this one stops as lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use crust_model::job::JobStatus;
use crust_model::step::StepStatus;
use crust_model::task::{ScriptParams, TaskKind, TaskParams, WaitParams, WorkflowParams};
use crust_model::template;
use crust_model::workflow::{self, Task};
use crust_store::jobs::run::{self as store, Claimed, Park};
use crust_store::steps::{self, StoredStep, TASK_ITEM};
use futures_util::stream::{FuturesUnordered, StreamExt};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::logs::{JobLogger, MAX_DATA_BYTES};
use crate::runner::{Keep, Stop, StopReason};
use crate::tasks::{self, Outputs, TaskContext, TaskEnv};

/// Most items one `forEach` may have.
pub const MAX_ITEMS: usize = 10_000;

/// How a step, a task or the whole graph came out, short of failing.
#[derive(Debug)]
pub enum Progress {
    /// Finished, with its output.
    Done(Box<RawValue>),
    /// Cannot finish now: the job waits for this.
    Parked(Park),
}

/// Why a step, a task or the graph stopped short.
#[derive(Debug)]
pub enum Halt {
    /// It failed; the message goes to the job's error.
    Failed(String),
    /// The run was stopped (cancel, hand back, lost claim) or, inside the
    /// graph, a sibling's failure interrupted it.
    Stopped,
}

type Outcome = Result<Progress, Halt>;

fn null() -> Box<RawValue> {
    RawValue::from_string("null".into()).expect("null is JSON")
}

/// The finished steps of a job when its run starts.
#[derive(Debug, Default)]
pub struct Resume {
    done: HashMap<(String, i32), Box<RawValue>>,
}

impl Resume {
    pub fn of(stored: Vec<StoredStep>) -> Resume {
        let done = stored
            .into_iter()
            .filter(|step| step.status().is_done())
            .map(|step| {
                let output = step.output.map(|json| json.0).unwrap_or_else(null);
                ((step.task, step.item), output)
            })
            .collect();
        Resume { done }
    }

    /// The output of a finished step.
    fn done(&self, task: &str, item: i32) -> Option<&RawValue> {
        self.done
            .get(&(task.to_owned(), item))
            .map(|output| &**output)
    }

    /// How many steps were already finished.
    pub fn finished(&self) -> usize {
        self.done.len()
    }
}

/// One run's engine: what every step needs.
pub struct Engine<'a> {
    pub env: &'a TaskEnv,
    pub job: &'a Claimed,
    pub log: &'a JobLogger,
    pub stop: &'a Stop,
    pub resume: &'a Resume,
    pub keep: &'a Keep,
}

impl Engine<'_> {
    /// Runs the graph of the job's tasks; returns how it came out and the
    /// outputs kept (for `onError` tasks).
    pub async fn run_graph(&self) -> (Outcome, Outputs) {
        let tasks = &self.job.tasks;
        let graph = match workflow::graph("tasks", tasks) {
            Ok(graph) => graph,
            Err(reason) => return (Err(Halt::Failed(reason)), Outputs::new()),
        };
        let count = tasks.len();
        let (mut started, mut done) = (vec![false; count], vec![false; count]);
        let mut outputs = Arc::new(Outputs::new());
        for (at, task) in tasks.iter().enumerate() {
            if let Some(output) = self.resume.done(&task.name, TASK_ITEM) {
                started[at] = true;
                done[at] = true;
                if self.keep.keeps(&task.name) {
                    Arc::make_mut(&mut outputs).insert(task.name.clone(), output.to_owned());
                }
            }
        }
        // Cancelled when one branch fails, to interrupt the others.
        let branches = self.stop.token().child_token();
        let parallelism = self.job.parallelism.max(1) as usize;
        let mut running = FuturesUnordered::new();
        let mut park: Option<Park> = None;
        let mut failure: Option<String> = None;
        loop {
            if failure.is_none() {
                let ready: Vec<usize> = graph.ready(&started, &done).collect();
                for at in ready {
                    if running.len() >= parallelism {
                        break;
                    }
                    started[at] = true;
                    let snapshot = outputs.clone();
                    let branches = &branches;
                    running.push(async move {
                        (at, self.run_task(&tasks[at], snapshot, branches).await)
                    });
                }
            }
            let Some((at, outcome)) = running.next().await else {
                break;
            };
            match outcome {
                Ok(Progress::Done(output)) => {
                    done[at] = true;
                    let name = &tasks[at].name;
                    if self.keep.keeps(name) {
                        Arc::make_mut(&mut outputs).insert(name.clone(), output);
                    }
                }
                Ok(Progress::Parked(waits)) => merge(&mut park, waits),
                Err(Halt::Failed(error)) => {
                    if failure.is_none() {
                        failure = Some(error);
                        branches.cancel();
                    }
                }
                Err(Halt::Stopped) if self.stop.reason().is_some() => {
                    return (Err(Halt::Stopped), unwrap(outputs));
                }
                // Interrupted by a sibling's failure: that failure is the news.
                Err(Halt::Stopped) => {}
            }
        }
        let outcome = match (failure, park) {
            (Some(error), _) => Err(Halt::Failed(error)),
            (None, Some(park)) => Ok(Progress::Parked(park)),
            (None, None) if done.iter().all(|d| *d) => Ok(Progress::Done(null())),
            (None, None) => Err(Halt::Failed(
                "the task graph cannot go on (a task's needs never finished)".into(),
            )),
        };
        (outcome, unwrap(outputs))
    }

    /// One task of the graph: its `when`, then its one step or its items.
    async fn run_task(
        &self,
        task: &Task,
        outputs: Arc<Outputs>,
        branches: &CancellationToken,
    ) -> Outcome {
        if let Some(expression) = &task.when {
            match self.when(task, expression, &outputs, branches).await {
                Ok(true) => {}
                Ok(false) => {
                    self.record(&task.name, TASK_ITEM, StepStatus::Skipped, None, None)
                        .await?;
                    self.log
                        .log(
                            "info",
                            Some(&task.name),
                            format!("task {} skipped (when is false)", task.name),
                            None,
                        )
                        .await;
                    return Ok(Progress::Done(null()));
                }
                Err(reason) => {
                    let error = format!("task {}: when: {reason}", task.name);
                    return self.fail(&task.name, TASK_ITEM, error).await;
                }
            }
        }
        match &task.for_each {
            Some(items) => self.for_each(task, items, &outputs, branches).await,
            None => {
                self.run_step(task, TASK_ITEM, None, &outputs, branches)
                    .await
            }
        }
    }

    /// Evaluates a `when` expression in the script sandbox.
    async fn when(
        &self,
        task: &Task,
        expression: &str,
        outputs: &Outputs,
        cancel: &CancellationToken,
    ) -> Result<bool, String> {
        let ctx = self.context(task, outputs, None, None, cancel);
        let params = ScriptParams {
            source: expression.to_owned(),
            max_operations: crust_model::task::DEFAULT_SCRIPT_OPERATIONS,
        };
        match tasks::script::run(params, &ctx).await {
            Ok(Value::Bool(flag)) => Ok(flag),
            Ok(other) => Err(format!("gave {other}, not true or false")),
            Err(err) => Err(err.to_string()),
        }
    }

    /// A `forEach` task: its items, at most `concurrency` at once, each a
    /// step of its own; the output is the items' outputs in order.
    async fn for_each(
        &self,
        task: &Task,
        items: &str,
        outputs: &Outputs,
        branches: &CancellationToken,
    ) -> Outcome {
        self.start(&task.name, TASK_ITEM, None).await?;
        let ctx = self.context(task, outputs, None, None, branches);
        let list = match template::render_str(items, &ctx) {
            Ok(Value::Array(list)) => list,
            Ok(other) => {
                let shown: String = other.to_string().chars().take(80).collect();
                let error = format!("task {}: forEach: gave {shown}, not a list", task.name);
                return self.fail(&task.name, TASK_ITEM, error).await;
            }
            Err(reason) => {
                let error = format!("task {}: forEach: {reason}", task.name);
                return self.fail(&task.name, TASK_ITEM, error).await;
            }
        };
        if list.len() > MAX_ITEMS {
            let error = format!(
                "task {}: forEach: {} items, more than the limit of {MAX_ITEMS}",
                task.name,
                list.len()
            );
            return self.fail(&task.name, TASK_ITEM, error).await;
        }
        let mut results: Vec<Option<Box<RawValue>>> = (0..list.len())
            .map(|index| {
                self.resume
                    .done(&task.name, index as i32)
                    .map(ToOwned::to_owned)
            })
            .collect();
        let items_stop = branches.child_token();
        let mut running = FuturesUnordered::new();
        let (mut next, mut park, mut failure) = (0, None, None);
        loop {
            while failure.is_none() && running.len() < task.concurrency() && next < list.len() {
                let index = next;
                next += 1;
                if results[index].is_some() {
                    continue;
                }
                let item = (&list[index], index);
                let items_stop = &items_stop;
                running.push(async move {
                    let outcome = self
                        .run_step(task, index as i32, Some(item), outputs, items_stop)
                        .await;
                    (index, outcome)
                });
            }
            let Some((index, outcome)) = running.next().await else {
                break;
            };
            match outcome {
                Ok(Progress::Done(output)) => results[index] = Some(output),
                Ok(Progress::Parked(waits)) => merge(&mut park, waits),
                Err(Halt::Failed(error)) => {
                    if failure.is_none() {
                        failure = Some(error);
                        items_stop.cancel();
                    }
                }
                Err(Halt::Stopped) if branches.is_cancelled() => return Err(Halt::Stopped),
                Err(Halt::Stopped) => {}
            }
        }
        if let Some(error) = failure {
            return self.fail(&task.name, TASK_ITEM, error).await;
        }
        if let Some(park) = park {
            return Ok(Progress::Parked(park));
        }
        let mut joined = String::from("[");
        for (index, output) in results.iter().enumerate() {
            if index > 0 {
                joined.push(',');
            }
            joined.push_str(output.as_deref().map_or("null", RawValue::get));
        }
        joined.push(']');
        if joined.len() > self.env.max_output_bytes {
            let error = format!(
                "task {}: output: {} bytes of JSON, more than the limit of {} (CRUST_WORKER_MAX_OUTPUT_BYTES)",
                task.name,
                joined.len(),
                self.env.max_output_bytes
            );
            return self.fail(&task.name, TASK_ITEM, error).await;
        }
        let output = RawValue::from_string(joined).map_err(|err| Halt::Failed(err.to_string()))?;
        self.finish_ok(task, TASK_ITEM, output).await
    }

    /// One step: a task's only step, or one item of a `forEach`.
    async fn run_step(
        &self,
        task: &Task,
        item: i32,
        value: Option<(&Value, usize)>,
        outputs: &Outputs,
        cancel: &CancellationToken,
    ) -> Outcome {
        if matches!(
            task.kind,
            TaskKind::Wait | TaskKind::Workflow | TaskKind::Sleep
        ) {
            let ctx = self.context(task, outputs, None, value, cancel);
            let params = match tasks::prepare(task.kind, &task.params, &ctx) {
                Ok(params) => params,
                Err(err) => {
                    let error = format!("task {}: {err}", task.name);
                    return self.fail(&task.name, item, error).await;
                }
            };
            match params {
                TaskParams::Wait(params) => return self.wait(task, item, params).await,
                TaskParams::Workflow(params) => return self.child(task, item, params).await,
                // A long sleep parks, unless a timeout must cut it short:
                // the task's own, or the workflow's (which bounds a run).
                TaskParams::Sleep(params)
                    if params.seconds > self.env.durable_sleep.as_secs_f64()
                        && self.job.timeout == 0
                        && (task.timeout == 0 || f64::from(task.timeout) > params.seconds) =>
                {
                    return self.sleep(task, item, params.seconds).await
                }
                _ => {}
            }
        }
        match self
            .tries(task, item, value, outputs, None, cancel, true)
            .await
        {
            Ok(output) => self.finish_ok(task, item, output).await,
            Err(Halt::Failed(error)) => self.fail(&task.name, item, error).await,
            // Interrupted: the step stays `running` and runs again.
            Err(Halt::Stopped) => Err(Halt::Stopped),
        }
    }

    /// A `sleep` longer than `CRUST_DURABLE_SLEEP_SECS`: the end is fixed by
    /// its first run; until then the job waits, holding no worker.
    async fn sleep(&self, task: &Task, item: i32, seconds: f64) -> Outcome {
        let end = Utc::now() + chrono::Duration::milliseconds((seconds * 1000.0) as i64);
        let until = self
            .start(&task.name, item, Some(end))
            .await?
            .unwrap_or(end);
        if Utc::now() >= until {
            return self.finish_ok(task, item, null()).await;
        }
        let message = format!(
            "task {} sleeps until {} (the job waits, holding no worker)",
            task.name,
            until.to_rfc3339()
        );
        let park = Park {
            wake_at: Some(until),
            ..Park::default()
        };
        self.park(task, item, message, park).await
    }

    /// A `wait` step: takes the signal if it came, else parks until it
    /// does or the timeout (fixed by the first run) passes.
    async fn wait(&self, task: &Task, item: i32, params: WaitParams) -> Outcome {
        let deadline = params
            .timeout
            .map(|seconds| Utc::now() + chrono::Duration::milliseconds((seconds * 1000.0) as i64));
        let until = self.start(&task.name, item, deadline).await?;
        let taken = store::take_signal(
            &self.env.pool,
            self.job.id,
            self.job.attempt,
            &task.name,
            item,
            &params.event,
        )
        .await
        .map_err(|err| self.lost_store(err))?;
        if let Some(data) = taken {
            self.log
                .log(
                    "info",
                    Some(&task.name),
                    format!("task {} got signal {:?}", task.name, params.event),
                    None,
                )
                .await;
            return Ok(Progress::Done(data));
        }
        if let Some(until) = until.filter(|until| Utc::now() >= *until) {
            let error = format!(
                "task {}: no signal {:?} came by {} (its timeout)",
                task.name,
                params.event,
                until.to_rfc3339()
            );
            return self.fail(&task.name, item, error).await;
        }
        let message = format!("task {} waits for signal {:?}", task.name, params.event);
        let park = Park {
            wake_at: until,
            events: vec![params.event],
            children: Vec::new(),
        };
        self.park(task, item, message, park).await
    }

    /// A `workflow` step: starts the child job once; with `wait`, parks
    /// until the child ends and takes its outputs (or its failure).
    async fn child(&self, task: &Task, item: i32, params: WorkflowParams) -> Outcome {
        let step = if item >= 0 {
            format!("{}[{item}]", task.name)
        } else {
            task.name.clone()
        };
        self.start(&task.name, item, None).await?;
        let child = match store::start_child(
            &self.env.pool,
            self.job.id,
            self.job.attempt,
            &step,
            params.workflow_id,
            &params.parameters,
        )
        .await
        {
            Ok(Some(child)) => child,
            Ok(None) => return Err(self.lost()),
            Err(crust_store::Error::Domain(err)) => {
                let error = format!("task {}: {err}", task.name);
                return self.fail(&task.name, item, error).await;
            }
            Err(err) => return Err(self.lost_store(err)),
        };
        if !params.wait {
            let output = to_raw(&json!({"jobID": child.id.to_string()}));
            return self.finish_ok(task, item, output).await;
        }
        match child.status {
            JobStatus::Ok => {
                let outputs = steps::outputs(&self.env.pool, child.id)
                    .await
                    .map_err(|err| self.lost_store(err))?
                    .unwrap_or_else(|| to_raw(&json!({})));
                self.finish_ok(task, item, outputs).await
            }
            JobStatus::Error | JobStatus::Cancelled => {
                let why = child.error.map(|e| format!(": {e}")).unwrap_or_default();
                let error = format!(
                    "task {}: child job {} ended {}{why}",
                    task.name, child.id, child.status
                );
                self.fail(&task.name, item, error).await
            }
            JobStatus::Queued | JobStatus::Running | JobStatus::Waiting => {
                let message = format!("task {} waits for child job {}", task.name, child.id);
                let park = Park {
                    children: vec![step],
                    ..Park::default()
                };
                self.park(task, item, message, park).await
            }
        }
    }

    /// The context of a try of `task`.
    fn context<'c>(
        &'c self,
        task: &'c Task,
        outputs: &'c Outputs,
        error: Option<&'c str>,
        item: Option<(&'c Value, usize)>,
        cancel: &'c CancellationToken,
    ) -> TaskContext<'c> {
        TaskContext {
            env: self.env,
            job_id: self.job.id,
            user: self.job.created_by,
            roles: self.job.creator_roles.as_deref(),
            task_name: &task.name,
            parameters: &self.job.parameters,
            outputs,
            error,
            log: self.log,
            timeout: (task.timeout > 0).then(|| Duration::from_secs(u64::from(task.timeout))),
            cancel,
            item,
        }
    }

    /// The tries of a task: each bounded by its timeout, retried after its
    /// delays. With `durable`, each try is counted on the step first.
    #[allow(clippy::too_many_arguments)]
    pub async fn tries(
        &self,
        task: &Task,
        item: i32,
        value: Option<(&Value, usize)>,
        outputs: &Outputs,
        error: Option<&str>,
        cancel: &CancellationToken,
        durable: bool,
    ) -> Result<Box<RawValue>, Halt> {
        let name = Some(task.name.as_str());
        let label = match value {
            Some((_, index)) => format!("{}[{index}]", task.name),
            None => task.name.clone(),
        };
        let limit = (task.timeout > 0).then(|| Duration::from_secs(u64::from(task.timeout)));
        let tries = task.retries.len() + 1;
        for try_number in 1..=tries {
            if cancel.is_cancelled() {
                return Err(Halt::Stopped);
            }
            if durable {
                self.start(&task.name, item, None).await?;
            }
            self.log
                .log(
                    "info",
                    name,
                    format!("task {label} ({}) started", task.kind),
                    None,
                )
                .await;
            // Each try gets its own token so a timed-out try is told to stop.
            let try_token = cancel.child_token();
            let context = self.context(task, outputs, error, value, &try_token);
            let span = tracing::info_span!("task", task.name = %task.name, task.kind = %task.kind, task.try = try_number);
            let attempt = tasks::run_to_raw(task.kind, &task.params, &context).instrument(span);
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(Halt::Stopped),
                result = with_limit(limit, attempt) => result,
            };
            try_token.cancel();
            let message = match result {
                Some(Ok(output)) => {
                    // Small outputs go in the log; a large one is named by size.
                    let size = output.get().len();
                    if size <= MAX_DATA_BYTES {
                        let data =
                            RawValue::from_string(format!(r#"{{"output":{}}}"#, output.get())).ok();
                        self.log
                            .log_raw("info", name, format!("task {label} ok"), data)
                            .await;
                    } else {
                        self.log
                            .log_raw(
                                "info",
                                name,
                                format!(
                                    "task {label} ok (an output of {size} bytes, too large for the log)"
                                ),
                                None,
                            )
                            .await;
                    }
                    return Ok(output);
                }
                Some(Err(err)) => err.to_string(),
                None => format!("timed out after {} s", task.timeout),
            };
            if try_number < tries {
                let delay = task.retries[try_number - 1];
                self.log.log(
                    "warn",
                    name,
                    format!("task {label} failed (try {try_number} of {tries}): {message}; retrying in {delay} s"),
                    None,
                ).await;
                tokio::select! {
                    () = cancel.cancelled() => return Err(Halt::Stopped),
                    () = tokio::time::sleep(Duration::from_secs(u64::from(delay))) => {}
                }
            } else {
                self.log
                    .log(
                        "error",
                        name,
                        format!("task {label} failed: {message}"),
                        None,
                    )
                    .await;
                return Err(Halt::Failed(format!("task {label}: {message}")));
            }
        }
        Err(Halt::Failed(format!("task {label}: no tries left")))
    }

    /// Counts a try of a step; returns its fixed `until`, if any.
    async fn start(
        &self,
        task: &str,
        item: i32,
        until: Option<chrono::DateTime<Utc>>,
    ) -> Result<Option<chrono::DateTime<Utc>>, Halt> {
        let start = steps::Start {
            job: self.job.id,
            attempt: self.job.attempt,
            task: task.to_owned(),
            item,
            until,
        };
        match self.env.steps.start_step(start).await {
            Ok(Some(until)) => Ok(until),
            Ok(None) => Err(self.lost()),
            Err(err) => Err(self.unwritten(&err)),
        }
    }

    /// Records where a step ended.
    async fn record(
        &self,
        task: &str,
        item: i32,
        status: StepStatus,
        output: Option<&RawValue>,
        error: Option<&str>,
    ) -> Result<(), Halt> {
        let record = steps::Record {
            job: self.job.id,
            attempt: self.job.attempt,
            task: task.to_owned(),
            item,
            status,
            output: output.map(ToOwned::to_owned),
            error: error.map(str::to_owned),
        };
        match self.env.steps.record(record).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(self.lost()),
            Err(err) => Err(self.unwritten(&err)),
        }
    }

    /// Parks a step: recorded `waiting`, said in the log, and the run ends
    /// waiting for `park`.
    async fn park(&self, task: &Task, item: i32, message: String, park: Park) -> Outcome {
        self.record(&task.name, item, StepStatus::Waiting, None, None)
            .await?;
        self.log.log("info", Some(&task.name), message, None).await;
        Ok(Progress::Parked(park))
    }

    async fn finish_ok(&self, task: &Task, item: i32, output: Box<RawValue>) -> Outcome {
        self.record(&task.name, item, StepStatus::Ok, Some(&output), None)
            .await?;
        Ok(Progress::Done(output))
    }

    async fn fail(&self, task: &str, item: i32, error: String) -> Outcome {
        self.record(task, item, StepStatus::Error, None, Some(&error))
            .await?;
        Err(Halt::Failed(error))
    }

    /// Another run owns the job: stop writing.
    fn lost(&self) -> Halt {
        self.stop.stop(StopReason::Lost);
        Halt::Stopped
    }

    /// A step could not be written (Postgres unreachable): give the job
    /// back, so it resumes from its last recorded step.
    fn lost_store(&self, err: crust_store::Error) -> Halt {
        self.unwritten(&err.to_string())
    }

    /// [`Engine::lost_store`] for an error already in words.
    fn unwritten(&self, err: &str) -> Halt {
        tracing::warn!(job.id = %self.job.id, error = %err, "cannot record a step; job handed back");
        self.stop.stop(StopReason::HandBack);
        Halt::Stopped
    }
}

fn merge(into: &mut Option<Park>, park: Park) {
    let merged = into.get_or_insert_with(Park::default);
    merged.wake_at = match (merged.wake_at, park.wake_at) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    merged.events.extend(park.events);
    merged.children.extend(park.children);
}

fn unwrap(outputs: Arc<Outputs>) -> Outputs {
    Arc::try_unwrap(outputs).unwrap_or_else(|shared| (*shared).clone())
}

fn to_raw(value: &Value) -> Box<RawValue> {
    serde_json::value::to_raw_value(value).unwrap_or_else(|_| null())
}

async fn with_limit<T>(
    limit: Option<Duration>,
    work: impl std::future::Future<Output = T>,
) -> Option<T> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, work).await.ok(),
        None => Some(work.await),
    }
}
