//! Task kinds and their parameters: [`TaskKind`] names what a task does and
//! which parameters it takes; the parameters are checked when a workflow is
//! saved so a job never meets a malformed task, and read into typed structs
//! ([`TaskParams`]) when a worker runs the task.
//!
//! At save time a string that holds a template stands in for a value of any
//! type (it is only known once the job runs), so only its syntax is checked
//! (the template language is in [`crate::template`]). At run time the
//! worker renders the templates first and then calls [`parse_params`],
//! which checks everything again on the real values. Numbers may also be
//! given as decimal strings, because job parameters are strings:
//! `"seconds": "{{ parameters.delay }}"` works.
//!
//! Adding a kind: a row in the `task_kinds!` table below, a [`TaskParams`]
//! variant and its arm in `read` (the compiler asks for it), and an
//! executor in the worker (whose dispatch on [`TaskParams`] is exhaustive,
//! so it does not compile without one).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::job::LOG_LEVELS;
use crate::record::RecordFields;
use crate::template::{check_templates_in, has_template};
use crate::Id;

/// Declares [`TaskKind`] from one table, so that the list of every kind
/// ([`TaskKind::ALL`]), their names and their parameters cannot drift apart.
/// Each row: `Variant = "name", params [..]` and, for parameters that are
/// never templates, `raw [..]`.
macro_rules! task_kinds {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $name:literal, params [$($param:literal),* $(,)?] $(, raw [$($raw:literal),*])?;
    )*) => {
        /// What a task does. Its JSON form is its name (`"record.create"`);
        /// deserializing an unknown name fails with a message listing every
        /// kind, so a workflow never holds a kind no worker can run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum TaskKind {
            $($(#[doc = $doc])* $variant,)*
        }

        impl TaskKind {
            /// Every kind, in the order the API documents them.
            pub const ALL: &'static [TaskKind] = &[$(TaskKind::$variant,)*];

            /// The kind's name, as written in JSON.
            pub const fn name(self) -> &'static str {
                match self {
                    $(TaskKind::$variant => $name,)*
                }
            }

            /// The parameters a task of this kind takes (any other is refused).
            pub const fn params(self) -> &'static [&'static str] {
                match self {
                    $(TaskKind::$variant => &[$($param),*],)*
                }
            }

            /// Those of [`TaskKind::params`] that are never templates: the
            /// worker passes them on as written (a script's source).
            pub const fn raw_params(self) -> &'static [&'static str] {
                match self {
                    $(TaskKind::$variant => &[$($($raw),*)?],)*
                }
            }
        }
    };
}

task_kinds! {
    /// `log`: writes one line to the job's log.
    Log = "log", params ["message", "level", "data"];
    /// `sleep`: waits.
    Sleep = "sleep", params ["seconds"];
    /// `fail`: always fails.
    Fail = "fail", params ["message"];
    /// `http`: one request, within the egress policy.
    Http = "http", params ["method", "url", "headers", "body", "expectStatus", "timeout"];
    /// `record.create`.
    RecordCreate = "record.create", params ["moduleID", "fields"];
    /// `record.update`.
    RecordUpdate = "record.update", params ["moduleID", "recordID", "fields"];
    /// `record.delete`.
    RecordDelete = "record.delete", params ["moduleID", "recordID"];
    /// `record.query`.
    RecordQuery = "record.query", params ["moduleID", "filter", "sort", "page", "perPage"];
    /// `record.import`: imports a CSV file that `POST /module/{id}/record/import`
    /// stored with this very job.
    RecordImport = "record.import", params ["importID"];
    /// `script`: a sandboxed Rhai script.
    Script = "script", params ["source", "maxOperations"], raw ["source"];
    /// `workflow`: starts a child job, and with `wait` waits for its end.
    Workflow = "workflow", params ["workflowID", "parameters", "wait"];
    /// `wait`: parks the job until `POST /job/{id}/signal` sends `event`.
    Wait = "wait", params ["event", "timeout"];
}

impl TaskKind {
    /// True when parameter `name` is never a template (see
    /// [`TaskKind::raw_params`]).
    pub fn is_raw_param(self, name: &str) -> bool {
        self.raw_params().contains(&name)
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TaskKind {
    type Err = String;

    /// The kind named `name`; the error lists every kind.
    fn from_str(name: &str) -> Result<Self, String> {
        TaskKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = TaskKind::ALL.iter().map(|kind| kind.name()).collect();
                format!("unknown task kind {name:?} (one of {})", names.join(", "))
            })
    }
}

