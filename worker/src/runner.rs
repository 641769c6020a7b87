//! Runs one claimed job: the graph of its tasks (see [`crate::graph`]),
//! each try bounded by the task's timeout and retried after the task's
//! delays, the whole bounded by the workflow's timeout; on failure the
//! `onError` tasks run in order with the error in their context. The run
//! stops early when it is cancelled, when it loses its claim, or when the
//! worker hands it back at shutdown; it parks when a step must wait.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crust_model::job::JobStatus;
use crust_model::task::TaskKind;
use crust_model::template::{parse_template, Segment};
use crust_model::Id;
use crust_store::jobs::run::{Claimed, Park};
use crust_store::steps;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::graph::{Engine, Halt, Progress, Resume};
use crate::logs::JobLogger;
use crate::tasks::{Outputs, TaskEnv};

/// Why a run was told to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Someone cancelled the job: end it `cancelled`.
    Cancelled,
    /// The claim was lost (another run owns the job): write nothing.
    Lost,
    /// The worker is shutting down: give the job back unfinished.
    HandBack,
}

/// How a run is told to stop.
#[derive(Debug, Default)]
pub struct Stop {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl Stop {
    /// Stops the run; the first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut slot) = self.reason.lock() {
            slot.get_or_insert(reason);
        }
        self.token.cancel();
    }

    /// Why it was stopped, if it was.
    pub fn reason(&self) -> Option<StopReason> {
        self.reason.lock().ok().and_then(|slot| *slot)
    }

    /// Fires when the run is stopped.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// A run this worker holds: its attempt and how to stop it.
type Running = (i32, Arc<Stop>);

/// The runs this worker holds, by job ID, with their attempt.
#[derive(Debug, Default, Clone)]
pub struct Runs {
    inner: Arc<Mutex<HashMap<Id, Running>>>,
}

impl Runs {
    /// Registers a run and returns its stop handle.
    pub fn insert(&self, id: Id, attempt: i32) -> Arc<Stop> {
        let stop = Arc::new(Stop::default());
        if let Ok(mut runs) = self.inner.lock() {
            runs.insert(id, (attempt, stop.clone()));
        }
        stop
    }

    /// Forgets a run.
    pub fn remove(&self, id: Id) {
        if let Ok(mut runs) = self.inner.lock() {
            runs.remove(&id);
        }
    }

