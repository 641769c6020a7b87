//! Live job logs: `GET /job/{id}/logs?follow=true` as `text/event-stream`.
//!
//! One [`Hub`] per api process holds one Postgres `LISTEN` connection
//! (channels of [`crust_store::jobs::follow`], notified by triggers in the
//! writers' transactions) and fans notices out in memory:
//!
//! - a *feed* per followed job (a task, created by its first follower,
//!   gone once the job finished or nobody follows it) reads each new batch
//!   of lines from Postgres once and broadcasts it to the job's followers;
//! - each *follower* (a task per stream) sends the old lines first, then
//!   what the feed broadcasts, and ends with `event: status` once the job
//!   is finished.
//!
//! Followers cost nothing while the job is quiet (they wait on a channel;
//! nothing polls). The broadcast buffer is bounded, so a slow follower
//! never slows the feed or the writer: one that falls behind (or sees a gap
//! in `seq`) re-reads the missing lines from Postgres by `seq`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use crust_model::job::{Job, LogEntry};
use crust_model::paging::Paging;
use crust_model::Id;
use crust_store::jobs;
use crust_store::jobs::follow::{parse_notice, Notice, LOG_CHANNEL, STATUS_CHANNEL};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::AppState;

/// Batches a feed may hold for its slowest follower before that follower
/// lags (and re-reads from Postgres).
const FEED_BUFFER: usize = 64;
/// Events a stream may hold for a slow client before its follower waits.
const STREAM_BUFFER: usize = 256;
/// Most lines read in one query.
const READ_BATCH: i64 = 1000;
/// A comment line this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a feed tells its followers.
#[derive(Debug, Clone)]
enum Update {
    /// New lines, in `seq` order.
    Lines(Arc<Vec<LogEntry>>),
    /// The job reached a final status.
    Finished,
}

/// What the listener tells a feed: the highest `seq` notified, whether the
/// job finished, and a generation bumped when notices may have been lost
/// (the listener reconnected), which makes the feed re-read.
#[derive(Debug, Clone, Copy, Default)]
struct Wake {
    seq: i32,
    finished: bool,
    generation: u64,
}

struct Feed {
    updates: broadcast::Sender<Update>,
    wake: watch::Sender<Wake>,
    ready: watch::Receiver<bool>,
}

/// The per-process fan-out of job log notices.
pub struct Hub {
    pool: PgPool,
    feeds: Mutex<HashMap<Id, Feed>>,
}

impl Hub {
    /// Starts the hub's listener; it stops when `shutdown` fires.
    pub fn start(pool: PgPool, shutdown: CancellationToken) -> Arc<Hub> {
        let hub = Arc::new(Hub {
            pool,
            feeds: Mutex::new(HashMap::new()),
        });
        tokio::spawn(listen(Arc::clone(&hub), shutdown));
        hub
    }

    fn feeds(&self) -> std::sync::MutexGuard<'_, HashMap<Id, Feed>> {
        // A panic while holding the lock leaves the map consistent (every
        // operation on it is a single insert, remove or lookup).
        self.feeds
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Subscribes to a job's feed, starting it if needed; returns once the
    /// feed knows where the log stood, so a read of the old lines after this
    /// misses nothing the feed will not send.
    async fn subscribe(self: &Arc<Self>, job: Id) -> broadcast::Receiver<Update> {
        let (updates, mut ready) = {
            let mut feeds = self.feeds();
            let feed = feeds.entry(job).or_insert_with(|| {
                let (updates, _) = broadcast::channel(FEED_BUFFER);
                let (wake, wake_rx) = watch::channel(Wake::default());
                let (ready_tx, ready) = watch::channel(false);
                tokio::spawn(run_feed(
                    Arc::clone(self),
                    job,
                    updates.clone(),
                    wake_rx,
                    ready_tx,
                ));
                Feed {
                    updates,
                    wake,
                    ready,
                }
            });
            (feed.updates.subscribe(), feed.ready.clone())
        };
        // The feed may have ended already (then the follower sees the
        // channel closed and reads from Postgres).
        let _ = ready.wait_for(|ready| *ready).await;
        updates
    }

