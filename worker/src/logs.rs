//! Job log lines: tasks hand them to a [`JobLogger`]; a writer batches them
//! into Postgres with gap-free sequence numbers, fenced on the attempt.
//!
//! Memory stays bounded on both sides. Each run may write at most
//! [`LogLimits::max_lines`] lines and [`LogLimits::max_bytes`] bytes, then
//! one final "log truncated" line, and nothing after it. Every queued line
//! holds permits of the writer's byte budget until it is written, so when
//! Postgres cannot keep up a run waits in `log` instead of the worker
//! buffering without limit.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crust_model::Id;

/// Largest `data` put on a line, in bytes of JSON; larger data is replaced
/// by a note of its size.
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// One line on its way to Postgres; `data` is JSON text already checked to
/// be storable. `_permit` returns its bytes to the writer's budget when
/// the line is dropped (written).
#[derive(Debug)]
pub struct LogLine {
    pub job_id: Id,
    pub attempt: i32,
    pub ts: DateTime<Utc>,
    pub level: String,
    pub task: Option<String>,
    pub message: String,
    pub data: Option<Box<RawValue>>,
    pub _permit: Option<OwnedSemaphorePermit>,
}

impl LogLine {
    fn size(&self) -> usize {
        self.message.len()
            + self.level.len()
            + self.task.as_ref().map_or(0, String::len)
            + self.data.as_ref().map_or(0, |data| data.get().len())
    }
}

/// Per-run caps on log volume.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub max_lines: u64,
    pub max_bytes: u64,
}

impl Default for LogLimits {
    fn default() -> Self {
        LogLimits {
            max_lines: 10_000,
            max_bytes: 10 * 1024 * 1024,
        }
    }
}

/// Where loggers send lines: the writer's bounded channel and its byte
/// budget.
#[derive(Debug, Clone)]
pub struct LogSink {
    pub lines: mpsc::Sender<LogLine>,
    pub budget: Arc<Semaphore>,
    pub budget_bytes: usize,
}

impl LogSink {
    /// A sink over `lines` with a budget of `budget_bytes` queued bytes.
    pub fn new(lines: mpsc::Sender<LogLine>, budget_bytes: usize) -> Self {
        LogSink {
            lines,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
        }
    }
}

#[derive(Debug, Default)]
struct Written {
    lines: u64,
    bytes: u64,
    truncated: bool,
}

/// Appends log lines for one run (job and attempt) of a job. Cheap to clone;
/// clones share the run's caps.
#[derive(Debug, Clone)]
pub struct JobLogger {
    job_id: Id,
    attempt: i32,
    sink: LogSink,
    limits: LogLimits,
    written: Arc<Mutex<Written>>,
    /// Secret values this run used: masked in every line written after.
    masked: Arc<Mutex<Vec<String>>>,
}

impl JobLogger {
    /// A logger for `job_id`'s run `attempt` writing into `sink`.
    pub fn new(job_id: Id, attempt: i32, sink: LogSink, limits: LogLimits) -> Self {
        Self {
            job_id,
            attempt,
            sink,
            limits,
            written: Arc::default(),
            masked: Arc::default(),
        }
    }

    /// Masks `values` (secrets a task used) in every later line of the run,
    /// and in the outputs and errors the task runner masks with
    /// [`JobLogger::masked`].
    pub fn mask(&self, values: Vec<String>) {
        if values.is_empty() {
            return;
        }
        if let Ok(mut masked) = self.masked.lock() {
            for value in values {
                if !masked.contains(&value) {
                    masked.push(value);
                }
            }
        }
    }

