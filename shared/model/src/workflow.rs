//! Workflows: named lists of tasks, an error handler, a timeout, default
//! job parameters and an optional cron schedule. Every save is a new
//! [`WorkflowVersion`]; a job runs the version it was created with.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::flow::{Concurrency, RateLimit, ValidConcurrency, ValidRateLimit};
use crate::graph::Graph;
use crate::job::{check_parameters_at, Parameters};
use crate::required_name;
use crate::task::{validate_params, TaskKind};
use crate::template::{check_template, has_template};
use crate::trigger::{check_triggers, Trigger};
use crate::{Error, Id, Result};

/// Most tasks in one list, retries per task, and seconds in any timeout
/// or retry delay (a day).
pub const MAX_TASKS: usize = 100;
pub const MAX_RETRIES: usize = 20;
pub const MAX_SECONDS: u32 = 86_400;

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Task {
    /// Unique within the workflow; later tasks read this task's output
    /// as `{{ outputs.<name>… }}`.
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9_]*$", max_length = 64)]
    pub name: String,
    /// The task kind: log, sleep, fail, http, record.create, record.update,
    /// record.delete, record.query or script (an unknown one is refused as
    /// the JSON is read). The document's `kind` enum is set from
    /// `TaskKind::ALL` by the api's `openapi.rs`.
    #[schema(value_type = String)]
    pub kind: TaskKind,
    /// Kind-specific parameters; string values are templates.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub params: Value,
    /// Delays in seconds before each retry: `[1, 5, 30]` = up to 3 retries.
    #[serde(default)]
    pub retries: Vec<u32>,
    /// Seconds one try may take; 0 = no limit.
    #[serde(default)]
    pub timeout: u32,
    /// The tasks that must finish (or be skipped) before this one starts.
    /// Absent: the task listed before it; `[]`: at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<String>>,
    /// An expression (the `script` sandbox) over `parameters` and
    /// `outputs`; false skips the task (output `null`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096)]
    pub when: Option<String>,
    /// A template yielding a JSON list: the task runs once per item, with
    /// `{{ item }}` and `{{ index }}`; its output is the items' outputs in
    /// order.
    #[serde(default, rename = "forEach", skip_serializing_if = "Option::is_none")]
    pub for_each: Option<String>,
    /// With `forEach`: items run at once, at most (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100)]
    pub concurrency: Option<u32>,
}

/// Default and largest `concurrency` of a `forEach` task.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// See [`DEFAULT_CONCURRENCY`].
pub const MAX_CONCURRENCY: u32 = 100;
/// Default and largest `parallelism` of a workflow.
pub const DEFAULT_PARALLELISM: u32 = 8;
/// See [`DEFAULT_PARALLELISM`].
pub const MAX_PARALLELISM: u32 = 64;
/// Longest `when` expression, in characters.
pub const MAX_WHEN_LEN: usize = 4096;

impl Task {
    /// Items of its `forEach` run at once, at most.
    pub fn concurrency(&self) -> usize {
        self.concurrency.unwrap_or(DEFAULT_CONCURRENCY) as usize
    }
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A workflow as stored and shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    #[serde(rename = "workflowID")]
    #[schema(value_type = String, example = "3")]
    pub id: Id,
    pub name: String,
    pub tasks: Vec<Task>,
    pub on_error: Vec<Task>,
    /// Seconds the whole job may take; 0 = no limit.
    pub timeout: u32,
    /// Tasks of one job that run at once, at most.
    pub parallelism: u32,
    /// Default job parameters: merged under each job's own when it is
    /// created (a cron job gets exactly these).
    #[schema(value_type = Object)]
    pub parameters: Parameters,
    /// Cron expression (`sec min hour day-of-month month day-of-week [year]`
    /// or the usual five fields); each slot starts one job.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Record events that start a job of this workflow.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
    /// The current version: 1 when created, one more at every edit. New
    /// jobs run this version (`GET /workflow/{id}/versions` lists them).
    pub version: i32,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// The queue its jobs go to (broker queue `<prefix>.jobs.<queue>`);
    /// workers consume the queues they are told to.
    #[schema(example = "default")]
    pub queue: String,
    /// Paused (`POST /workflow/{id}/pause`): its jobs stay queued and are
    /// not started, and its cron slots are skipped, until it is resumed.
    pub paused: bool,
    /// When it was paused, while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
    /// At most `limit` of its jobs with the same key run at once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    /// Job starts per key per second or minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Its webhook (`POST /hook/{workflowID}`), if any; the secret shows as
    /// `***` (send `***` back to keep it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<Webhook>,
}

