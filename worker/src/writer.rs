//! The one task that writes to Postgres for every run of this worker: log
//! lines in multi-row batches (deadpool-postgres), then final statuses in
//! one fenced update per batch. A run's lines are always written before its
//! final status, because a finish request is handled only after every line
//! sent before it.

use std::time::Duration;

use crust_model::job::JobStatus;
use crust_model::Id;
use crust_store::jobs;
use crust_store::jobs::follow::{self, Notice, NOTIFY_SQL};
use crust_store::jobs::run::{Outcome, Park, APPEND_LOGS_SQL};
use deadpool_postgres::Pool as LogPool;
use serde_json::value::RawValue;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

use crate::logs::{LogLine, LogSink};

/// Most lines per insert statement.
const MAX_LINES: usize = 2_000;
/// Lines the channel holds before loggers wait.
const LINE_CAPACITY: usize = 4_096;
/// Bytes of queued lines before loggers wait (the writer's byte budget).
pub const BUFFER_BYTES: usize = 16 * 1024 * 1024;
/// Finish requests queued before runs wait.
const FINISH_CAPACITY: usize = 1_024;

/// A request to end a run (or, with `park`, to park it); answered with
/// whether the fenced update applied.
pub struct Finish {
    pub outcome: Outcome,
    pub park: Option<Park>,
    pub done: oneshot::Sender<bool>,
}

/// Handles to the writer.
#[derive(Clone)]
pub struct Writer {
    pub sink: LogSink,
    finishes: mpsc::Sender<Finish>,
}

impl Writer {
    /// Starts the writer task; it ends when every sender is dropped, after
    /// writing what it holds.
    pub fn start(pool: PgPool, log_pool: LogPool) -> (Writer, tokio::task::JoinHandle<()>) {
        let (lines, line_rx) = mpsc::channel(LINE_CAPACITY);
        let (finishes, finish_rx) = mpsc::channel(FINISH_CAPACITY);
        let task = tokio::spawn(write_loop(pool, log_pool, line_rx, finish_rx));
        let sink = LogSink::new(lines, BUFFER_BYTES);
        (Writer { sink, finishes }, task)
    }

    /// Whether the writer is behind: more than half its byte budget is
    /// queued. The worker takes no new jobs meanwhile.
    pub fn is_behind(&self) -> bool {
        self.sink.budget.available_permits() < self.sink.budget_bytes / 2
            || self.finishes.capacity() < FINISH_CAPACITY / 2
    }

    /// Ends a run once its lines are written; true if the run still held its
    /// claim (false: another run owns the job now, nothing was written).
    pub async fn finish(&self, outcome: Outcome) -> bool {
        self.send(outcome, None).await
    }

    /// Parks a run (`waiting`) once its lines are written; true if the run
    /// still held its claim.
    pub async fn park(&self, id: Id, attempt: i32, park: Park) -> bool {
        let outcome = Outcome {
            id,
            attempt,
            status: JobStatus::Waiting,
            error: None,
        };
        self.send(outcome, Some(park)).await
    }