    /// The secret values masked so far.
    pub fn masked(&self) -> Vec<String> {
        self.masked.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Appends one entry; `level` is debug, info, warn or error. Data that
    /// cannot be stored, or is larger than [`MAX_DATA_BYTES`], is left out
    /// and the message says why.
    pub async fn log(
        &self,
        level: &str,
        task: Option<&str>,
        message: impl Into<String>,
        data: Option<Value>,
    ) {
        let mut message = message.into();
        let data = match data {
            None => None,
            Some(value) => match crate::storable::to_raw(&value, MAX_DATA_BYTES) {
                Ok(raw) => Some(raw),
                Err(reason) => {
                    message.push_str(&format!(" (data left out: {reason})"));
                    None
                }
            },
        };
        self.log_raw(level, task, message, data).await;
    }

    /// [`JobLogger::log`] with data already serialised and checked.
    pub async fn log_raw(
        &self,
        level: &str,
        task: Option<&str>,
        message: impl Into<String>,
        data: Option<Box<RawValue>>,
    ) {
        let mut message = message.into();
        let mut data = data;
        let masked = self.masked();
        if !masked.is_empty() {
            message = crust_model::secret::redact(&message, &masked);
            data = data.map(|raw| crate::storable::mask_raw(raw, &masked));
        }
        let mut line = LogLine {
            job_id: self.job_id,
            attempt: self.attempt,
            ts: Utc::now(),
            level: level.to_owned(),
            // Postgres text cannot hold NUL; a script may log anything.
            task: task.map(|task| task.replace('\0', "\u{fffd}")),
            message: message.replace('\0', "\u{fffd}"),
            data,
            _permit: None,
        };
        let size = line.size() as u64;
        {
            let Ok(mut written) = self.written.lock() else {
                return;
            };
            if written.truncated {
                return;
            }
            if written.lines + 1 > self.limits.max_lines
                || written.bytes + size > self.limits.max_bytes
            {
                written.truncated = true;
                line.level = "warn".into();
                line.task = None;
                line.data = None;
                line.message = format!(
                    "log truncated: a job may write {} lines and {} bytes; later lines are dropped",
                    self.limits.max_lines, self.limits.max_bytes
                );
            } else {
                written.lines += 1;
                written.bytes += size;
            }
        }
        let permits = line.size().clamp(1, self.sink.budget_bytes) as u32;
        // The writer lives as long as the worker; if it is gone the worker
        // is shutting down and the run will be retried anyway.
        let Ok(permit) = self.sink.budget.clone().acquire_many_owned(permits).await else {
            return;
        };
        line._permit = Some(permit);
        let _ = self.sink.lines.send(line).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;

    #[tokio::test]
    async fn a_full_writer_makes_loggers_wait() {
        let (tx, mut rx) = mpsc::channel(100);
        let sink = LogSink::new(tx, 100);
        let log = JobLogger::new(Id(1), 1, sink, LogLimits::default());
        log.log("info", None, "x".repeat(80), None).await;
        // 80 of 100 bytes are queued: the next line waits for the writer.
        let mut next = Box::pin(log.log("info", None, "y".repeat(80), None));
        assert!((&mut next).now_or_never().is_none(), "it waits");
        let first = rx.recv().await.unwrap();
        assert!((&mut next).now_or_never().is_none(), "not written yet");
        drop(first);
        next.await;
        assert_eq!(rx.recv().await.unwrap().message, "y".repeat(80));
    }

    #[tokio::test]
    async fn caps_end_with_one_truncation_line_and_nul_is_replaced() {
        let (tx, mut rx) = mpsc::channel(100);
        let log = JobLogger::new(
            Id(1),
            1,
            LogSink::new(tx, 1 << 20),
            LogLimits {
                max_lines: 3,
                max_bytes: 1 << 20,
            },
        );
        for n in 0..10 {
            log.log("info", Some("t"), format!("a\0{n}"), None).await;
        }
        let mut messages = Vec::new();
        while let Ok(line) = rx.try_recv() {
            messages.push(line.message);
        }
        assert_eq!(
            messages,
            [
                "a\u{fffd}0",
                "a\u{fffd}1",
                "a\u{fffd}2",
                "log truncated: a job may write 3 lines and 1048576 bytes; later lines are dropped"
            ]
        );
    }
}
