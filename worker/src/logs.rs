//! Job log lines: tasks hand them to a [`JobLogger`]; a writer batches them
//! into Postgres with gap-free sequence numbers, fenced on the attempt.

use serde_json::Value;
use tokio::sync::mpsc;

use crust_shared::model::job::NewLogEntry;
use crust_shared::Id;

/// One line on its way to Postgres.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub job_id: Id,
    pub attempt: i32,
    pub entry: NewLogEntry,
}

/// Appends log lines for one run (job and attempt) of a job. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobLogger {
    job_id: Id,
    attempt: i32,
    sink: mpsc::UnboundedSender<LogLine>,
}

impl JobLogger {
    /// A logger for `job_id`'s run `attempt` writing into `sink`.
    pub fn new(job_id: Id, attempt: i32, sink: mpsc::UnboundedSender<LogLine>) -> Self {
        Self {
            job_id,
            attempt,
            sink,
        }
    }

    /// Appends one entry; `level` is debug, info, warn or error.
    pub fn log(
        &self,
        level: &str,
        task: Option<&str>,
        message: impl Into<String>,
        data: Option<Value>,
    ) {
        let line = LogLine {
            job_id: self.job_id,
            attempt: self.attempt,
            entry: NewLogEntry::new(level, task, message, data),
        };
        // The writer lives as long as the worker; if it is gone the worker
        // is shutting down and the run will be retried anyway.
        let _ = self.sink.send(line);
    }
}
