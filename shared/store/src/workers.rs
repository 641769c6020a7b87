//! The `workers` table: each worker upserts its row at every heartbeat
//! with how long it counts as live; `GET /worker/` lists the live ones and
//! prunes the rest.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::Result;
use crust_model::worker::WorkerInfo;

/// What a worker reports at each heartbeat.
#[derive(Debug, Clone)]
pub struct Beat<'a> {
    pub name: &'a str,
    pub queues: &'a [String],
    pub concurrency: i32,
    pub running: i32,
    pub started_at: DateTime<Utc>,
    /// How long the row counts as live without another beat.
    pub live_for: Duration,
}

/// Records a heartbeat.
pub async fn beat(pool: &PgPool, beat: &Beat<'_>) -> Result<()> {
    sqlx::query(
        "INSERT INTO workers (name, queues, concurrency, running, started_at, last_seen_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, now(), now() + $6 * interval '1 millisecond')
         ON CONFLICT (name) DO UPDATE SET queues = $2, concurrency = $3, running = $4,
             started_at = $5, last_seen_at = now(), expires_at = excluded.expires_at",
    )
    .bind(beat.name)
    .bind(beat.queues)
    .bind(beat.concurrency)
    .bind(beat.running)
    .bind(beat.started_at)
    .bind(i64::try_from(beat.live_for.as_millis()).unwrap_or(i64::MAX))
    .execute(pool)
    .await?;
    Ok(())
}

/// Removes a worker's row (it stopped).
pub async fn remove(pool: &PgPool, name: &str) -> Result<()> {
    sqlx::query("DELETE FROM workers WHERE name = $1")
        .bind(name)
        .execute(pool)
        .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct WorkerRow {
    name: String,
    queues: Vec<String>,
    concurrency: i32,
    running: i32,
    started_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
}

/// The live workers by name; rows past their time (a worker that died
/// without removing its row) are deleted on the way.
pub async fn list_live(pool: &PgPool) -> Result<Vec<WorkerInfo>> {
    sqlx::query("DELETE FROM workers WHERE expires_at < now()")
        .execute(pool)
        .await?;
    let rows: Vec<WorkerRow> = sqlx::query_as(
        "SELECT name, queues, concurrency, running, started_at, last_seen_at
         FROM workers WHERE expires_at >= now() ORDER BY name",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| WorkerInfo {
            name: row.name,
            queues: row.queues,
            concurrency: row.concurrency,
            running: row.running,
            started_at: row.started_at,
            last_seen_at: row.last_seen_at,
        })
        .collect())
}