impl Serialize for TaskKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TaskKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Longest sleep and longest HTTP timeout, in seconds (a day).
pub const MAX_TASK_SECONDS: f64 = 86_400.0;
/// Most records one `record.query` returns.
pub const MAX_QUERY_PER_PAGE: i64 = 100;
/// Default and largest operation budget of a script.
pub const DEFAULT_SCRIPT_OPERATIONS: u64 = 1_000_000;
/// See [`DEFAULT_SCRIPT_OPERATIONS`].
pub const MAX_SCRIPT_OPERATIONS: u64 = 100_000_000;
/// The HTTP methods an `http` task may use.
pub const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Checks `params` for a task of `kind`; says what is wrong, naming the
/// parameter (`url: missing`).
pub fn validate_params(kind: TaskKind, params: &Value) -> Result<(), String> {
    read(kind, params, true).map(drop)
}

/// Reads rendered `params` (templates already replaced) of a task of `kind`
/// into their typed form, checking them as [`validate_params`] does.
pub fn parse_params(kind: TaskKind, params: &Value) -> Result<TaskParams, String> {
    read(kind, params, false)
}

/// The typed parameters of one task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskParams {
    /// `log`.
    Log(LogParams),
    /// `sleep`.
    Sleep(SleepParams),
    /// `fail`.
    Fail(FailParams),
    /// `http`.
    Http(HttpParams),
    /// `record.create`.
    RecordCreate(RecordCreateParams),
    /// `record.update`.
    RecordUpdate(RecordUpdateParams),
    /// `record.delete`.
    RecordDelete(RecordDeleteParams),
    /// `record.import`.
    RecordImport(RecordImportParams),
    /// `record.query`.
    RecordQuery(RecordQueryParams),
    /// `script`.
    Script(ScriptParams),
    /// `workflow`.
    Workflow(WorkflowParams),
    /// `wait`.
    Wait(WaitParams),
}

/// `log`: writes one line to the job's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogParams {
    /// The line; a non-string value is written as compact JSON.
    pub message: String,
    /// debug, info (the default), warn or error.
    pub level: String,
    /// Extra JSON stored with the line.
    pub data: Option<Value>,
}

/// `sleep`: waits.
#[derive(Debug, Clone, PartialEq)]
pub struct SleepParams {
    /// 0 to 86400, fractions allowed.
    pub seconds: f64,
}

/// `fail`: always fails.
#[derive(Debug, Clone, PartialEq)]
pub struct FailParams {
    /// The error; defaults to "failed on purpose".
    pub message: String,
}

/// What an HTTP response status must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectStatus {
    /// Any 2xx (the default).
    Success,
    /// One of these.
    AnyOf(Vec<u16>),
}

impl ExpectStatus {
    /// True when `status` is acceptable.
    pub fn allows(&self, status: u16) -> bool {
        match self {
            ExpectStatus::Success => (200..300).contains(&status),
            ExpectStatus::AnyOf(list) => list.contains(&status),
        }
    }

    /// `2xx`, `200` or `200 or 201`, for messages.
    pub fn describe(&self) -> String {
        match self {
            ExpectStatus::Success => "2xx".into(),
            ExpectStatus::AnyOf(list) => list
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

/// The body of an HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub enum HttpBody {
    /// A string, sent as is.
    Raw(String),
    /// Any other JSON, sent as `application/json`.
    Json(Value),
}

/// `http`: one request.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpParams {
    /// Upper case, one of [`HTTP_METHODS`]; GET by default.
    pub method: String,
    /// An http or https URL.
    pub url: String,
    /// Request headers.
    pub headers: BTreeMap<String, String>,
    /// The request body, if any.
    pub body: Option<HttpBody>,
    /// Which statuses count as success.
    pub expect_status: ExpectStatus,
    /// Seconds the request may take (the task's timeout still applies).
    pub timeout: Option<f64>,
}

/// `record.create`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordCreateParams {
    /// The module to create the record in.
    pub module_id: Id,
    /// `{name: value}`, whichever shape was given.
    pub fields: Map<String, Value>,
}

