//! The step writer: every step start and outcome of this worker's runs
//! goes through one task that writes them in batches, one statement (one
//! commit) for the starts and one for the outcomes of each round. Running
//! jobs then share one Postgres connection for their checkpoints instead of
//! each holding one, and a commit's cost is shared by the whole batch. A run
//! awaits the answer to each write (was it applied, i.e. does the run still
//! hold the job), so checkpoints stay in order per step.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use crust_model::Id;
use crust_store::steps::{self, Record, Start};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};

/// Most writes taken into one round.
const MAX_BATCH: usize = 512;
/// Writes queued before runs wait.
const CAPACITY: usize = 4_096;

type Until = Option<DateTime<Utc>>;

enum Request {
    Start(Start, oneshot::Sender<Result<Option<Until>, String>>),
    Record(Record, oneshot::Sender<Result<bool, String>>),
}

impl Request {
    fn key(&self) -> (bool, Id, &str, i32) {
        match self {
            Request::Start(s, _) => (true, s.job, s.task.as_str(), s.item),
            Request::Record(r, _) => (false, r.job, r.task.as_str(), r.item),
        }
    }
}

/// The handle runs write their steps through.
#[derive(Clone)]
pub struct StepWriter {
    requests: mpsc::Sender<Request>,
}

impl StepWriter {
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn start(pool: PgPool) -> StepWriter {
        let (requests, receiver) = mpsc::channel(CAPACITY);
        tokio::spawn(write_loop(pool, receiver));
        StepWriter { requests }
    }

    /// See [`steps::start`]: the step's `until_at`, `None` when the run no
    /// longer holds the job; `Err` when Postgres could not be written.
    pub async fn start_step(&self, start: Start) -> Result<Option<Until>, String> {
        let (done, answer) = oneshot::channel();
        self.requests
            .send(Request::Start(start, done))
            .await
            .map_err(|_| "the step writer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the step writer has stopped".to_owned())?
    }

    /// See [`steps::record`]: whether the run still held the job.
    pub async fn record(&self, record: Record) -> Result<bool, String> {
        let (done, answer) = oneshot::channel();
        self.requests
            .send(Request::Record(record, done))
            .await
            .map_err(|_| "the step writer has stopped".to_owned())?;
        answer
            .await
            .map_err(|_| "the step writer has stopped".to_owned())?
    }
}

async fn write_loop(pool: PgPool, mut receiver: mpsc::Receiver<Request>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        // A statement may touch a step once: a step named twice (only a
        // run that lost its claim racing the one that has it) waits for
        // the next round.
        while !batch.is_empty() {
            let mut seen = HashSet::new();
            let (round, later): (Vec<Request>, Vec<Request>) = batch.into_iter().partition(|r| {
                let (start, job, task, item) = r.key();
                seen.insert((start, job, task.to_owned(), item))
            });
            write_round(&pool, round).await;
            batch = later;
        }
    }
}

async fn write_round(pool: &PgPool, round: Vec<Request>) {
    let mut starts = Vec::new();
    let mut records = Vec::new();
    for request in round {
        match request {
            Request::Start(start, done) => starts.push((start, done)),
            Request::Record(record, done) => records.push((record, done)),
        }
    }
    // Starts first: a step's outcome is only ever sent after its start
    // was answered, but an older attempt's start may share the round.
    if !starts.is_empty() {
        let (values, answers): (Vec<Start>, Vec<_>) = starts.into_iter().unzip();
        answer_all(answers, steps::start_many(pool, &values).await);
    }
    if !records.is_empty() {
        let (values, answers): (Vec<Record>, Vec<_>) = records.into_iter().unzip();
        answer_all(answers, steps::record_many(pool, &values).await);
    }
}

/// Answers each write of a statement with its own result, or all of them
/// with the statement's error.
fn answer_all<T>(
    answers: Vec<oneshot::Sender<Result<T, String>>>,
    results: crust_store::Result<Vec<T>>,
) {
    match results {
        Ok(results) => {
            for (answer, result) in answers.into_iter().zip(results) {
                let _ = answer.send(Ok(result));
            }
        }
        Err(err) => {
            for answer in answers {
                let _ = answer.send(Err(err.to_string()));
            }
        }
    }
}