/// A workflow's webhook: deliveries to `POST /hook/{workflowID}` signed
/// with `secret` start its jobs (README → Automation → Webhooks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    /// The HMAC-SHA256 key, 16 to 256 characters; shown as `***`.
    #[schema(min_length = 3, max_length = 256)]
    pub secret: String,
}

/// What a save does to the webhook secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookChange {
    /// No webhook (removed, or never had one).
    None,
    /// Keep the stored secret (`***` sent back).
    Keep,
    /// Set this secret.
    Set(String),
}

/// The body of a workflow create or update.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowInput {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub tasks: Vec<Task>,
    #[serde(default)]
    #[schema(max_items = 100)]
    pub on_error: Vec<Task>,
    /// Seconds the whole job may take; 0 = no limit.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 86_400)]
    pub timeout: i64,
    /// Tasks of one job that run at once, at most (default 8).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 64)]
    pub parallelism: Option<i64>,
    /// Default job parameters (a JSON object of at most 64 KiB as JSON),
    /// merged under each job's own: the job's keys win.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Parameters,
    #[serde(default)]
    pub schedule: Option<String>,
    /// A webhook: `{"secret"}` (16 to 256 characters; `***` keeps the
    /// stored one).
    #[serde(default)]
    pub webhook: Option<Webhook>,
    /// At most `limit` of its jobs with the same rendered `key` run at
    /// once across all workers; the rest wait queued, in creation order.
    #[serde(default)]
    pub concurrency: Option<Concurrency>,
    /// Job starts per rendered `key`, cluster-wide.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Record events that start a job (checked against the modules at save).
    #[serde(default)]
    #[schema(max_items = 20)]
    pub triggers: Vec<Trigger>,
    /// The queue its jobs go to (default `default`): letters, digits, `_`
    /// and `-`, starting with a letter or digit, at most 64 characters.
    #[serde(default)]
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
    )]
    pub queue: Option<String>,
}

/// The body of a workflow edit: every key is optional and an absent one
/// keeps its current value; `"schedule": null` (or `""`) removes the
/// schedule. Lists (`tasks`, `onError`) are replaced whole when given.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowPatch {
    pub name: Option<String>,
    pub tasks: Option<Vec<Task>>,
    pub on_error: Option<Vec<Task>>,
    /// Seconds the whole job may take; 0 = no limit.
    pub timeout: Option<i64>,
    /// Tasks of one job that run at once, at most.
    #[schema(minimum = 1, maximum = 64)]
    pub parallelism: Option<i64>,
    /// Default job parameters, replaced whole when given.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Parameters>,
    /// Cron expression; `null` removes the schedule.
    #[serde(default, deserialize_with = "crate::explicit_null")]
    #[schema(value_type = Option<String>)]
    pub schedule: Option<Option<String>>,
    /// The webhook; `null` removes it, `{"secret": "***"}` keeps its secret.
    #[serde(default, deserialize_with = "crate::explicit_null")]
    #[schema(value_type = Option<Webhook>)]
    pub webhook: Option<Option<Webhook>>,
    /// `null` removes it (the jobs waiting for a slot start).
    #[serde(default, deserialize_with = "crate::explicit_null")]
    #[schema(value_type = Option<Concurrency>)]
    pub concurrency: Option<Option<Concurrency>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "crate::explicit_null")]
    #[schema(value_type = Option<RateLimit>)]
    pub rate_limit: Option<Option<RateLimit>>,
    /// Record-event triggers, replaced whole when given (`[]` removes them).
    pub triggers: Option<Vec<Trigger>>,
    /// The queue its new jobs go to (jobs created earlier keep theirs).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
    )]
    pub queue: Option<String>,
}