/// `record.update`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordUpdateParams {
    /// The record's module.
    pub module_id: Id,
    /// The record to change.
    pub record_id: Id,
    /// The fields to replace (`null` clears one).
    pub fields: Map<String, Value>,
}

/// `record.delete`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordDeleteParams {
    /// The record's module.
    pub module_id: Id,
    /// The record to delete.
    pub record_id: Id,
}

/// `record.import`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordImportParams {
    /// The stored CSV upload (it names its module and whether to dry-run).
    pub import_id: Id,
}

/// `record.query`.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordQueryParams {
    /// The module to list.
    pub module_id: Id,
    /// Query-language filter; blank = all.
    pub filter: String,
    /// Sort expression; blank = newest first.
    pub sort: String,
    /// 0-based page.
    pub page: Option<i64>,
    /// Page size, 1 to [`MAX_QUERY_PER_PAGE`].
    pub per_page: Option<i64>,
}

/// `script`: a sandboxed Rhai script.
#[derive(Debug, Clone, PartialEq)]
pub struct ScriptParams {
    /// Rhai source; never templated.
    pub source: String,
    /// Operation budget, 1 to [`MAX_SCRIPT_OPERATIONS`].
    pub max_operations: u64,
}

/// `workflow`: a child job of another workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowParams {
    pub workflow_id: Id,
    /// The child's parameters (merged over its workflow's defaults).
    pub parameters: Map<String, Value>,
    /// Wait for the child: the task's output is then the child's outputs,
    /// and the child's failure is the task's. Otherwise the output is
    /// `{"jobID"}` as soon as the child exists.
    pub wait: bool,
}

/// `wait`: parks the job until a signal named `event` arrives.
#[derive(Debug, Clone, PartialEq)]
pub struct WaitParams {
    pub event: String,
    /// Seconds to wait before the task fails; `None` waits for ever.
    pub timeout: Option<f64>,
}

/// Longest signal event name, in characters.
pub const MAX_EVENT_LEN: usize = 255;

