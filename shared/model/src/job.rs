//! Jobs: runs of a workflow, their statuses and legal moves, and log entries.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{Error, Id, Result};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    /// Parked: waiting for a signal, a child job or the end of a long
    /// sleep, holding no worker; put back in the queue when that comes.
    Waiting,
    Ok,
    Error,
    Cancelled,
}

impl JobStatus {
    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Waiting => "waiting",
            JobStatus::Ok => "ok",
            JobStatus::Error => "error",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or requested status.
    pub fn parse(text: &str) -> std::result::Result<JobStatus, String> {
        match text {
            "queued" => Ok(JobStatus::Queued),
            "running" => Ok(JobStatus::Running),
            "waiting" => Ok(JobStatus::Waiting),
            "ok" => Ok(JobStatus::Ok),
            "error" => Ok(JobStatus::Error),
            "cancelled" => Ok(JobStatus::Cancelled),
            other => Err(format!(
                "{other:?} is not a job status (queued, running, waiting, ok, error or cancelled)"
            )),
        }
    }

    /// True once the job can no longer change.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Ok | JobStatus::Error | JobStatus::Cancelled
        )
    }

    /// The only legal moves: queued → running | cancelled; running → ok |
    /// error | cancelled | queued (a retry after a lost worker) | waiting;
    /// waiting → queued (a signal, a child's end, the wake-up time) |
    /// cancelled.
    pub fn can_move_to(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Cancelled)
                | (Running, Ok)
                | (Running, Error)
                | (Running, Cancelled)
                | (Running, Queued)
                | (Running, Waiting)
                | (Waiting, Queued)
                | (Waiting, Cancelled)
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `status` column is `TEXT` (with a `CHECK` listing the names of
/// [`JobStatus::as_str`]), so a status binds as its name and a row decodes
/// its status straight into a [`JobStatus`]. A stored name that is not a
/// status fails the row's decoding with [`JobStatus::parse`]'s reason: a
/// server-side data error (`sqlx::Error::ColumnDecode`), never the client's.
#[cfg(feature = "sqlx")]
mod sql {
    use super::JobStatus;
    use sqlx::postgres::{PgArgumentBuffer, PgHasArrayType, PgTypeInfo, PgValueRef};
    use sqlx::{Decode, Encode, Postgres, Type};

    impl Type<Postgres> for JobStatus {
        fn type_info() -> PgTypeInfo {
            <&str as Type<Postgres>>::type_info()
        }

        fn compatible(ty: &PgTypeInfo) -> bool {
            <&str as Type<Postgres>>::compatible(ty)
        }
    }

    impl PgHasArrayType for JobStatus {
        fn array_type_info() -> PgTypeInfo {
            <&str as PgHasArrayType>::array_type_info()
        }
    }

    impl Encode<'_, Postgres> for JobStatus {
        fn encode_by_ref(
            &self,
            buf: &mut PgArgumentBuffer,
        ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
            <&str as Encode<Postgres>>::encode(self.as_str(), buf)
        }
    }

    impl<'r> Decode<'r, Postgres> for JobStatus {
        fn decode(value: PgValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
            let text = <&str as Decode<Postgres>>::decode(value)?;
            Ok(JobStatus::parse(text)?)
        }
    }
}

/// Job parameters: a JSON object whose values may be of any JSON type
/// (nested objects and arrays too).
pub type Parameters = serde_json::Map<String, Value>;

/// Most bytes a parameter object may take, serialised as compact JSON
/// (64 KiB): a job's and a workflow's alike.
pub const MAX_PARAMETERS_BYTES: usize = 65_536;

/// Checks a parameter object: keys of 1 to 255 bytes and at most
/// [`MAX_PARAMETERS_BYTES`] serialised. `field` names it in the message
/// (`parameters` on a job and a workflow).
pub fn check_parameters_at(field: &str, parameters: &Parameters) -> Result<()> {
    if parameters
        .keys()
        .any(|key| key.is_empty() || key.len() > 255)
    {
        return Err(Error::invalid(format!(
            "{field}: keys must be 1 to 255 bytes"
        )));
    }
    let size = crate::template::json_len(parameters);
    if size > MAX_PARAMETERS_BYTES {
        return Err(Error::invalid(format!(
            "{field}: {size} bytes as JSON, more than the limit of {MAX_PARAMETERS_BYTES}"
        )));
    }
    Ok(())
}

/// Checks a job's parameters (see [`check_parameters_at`]).
pub fn check_parameters(parameters: &Parameters) -> Result<()> {
    check_parameters_at("parameters", parameters)
}

