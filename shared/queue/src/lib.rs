//! # crust-queue
//!
//! RabbitMQ: the topology every process declares, the messages that travel
//! on it, a publisher that reconnects by itself and waits for confirms, and
//! the consumer setup of the workers.
//!
//! Names all start with `CRUST_QUEUE_PREFIX`, so several installations (or
//! tests) share one broker.
//!
//! Depends on `crust-model` for [`Id`] and the settings vocabulary only: it
//! knows no SQL; Postgres, not the broker, holds the truth about jobs.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::future::join_all;
use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crust_model::Id;

/// Where the broker is and how names are prefixed. Its `Debug` hides the
/// URL's password.
#[derive(Clone, clap::Args)]
pub struct AmqpConfig {
    /// RabbitMQ URL.
    #[arg(
        long,
        env = "AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub amqp_url: String,

    /// Prefix of every exchange and queue name.
    #[arg(long, env = "CRUST_QUEUE_PREFIX", default_value = "crust")]
    pub queue_prefix: String,
}

impl AmqpConfig {
    /// Checks that `AMQP_URL` parses, so a typo fails at start rather than
    /// at the first publish.
    pub fn validate(&self) -> Result<(), crust_model::config::ConfigError> {
        self.amqp_url
            .parse::<lapin::uri::AMQPUri>()
            .map(drop)
            .map_err(|err| {
                crust_model::config::ConfigError::new(format!(
                    "AMQP_URL is not a valid AMQP URL: {err}"
                ))
            })
    }
}

impl std::fmt::Debug for AmqpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpConfig")
            .field("amqp_url", &crust_model::config::redact_url(&self.amqp_url))
            .field("queue_prefix", &self.queue_prefix)
            .finish()
    }
}

/// Closes `connection` and waits (up to `timeout`) for lapin's I/O thread
/// to end: that thread otherwise outlives the close handshake for a moment,
/// and if the runtime is shutting down by then it logs errors about it.
pub async fn close_connection(connection: Connection, reason: &str, timeout: Duration) {
    let closed = tokio::time::timeout(timeout, connection.close(200, reason)).await;
    if !matches!(closed, Ok(Ok(()))) {
        tracing::debug!("broker did not acknowledge the close in time");
        return;
    }
    // `run` joins the I/O thread, which ends once the connection is closed.
    let joined = tokio::task::spawn_blocking(move || connection.run());
    let _ = tokio::time::timeout(timeout, joined).await;
}

/// The names derived from the prefix.
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
    /// Direct exchange jobs are published to, with their queue's name as
    /// the routing key.
    pub jobs_exchange: String,
    /// Fanout exchange of cancel requests; each worker binds its own queue.
    pub cancel_exchange: String,
}

impl Names {
    /// The names for `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            jobs_exchange: format!("{prefix}.jobs"),
            cancel_exchange: format!("{prefix}.cancel"),
        }
    }

    /// The broker queue of the named queue `queue`: `<prefix>.jobs.<queue>`.
    pub fn jobs_queue(&self, queue: &str) -> String {
        format!("{}.jobs.{queue}", self.prefix)
    }

    /// Where `queue`'s rejected messages go: `<prefix>.dead.<queue>`. (Not
    /// `<prefix>.jobs.<queue>.dead`: queue names may contain no `.`, and
    /// this keeps every dead-letter queue out of the jobs' namespace.)
    pub fn dead_queue(&self, queue: &str) -> String {
        format!("{}.dead.{queue}", self.prefix)
    }
}

/// A message on the broker. Versioned and tagged; receiving one twice is
/// harmless (a run message for a job that is not queued is dropped).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Message {
    /// Run this job (claim it first).
    #[serde(rename = "job.run.v1")]
    RunJob {
        #[serde(rename = "jobID")]
        job_id: Id,
    },
    /// Stop this job if you are running it.
    #[serde(rename = "job.cancel.v1")]
    CancelJob {
        #[serde(rename = "jobID")]
        job_id: Id,
    },
}

