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
    /// Direct exchange jobs are published to.
    pub jobs_exchange: String,
    /// The durable quorum queue workers consume.
    pub jobs_queue: String,
    /// Where messages go that were rejected or redelivered too often.
    pub dead_exchange: String,
    pub dead_queue: String,
    /// Fanout exchange of cancel requests; each worker binds its own queue.
    pub cancel_exchange: String,
}

impl Names {
    /// The names for `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            jobs_exchange: format!("{prefix}.jobs"),
            jobs_queue: format!("{prefix}.jobs"),
            dead_exchange: format!("{prefix}.dead"),
            dead_queue: format!("{prefix}.jobs.dead"),
            cancel_exchange: format!("{prefix}.cancel"),
        }
    }
}

/// How often a message may be redelivered before it is dead-lettered.
const DELIVERY_LIMIT: i64 = 20;

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

/// Declares the exchanges and queues (idempotent).
pub async fn declare(channel: &Channel, names: &Names) -> Result<(), QueueError> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(
            &names.dead_exchange,
            ExchangeKind::Fanout,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(&names.dead_queue, durable_queue(), quorum(None))
        .await?;
    channel
        .queue_bind(
            &names.dead_queue,
            &names.dead_exchange,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            &names.jobs_exchange,
            ExchangeKind::Direct,
            durable,
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            &names.jobs_queue,
            durable_queue(),
            quorum(Some(&names.dead_exchange)),
        )
        .await?;
    channel
        .queue_bind(
            &names.jobs_queue,
            &names.jobs_exchange,
            "run",
            QueueBindOptions::default(),
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

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

fn quorum(dead_letter: Option<&str>) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    if let Some(exchange) = dead_letter {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(LongString::from(exchange)),
        );
        args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongLongInt(DELIVERY_LIMIT),
        );
    }
    args
}

/// Deletes everything [`declare`] made (for tests, which must leave the
/// broker as they found it).
pub async fn delete_topology(channel: &Channel, names: &Names) -> Result<(), QueueError> {
    for queue in [&names.jobs_queue, &names.dead_queue] {
        channel
            .queue_delete(queue, QueueDeleteOptions::default())
            .await?;
    }
    for exchange in [
        &names.jobs_exchange,
        &names.dead_exchange,
        &names.cancel_exchange,
    ] {
        channel
            .exchange_delete(exchange, ExchangeDeleteOptions::default())
            .await?;
    }
    Ok(())
}

/// Sets how many unacknowledged deliveries a channel may hold.
pub async fn set_prefetch(channel: &Channel, prefetch: u16) -> Result<(), QueueError> {
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    Ok(())
}

/// An outgoing message and its trace context.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub message: Message,
    pub trace_parent: Option<String>,
}

/// Publishes persistent messages and waits for the broker's confirms. Holds
/// one connection, made on first use and remade after any failure, so a
/// broker restart heals by itself.
pub struct Publisher {
    url: String,
    names: Names,
    channel: Mutex<Option<(Connection, Channel)>>,
    timeout: Duration,
}

impl Publisher {
    /// A publisher that has not connected yet.
    pub fn new(config: &AmqpConfig) -> Self {
        Self {
            url: config.amqp_url.clone(),
            names: Names::new(&config.queue_prefix),
            channel: Mutex::new(None),
            timeout: Duration::from_secs(5),
        }
    }

    /// The names it publishes under.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// Whether it currently holds a live connection.
    pub async fn is_connected(&self) -> bool {
        let guard = self.channel.lock().await;
        guard.as_ref().is_some_and(|(connection, channel)| {
            connection.status().connected() && channel.status().connected()
        })
    }

    /// Ready messages and consumers of `queue`, as the broker counts them.
    pub async fn queue_stats(&self, queue: &str) -> Result<(u32, u32), QueueError> {
        let mut slot = self.channel.lock().await;
        let work = async {
            let channel = self.channel(&mut slot).await?;
            let declared = channel
                .queue_declare(
                    queue,
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, QueueError>((declared.message_count(), declared.consumer_count()))
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
        let Some((connection, channel)) = self.channel.lock().await.take() else {
            return;
        };
        let _ = tokio::time::timeout(self.timeout, channel.close(200, "closing")).await;
        close_connection(connection, "closing", self.timeout).await;
    }

    /// Connects if not connected; for readiness probes.
    pub async fn check(&self) -> Result<(), QueueError> {
        let mut slot = self.channel.lock().await;
        let result = tokio::time::timeout(self.timeout, self.channel(&mut slot)).await;
        match result {
            Ok(Ok(_)) => Ok(()),
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

    async fn channel(
        &self,
        slot: &mut Option<(Connection, Channel)>,
    ) -> Result<Channel, QueueError> {
        if let Some((connection, channel)) = slot.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        *slot = None;
        let connection = connect(&self.url).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        declare(&channel, &self.names).await?;
        *slot = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Publishes all messages (pipelined) and returns once every one is
    /// confirmed; any failure fails the whole batch (callers retry or leave
    /// the rest to the scheduler: duplicates are harmless).
    pub async fn publish(&self, batch: &[Outgoing]) -> Result<(), QueueError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut slot = self.channel.lock().await;
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
        slot: &mut Option<(Connection, Channel)>,
        batch: &[Outgoing],
    ) -> Result<(), QueueError> {
        let channel = self.channel(slot).await?;
        let mut confirms = Vec::with_capacity(batch.len());
        for outgoing in batch {
            let (exchange, routing_key) = match outgoing.message {
                Message::RunJob { .. } => (self.names.jobs_exchange.as_str(), "run"),
                Message::CancelJob { .. } => (self.names.cancel_exchange.as_str(), ""),
            };
            let mut headers = FieldTable::default();
            if let Some(trace_parent) = &outgoing.trace_parent {
                headers.insert(
                    ShortString::from(TRACEPARENT),
                    AMQPValue::LongString(LongString::from(trace_parent.as_str())),
                );
            }
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"))
                .with_headers(headers);
            let confirm = channel
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
