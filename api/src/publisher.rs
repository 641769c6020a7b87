//! Hands jobs to RabbitMQ off the request path: handlers enqueue job IDs
//! here after their transaction commits, and one task publishes them in
//! batches with confirms. A job created by `POST /job/` (bulk, webhook) is
//! stored as published by its insert ([`JobQueue::run_created`]), so its
//! hint goes out with no write after it and no row lock a worker's claim
//! could wait on; other jobs ([`JobQueue::run`]) are marked published once
//! the broker confirmed. If the broker is down the jobs are not lost: the
//! scheduler publishes the unmarked ones after their grace and finds the
//! missing hints of the marked ones (ARCHITECTURE.md, "Hints, not
//! copies"), so a broker outage never fails a request.

use std::sync::Arc;

use crust_model::Id;
use crust_queue::{Message, Outgoing, Publisher};
use crust_store::jobs;
use sqlx::PgPool;
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Most messages in one publish round.
const BATCH: usize = 256;
/// Jobs waiting for the publisher before new ones are left to the scheduler.
const BACKLOG: usize = 10_000;

/// The sending side, kept in the app state.
#[derive(Clone)]
pub struct JobQueue {
    sender: mpsc::Sender<(Outgoing, bool)>,
    publisher: Arc<Publisher>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl JobQueue {
    /// Starts the publishing task; it stops when `shutdown` fires, after
    /// draining what is already queued.
    pub fn start(publisher: Arc<Publisher>, pool: PgPool, shutdown: CancellationToken) -> Self {
        let (sender, receiver) = mpsc::channel(BACKLOG);
        let task = tokio::spawn(publish_loop(publisher.clone(), pool, receiver, shutdown));
        Self {
            sender,
            publisher,
            task: Arc::new(Mutex::new(Some(task))),
        }
    }

    /// After shutdown: waits for the publishing task to drain what was
    /// queued, then closes the broker connection.
    pub async fn close(&self) {
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.publisher.close().await;
    }

    /// Queues a run message for a committed job of the named queue `queue`,
    /// to be marked published once the broker confirmed it.
    pub fn run(&self, job_id: Id, queue: &str, trace_parent: Option<String>) {
        self.send(Outgoing::run(job_id, queue, trace_parent), true);
    }

    /// Queues a run message for a job its insert already stored as
    /// published (`jobs::api::Created::due_now`): nothing is written after.
    pub fn run_created(&self, job_id: Id, queue: &str, trace_parent: Option<String>) {
        self.send(Outgoing::run(job_id, queue, trace_parent), false);
    }

    /// Tells every worker to stop `job_id` (best effort: workers also see
    /// the request on their next heartbeat).
    pub fn cancel(&self, job_id: Id) {
        self.send(Outgoing::cancel(job_id), false);
    }

    fn send(&self, outgoing: Outgoing, mark: bool) {
        if self.sender.try_send((outgoing, mark)).is_err() {
            tracing::warn!("publish backlog full; the scheduler will publish this job");
        }
    }

    /// What the broker says of each named queue (see
    /// [`Publisher::queue_stats`]).
    pub async fn queue_stats(
        &self,
        queues: &[String],
    ) -> Result<Vec<Option<crust_queue::QueueStats>>, crust_queue::QueueError> {
        self.publisher.queue_stats(queues).await
    }

    /// Connects to the broker if needed; says why it cannot.
    pub async fn check(&self) -> Result<(), crust_queue::QueueError> {
        self.publisher.check().await
    }
}

async fn publish_loop(
    publisher: Arc<Publisher>,
    pool: PgPool,
    mut receiver: mpsc::Receiver<(Outgoing, bool)>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut to_mark = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            next = receiver.recv() => next,
            () = shutdown.cancelled() => {
                receiver.close();
                receiver.recv().await
            }
        };
        let Some(first) = first else { break };
        let mut next = Some(first);
        while let Some((outgoing, mark)) = next {
            if let (true, Message::RunJob { job_id }) = (mark, &outgoing.message) {
                to_mark.push(*job_id);
            }
            batch.push(outgoing);
            next = if batch.len() < BATCH {
                receiver.try_recv().ok()
            } else {
                None
            };
        }
        match publisher.publish(&batch).await {
            Ok(()) if !to_mark.is_empty() => {
                if let Err(err) = jobs::api::mark_published(&pool, &to_mark).await {
                    // Unmarked jobs get published again by the scheduler;
                    // the duplicate message is dropped by the worker.
                    tracing::warn!(error = %err, "cannot mark jobs published");
                }
            }
            Ok(()) => {}
            Err(err) => {
                tracing::warn!(error = %err, jobs = batch.len(), "publish failed; the scheduler will retry");
            }
        }
        batch.clear();
        to_mark.clear();
    }
}