impl WorkflowPatch {
    /// The full input this edit makes of `current`.
    pub fn apply(self, current: Workflow) -> WorkflowInput {
        WorkflowInput {
            name: self.name.unwrap_or(current.name),
            tasks: self.tasks.unwrap_or(current.tasks),
            on_error: self.on_error.unwrap_or(current.on_error),
            timeout: self.timeout.unwrap_or(i64::from(current.timeout)),
            parallelism: Some(self.parallelism.unwrap_or(i64::from(current.parallelism))),
            parameters: self.parameters.unwrap_or(current.parameters),
            schedule: self.schedule.unwrap_or(current.schedule),
            webhook: self.webhook.unwrap_or(current.webhook),
            concurrency: self.concurrency.unwrap_or(current.concurrency),
            rate_limit: self.rate_limit.unwrap_or(current.rate_limit),
            triggers: self.triggers.unwrap_or(current.triggers),
            queue: Some(self.queue.unwrap_or(current.queue)),
        }
    }
}

/// A workflow input that passed validation.
#[derive(Debug, Clone)]
pub struct ValidWorkflow {
    pub name: String,
    pub tasks: Vec<Task>,
    pub on_error: Vec<Task>,
    pub timeout: u32,
    pub parallelism: u32,
    pub parameters: Parameters,
    pub schedule: Option<Schedule>,
    pub webhook: WebhookChange,
    /// As given, for showing, and checked.
    pub concurrency: Option<(Concurrency, ValidConcurrency)>,
    pub rate_limit: Option<(RateLimit, ValidRateLimit)>,
    /// Checked here for shape only; the store checks modules, fields and
    /// filters in the saving transaction.
    pub triggers: Vec<Trigger>,
    /// A valid queue name ([`check_queue`]).
    pub queue: String,
}

impl ValidWorkflow {
    /// What a version of this workflow records.
    pub fn definition(&self) -> Definition {
        Definition {
            name: Some(self.name.clone()),
            tasks: self.tasks.clone(),
            on_error: self.on_error.clone(),
            timeout: self.timeout,
            parallelism: self.parallelism,
            parameters: self.parameters.clone(),
            schedule: self.schedule.as_ref().map(|s| s.text.clone()),
            concurrency: self.concurrency.as_ref().map(|(shown, _)| shown.clone()),
            rate_limit: self.rate_limit.as_ref().map(|(shown, _)| shown.clone()),
            triggers: self.triggers.clone(),
        }
    }
}

/// A workflow's definition as one version recorded it: what its jobs run.
/// Versions saved before names and parameters were recorded lack them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Definition {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub tasks: Vec<Task>,
    #[serde(default)]
    pub on_error: Vec<Task>,
    /// Seconds the whole job may take; 0 = no limit.
    #[serde(default)]
    pub timeout: u32,
    /// Tasks of one job that run at once, at most.
    #[serde(default = "default_parallelism")]
    pub parallelism: u32,
    /// Default job parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Parameters,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<Concurrency>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<Trigger>,
}

fn default_parallelism() -> u32 {
    DEFAULT_PARALLELISM
}

/// One saved version of a workflow.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowVersion {
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub definition: Definition,
}

/// A parsed cron schedule and the text it came from.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub text: String,
    pub cron: cron::Schedule,
}