/// A job as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    #[serde(rename = "jobID")]
    #[schema(value_type = String, example = "12")]
    pub id: Id,
    #[serde(rename = "workflowID")]
    #[schema(value_type = String, example = "3")]
    pub workflow_id: Id,
    /// The version of the workflow the job runs: its current version when
    /// the job was created (or its `workflowID` last changed).
    pub workflow_version: i32,
    pub status: JobStatus,
    /// The queue it goes to: its workflow's `queue` when it was created.
    #[schema(example = "default")]
    pub queue: String,
    /// The job's parameters: a JSON object (any values), its workflow's
    /// `parameters` merged under those it was created with.
    #[schema(value_type = Object)]
    pub parameters: Parameters,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_at: Option<DateTime<Utc>>,
    /// How many times a worker has claimed it.
    pub attempt: i32,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Set on jobs the scheduler created for a cron slot of the workflow's
    /// `schedule`: the slot's time (RFC 3339). Absent on jobs created
    /// through the API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron_slot: Option<DateTime<Utc>>,
    /// The trace of the request that created the job (W3C trace id, 32 hex
    /// digits); the worker's job and task spans belong to it.
    #[serde(rename = "traceID", skip_serializing_if = "Option::is_none")]
    #[schema(example = "4bf92f3577b34da6a3ce929d0e0e4736")]
    pub trace_id: Option<String>,
    /// `CRUST_TRACE_URL` with `{traceID}` replaced: a link to the trace in
    /// the operator's tracing UI. Absent when that variable is not set.
    #[serde(rename = "traceURL", skip_serializing_if = "Option::is_none")]
    pub trace_url: Option<String>,
    /// The job whose `workflow` task started this one.
    #[serde(rename = "parentJobID", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub parent_job_id: Option<Id>,
    /// The job this one reruns (`POST /job/{id}/rerun`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub rerun_of: Option<Id>,
    /// The idempotency key it was created with (`key` or the
    /// `Idempotency-Key` header). Absent once a newer job of the workflow
    /// took the key over after `CRUST_JOB_KEY_TTL`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its workflow's `concurrency.key`, rendered when it was created
    /// (`""` when the workflow has one key for all its jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency_key: Option<String>,
    /// Its workflow's `rateLimit.key`, rendered when it was created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_key: Option<String>,
    /// `{task: output}` of the finished steps (`null` for skipped ones);
    /// shown when one job is read.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub outputs: Option<Box<serde_json::value::RawValue>>,
}

impl Job {
    /// Fills [`Job::trace_url`] from a template such as
    /// `https://grafana.example/explore?traceId={traceID}`.
    pub fn link_trace(mut self, template: Option<&str>) -> Self {
        if let (Some(template), Some(trace_id)) = (template, self.trace_id.as_deref()) {
            self.trace_url = Some(template.replace("{traceID}", trace_id));
        }
        self
    }
}

/// The body of `POST /job/`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobInput {
    #[serde(rename = "workflowID")]
    #[schema(value_type = String)]
    pub workflow_id: Id,
    /// RFC 3339; in the future = a delayed job.
    #[serde(default)]
    pub start_at: Option<String>,
    /// A JSON object (values of any type), at most 64 KiB as JSON; merged
    /// over the workflow's `parameters`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: Parameters,
    /// An idempotency key (1 to 255 characters): creating a job again with
    /// the same workflow and key, while the first is younger than
    /// `CRUST_JOB_KEY_TTL` (24h by default), answers that job (200)
    /// instead of creating one.
    #[serde(default)]
    #[schema(min_length = 1, max_length = 255)]
    pub key: Option<String>,
}

impl JobInput {
    /// Checks the parameters' sizes, the key and reads `startAt`, with the
    /// messages the api answers 400 with; what comes back only needs writing.
    pub fn validate(self) -> Result<NewJob> {
        self.validate_at("")
    }

    /// [`JobInput::validate`] with `prefix` before each field it names
    /// (`jobs[2].` for an item of a bulk create).
    pub fn validate_at(self, prefix: &str) -> Result<NewJob> {
        check_parameters_at(&format!("{prefix}parameters"), &self.parameters)?;
        let start_at = self
            .start_at
            .as_deref()
            .map(parse_start_at)
            .transpose()
            .map_err(|err| prefixed(prefix, err))?;
        if let Some(key) = &self.key {
            check_key(key).map_err(|err| prefixed(prefix, err))?;
        }
        Ok(NewJob {
            workflow_id: self.workflow_id,
            start_at,
            parameters: self.parameters,
            key: self.key,
        })
    }
}

