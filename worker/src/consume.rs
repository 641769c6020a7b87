//! The RabbitMQ side: one consumer per connection, reconnecting with backoff;
//! deliveries are claimed in batches and each claimed job is started in its
//! own task; cancel broadcasts reach the running jobs through a private queue
//! bound to the cancel fanout.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crust_model::Id;
use crust_queue::{self as queue, Message};
use crust_store::jobs;
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicRejectOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::runner::StopReason;
use crate::{claimed, drain, Worker};

/// Connects and consumes; on any broker failure reconnects with backoff.
pub(crate) async fn consume_until(worker: Arc<Worker>, shutdown: CancellationToken) {
    let mut backoff = Duration::from_millis(200);
    while !shutdown.is_cancelled() {
        match consume(&worker, &shutdown).await {
            Ok(()) => break,
            Err(err) => {
                worker.consuming.store(false, Ordering::Relaxed);
                tracing::warn!(error = %err, retry_in = ?backoff, "lost RabbitMQ; reconnecting");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    worker.consuming.store(false, Ordering::Relaxed);
}

/// One connection's life: declare, listen for cancels, consume until
/// shutdown (Ok) or a broker failure (Err). Runs started here keep their
/// deliveries, so they can still be acknowledged after consuming stops.
async fn consume(worker: &Arc<Worker>, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let connection = queue::connect(&worker.config.amqp.amqp_url).await?;
    let channel = connection.create_channel().await?;
    queue::declare(&channel, &worker.names).await?;
    // One prefetch for the whole channel, shared by the consumers of all
    // the worker's queues, so it never holds more than `concurrency` jobs.
    queue::set_prefetch(&channel, worker.config.concurrency).await?;
    listen_for_cancels(worker, &connection).await?;
    let mut consumers = Vec::with_capacity(worker.config.queues.len());
    let mut tags = Vec::with_capacity(worker.config.queues.len());
    for name in &worker.config.queues {
        queue::declare_queue(&channel, &worker.names, name).await?;
        let tag = consumer_tag(&worker.name);
        consumers.push(
            channel
                .basic_consume(
                    &worker.names.jobs_queue(name),
                    &tag,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?,
        );
        tags.push(tag);
    }
    let mut consumer = futures_util::stream::select_all(consumers);
    worker.consuming.store(true, Ordering::Relaxed);
    tracing::info!(queues = ?worker.config.queues, "consuming");
    loop {
        // Back-pressure: while the writer is behind (Postgres slow or
        // down), take no new jobs; they wait in the broker, not here.
        while worker.writer.is_behind() && !shutdown.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let first = tokio::select! {
            () = shutdown.cancelled() => break,
            next = consumer.next() => next,
        };
        let Some(first) = first else {
            anyhow::bail!("the broker closed the consumer");
        };
        let mut batch = vec![first?];
        // Claim everything that has already arrived in one statement.
        while batch.len() < 64 {
            match consumer.next().now_or_never() {
                Some(Some(delivery)) => batch.push(delivery?),
                _ => break,
            }
        }
        claim_and_start(worker, batch).await;
    }
    // Stop new deliveries; the channel stays open for the running jobs'
    // acknowledgements until they are done.
    worker.consuming.store(false, Ordering::Relaxed);
    for tag in &tags {
        let _ = channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await;
    }
    drain::drain(worker).await;
    crust_queue::close_connection(connection, "worker shutting down", Duration::from_secs(5)).await;
    Ok(())
}

/// A consumer tag for this worker's next connection: its name and how many
/// connections it has opened (a tag only has to be unique per channel; the
/// name and number make it readable in the broker's consumer list).
fn consumer_tag(name: &str) -> String {
    static CONNECTIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CONNECTIONS.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{name}-{n}")
}

/// Binds a private queue to the cancel fanout and stops matching runs.
async fn listen_for_cancels(
    worker: &Arc<Worker>,
    connection: &lapin::Connection,
) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    let private = channel
        .queue_declare(
            "",
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            private.name().as_str(),
            &worker.names.cancel_exchange,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let mut cancels = channel
        .basic_consume(
            private.name().as_str(),
            "",
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let worker = worker.clone();
    tokio::spawn(async move {
        while let Some(Ok(delivery)) = cancels.next().await {
            if let Ok(Message::CancelJob { job_id }) = Message::from_bytes(&delivery.data) {
                if worker.runs.stop(job_id, StopReason::Cancelled) {
                    tracing::info!(job.id = %job_id, "cancel received");
                }
            }
        }
    });
    Ok(())
}

/// Claims a batch of deliveries and starts the claimed runs; everything
/// else is acknowledged and dropped (a duplicate, a finished or cancelled
/// job, or one not yet due or of a paused workflow, which goes back to the
/// scheduler).
async fn claim_and_start(worker: &Arc<Worker>, batch: Vec<Delivery>) {
    let mut wanted: Vec<(Id, Delivery)> = Vec::with_capacity(batch.len());
    for delivery in batch {
        match Message::from_bytes(&delivery.data) {
            Ok(Message::RunJob { job_id }) => wanted.push((job_id, delivery)),
            Ok(other) => {
                tracing::warn!(?other, "unexpected message on the jobs queue; dropped");
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
            Err(err) => {
                tracing::warn!(error = %err, "malformed message; dead-lettered");
                let _ = delivery.reject(BasicRejectOptions { requeue: false }).await;
            }
        }
    }
    if wanted.is_empty() {
        return;
    }
    let ids: Vec<Id> = wanted.iter().map(|(id, _)| *id).collect();
    let claims =
        match jobs::run::claim(&worker.env.pool, &ids, &worker.name, worker.config.lease()).await {
            Ok(claims) => claims,
            Err(err) => {
                // Postgres is down: give the messages back after a pause so they
                // do not spin through the queue.
                tracing::warn!(error = %err, "cannot claim jobs; requeueing");
                tokio::time::sleep(Duration::from_secs(1)).await;
                for (_, delivery) in wanted {
                    let _ = delivery
                        .nack(BasicNackOptions {
                            requeue: true,
                            ..Default::default()
                        })
                        .await;
                }
                return;
            }
        };
    let mut started = HashSet::new();
    for (id, delivery) in wanted {
        if !started.insert(id) {
            tracing::debug!(job.id = %id, "duplicate message; dropped");
            let _ = delivery.ack(BasicAckOptions::default()).await;
            continue;
        }
        if let Some(job) = claims.runs.iter().find(|job| job.id == id) {
            let span = claimed::span(job.attempt, job.id, job.trace_parent.as_deref());
            tokio::spawn(
                claimed::run(worker.clone(), job.clone(), delivery.acker).instrument(span),
            );
            continue;
        }
        match claims.unreadable.iter().find(|job| job.id == id) {
            Some(job) => {
                let span = claimed::span(job.attempt, job.id, job.trace_parent.as_deref());
                tokio::spawn(
                    claimed::end_unreadable(worker.clone(), job.clone(), delivery.acker)
                        .instrument(span),
                );
            }
            None => {
                tracing::debug!(job.id = %id, "not claimable; message dropped");
                let _ = delivery.ack(BasicAckOptions::default()).await;
            }
        }
    }
}