    fn notify(&self, notice: Notice) {
        let feeds = self.feeds();
        match notice {
            Notice::Logged { job, seq } => {
                if let Some(feed) = feeds.get(&job) {
                    feed.wake.send_modify(|wake| wake.seq = wake.seq.max(seq));
                }
            }
            Notice::Finished { job } => {
                if let Some(feed) = feeds.get(&job) {
                    feed.wake.send_modify(|wake| wake.finished = true);
                }
            }
        }
    }

    /// Makes every feed re-read: notices may have been lost.
    fn wake_all(&self) {
        for feed in self.feeds().values() {
            feed.wake.send_modify(|wake| wake.generation += 1);
        }
    }

    /// Removes a job's feed if nobody follows it any more.
    fn retire_if_idle(&self, job: Id) -> bool {
        let mut feeds = self.feeds();
        let idle = feeds
            .get(&job)
            .is_some_and(|feed| feed.updates.receiver_count() == 0);
        if idle {
            feeds.remove(&job);
        }
        idle
    }
}

/// The one LISTEN connection of the process; reconnects with a pause.
async fn listen(hub: Arc<Hub>, shutdown: CancellationToken) {
    loop {
        let mut listener = match PgListener::connect_with(&hub.pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(error = %err, "log follower listener cannot connect");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(err) = listener.listen_all([LOG_CHANNEL, STATUS_CHANNEL]).await {
            tracing::warn!(error = %err, "log follower listener cannot listen");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Anything notified while not listening is read again.
        hub.wake_all();
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.try_recv() => received,
            };
            match received {
                Ok(Some(notification)) => {
                    if let Some(notice) =
                        parse_notice(notification.channel(), notification.payload())
                    {
                        hub.notify(notice);
                    }
                }
                // The connection dropped; the next receive reconnects, and
                // the feeds re-read what they may have missed.
                Ok(None) => hub.wake_all(),
                Err(err) => {
                    tracing::warn!(error = %err, "log follower listener failed");
                    break;
                }
            }
        }
    }
}

/// One job's feed: reads each batch of new lines once, broadcasts it.
async fn run_feed(
    hub: Arc<Hub>,
    job: Id,
    updates: broadcast::Sender<Update>,
    mut wake: watch::Receiver<Wake>,
    ready: watch::Sender<bool>,
) {
    let mut last = match jobs::api::get_log_seq(&hub.pool, job).await {
        Ok(seq) => seq,
        Err(err) => {
            tracing::warn!(job.id = %job, error = %err, "log feed cannot start");
            hub.feeds().remove(&job);
            return;
        }
    };
    let _ = ready.send(true);
    let mut generation = 0;
    loop {
        if wake.changed().await.is_err() {
            return;
        }
        if hub.retire_if_idle(job) {
            return;
        }
        let now = *wake.borrow_and_update();
        if now.seq > last || now.generation != generation || now.finished {
            generation = now.generation;
            match read_after(&hub.pool, job, last).await {
                Ok(lines) => {
                    for chunk in lines {
                        last = chunk.last().map_or(last, |entry| entry.seq);
                        let _ = updates.send(Update::Lines(Arc::new(chunk)));
                    }
                }
                Err(err) => {
                    tracing::warn!(job.id = %job, error = %err, "log feed cannot read");
                }
            }
        }
        if now.finished {
            let _ = updates.send(Update::Finished);
            hub.feeds().remove(&job);
            return;
        }
    }
}

/// Every line after `after`, in batches of at most [`READ_BATCH`].
async fn read_after(
    pool: &PgPool,
    job: Id,
    mut after: i32,
) -> Result<Vec<Vec<LogEntry>>, ApiError> {
    let paging = Paging::new(None, Some(READ_BATCH), READ_BATCH)?;
    let mut batches = Vec::new();
    loop {
        let (lines, _) = jobs::api::logs(pool, job, after, paging).await?;
        let full = lines.len() as i64 == READ_BATCH;
        if let Some(entry) = lines.last() {
            after = entry.seq;
            batches.push(lines);
        }
        if !full {
            return Ok(batches);
        }
    }
}

