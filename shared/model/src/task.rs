//! The parameters of each task kind, checked when a workflow is saved so a
//! job never meets a malformed task, and read into typed structs when a
//! worker runs the task; also the syntax of the `{{ path }}` templates that
//! string parameters may hold.
//!
//! At save time a string that holds a template stands in for a value of any
//! type (it is only known once the job runs), so only its syntax is checked.
//! At run time the worker renders the templates first and then calls
//! [`parse_params`], which checks everything again on the real values.
//! Numbers may also be given as decimal strings, because job parameters are
//! strings: `"seconds": "{{ parameters.delay }}"` works.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::job::LOG_LEVELS;
use crate::record::RecordFields;
use crate::Id;

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
/// The top-level names a template path may start with.
pub const TEMPLATE_ROOTS: &[&str] = &["parameters", "outputs", "error", "job"];

/// Checks `params` for a task of `kind` (a known kind); says what is wrong,
/// naming the parameter (`url: missing`).
pub fn validate_params(kind: &str, params: &Value) -> Result<(), String> {
    read(kind, params, true).map(drop)
}

/// Reads rendered `params` (templates already replaced) of a task of `kind`
/// into their typed form, checking them as [`validate_params`] does.
pub fn parse_params(kind: &str, params: &Value) -> Result<TaskParams, String> {
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
    /// `record.query`.
    RecordQuery(RecordQueryParams),
    /// `script`.
    Script(ScriptParams),
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

/// The parameters of each kind, for unknown-parameter messages.
fn allowed(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "log" => &["message", "level", "data"],
        "sleep" => &["seconds"],
        "fail" => &["message"],
        "http" => &[
            "method",
            "url",
            "headers",
            "body",
            "expectStatus",
            "timeout",
        ],
        "record.create" => &["moduleID", "fields"],
        "record.update" => &["moduleID", "recordID", "fields"],
        "record.delete" => &["moduleID", "recordID"],
        "record.query" => &["moduleID", "filter", "sort", "page", "perPage"],
        "script" => &["source", "maxOperations"],
        _ => return None,
    })
}

/// Parameters that are never templates.
pub fn is_raw_param(kind: &str, name: &str) -> bool {
    kind == "script" && name == "source"
}

