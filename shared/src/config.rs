//! Settings every process reads: environment first, each also a `--flag`.

use std::time::Duration;

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

    /// Most connections this process opens.
    #[arg(long, env = "CRUST_DB_POOL_SIZE", default_value_t = 32)]
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

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

impl DbConfig {
    /// The parsed connection options; a malformed URL fails here, at start.
    pub fn connect_options(&self) -> Result<PgConnectOptions, String> {
        self.database_url
            .parse::<PgConnectOptions>()
            .map(|options| {
                options
                    .log_statements(tracing::log::LevelFilter::Debug)
                    .log_slow_statements(tracing::log::LevelFilter::Warn, Duration::from_secs(1))
                    // Dates are stored, compared and formatted in UTC.
                    .options([("timezone", "UTC")])
            })
            .map_err(|err| format!("DATABASE_URL is not a valid Postgres URL: {err}"))
    }

    /// A pool that connects lazily, so a process starts (and reports
    /// not-ready) while Postgres is still down, and reconnects by itself.
    pub fn pool(&self) -> Result<PgPool, String> {
        Ok(PgPoolOptions::new()
            .max_connections(self.db_pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(self.connect_options()?))
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
        assert_eq!(
            redact_url("postgres://crust:s3cret@db:5432/crust?sslmode=require"),
            "postgres://crust:***@db:5432/crust?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/crust"), "postgres://db/crust");
        assert_eq!(redact_url("amqp://guest@mq/%2f"), "amqp://guest@mq/%2f");
        let config = DbConfig {
            database_url: "postgres://crust:s3cret@db/crust".into(),
            db_pool_size: 4,
        };
        assert!(!format!("{config:?}").contains("s3cret"));
    }
}