    async fn send(&self, outcome: Outcome, park: Option<Park>) -> bool {
        let (done, answer) = oneshot::channel();
        let finish = Finish {
            outcome,
            park,
            done,
        };
        if self.finishes.send(finish).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

async fn write_loop(
    pool: PgPool,
    log_pool: LogPool,
    mut line_rx: mpsc::Receiver<LogLine>,
    mut finish_rx: mpsc::Receiver<Finish>,
) {
    let mut lines: Vec<LogLine> = Vec::new();
    let mut finishes: Vec<Finish> = Vec::new();
    let (mut lines_open, mut finishes_open) = (true, true);
    while lines_open || finishes_open {
        tokio::select! {
            line = line_rx.recv(), if lines_open => match line {
                Some(line) => lines.push(line),
                None => lines_open = false,
            },
            finish = finish_rx.recv(), if finishes_open => match finish {
                Some(finish) => finishes.push(finish),
                None => finishes_open = false,
            },
        }
        // Take the finishes first, then every line queued by now: a run
        // sends its lines before its finish, so they are all in the channel
        // and get written before the finish that follows them.
        while let Ok(finish) = finish_rx.try_recv() {
            finishes.push(finish);
        }
        loop {
            while lines.len() < MAX_LINES {
                match line_rx.try_recv() {
                    Ok(line) => lines.push(line),
                    Err(_) => break,
                }
            }
            if lines.is_empty() {
                break;
            }
            let full = lines.len() == MAX_LINES;
            write_lines(&log_pool, &lines).await;
            lines.clear();
            if !full {
                break;
            }
        }
        if !finishes.is_empty() {
            write_finishes(&pool, std::mem::take(&mut finishes)).await;
        }
    }
}

/// Writes lines, retrying with backoff while Postgres is unreachable; lines
/// of runs that lost their claim are dropped by the statement's fence.
async fn write_lines(log_pool: &LogPool, lines: &[LogLine]) {
    let mut job_ids = Vec::with_capacity(lines.len());
    let mut attempts = Vec::with_capacity(lines.len());
    let mut stamps = Vec::with_capacity(lines.len());
    let mut levels = Vec::with_capacity(lines.len());
    let mut tasks = Vec::with_capacity(lines.len());
    let mut messages = Vec::with_capacity(lines.len());
    let mut data = Vec::with_capacity(lines.len());
    for line in lines {
        job_ids.push(line.job_id.get());
        attempts.push(line.attempt);
        stamps.push(line.ts);
        levels.push(line.level.as_str());
        tasks.push(line.task.as_deref());
        messages.push(line.message.as_str());
        data.push(line.data.as_deref().map(RawValue::get));
    }
    let mut delay = Duration::from_millis(50);
    for _ in 0..8 {
        let result = async {
            let client = log_pool.get().await.map_err(|err| err.to_string())?;
            let statement = client
                .prepare_cached(APPEND_LOGS_SQL)
                .await
                .map_err(|err| err.to_string())?;
            let rows = client
                .query(
                    &statement,
                    &[
                        &job_ids, &attempts, &stamps, &levels, &tasks, &messages, &data,
                    ],
                )
                .await
                .map_err(|err| err.to_string())?;
            Ok::<_, String>((client, rows))
        }
        .await;
        match result {
            Ok((client, rows)) => {
                crust_runtime::metrics::metrics()
                    .log_lines
                    .inc_by(lines.len() as u64);
                let notices: Vec<Notice> = rows
                    .iter()
                    .map(|row| Notice::Logged {
                        job: Id(row.get(0)),
                        seq: row.get(1),
                    })
                    .collect();
                let (channels, payloads) = follow::notify_params(&notices);
                let sent = match client.prepare_cached(NOTIFY_SQL).await {
                    Ok(statement) => client.execute(&statement, &[&channels, &payloads]).await,
                    Err(err) => Err(err),
                };
                if let Err(err) = sent {
                    tracing::warn!(error = %err, "cannot notify log followers");
                }
                return;
            }
            Err(err) => {
                tracing::warn!(error = %err, lines = lines.len(), "cannot write log lines; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!(
        lines = lines.len(),
        "log lines dropped after repeated failures"
    );
}

async fn write_finishes(pool: &PgPool, finishes: Vec<Finish>) {
    let (parks, finishes): (Vec<Finish>, Vec<Finish>) =
        finishes.into_iter().partition(|f| f.park.is_some());
    for finish in parks {
        let Some(park) = &finish.park else { continue };
        let id = finish.outcome.id;
        let attempt = finish.outcome.attempt;
        let applied = retrying("cannot park a job", || {
            jobs::run::park(pool, id, attempt, park)
        })
        .await;
        let _ = finish.done.send(applied);
    }
    if finishes.is_empty() {
        return;
    }
    let outcomes: Vec<Outcome> = finishes.iter().map(|f| f.outcome.clone()).collect();
    let mut delay = Duration::from_millis(50);
    let applied: Vec<Id> = loop {
        match jobs::run::finish(pool, &outcomes).await {
            Ok(applied) => break applied,
            Err(err) => {
                // Keep trying: the lease runs out meanwhile and the job is
                // rescued, after which this fenced update simply misses.
                tracing::warn!(error = %err, "cannot record job outcomes; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    for finish in finishes {
        let _ = finish.done.send(applied.contains(&finish.outcome.id));
    }
    let notices: Vec<Notice> = applied
        .into_iter()
        .map(|job| Notice::Finished { job })
        .collect();
    if let Err(err) = follow::notify(pool, &notices).await {
        tracing::warn!(error = %err, "cannot notify log followers");
    }
}

/// Runs a store write until it succeeds: while Postgres is away the lease
/// runs out and the job is rescued, after which the fenced write misses.
async fn retrying<F, Fut, T>(what: &str, mut write: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = crust_store::Result<T>>,
{
    let mut delay = Duration::from_millis(50);
    loop {
        match write().await {
            Ok(value) => return value,
            Err(err) => {
                tracing::warn!(error = %err, "{what}; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