impl Schedule {
    /// Parses a cron expression; five-field (minute-first) expressions get a
    /// leading `0` seconds field.
    pub fn parse(text: &str) -> std::result::Result<Schedule, String> {
        let text = text.trim();
        let fields = text.split_whitespace().count();
        let full = if fields == 5 {
            format!("0 {text}")
        } else {
            text.to_owned()
        };
        let cron = cron::Schedule::from_str(&full)
            .map_err(|err| format!("{text:?} is not a valid cron expression: {err}"))?;
        Ok(Schedule {
            text: text.to_owned(),
            cron,
        })
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.after(&after).next()
    }
}

impl WorkflowInput {
    /// Checks names, kinds, parameters, retries, timeouts and the schedule.
    pub fn validate(self) -> Result<ValidWorkflow> {
        let name = required_name("name", &self.name)?;
        if self.timeout < 0 || self.timeout > i64::from(MAX_SECONDS) {
            return Err(Error::invalid(format!(
                "timeout: must be between 0 and {MAX_SECONDS} seconds"
            )));
        }
        let parallelism = self.parallelism.unwrap_or(i64::from(DEFAULT_PARALLELISM));
        if !(1..=i64::from(MAX_PARALLELISM)).contains(&parallelism) {
            return Err(Error::invalid(format!(
                "parallelism: must be between 1 and {MAX_PARALLELISM}"
            )));
        }
        check_tasks("tasks", &self.tasks)?;
        check_tasks("onError", &self.on_error)?;
        graph("tasks", &self.tasks).map_err(Error::invalid)?;
        if let Some(at) = self.on_error.iter().position(|task| task.needs.is_some()) {
            return Err(Error::invalid(format!(
                "onError[{at}].needs: onError tasks run in the order listed; needs is not allowed"
            )));
        }
        check_parameters_at("parameters", &self.parameters)?;
        check_triggers(&self.triggers)?;
        let schedule = match self.schedule.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(
                Schedule::parse(text)
                    .map_err(|reason| Error::invalid(format!("schedule: {reason}")))?,
            ),
        };
        if let Some(schedule) = &schedule {
            if schedule.next_after(Utc::now()).is_none() {
                return Err(Error::invalid("schedule: the expression never fires again"));
            }
        }
        let webhook = match self.webhook {
            None => WebhookChange::None,
            Some(Webhook { secret }) if secret == crate::secret::MASK => WebhookChange::Keep,
            Some(Webhook { secret }) => {
                let len = secret.chars().count();
                if !(crate::webhook::MIN_SECRET_LEN..=crate::webhook::MAX_SECRET_LEN).contains(&len)
                    || secret.contains('\0')
                {
                    return Err(Error::invalid(format!(
                        "webhook.secret: must be {} to {} characters (got {len}), e.g. `openssl rand -hex 32`",
                        crate::webhook::MIN_SECRET_LEN,
                        crate::webhook::MAX_SECRET_LEN
                    )));
                }
                WebhookChange::Set(secret)
            }
        };
        let concurrency = match self.concurrency {
            Some(concurrency) => {
                let valid = concurrency.validate()?;
                Some((concurrency, valid))
            }
            None => None,
        };
        let rate_limit = match self.rate_limit {
            Some(rate_limit) => {
                let valid = rate_limit.validate()?;
                Some((rate_limit, valid))
            }
            None => None,
        };
        let queue = match self.queue {
            None => DEFAULT_QUEUE.to_owned(),
            Some(queue) => {
                check_queue(&queue).map_err(|reason| Error::invalid(format!("queue: {reason}")))?;
                queue
            }
        };
        Ok(ValidWorkflow {
            queue,
            webhook,
            concurrency,
            rate_limit,
            name,
            tasks: self.tasks,
            on_error: self.on_error,
            timeout: self.timeout as u32,
            parallelism: parallelism as u32,
            parameters: self.parameters,
            schedule,
            triggers: self.triggers,
        })
    }
}

/// The queue of a workflow that names none.
pub const DEFAULT_QUEUE: &str = "default";
/// Longest queue name.
pub const MAX_QUEUE_LEN: usize = 64;