impl Message {
    /// The JSON body.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses a body.
    pub fn from_bytes(bytes: &[u8]) -> Result<Message, String> {
        serde_json::from_slice(bytes).map_err(|err| err.to_string())
    }
}

/// The header carrying the W3C trace context.
pub const TRACEPARENT: &str = "traceparent";

/// A failure talking to the broker.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker did not answer within {0:?}")]
    Timeout(Duration),
    #[error("broker refused message(s)")]
    Nacked,
}

/// AMQP heartbeat used unless the URL sets one (`?heartbeat=N`): short, so
/// the broker soon drops a frozen consumer and redelivers what it held.
pub const DEFAULT_HEARTBEAT_SECS: u16 = 10;

/// Connects with tokio as lapin's executor and reactor.
pub async fn connect(url: &str) -> Result<Connection, QueueError> {
    let url = if url.contains("heartbeat=") {
        url.to_owned()
    } else {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}heartbeat={DEFAULT_HEARTBEAT_SECS}")
    };
    let url = url.as_str();
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio);
    let timeout = Duration::from_secs(5);
    tokio::time::timeout(timeout, Connection::connect(url, properties))
        .await
        .map_err(|_| QueueError::Timeout(timeout))?
        .map_err(QueueError::from)
}

/// Declares the exchanges every process uses (idempotent): the direct jobs
/// exchange and the cancel fanout. Each named queue is declared by
/// [`declare_queue`].
pub async fn declare(channel: &Channel, names: &Names) -> Result<(), QueueError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            &names.jobs_exchange,
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            &names.cancel_exchange,
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Declares the named queue `queue` (idempotent): the hint queue
/// `<prefix>.jobs.<queue>`, bound to the jobs exchange with the routing key
/// `queue`, and its dead-letter queue.
///
/// The hint queue is a *classic* queue (declared durable, so it and its
/// binding survive a broker restart) and its messages are transient: the
/// broker delivers a hint as soon as it has it, without first writing it
/// to disk and, for a quorum queue, to a majority of nodes. That commit was
/// the floor of a job's start latency. Postgres holds the job; a hint lost
/// with a broker restart (or dropped) is found and sent again by the
/// scheduler (see ARCHITECTURE.md, "Hints, not copies").
///
/// A message a worker rejects (malformed) goes through the default exchange
/// to the queue's dead-letter queue, a durable quorum queue, because what
/// lands there is kept for a human to read.
pub async fn declare_queue(
    channel: &Channel,
    names: &Names,
    queue: &str,
) -> Result<QueueStats, QueueError> {
    let jobs_queue = names.jobs_queue(queue);
    let dead_queue = names.dead_queue(queue);
    let mut quorum = FieldTable::default();
    quorum.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    channel
        .queue_declare(&dead_queue, durable_queue(), quorum)
        .await?;
    let mut classic = FieldTable::default();
    classic.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("classic")),
    );
    classic.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(LongString::from("")),
    );
    classic.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(LongString::from(dead_queue.as_str())),
    );
    let declared = channel
        .queue_declare(&jobs_queue, durable_queue(), classic)
        .await?;
    channel
        .queue_bind(
            &jobs_queue,
            &names.jobs_exchange,
            queue,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(QueueStats {
        ready: declared.message_count(),
        consumers: declared.consumer_count(),
    })
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Deletes everything [`declare`] and [`declare_queue`] made for `queues`
/// (for tests, which must leave the broker as they found it).
pub async fn delete_topology(
    channel: &Channel,
    names: &Names,
    queues: &[&str],
) -> Result<(), QueueError> {
    for queue in queues {
        for name in [names.jobs_queue(queue), names.dead_queue(queue)] {
            channel
                .queue_delete(&name, QueueDeleteOptions::default())
                .await?;
        }
    }
    for exchange in [&names.jobs_exchange, &names.cancel_exchange] {
        channel
            .exchange_delete(exchange, ExchangeDeleteOptions::default())
            .await?;
    }
    Ok(())
}

/// Sets how many unacknowledged deliveries a channel may hold, across all
/// its consumers (RabbitMQ's `global` prefetch, which classic queues honour).
pub async fn set_prefetch(channel: &Channel, prefetch: u16) -> Result<(), QueueError> {
    channel
        .basic_qos(prefetch, BasicQosOptions { global: true })
        .await?;
    Ok(())
}

/// An outgoing message, its trace context and, for a run message, the
/// named queue it goes to.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub message: Message,
    pub trace_parent: Option<String>,
    /// The named queue of a [`Message::RunJob`]; unused for a cancel.
    pub queue: String,
}