    /// Every run as (job, attempt).
    pub fn snapshot(&self) -> Vec<(Id, i32)> {
        self.inner
            .lock()
            .map(|runs| {
                runs.iter()
                    .map(|(id, (attempt, _))| (*id, *attempt))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stops the run of `id` if this worker holds it.
    pub fn stop(&self, id: Id, reason: StopReason) -> bool {
        let stop = self
            .inner
            .lock()
            .ok()
            .and_then(|runs| runs.get(&id).map(|(_, stop)| stop.clone()));
        match stop {
            Some(stop) => {
                stop.stop(reason);
                true
            }
            None => false,
        }
    }

    /// Stops every run.
    pub fn stop_all(&self, reason: StopReason) {
        if let Ok(runs) = self.inner.lock() {
            for (_, stop) in runs.values() {
                stop.stop(reason);
            }
        }
    }

    /// How many runs are held.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|runs| runs.len()).unwrap_or(0)
    }

    /// Whether none are.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How a run ended, before it is written.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Write this status (and error).
    Finish(JobStatus, Option<String>),
    /// A step cannot finish now: the job waits, holding no worker.
    Park(Park),
    /// The claim was lost: write nothing.
    Lost,
    /// Give the job back to the queue.
    HandBack,
}

/// Runs a claimed job to its ending: the graph of its tasks from where its
/// steps left off (see [`crate::graph`]), then, if it failed, the `onError`
/// tasks in order.
pub async fn run(env: &TaskEnv, job: &Claimed, log: &JobLogger, stop: &Stop) -> Ending {
    log.log(
        "info",
        None,
        format!("job started (attempt {})", job.attempt),
        None,
    )
    .await;
    // A new job's first run has no steps yet: one read saved per job.
    let stored = match job.resumes {
        true => steps::list(&env.pool, job.id).await,
        false => Ok(Vec::new()),
    };
    let resume = match stored {
        Ok(stored) => Resume::of(stored),
        Err(err) => {
            tracing::warn!(job.id = %job.id, error = %err, "cannot read the job's steps; handed back");
            return Ending::HandBack;
        }
    };
    if resume.finished() > 0 {
        log.log(
            "info",
            None,
            format!(
                "resuming: {} steps already finished are not run again",
                resume.finished()
            ),
            None,
        )
        .await;
    }
    let keep = Keep::of(job);
    let engine = Engine {
        env,
        job,
        log,
        stop,
        resume: &resume,
        keep: &keep,
    };
    let timeout = (job.timeout > 0).then(|| Duration::from_secs(u64::from(job.timeout)));
    let graph_done = engine.run_graph();
    let (result, mut outputs) = match timeout {
        Some(limit) => match tokio::time::timeout(limit, graph_done).await {
            Ok(done) => done,
            Err(_) => (
                Err(Halt::Failed(format!(
                    "workflow timed out after {} s",
                    job.timeout
                ))),
                Outputs::new(),
            ),
        },
        None => graph_done.await,
    };
    match result {
        Ok(Progress::Done(_)) => {
            log.log("info", None, "job finished", None).await;
            Ending::Finish(JobStatus::Ok, None)
        }
        Ok(Progress::Parked(park)) => {
            log.log("info", None, "job waiting", None).await;
            Ending::Park(park)
        }
        Err(Halt::Stopped) => stopped(stop, log).await,
        Err(Halt::Failed(error)) => {
            if !job.on_error.is_empty() {
                log.log("info", None, "running onError tasks", None).await;
                // The handlers get their own task timeouts, not what is left
                // of the workflow's (which may be what ran out).
                for task in &job.on_error {
                    let handled = engine
                        .tries(task, -1, None, &outputs, Some(&error), stop.token(), false)
                        .await;
                    match handled {
                        Ok(output) => {
                            if keep.keeps(&task.name) {
                                outputs.insert(task.name.clone(), output);
                            }
                        }
                        Err(Halt::Stopped) => return stopped(stop, log).await,
                        Err(Halt::Failed(handler_error)) => {
                            log.log(
                                "error",
                                None,
                                format!("onError failed: {handler_error}"),
                                None,
                            )
                            .await;
                            break;
                        }
                    }
                }
            }
            // Last, so the log reads in the order things happened.
            log.log("error", None, format!("job failed: {error}"), None)
                .await;
            Ending::Finish(JobStatus::Error, Some(error))
        }
    }
}

async fn stopped(stop: &Stop, log: &JobLogger) -> Ending {
    match stop.reason() {
        Some(StopReason::Lost) => Ending::Lost,
        Some(StopReason::HandBack) => {
            log.log("warn", None, "worker shutting down; job handed back", None)
                .await;
            Ending::HandBack
        }
        Some(StopReason::Cancelled) | None => {
            log.log("warn", None, "job cancelled", None).await;
            Ending::Finish(JobStatus::Cancelled, None)
        }
    }
}

/// The outputs a run keeps: those some template of the workflow names
/// (`{{ outputs.fetch… }}`), or all of them when a script or a template
/// may read any. An output nothing can read is dropped once logged, so a
/// long workflow does not hold every response it fetched.
#[derive(Debug)]
pub enum Keep {
    All,
    Named(HashSet<String>),
}

impl Keep {
    pub fn of(job: &Claimed) -> Keep {
        let mut named = HashSet::new();
        for task in job.tasks.iter().chain(&job.on_error) {
            if !collect_refs(task.kind, &task.params, &mut named) {
                return Keep::All;
            }
            // `forEach` is a template; `when` is a script that may read any.
            let items = task
                .for_each
                .as_ref()
                .map(|text| Value::String(text.clone()));
            if items.is_some_and(|items| !collect_refs(task.kind, &items, &mut named))
                || task
                    .when
                    .as_ref()
                    .is_some_and(|when| when.contains("outputs"))
            {
                return Keep::All;
            }
        }
        Keep::Named(named)
    }

    pub fn keeps(&self, name: &str) -> bool {
        match self {
            Keep::All => true,
            Keep::Named(names) => names.contains(name),
        }
    }
}

/// Adds the task names `params` reference under `outputs`; false when they
/// may read any output (`{{ outputs }}`, or raw text such as a script's
/// source that mentions `outputs`).
fn collect_refs(kind: TaskKind, params: &Value, named: &mut HashSet<String>) -> bool {
    fn walk(value: &Value, named: &mut HashSet<String>) -> bool {
        match value {
            Value::String(text) => {
                let Ok(segments) = parse_template(text) else {
                    return false;
                };
                for segment in segments {
                    if let Segment::Ref(path) = segment {
                        match (path.first().map(String::as_str), path.get(1)) {
                            (Some("outputs"), Some(name)) => {
                                named.insert(name.clone());
                            }
                            (Some("outputs"), None) => return false,
                            _ => {}
                        }
                    }
                }
                true
            }
            Value::Array(items) => items.iter().all(|item| walk(item, named)),
            Value::Object(map) => map.values().all(|item| walk(item, named)),
            _ => true,
        }
    }
    match params {
        Value::Object(map) => map.iter().all(|(name, value)| {
            if kind.is_raw_param(name) {
                !value.to_string().contains("outputs")
            } else {
                walk(value, named)
            }
        }),
        other => walk(other, named),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(tasks: Value) -> Claimed {
        Claimed {
            id: Id(1),
            attempt: 1,
            parameters: Default::default(),
            created_by: Id(1),
            creator_roles: None,
            trace_parent: None,
            tasks: serde_json::from_value(tasks).unwrap(),
            on_error: Vec::new(),
            timeout: 0,
            parallelism: 8,
            waited: 0.0,
            late: None,
            resumes: false,
        }
    }

    #[test]
    fn only_outputs_a_template_names_are_kept() {
        let keep = Keep::of(&job(json!([
            {"name": "a", "kind": "http", "params": {"url": "http://x/"}},
            {"name": "b", "kind": "http", "params": {"url": "http://x/{{ outputs.a.body.id }}"}},
            {"name": "c", "kind": "log", "params": {"message": "{{ parameters.p }}", "data": ["{{ outputs.b }}"]}},
        ])));
        assert!(
            keep.keeps("a") && keep.keeps("b") && !keep.keeps("c"),
            "{keep:?}"
        );
        let all = Keep::of(&job(json!([
            {"name": "a", "kind": "http", "params": {"url": "http://x/"}},
            {"name": "s", "kind": "script", "params": {"source": "outputs.a.status"}},
        ])));
        assert!(all.keeps("a") && all.keeps("s"));
        let all = Keep::of(&job(json!([
            {"name": "a", "kind": "log", "params": {"message": "{{ outputs }}"}},
        ])));
        assert!(all.keeps("z"));
    }
}