/// An error whose message names a field, with `prefix` put before it.
fn prefixed(prefix: &str, err: Error) -> Error {
    if prefix.is_empty() {
        err
    } else {
        Error::invalid(format!("{prefix}{err}"))
    }
}

/// Checks an idempotency key: 1 to 255 characters.
pub fn check_key(key: &str) -> Result<()> {
    let length = key.chars().count();
    if (1..=255).contains(&length) {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "key: must be 1 to 255 characters (got {length})"
        )))
    }
}

/// A job to create, checked by [`JobInput::validate`]. Whether the workflow
/// exists is for the store to say, in the statement that inserts the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    pub workflow_id: Id,
    /// In the future = a delayed job; `None` or past = due now.
    pub start_at: Option<DateTime<Utc>>,
    pub parameters: Parameters,
    /// The idempotency key, checked by [`check_key`].
    pub key: Option<String>,
}

/// The body of `POST /job/{jobID}`: any of these.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobUpdate {
    #[serde(default)]
    pub status: Option<String>,
    /// A log entry to append: an object `{level?, message, task?, data?}`
    /// or a bare string (the message).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub log: Option<Value>,
    #[serde(rename = "workflowID", default)]
    #[schema(value_type = Option<String>)]
    pub workflow_id: Option<Id>,
    #[serde(default)]
    pub start_at: Option<String>,
    #[serde(default)]
    /// Replaces the parameters whole (the workflow's defaults are not merged
    /// again); a JSON object of at most 64 KiB.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Parameters>,
}

/// Parses `startAt` (RFC 3339), naming the field on failure.
pub fn parse_start_at(text: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|at| at.with_timezone(&Utc))
        .map_err(|err| {
            Error::invalid(format!(
                "startAt: {text:?} is not an RFC 3339 date-time ({err})"
            ))
        })
}

/// Log levels, lowest first.
pub const LOG_LEVELS: &[&str] = &["debug", "info", "warn", "error"];

/// One log entry as shown.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct LogEntry {
    pub seq: i32,
    pub ts: DateTime<Utc>,
    pub level: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

/// A log entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLogEntry {
    pub ts: DateTime<Utc>,
    pub level: String,
    pub task: Option<String>,
    pub message: String,
    pub data: Option<Value>,
}

impl NewLogEntry {
    /// An entry stamped now.
    pub fn new(
        level: &str,
        task: Option<&str>,
        message: impl Into<String>,
        data: Option<Value>,
    ) -> Self {
        Self {
            ts: Utc::now(),
            level: level.to_owned(),
            task: task.map(str::to_owned),
            message: message.into(),
            data,
        }
    }

    /// Reads the `log` of a job update: an object or a bare string.
    pub fn from_input(value: Value) -> Result<Self> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Input {
            #[serde(default)]
            level: Option<String>,
            message: String,
            #[serde(default)]
            task: Option<String>,
            #[serde(default)]
            data: Option<Value>,
        }
        let input = match value {
            Value::String(message) => Input {
                level: None,
                message,
                task: None,
                data: None,
            },
            Value::Object(_) => serde_json::from_value::<Input>(value)
                .map_err(|err| Error::invalid(format!("log: {err}")))?,
            _ => {
                return Err(Error::invalid(
                    "log: must be a string or an object with a message",
                ))
            }
        };
        let level = input.level.unwrap_or_else(|| "info".to_owned());
        if !LOG_LEVELS.contains(&level.as_str()) {
            return Err(Error::invalid(format!(
                "log.level: {level:?} is not one of {}",
                LOG_LEVELS.join(", ")
            )));
        }
        crate::bounded_text("log.message", &input.message, crate::MAX_TEXT_LEN)?;
        Ok(Self {
            ts: Utc::now(),
            level,
            task: input.task,
            message: input.message,
            data: input.data,
        })
    }
}

/// The trace id inside a W3C `traceparent` (`00-<trace>-<span>-<flags>`).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (_version, trace_id) = (parts.next()?, parts.next()?);
    (trace_id.len() == 32
        && trace_id.bytes().all(|b| b.is_ascii_hexdigit())
        && trace_id.bytes().any(|b| b != b'0'))
    .then_some(trace_id)
}

/// The body of `POST /job/{jobID}/signal`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignalInput {
    /// The event a `wait` task waits for.
    #[schema(min_length = 1, max_length = 255)]
    pub event: String,
    /// Given to the `wait` task as its output.
    #[serde(default)]
    pub data: Option<Value>,
}