fn read(kind: &str, params: &Value, at_save: bool) -> Result<TaskParams, String> {
    let Some(names) = allowed(kind) else {
        return Err(format!("unknown task kind {kind:?}"));
    };
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
        "log" => TaskParams::Log(LogParams {
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
        "sleep" => TaskParams::Sleep(SleepParams {
            seconds: match r.required("seconds")? {
                Some(value) => seconds("seconds", value, true)?,
                None => 0.0,
            },
        }),
        "fail" => TaskParams::Fail(FailParams {
            message: match r.optional("message")? {
                Some(Value::String(text)) => text.clone(),
                Some(other) => other.to_string(),
                None => "failed on purpose".into(),
            },
        }),
        "http" => TaskParams::Http(http(&r)?),
        "record.create" => TaskParams::RecordCreate(RecordCreateParams {
            module_id: r.id("moduleID")?,
            fields: r.fields()?,
        }),
        "record.update" => TaskParams::RecordUpdate(RecordUpdateParams {
            module_id: r.id("moduleID")?,
            record_id: r.id("recordID")?,
            fields: r.fields()?,
        }),
        "record.delete" => TaskParams::RecordDelete(RecordDeleteParams {
            module_id: r.id("moduleID")?,
            record_id: r.id("recordID")?,
        }),
        "record.query" => TaskParams::RecordQuery(RecordQueryParams {
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
        "script" => TaskParams::Script(ScriptParams {
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
        _ => return Err(format!("unknown task kind {kind:?}")),
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
    kind: &'a str,
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
        if !self.at_save || is_raw_param(self.kind, name) {
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

/// Checks the template syntax of every string in `value`, naming where.
fn check_templates_in(at: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::String(text) => check_template(text).map_err(|err| format!("{at}: {err}")),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(index, item)| check_templates_in(&format!("{at}[{index}]"), item)),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(key, item)| check_templates_in(&format!("{at}.{key}"), item)),
        _ => Ok(()),
    }
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Text copied as is (escapes already resolved).
    Text(String),
    /// A `{{ path }}` reference, split at the dots.
    Ref(Vec<String>),
}

/// True when `text` holds at least one (unescaped) `{{`.
pub fn has_template(text: &str) -> bool {
    match parse_template(text) {
        Ok(segments) => segments.iter().any(|s| matches!(s, Segment::Ref(_))),
        Err(_) => true,
    }
}

/// Checks template syntax: every `{{` closed, paths not empty, paths
/// starting with one of [`TEMPLATE_ROOTS`].
pub fn check_template(text: &str) -> Result<(), String> {
    parse_template(text).map(drop)
}

/// Splits a template into text and references. `\{{` is a literal `{{`.
pub fn parse_template(text: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("{{") {
        if rest[..at].ends_with('\\') {
            literal.push_str(&rest[..at - 1]);
            literal.push_str("{{");
            rest = &rest[at + 2..];
            continue;
        }
        literal.push_str(&rest[..at]);
        let inner_start = &rest[at + 2..];
        let Some(end) = inner_start.find("}}") else {
            return Err(format!(
                "template {:?}: unclosed {{{{ (add }}}} or write \\{{{{ for a literal {{{{)",
                shorten(&rest[at..])
            ));
        };
        let inner = inner_start[..end].trim();
        let path =
            parse_path(inner).map_err(|reason| format!("template {{{{ {inner} }}}}: {reason}"))?;
        if !literal.is_empty() {
            segments.push(Segment::Text(std::mem::take(&mut literal)));
        }
        segments.push(Segment::Ref(path));
        rest = &inner_start[end + 2..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        segments.push(Segment::Text(literal));
    }
    Ok(segments)
}

fn parse_path(inner: &str) -> Result<Vec<String>, String> {
    if inner.is_empty() {
        return Err("empty path".into());
    }
    let parts: Vec<String> = inner.split('.').map(str::to_owned).collect();
    if let Some(bad) = parts
        .iter()
        .find(|part| part.is_empty() || part.contains(char::is_whitespace) || part.contains('{'))
    {
        return Err(if bad.is_empty() {
            "empty path segment".into()
        } else {
            format!("{bad:?} is not a path segment")
        });
    }
    if !TEMPLATE_ROOTS.contains(&parts[0].as_str()) {
        return Err(format!(
            "unknown name {:?} (paths start with {})",
            parts[0],
            TEMPLATE_ROOTS.join(", ")
        ));
    }
    Ok(parts)
}

fn shorten(text: &str) -> String {
    let mut short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(kind: &str, params: Value) -> String {
        validate_params(kind, &params).unwrap_err()
    }

    #[test]
    fn templates_parse_into_text_and_references() {
        assert_eq!(
            parse_template("Hi {{parameters.name}}, id {{ outputs.a.items.0.id }}!").unwrap(),
            vec![
                Segment::Text("Hi ".into()),
                Segment::Ref(vec!["parameters".into(), "name".into()]),
                Segment::Text(", id ".into()),
                Segment::Ref(vec![
                    "outputs".into(),
                    "a".into(),
                    "items".into(),
                    "0".into(),
                    "id".into()
                ]),
                Segment::Text("!".into()),
            ]
        );
        assert_eq!(
            parse_template(r"a \{{ b }}").unwrap(),
            vec![Segment::Text("a {{ b }}".into())]
        );
        assert!(!has_template(r"\{{ x }}"));
        assert!(has_template("{{ job.id }}"));
    }

    #[test]
    fn template_syntax_errors_are_explained() {
        assert!(check_template("x {{ parameters.a")
            .unwrap_err()
            .contains("unclosed"));
        assert!(check_template("{{ }}").unwrap_err().contains("empty path"));
        assert!(check_template("{{ outputs..a }}")
            .unwrap_err()
            .contains("empty path segment"));
        assert!(check_template("{{ foo.a }}")
            .unwrap_err()
            .contains("unknown name \"foo\""));
        assert!(check_template("{{ outputs.a b }}").is_err());
        assert!(check_template("plain } {text}").is_ok());
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
        assert!(validate_params("log", &json!({"message": "hi {{ parameters.x }}"})).is_ok());
        assert_eq!(err("log", json!({})), "message: missing");
        assert!(err("log", json!({"message": "m", "level": "loud"}))
            .starts_with("level: \"loud\" is not one of"));
        assert!(err("log", json!({"message": "{{ nope }}"})).starts_with("message: template"));
        assert!(err("log", json!({"message": "m", "data": {"a": ["{{ x"]}}))
            .starts_with("data.a[0]: template"));
        let TaskParams::Log(log) =
            parse_params("log", &json!({"message": "m", "level": "WARN"})).unwrap()
        else {
            panic!()
        };
        assert_eq!((log.message.as_str(), log.level.as_str()), ("m", "warn"));
    }

    #[test]
    fn sleep_and_fail_params() {
        assert!(validate_params("sleep", &json!({"seconds": 1.5})).is_ok());
        assert!(validate_params("sleep", &json!({"seconds": "{{ parameters.s }}"})).is_ok());
        assert_eq!(err("sleep", json!({})), "seconds: missing");
        assert!(err("sleep", json!({"seconds": -1})).starts_with("seconds: must be a number"));
        assert!(err("sleep", json!({"seconds": 86401})).starts_with("seconds: must be"));
        assert_eq!(
            parse_params("sleep", &json!({"seconds": "2"})).unwrap(),
            TaskParams::Sleep(SleepParams { seconds: 2.0 })
        );
        assert!(validate_params("fail", &json!({})).is_ok());
        assert_eq!(
            parse_params("fail", &json!({})).unwrap(),
            TaskParams::Fail(FailParams {
                message: "failed on purpose".into()
            })
        );
    }

    #[test]
    fn http_params() {
        assert!(validate_params("http", &json!({"url": "https://example.com/x"})).is_ok());
        assert!(validate_params(
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
        let TaskParams::Http(http) = parse_params(
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
        assert!(validate_params(
            "record.create",
            &json!({"moduleID": "3", "fields": {"a": 1}})
        )
        .is_ok());
        assert!(validate_params(
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
        assert!(validate_params(
            "record.delete",
            &json!({"moduleID": 3, "recordID": "{{ outputs.c.recordID }}"})
        )
        .is_ok());
        assert_eq!(
            err("record.delete", json!({"moduleID": 3})),
            "recordID: missing"
        );
        assert!(validate_params(
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
        assert!(validate_params("script", &json!({"source": "let m = #{a: 1}; \"{{\""})).is_ok());
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
            parse_params("script", &json!({"source": "1"})).unwrap(),
            TaskParams::Script(ScriptParams {
                source: "1".into(),
                max_operations: DEFAULT_SCRIPT_OPERATIONS
            })
        );
    }
}
