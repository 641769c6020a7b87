//! How a process reaches Postgres and the bounds on client-driven queries.

use std::time::Duration;

use crust_model::config::{parse_duration, redact_url, ConfigError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// Where Postgres is. Its `Debug` hides the URL's password.
#[derive(Clone, clap::Args)]
pub struct DbConfig {
    /// Postgres connection URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/crust"
    )]
    pub database_url: String,

    /// Most connections this process opens (1 to 1000).
    #[arg(long, env = "CRUST_DB_POOL_SIZE", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,
}

impl std::fmt::Debug for DbConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig")
            .field("database_url", &redact_url(&self.database_url))
            .field("db_pool_size", &self.db_pool_size)
            .finish()
    }
}

impl DbConfig {
    /// The parsed connection options; a malformed URL fails here, at start.
    pub fn connect_options(&self) -> Result<PgConnectOptions, ConfigError> {
        self.database_url
            .parse::<PgConnectOptions>()
            .map(|options| {
                options
                    .log_statements(tracing::log::LevelFilter::Debug)
                    .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1))
                    // Dates are stored, compared and formatted in UTC.
                    .options([("timezone", "UTC")])
            })
            .map_err(|err| {
                ConfigError::new(format!("DATABASE_URL is not a valid Postgres URL: {err}"))
            })
    }

    /// A pool that connects lazily, so a process starts (and reports
    /// not-ready) while Postgres is still down, and reconnects by itself.
    pub fn pool(&self) -> Result<PgPool, ConfigError> {
        Ok(self.lazy_pool(self.connect_options()?))
    }

    /// [`DbConfig::pool`] for a process whose own statements all reach
    /// rows by key or by a partial index (the worker: claims, heartbeats,
    /// log lines, steps, outcomes, each by job ID; the scheduler: due,
    /// lost and waiting jobs, each by its partial index). Its sessions
    /// never plan a sequential scan where an index can answer
    /// ([`BY_KEY`]): a prepared statement's generic plan is made once per
    /// connection, and one made while `jobs` was nearly empty, or while its
    /// statistics lagged (autovacuum off, a burst of inserts), scanned the
    /// whole table with `id = ANY($1)` on every row: up to 1 s a claim at
    /// 100 000 jobs. Client-driven queries (`bounded`) set the planner back
    /// to its default.
    pub fn pool_by_key(&self) -> Result<PgPool, ConfigError> {
        self.pool_by_key_with(&[])
    }

    /// [`DbConfig::pool_by_key`] whose sessions also take `settings`.
    pub fn pool_by_key_with(&self, settings: &[(&str, &str)]) -> Result<PgPool, ConfigError> {
        Ok(self.lazy_pool(
            self.connect_options()?
                .options(BY_KEY)
                .options(settings.iter().copied()),
        ))
    }

    fn lazy_pool(&self, options: PgConnectOptions) -> PgPool {
        PgPoolOptions::new()
            .max_connections(self.db_pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options)
    }
}

/// Bounds on the queries a client drives (record lists, reports, chart data).
#[derive(Debug, Clone, clap::Args)]
pub struct QueryLimits {
    /// Longest a client-driven query may run (`500ms`, `10s`, `2m`); Postgres
    /// stops it there (a statement timeout) and the client gets a 400.
    #[arg(long, env = "CRUST_QUERY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub query_timeout: Duration,

    /// Most groups one report returns; a report with more is a 400.
    #[arg(long, env = "CRUST_REPORT_MAX_ROWS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub report_max_rows: u32,

    /// Most bytes of keys and values one report returns; a bigger one is a 400.
    #[arg(long, env = "CRUST_REPORT_MAX_BYTES", default_value_t = 32 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub report_max_bytes: u64,
}

/// The settings of [`DbConfig::pool_by_key`]'s sessions. `jit` is off with
/// the scans: a disabled scan that is the only way to a small table (no
/// index answers `workflows.paused_at IS NOT NULL`) keeps its huge cost,
/// which crossed `jit_above_cost` and had every claim compiled by LLVM
/// (~1 s). Short key lookups never gain from JIT anyway.
///
/// `plan_cache_mode` makes every prepared statement run its generic plan
/// (made once per connection) from its first execution. By default
/// Postgres plans a statement with array parameters afresh on every run
/// (it judges the custom plan cheaper, never switching): ~1 ms of planning
/// for a claim or a log append that then executes in well under that.
/// These statements reach rows by key, so one plan fits every set of IDs.
pub const BY_KEY: [(&str, &str); 3] = [
    ("enable_seqscan", "off"),
    ("jit", "off"),
    ("plan_cache_mode", "force_generic_plan"),
];

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(10),
            report_max_rows: 10_000,
            report_max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Creates the database named in `options` if it does not exist yet, by
/// connecting to the server's `postgres` maintenance database.
pub async fn create_database_if_missing(options: &PgConnectOptions) -> Result<(), sqlx::Error> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    let mut admin = options.clone().database("postgres").connect().await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        // Identifiers cannot be bound; quote it the way Postgres does.
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match sqlx::query(&format!("CREATE DATABASE {quoted}"))
            .execute(&mut admin)
            .await
        {
            Ok(_) => tracing::info!(database = %name, "database created"),
            // Another process created it between our check and our CREATE.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42P04") => {}
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_passwords() {
        let config = DbConfig {
            database_url: "postgres://crust:s3cret@db/crust".into(),
            db_pool_size: 4,
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