/// Largest signal `data`, in bytes of JSON.
pub const MAX_SIGNAL_DATA_BYTES: usize = 64 * 1024;

impl SignalInput {
    /// Checks the event's length and the data's size.
    pub fn validate(self) -> Result<SignalInput> {
        let event = self.event.trim();
        if event.is_empty() || event.chars().count() > crate::task::MAX_EVENT_LEN {
            return Err(Error::invalid(format!(
                "event: must be 1 to {} characters",
                crate::task::MAX_EVENT_LEN
            )));
        }
        if let Some(data) = &self.data {
            let size = serde_json::to_string(data)
                .map(|text| text.len())
                .unwrap_or(usize::MAX);
            if size > MAX_SIGNAL_DATA_BYTES {
                return Err(Error::invalid(format!(
                    "data: {size} bytes of JSON; the limit is {MAX_SIGNAL_DATA_BYTES}"
                )));
            }
        }
        Ok(SignalInput {
            event: event.to_owned(),
            data: self.data,
        })
    }
}

/// The body of `POST /job/{jobID}/rerun`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RerunInput {
    /// The task to run again from (with every task that needs it); the
    /// others keep their outputs. Default: the first task that did not end
    /// ok.
    #[serde(default)]
    pub from: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_legal_moves_are_allowed() {
        use JobStatus::*;
        assert!(Queued.can_move_to(Running));
        assert!(Queued.can_move_to(Cancelled));
        assert!(Running.can_move_to(Queued));
        assert!(!Queued.can_move_to(Ok));
        assert!(!Ok.can_move_to(Running));
        assert!(!Cancelled.can_move_to(Queued));
        assert!(!Error.can_move_to(Cancelled));
    }

    #[test]
    fn job_input_is_checked_once_at_the_edge() {
        let input = |body: Value| serde_json::from_value::<JobInput>(body).unwrap().validate();
        let job = input(
            serde_json::json!({"workflowID": "3", "startAt": " 2030-01-02T03:04:05Z ",
                                           "parameters": {"k": "v"}}),
        )
        .unwrap();
        assert_eq!(job.workflow_id, Id(3));
        assert_eq!(
            job.start_at.unwrap().to_rfc3339(),
            "2030-01-02T03:04:05+00:00"
        );
        assert_eq!(job.parameters["k"], "v");
        let err = input(serde_json::json!({"workflowID": "3", "startAt": "soon"})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("startAt: \"soon\" is not an RFC 3339"),
            "{err}"
        );
        let err =
            input(serde_json::json!({"workflowID": "3", "parameters": {"": "v"}})).unwrap_err();
        assert_eq!(err.to_string(), "parameters: keys must be 1 to 255 bytes");
    }

    #[test]
    fn parameters_are_any_json_object_within_64_kib() {
        let params = |value: Value| serde_json::from_value::<Parameters>(value).unwrap();
        check_parameters(&params(
            serde_json::json!({"n": 5, "o": {"a": [true, null]}}),
        ))
        .unwrap();
        // `{"k":"…"}` is 8 bytes around the text.
        let at_limit = params(serde_json::json!({"k": "x".repeat(MAX_PARAMETERS_BYTES - 8)}));
        check_parameters(&at_limit).unwrap();
        let over = params(serde_json::json!({"k": "x".repeat(MAX_PARAMETERS_BYTES - 7)}));
        assert_eq!(
            check_parameters(&over).unwrap_err().to_string(),
            "parameters: 65537 bytes as JSON, more than the limit of 65536"
        );
    }

    #[test]
    fn log_input_is_a_string_or_an_object() {
        let entry = NewLogEntry::from_input(Value::String("hi".into())).unwrap();
        assert_eq!(
            (entry.level.as_str(), entry.message.as_str()),
            ("info", "hi")
        );
        let entry = NewLogEntry::from_input(
            serde_json::json!({"level": "warn", "message": "m", "task": "t"}),
        )
        .unwrap();
        assert_eq!(entry.task.as_deref(), Some("t"));
        assert!(
            NewLogEntry::from_input(serde_json::json!({"level": "loud", "message": "m"})).is_err()
        );
        assert!(NewLogEntry::from_input(serde_json::json!(5)).is_err());
    }

    #[test]
    fn the_trace_id_is_read_from_a_traceparent() {
        assert_eq!(
            trace_id_of("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_of("garbage"), None);
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
    }
}