/// Checks a queue name: 1 to 64 ASCII letters, digits, `_` or `-`, the
/// first a letter or digit. It becomes part of a broker queue name and a
/// metric label, so nothing else is allowed (no `.`, which would let one
/// name look like another's dead-letter queue).
pub fn check_queue(name: &str) -> std::result::Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= MAX_QUEUE_LEN
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a queue name (1 to {MAX_QUEUE_LEN} letters, digits, '_' or '-', \
             starting with a letter or digit)"
        ))
    }
}

fn check_tasks(list: &str, tasks: &[Task]) -> Result<()> {
    if tasks.len() > MAX_TASKS {
        return Err(Error::invalid(format!("{list}: at most {MAX_TASKS} tasks")));
    }
    let mut names = HashSet::new();
    for (index, task) in tasks.iter().enumerate() {
        let at = format!("{list}[{index}]");
        if !crate::module::is_identifier(&task.name) || task.name.len() > 64 {
            return Err(Error::invalid(format!(
                "{at}.name: {:?} is not an identifier (a letter, then letters, digits or _)",
                task.name
            )));
        }
        if !names.insert(task.name.as_str()) {
            return Err(Error::invalid(format!(
                "{at}.name: {:?} is used twice",
                task.name
            )));
        }
        if task.retries.len() > MAX_RETRIES {
            return Err(Error::invalid(format!(
                "{at}.retries: at most {MAX_RETRIES} retries"
            )));
        }
        if task.retries.iter().any(|delay| *delay > MAX_SECONDS) {
            return Err(Error::invalid(format!(
                "{at}.retries: delays must be at most {MAX_SECONDS} seconds"
            )));
        }
        if task.timeout > MAX_SECONDS {
            return Err(Error::invalid(format!(
                "{at}.timeout: must be at most {MAX_SECONDS} seconds"
            )));
        }
        validate_params(task.kind, &task.params)
            .map_err(|reason| Error::invalid(format!("{at}.params: {reason}")))?;
        if let Some(when) = &task.when {
            if when.trim().is_empty() || when.chars().count() > MAX_WHEN_LEN {
                return Err(Error::invalid(format!(
                    "{at}.when: must be an expression of 1 to {MAX_WHEN_LEN} characters"
                )));
            }
        }
        if let Some(items) = &task.for_each {
            if !has_template(items) {
                return Err(Error::invalid(format!(
                    "{at}.forEach: must be a template yielding a list, such as \"{{{{ parameters.items }}}}\""
                )));
            }
            check_template(items)
                .map_err(|reason| Error::invalid(format!("{at}.forEach: {reason}")))?;
        }
        if let Some(concurrency) = task.concurrency {
            if task.for_each.is_none() {
                return Err(Error::invalid(format!(
                    "{at}.concurrency: only a forEach task has items to run at once"
                )));
            }
            if !(1..=MAX_CONCURRENCY).contains(&concurrency) {
                return Err(Error::invalid(format!(
                    "{at}.concurrency: must be between 1 and {MAX_CONCURRENCY}"
                )));
            }
        }
    }
    Ok(())
}

/// The graph of a task list (see [`crate::graph`]).
pub fn graph(list: &str, tasks: &[Task]) -> std::result::Result<Graph, String> {
    let names: Vec<&str> = tasks.iter().map(|task| task.name.as_str()).collect();
    let needs: Vec<Option<&[String]>> = tasks.iter().map(|task| task.needs.as_deref()).collect();
    Graph::resolve(list, &names, &needs)
}

#[cfg(test)]
mod queue_tests {
    use super::check_queue;

    #[test]
    fn queue_names_are_short_identifiers_without_dots() {
        for good in ["default", "mail", "bulk_2", "A-b", &"q".repeat(64)] {
            assert!(check_queue(good).is_ok(), "{good}");
        }
        for bad in ["", "-x", "_x", "a.b", "a b", "é", &"q".repeat(65)] {
            assert!(check_queue(bad).is_err(), "{bad}");
        }
    }
}