impl Outgoing {
    /// "Run job `job_id`", to the named queue `queue`.
    pub fn run(job_id: Id, queue: impl Into<String>, trace_parent: Option<String>) -> Self {
        Self {
            message: Message::RunJob { job_id },
            trace_parent,
            queue: queue.into(),
        }
    }

    /// "Stop job `job_id`", to every worker.
    pub fn cancel(job_id: Id) -> Self {
        Self {
            message: Message::CancelJob { job_id },
            trace_parent: None,
            queue: String::new(),
        }
    }
}

/// What the broker says of one named queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStats {
    /// Messages ready for delivery (not those delivered and unacknowledged).
    pub ready: u32,
    pub consumers: u32,
}

/// The publisher's connection, its confirming channel and the named queues
/// declared on it.
struct Link {
    connection: Connection,
    channel: Channel,
    declared: HashSet<String>,
}

impl Link {
    fn is_live(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

/// Publishes messages and waits for the broker's confirms. Holds one
/// connection, made on first use and remade after any failure, so a
/// broker restart heals by itself. Run messages are transient (see
/// [`declare_queue`]): a confirm means the broker has routed the hint to
/// its queue, not that it wrote it to disk.
pub struct Publisher {
    url: String,
    names: Names,
    link: Mutex<Option<Link>>,
    timeout: Duration,
}

impl Publisher {
    /// A publisher that has not connected yet.
    pub fn new(config: &AmqpConfig) -> Self {
        Self {
            url: config.amqp_url.clone(),
            names: Names::new(&config.queue_prefix),
            link: Mutex::new(None),
            timeout: Duration::from_secs(5),
        }
    }

    /// The names it publishes under.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Whether it currently holds a live connection.
    pub async fn is_connected(&self) -> bool {
        self.link.lock().await.as_ref().is_some_and(Link::is_live)
    }

    /// What the broker says of each named queue in `queues` (in order).
    /// Each is declared (idempotent; a queue a workflow names is where its
    /// hints will go anyway) rather than passively declared: a passive
    /// declare of a missing queue closes the channel and lapin logs it as
    /// an error. Always `Some` (the type leaves room for a passive mode).
    pub async fn queue_stats(
        &self,
        queues: &[String],
    ) -> Result<Vec<Option<QueueStats>>, QueueError> {
        let mut slot = self.link.lock().await;
        let work = async {
            self.connected(&mut slot).await?;
            let Some(link) = slot.as_mut() else {
                return Err(QueueError::Timeout(self.timeout));
            };
            let mut answers = Vec::with_capacity(queues.len());
            for queue in queues {
                answers.push(Some(
                    declare_queue(&link.channel, &self.names, queue).await?,
                ));
                link.declared.insert(queue.clone());
            }
            Ok::<_, QueueError>(answers)
        };
        let result = tokio::time::timeout(self.timeout, work)
            .await
            .unwrap_or(Err(QueueError::Timeout(self.timeout)));
        if result.is_err() {
            *slot = None;
        }
        result
    }

    /// Closes the connection, if any, so the broker sees a clean goodbye and
    /// lapin's I/O thread ends before the runtime does (otherwise it logs
    /// errors about a runtime shutting down). Call it last; a later use
    /// would connect again.
    pub async fn close(&self) {
        let Some(link) = self.link.lock().await.take() else {
            return;
        };
        let _ = tokio::time::timeout(self.timeout, link.channel.close(200, "closing")).await;
        close_connection(link.connection, "closing", self.timeout).await;
    }

    /// Connects if not connected; for readiness probes.
    pub async fn check(&self) -> Result<(), QueueError> {
        let mut slot = self.link.lock().await;
        let result = tokio::time::timeout(self.timeout, self.connected(&mut slot)).await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                *slot = None;
                Err(err)
            }
            Err(_) => {
                *slot = None;
                Err(QueueError::Timeout(self.timeout))
            }
        }
    }