/// The streaming answer of `GET /job/{id}/logs?follow=true`, resuming
/// after `after`. A job that does not exist is a 404 before streaming.
pub async fn follow(state: AppState, job: Id, after: i32) -> Result<Response, ApiError> {
    jobs::api::get(&state.pool, job).await?;
    let (events, mut stream) = mpsc::channel::<Event>(STREAM_BUFFER);
    let hub = Arc::clone(&state.followers);
    let trace_url = state.trace_url.clone();
    tokio::spawn(async move {
        let follower = Follower {
            pool: hub.pool.clone(),
            job,
            last: after,
            events,
            trace_url,
        };
        if let Err(err) = follower.run(&hub).await {
            tracing::debug!(job.id = %job, error = %err, "log follower ended");
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| {
        stream
            .poll_recv(cx)
            .map(|event| event.map(Ok::<_, Infallible>))
    });
    Ok(Sse::new(body)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// Why a follower stopped early.
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("the client went away")]
    Gone,
    #[error(transparent)]
    Api(#[from] ApiError),
}

struct Follower {
    pool: PgPool,
    job: Id,
    /// The highest `seq` sent.
    last: i32,
    events: mpsc::Sender<Event>,
    trace_url: Option<String>,
}

impl Follower {
    async fn run(mut self, hub: &Arc<Hub>) -> Result<(), Stop> {
        loop {
            let mut updates = hub.subscribe(self.job).await;
            self.catch_up().await?;
            if self.finish_if_final().await? {
                return Ok(());
            }
            loop {
                let update = tokio::select! {
                    () = self.events.closed() => return Err(Stop::Gone),
                    update = updates.recv() => update,
                };
                match update {
                    Ok(Update::Lines(lines)) => self.send_lines(&lines).await?,
                    Ok(Update::Finished) => {
                        self.catch_up().await?;
                        if self.finish_if_final().await? {
                            return Ok(());
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await?,
                    // The feed ended (it could not read, or retired):
                    // subscribe again.
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    }

    /// Sends the lines after `last` from Postgres.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        for batch in read_after(&self.pool, self.job, self.last).await? {
            for entry in batch {
                self.send(entry).await?;
            }
        }
        Ok(())
    }

    /// Sends what is new in a broadcast batch; a gap is filled from Postgres.
    async fn send_lines(&mut self, lines: &[LogEntry]) -> Result<(), Stop> {
        if lines.first().is_some_and(|entry| entry.seq > self.last + 1) {
            return self.catch_up().await;
        }
        for entry in lines {
            if entry.seq > self.last {
                self.send(entry.clone()).await?;
            }
        }
        Ok(())
    }

    async fn send(&mut self, entry: LogEntry) -> Result<(), Stop> {
        let seq = entry.seq;
        let event = Event::default()
            .id(seq.to_string())
            .event("log")
            .json_data(&entry)
            .map_err(|err| ApiError::Internal(format!("log entry as JSON: {err}")))?;
        self.events.send(event).await.map_err(|_| Stop::Gone)?;
        self.last = seq;
        Ok(())
    }

    /// When the job is finished: sends the rest of its log and
    /// `event: status` with the job, and says so.
    async fn finish_if_final(&mut self) -> Result<bool, Stop> {
        let job: Job = jobs::api::get(&self.pool, self.job)
            .await
            .map_err(ApiError::from)?;
        if !job.status.is_final() {
            return Ok(false);
        }
        self.catch_up().await?;
        let job = job.link_trace(self.trace_url.as_deref());
        let event = Event::default()
            .event("status")
            .json_data(&job)
            .map_err(|err| ApiError::Internal(format!("job as JSON: {err}")))?;
        self.events.send(event).await.map_err(|_| Stop::Gone)?;
        Ok(true)
    }
}