fn read(kind: TaskKind, params: &Value, at_save: bool) -> Result<TaskParams, String> {
    let names = kind.params();
    let empty = Map::new();
    let map = match params {
        Value::Object(map) => map,
        Value::Null => &empty,
        _ => return Err("must be an object".into()),
    };
    if let Some(unknown) = map.keys().find(|key| !names.contains(&key.as_str())) {
        return Err(format!(
            "{unknown}: unknown parameter (expected {})",
            names.join(", ")
        ));
    }
    let r = Reader { kind, map, at_save };
    Ok(match kind {
        TaskKind::Log => TaskParams::Log(LogParams {
            message: match r.required("message")? {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
            level: match r.optional("level")? {
                Some(value) => {
                    let level = as_str("level", value)?.to_ascii_lowercase();
                    if !LOG_LEVELS.contains(&level.as_str()) {
                        return Err(format!(
                            "level: {level:?} is not one of {}",
                            LOG_LEVELS.join(", ")
                        ));
                    }
                    level
                }
                None => "info".into(),
            },
            data: r.optional("data")?.cloned(),
        }),
        TaskKind::Sleep => TaskParams::Sleep(SleepParams {
            seconds: match r.required("seconds")? {
                Some(value) => seconds("seconds", value, true)?,
                None => 0.0,
            },
        }),
        TaskKind::Fail => TaskParams::Fail(FailParams {
            message: match r.optional("message")? {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => "failed on purpose".into(),
            },
        }),
        TaskKind::Http => TaskParams::Http(http(&r)?),
        TaskKind::RecordCreate => TaskParams::RecordCreate(RecordCreateParams {
            module_id: r.id("moduleID")?,
            fields: r.fields()?,
        }),
        TaskKind::RecordUpdate => TaskParams::RecordUpdate(RecordUpdateParams {
            module_id: r.id("moduleID")?,
            record_id: r.id("recordID")?,
            fields: r.fields()?,
        }),
        TaskKind::RecordDelete => TaskParams::RecordDelete(RecordDeleteParams {
            module_id: r.id("moduleID")?,
            record_id: r.id("recordID")?,
        }),
        TaskKind::RecordImport => TaskParams::RecordImport(RecordImportParams {
            import_id: r.id("importID")?,
        }),
        TaskKind::RecordQuery => TaskParams::RecordQuery(RecordQueryParams {
            module_id: r.id("moduleID")?,
            filter: r
                .optional("filter")?
                .map_or(Ok(""), |v| as_str("filter", v))?
                .into(),
            sort: r
                .optional("sort")?
                .map_or(Ok(""), |v| as_str("sort", v))?
                .into(),
            page: r
                .optional("page")?
                .map(|value| integer("page", value, 0, i64::MAX / MAX_QUERY_PER_PAGE))
                .transpose()?,
            per_page: r
                .optional("perPage")?
                .map(|value| integer("perPage", value, 1, MAX_QUERY_PER_PAGE))
                .transpose()?,
        }),
        TaskKind::Script => TaskParams::Script(ScriptParams {
            source: match r.required_raw("source")? {
                Value::String(source) if !source.trim().is_empty() => source.clone(),
                Value::String(_) => return Err("source: must not be empty".into()),
                _ => return Err("source: must be a string".into()),
            },
            max_operations: match r.optional("maxOperations")? {
                Some(value) => {
                    integer("maxOperations", value, 1, MAX_SCRIPT_OPERATIONS as i64)? as u64
                }
                None => DEFAULT_SCRIPT_OPERATIONS,
            },
        }),
        TaskKind::Workflow => TaskParams::Workflow(WorkflowParams {
            workflow_id: r.id("workflowID")?,
            parameters: match r.optional("parameters")? {
                None => Map::new(),
                Some(Value::Object(map)) => map.clone(),
                Some(_) => return Err("parameters: must be an object".into()),
            },
            wait: match r.optional("wait")? {
                None => false,
                Some(Value::Bool(flag)) => *flag,
                Some(Value::String(text)) if text == "true" || text == "false" => text == "true",
                Some(_) => return Err("wait: must be true or false".into()),
            },
        }),
        TaskKind::Wait => TaskParams::Wait(WaitParams {
            event: match r.required("event")? {
                Some(value) => {
                    let event = as_str("event", value)?.trim();
                    if event.is_empty() || event.chars().count() > MAX_EVENT_LEN {
                        return Err(format!("event: must be 1 to {MAX_EVENT_LEN} characters"));
                    }
                    event.to_owned()
                }
                None => String::new(),
            },
            timeout: r
                .optional("timeout")?
                .map(|value| seconds("timeout", value, false))
                .transpose()?,
        }),
    })
}

fn http(r: &Reader<'_>) -> Result<HttpParams, String> {
    let method = match r.optional("method")? {
        Some(value) => {
            let method = as_str("method", value)?.trim().to_ascii_uppercase();
            if !HTTP_METHODS.contains(&method.as_str()) {
                return Err(format!(
                    "method: {:?} is not an HTTP method ({})",
                    as_str("method", value)?,
                    HTTP_METHODS.join(", ")
                ));
            }
            method
        }
        None => "GET".into(),
    };
    let url = match r.required("url")? {
        Some(value) => {
            let text = as_str("url", value)?.trim();
            match url::Url::parse(text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {}
                _ => return Err(format!("url: {text:?} is not an http or https URL")),
            }
            text.to_owned()
        }
        None => String::new(),
    };
    let mut headers = BTreeMap::new();
    match r.optional("headers")? {
        None => {}
        Some(Value::Object(map)) => {
            for (name, value) in map {
                if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                    return Err(format!("headers: {name:?} is not a valid header name"));
                }
                let text = match value {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    _ => return Err(format!("headers.{name}: must be a string")),
                };
                // A template renders later; its result is checked then.
                if !(r.at_save && has_template(&text))
                    && http::HeaderValue::from_str(&text).is_err()
                {
                    return Err(format!("headers.{name}: not a valid header value"));
                }
                headers.insert(name.clone(), text);
            }
        }
        Some(_) => return Err("headers: must be an object {name: value}".into()),
    }
    let body = r.optional("body")?.map(|value| match value {
        Value::String(text) => HttpBody::Raw(text.clone()),
        other => HttpBody::Json(other.clone()),
    });
    let expect_status = match r.optional("expectStatus")? {
        None => ExpectStatus::Success,
        Some(Value::Array(items)) if !items.is_empty() => ExpectStatus::AnyOf(
            items
                .iter()
                .map(status)
                .collect::<Result<Vec<_>, String>>()?,
        ),
        Some(Value::Array(_)) => return Err("expectStatus: must not be an empty list".into()),
        Some(value) => ExpectStatus::AnyOf(vec![status(value)?]),
    };
    let timeout = r
        .optional("timeout")?
        .map(|value| seconds("timeout", value, false))
        .transpose()?;
    Ok(HttpParams {
        method,
        url,
        headers,
        body,
        expect_status,
        timeout,
    })
}

