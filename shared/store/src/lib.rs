//! # crust-store
//!
//! Postgres access, one module per aggregate. Every SQL statement of Crust
//! lives here, so the API, worker and scheduler share the very same
//! queries; so do the migrations ([`MIGRATOR`]) and the connection settings
//! ([`config::DbConfig`]). Multi-statement writes take a transaction.
//!
//! Functions take the validated types of `crust-model` and return them;
//! client-driven queries are compiled by `crust-query`. Nothing here knows
//! HTTP, RabbitMQ or tracing exporters.

pub mod audit;
pub mod charts;
pub mod config;
mod error;
pub mod imports;
pub mod jobs;
pub mod modules;
pub mod pages;
pub mod partitions;
pub mod queues;
pub mod records;
pub mod reports;
pub mod roles;
pub mod secrets;
pub mod steps;
pub mod triggers;
pub mod workers;
pub mod workflows;

pub use error::{Error, Result};

/// The migrations every process expects, embedded so `crust-api migrate`
/// and the tests need no files at run time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations");

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};

/// A transaction whose statements Postgres itself stops after `timeout`
/// (`SET LOCAL statement_timeout`), for queries a client drives: the backend
/// ends the query even when the client has gone away. The planner is free
/// to scan (`enable_seqscan`, off on [`config::DbConfig::pool_by_key`]'s
/// sessions) and to plan for the values given (`plan_cache_mode`): a
/// client's filter may well need a scan, or a plan for its skewed value.
pub(crate) async fn bounded(
    pool: &PgPool,
    timeout: Duration,
) -> crate::Result<Transaction<'static, Postgres>> {
    // One round trip; the number is ours, not client text.
    Ok(pool
        .begin_with(format!(
            "BEGIN; SET LOCAL statement_timeout = {}; SET LOCAL enable_seqscan = on; \
             SET LOCAL plan_cache_mode = auto",
            timeout.as_millis()
        ))
        .await?)
}

/// Checks that Postgres answers, for readiness probes.
pub async fn ping(pool: &PgPool) -> crate::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
