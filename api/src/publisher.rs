//! Hands jobs to RabbitMQ off the request path: handlers enqueue job IDs
//! here after their transaction commits, and one task publishes them in
//! batches with confirms, then marks them published. If the broker is down
//! the jobs simply stay unpublished and the scheduler publishes them later,
//! so a broker outage never fails a request and never loses a job.

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
    sender: mpsc::Sender<Outgoing>,
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

    /// Queues a run message for a committed job of the named queue `queue`.
    pub fn run(&self, job_id: Id, queue: &str, trace_parent: Option<String>) {
        self.send(Outgoing::run(job_id, queue, trace_parent));
    }

    /// Tells every worker to stop `job_id` (best effort: workers also see
    /// the request on their next heartbeat).
    pub fn cancel(&self, job_id: Id) {
        self.send(Outgoing::cancel(job_id));
    }

    fn send(&self, outgoing: Outgoing) {
        if self.sender.try_send(outgoing).is_err() {
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
    mut receiver: mpsc::Receiver<Outgoing>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let first = tokio::select! {
            next = receiver.recv() => next,
            () = shutdown.cancelled() => {
                receiver.close();
                receiver.recv().await
            }
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < BATCH {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match publisher.publish(&batch).await {
            Ok(()) => {
                let ids: Vec<Id> = batch
                    .iter()
                    .filter_map(|outgoing| match outgoing.message {
                        Message::RunJob { job_id } => Some(job_id),
                        Message::CancelJob { .. } => None,
                    })
                    .collect();
                if let Err(err) = jobs::api::mark_published(&pool, &ids).await {
                    // Unmarked jobs get published again by the scheduler;
                    // the duplicate message is dropped by the worker.
                    tracing::warn!(error = %err, "cannot mark jobs published");
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, jobs = batch.len(), "publish failed; the scheduler will retry");
            }
        }
        batch.clear();
    }
}