fn status(value: &Value) -> Result<u16, String> {
    integer("expectStatus", value, 100, 599)
        .map(|code| code as u16)
        .map_err(|_| "expectStatus: must be 100-599 (an integer or a list of them)".into())
}

/// Reads parameters out of the object, knowing whether templates still
/// stand in for values (save time) or were rendered (run time).
struct Reader<'a> {
    kind: TaskKind,
    map: &'a Map<String, Value>,
    at_save: bool,
}

impl Reader<'_> {
    /// The value of `name`, or `None` when absent or a template whose value
    /// is only known at run time. At save time every string inside is
    /// checked for template syntax.
    fn optional(&self, name: &str) -> Result<Option<&Value>, String> {
        let value = match self.map.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(value) => value,
        };
        if !self.at_save || self.kind.is_raw_param(name) {
            return Ok(Some(value));
        }
        check_templates_in(name, value)?;
        match value {
            Value::String(text) if has_template(text) => Ok(None),
            other => Ok(Some(other)),
        }
    }

    /// Like [`Reader::optional`], but absent is `name: missing`.
    fn required(&self, name: &str) -> Result<Option<&Value>, String> {
        if matches!(self.map.get(name), None | Some(Value::Null)) {
            return Err(format!("{name}: missing"));
        }
        self.optional(name)
    }

    /// A required parameter that is never a template.
    fn required_raw(&self, name: &str) -> Result<&Value, String> {
        match self.map.get(name) {
            None | Some(Value::Null) => Err(format!("{name}: missing")),
            Some(value) => Ok(value),
        }
    }

    /// A required ID, as a string or a number ([`Id::ZERO`] while unknown).
    fn id(&self, name: &str) -> Result<Id, String> {
        match self.required(name)? {
            Some(value) => {
                let id = <Id as serde::Deserialize>::deserialize(value)
                    .map_err(|err| format!("{name}: {err}"))?;
                if id == Id::ZERO {
                    return Err(format!("{name}: must not be 0"));
                }
                Ok(id)
            }
            None => Ok(Id::ZERO),
        }
    }

    /// The required `fields`, as an object or a `[{name, value}]` list.
    fn fields(&self) -> Result<Map<String, Value>, String> {
        match self.required("fields")? {
            Some(value) => {
                let fields: RecordFields = serde_json::from_value(value.clone()).map_err(|_| {
                    "fields: must be an object {name: value} or a list [{name, value}]".to_owned()
                })?;
                fields.into_map().map_err(|err| err.to_string())
            }
            None => Ok(Map::new()),
        }
    }
}

fn as_str<'v>(name: &str, value: &'v Value) -> Result<&'v str, String> {
    value
        .as_str()
        .ok_or_else(|| format!("{name}: must be a string"))
}

/// A number, or a string holding one.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(number) => number.as_f64(),
        Value::String(text) => text.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

/// Seconds from 0 (if `zero_ok`, else above 0) to [`MAX_TASK_SECONDS`].
fn seconds(name: &str, value: &Value, zero_ok: bool) -> Result<f64, String> {
    let low = if zero_ok { "0" } else { "more than 0" };
    let seconds = number(value)
        .filter(|n| (if zero_ok { *n >= 0.0 } else { *n > 0.0 }) && *n <= MAX_TASK_SECONDS)
        .ok_or_else(|| format!("{name}: must be a number of seconds from {low} to 86400"))?;
    Ok(seconds)
}