    async fn connected(&self, slot: &mut Option<Link>) -> Result<(), QueueError> {
        if slot.as_ref().is_some_and(Link::is_live) {
            return Ok(());
        }
        *slot = None;
        let connection = connect(&self.url).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare(&channel, &self.names).await?;
        *slot = Some(Link {
            connection,
            channel,
            declared: HashSet::new(),
        });
        Ok(())
    }

    /// Publishes all messages (pipelined) and returns once every one is
    /// confirmed; any failure fails the whole batch (callers retry or leave
    /// the rest to the scheduler: duplicates are harmless). Each named queue
    /// is declared before its first message on a connection, so a hint is
    /// never dropped for want of a queue.
    pub async fn publish(&self, batch: &[Outgoing]) -> Result<(), QueueError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut slot = self.link.lock().await;
        let result = tokio::time::timeout(self.timeout, self.publish_on(&mut slot, batch)).await;
        let result = result.unwrap_or(Err(QueueError::Timeout(self.timeout)));
        if result.is_err() {
            // Start afresh next time.
            *slot = None;
        }
        result
    }

    async fn publish_on(
        &self,
        slot: &mut Option<Link>,
        batch: &[Outgoing],
    ) -> Result<(), QueueError> {
        self.connected(slot).await?;
        let Some(link) = slot.as_mut() else {
            return Err(QueueError::Timeout(self.timeout));
        };
        for outgoing in batch {
            if matches!(outgoing.message, Message::RunJob { .. })
                && !link.declared.contains(&outgoing.queue)
            {
                declare_queue(&link.channel, &self.names, &outgoing.queue).await?;
                link.declared.insert(outgoing.queue.clone());
            }
        }
        let mut confirms = Vec::with_capacity(batch.len());
        for outgoing in batch {
            let (exchange, routing_key) = match outgoing.message {
                Message::RunJob { .. } => {
                    (self.names.jobs_exchange.as_str(), outgoing.queue.as_str())
                }
                Message::CancelJob { .. } => (self.names.cancel_exchange.as_str(), ""),
            };
            let mut headers = FieldTable::default();
            if let Some(trace_parent) = &outgoing.trace_parent {
                headers.insert(
                    ShortString::from(TRACEPARENT),
                    AMQPValue::LongString(LongString::from(trace_parent.as_str())),
                );
            }
            // Transient: Postgres holds the job; the message is only a hint.
            let properties = BasicProperties::default()
                .with_delivery_mode(1)
                .with_content_type(ShortString::from("application/json"))
                .with_headers(headers);
            let confirm = link
                .channel
                .basic_publish(
                    exchange,
                    routing_key,
                    BasicPublishOptions::default(),
                    &outgoing.message.to_bytes(),
                    properties,
                )
                .await?;
            confirms.push(confirm);
        }
        for confirmation in join_all(confirms).await {
            match confirmation? {
                Confirmation::Nack(_) => return Err(QueueError::Nacked),
                Confirmation::Ack(_) | Confirmation::NotRequested => {}
            }
        }
        Ok(())
    }
}

/// Reads the trace context header of a delivery, if any.
pub fn trace_parent_of(properties: &BasicProperties) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(TRACEPARENT)? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_tagged_and_versioned() {
        let message = Message::RunJob { job_id: Id(12) };
        assert_eq!(
            String::from_utf8(message.to_bytes()).unwrap(),
            r#"{"type":"job.run.v1","jobID":"12"}"#
        );
        assert_eq!(Message::from_bytes(&message.to_bytes()).unwrap(), message);
        assert!(Message::from_bytes(br#"{"type":"job.run.v9"}"#).is_err());
    }
}
