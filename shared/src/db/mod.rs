//! Postgres access, one module per aggregate. Every SQL statement of Crust
//! lives under here, so the API, worker and scheduler share the very same
//! queries. Multi-statement writes take a transaction.

pub mod charts;
pub mod jobs;
pub mod modules;
pub mod pages;
pub mod partitions;
pub mod records;
pub mod reports;
pub mod workflows;

use sqlx::PgPool;

/// Checks that Postgres answers, for readiness probes.
pub async fn ping(pool: &PgPool) -> crate::Result<()> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