/// An integer (or a string holding one) from `min` to `max`.
fn integer(name: &str, value: &Value, min: i64, max: i64) -> Result<i64, String> {
    let parsed = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{name}: must be an integer from {min} to {max}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn validate(kind: &str, params: &Value) -> Result<(), String> {
        validate_params(kind.parse().unwrap(), params)
    }

    fn parse(kind: &str, params: &Value) -> Result<TaskParams, String> {
        parse_params(kind.parse().unwrap(), params)
    }

    fn err(kind: &str, params: Value) -> String {
        validate(kind, &params).unwrap_err()
    }

    #[test]
    fn every_kind_round_trips_through_serde_by_its_name() {
        let names: Vec<&str> = TaskKind::ALL.iter().map(|kind| kind.name()).collect();
        assert_eq!(
            names,
            [
                "log",
                "sleep",
                "fail",
                "http",
                "record.create",
                "record.update",
                "record.delete",
                "record.query",
                "record.import",
                "script",
                "workflow",
                "wait"
            ]
        );
        for &kind in TaskKind::ALL {
            let json = serde_json::to_value(kind).unwrap();
            assert_eq!(json, Value::String(kind.name().into()));
            assert_eq!(serde_json::from_value::<TaskKind>(json).unwrap(), kind);
            assert_eq!(kind.to_string().parse::<TaskKind>(), Ok(kind));
            // Raw parameters are parameters of the kind.
            assert!(kind
                .raw_params()
                .iter()
                .all(|raw| kind.params().contains(raw)));
        }
        assert!(TaskKind::Script.is_raw_param("source"));
        assert!(!TaskKind::Log.is_raw_param("message"));
    }

    #[test]
    fn an_unknown_kind_is_refused_listing_every_kind() {
        let err = serde_json::from_value::<TaskKind>(json!("teleport")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown task kind \"teleport\" (one of log, sleep, fail, http, record.create, \
             record.update, record.delete, record.query, record.import, script, workflow, wait)"
        );
        for kind in TaskKind::ALL {
            assert!(err.to_string().contains(kind.name()), "{err} lacks {kind}");
        }
        // Names are exact: no case folding, no other types.
        assert!(serde_json::from_value::<TaskKind>(json!("Log")).is_err());
        let err = serde_json::from_value::<TaskKind>(json!(5)).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("invalid type: integer `5`, expected a string"));
    }

    #[test]
    fn params_must_be_an_object_without_unknown_keys() {
        assert_eq!(err("log", json!([1])), "must be an object");
        assert!(
            err("log", json!({"message": "m", "lvl": "x"})).starts_with("lvl: unknown parameter")
        );
    }

    #[test]
    fn log_params() {
        assert!(validate("log", &json!({"message": "hi {{ parameters.x }}"})).is_ok());
        assert_eq!(err("log", json!({})), "message: missing");
        assert!(err("log", json!({"message": "m", "level": "loud"}))
            .starts_with("level: \"loud\" is not one of"));
        assert!(err("log", json!({"message": "{{ nope }}"})).starts_with("message: template"));
        assert!(err("log", json!({"message": "m", "data": {"a": ["{{ x"]}}))
            .starts_with("data.a[0]: template"));
        let TaskParams::Log(log) = parse("log", &json!({"message": "m", "level": "WARN"})).unwrap()
        else {
            panic!()
        };
        assert_eq!((log.message.as_str(), log.level.as_str()), ("m", "warn"));
    }

    #[test]
    fn sleep_and_fail_params() {
        assert!(validate("sleep", &json!({"seconds": 1.5})).is_ok());
        assert!(validate("sleep", &json!({"seconds": "{{ parameters.s }}"})).is_ok());
        assert_eq!(err("sleep", json!({})), "seconds: missing");
        assert!(err("sleep", json!({"seconds": -1})).starts_with("seconds: must be a number"));
        assert!(err("sleep", json!({"seconds": 86401})).starts_with("seconds: must be"));
        assert_eq!(
            parse("sleep", &json!({"seconds": "2"})).unwrap(),
            TaskParams::Sleep(SleepParams { seconds: 2.0 })
        );
        assert!(validate("fail", &json!({})).is_ok());
        assert_eq!(
            parse("fail", &json!({})).unwrap(),
            TaskParams::Fail(FailParams {
                message: "failed on purpose".into()
            })
        );
    }

    #[test]
    fn http_params() {
        assert!(validate("http", &json!({"url": "https://example.com/x"})).is_ok());
        assert!(validate(
            "http",
            &json!({"url": "{{ parameters.url }}", "expectStatus": [200, 201]})
        )
        .is_ok());
        assert_eq!(err("http", json!({})), "url: missing");
        assert!(
            err("http", json!({"url": "ftp://x"})).starts_with("url: \"ftp://x\" is not an http")
        );
        assert!(err("http", json!({"url": "http://x", "method": "FETCH"}))
            .starts_with("method: \"FETCH\" is not an HTTP method"));
        assert!(err("http", json!({"url": "http://x", "expectStatus": 42}))
            .starts_with("expectStatus: must be 100-599"));
        assert!(err(
            "http",
            json!({"url": "http://x", "expectStatus": [200, 600]})
        )
        .starts_with("expectStatus: must be 100-599"));
        assert!(
            err("http", json!({"url": "http://x", "timeout": 0})).starts_with("timeout: must be")
        );
        assert!(err("http", json!({"url": "http://x", "headers": []}))
            .starts_with("headers: must be an object"));
        assert!(
            err("http", json!({"url": "http://x", "headers": {"a b": "c"}}))
                .contains("not a valid header name")
        );
        let TaskParams::Http(http) = parse(
            "http",
            &json!({"url": "http://x", "method": "post", "body": {"a": 1}, "expectStatus": "201", "headers": {"X-A": "1"}}),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(http.method, "POST");
        assert_eq!(http.body, Some(HttpBody::Json(json!({"a": 1}))));
        assert_eq!(http.expect_status, ExpectStatus::AnyOf(vec![201]));
        assert!(!http.expect_status.allows(200));
        assert!(ExpectStatus::Success.allows(204));
    }

    #[test]
    fn record_params() {
        assert!(validate(
            "record.create",
            &json!({"moduleID": "3", "fields": {"a": 1}})
        )
        .is_ok());
        assert!(validate(
            "record.create",
            &json!({"moduleID": 3, "fields": [{"name": "a", "value": 1}]})
        )
        .is_ok());
        assert_eq!(
            err("record.create", json!({"fields": {}})),
            "moduleID: missing"
        );
        assert_eq!(
            err("record.create", json!({"moduleID": "3"})),
            "fields: missing"
        );
        assert!(err("record.create", json!({"moduleID": "x", "fields": {}}))
            .starts_with("moduleID: \"x\" is not an ID"));
        assert!(err("record.create", json!({"moduleID": 3, "fields": 5}))
            .starts_with("fields: must be an object"));
        assert!(err(
            "record.create",
            json!({"moduleID": 3, "fields": [{"name": "a", "value": 1}, {"name": "a", "value": 2}]})
        )
        .contains("given twice"));
        assert_eq!(
            err("record.update", json!({"moduleID": 3, "fields": {}})),
            "recordID: missing"
        );
        assert!(validate(
            "record.delete",
            &json!({"moduleID": 3, "recordID": "{{ outputs.c.recordID }}"})
        )
        .is_ok());
        assert_eq!(
            err("record.delete", json!({"moduleID": 3})),
            "recordID: missing"
        );
        assert!(validate(
            "record.query",
            &json!({"moduleID": 3, "filter": "a = 1", "perPage": 100})
        )
        .is_ok());
        assert!(err("record.query", json!({"moduleID": 3, "perPage": 101}))
            .starts_with("perPage: must be an integer from 1 to 100"));
        assert!(
            err("record.query", json!({"moduleID": 3, "page": -1})).starts_with("page: must be")
        );
        assert!(err("record.query", json!({"moduleID": 3, "filter": 5}))
            .starts_with("filter: must be a string"));
    }

    #[test]
    fn script_params() {
        // The source is never a template, so braces in it are fine.
        assert!(validate("script", &json!({"source": "let m = #{a: 1}; \"{{\""})).is_ok());
        assert_eq!(err("script", json!({})), "source: missing");
        assert_eq!(
            err("script", json!({"source": " "})),
            "source: must not be empty"
        );
        assert!(err("script", json!({"source": "1", "maxOperations": 0}))
            .starts_with("maxOperations: must be"));
        assert!(err(
            "script",
            json!({"source": "1", "maxOperations": 100_000_001})
        )
        .starts_with("maxOperations: must be"));
        assert_eq!(
            parse("script", &json!({"source": "1"})).unwrap(),
            TaskParams::Script(ScriptParams {
                source: "1".into(),
                max_operations: DEFAULT_SCRIPT_OPERATIONS
            })
        );
    }
}
