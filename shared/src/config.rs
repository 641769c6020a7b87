//! Settings every process reads: environment first, each also a `--flag`.

use std::process::ExitCode;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

/// A setting that is missing or invalid, so the process cannot start. The
/// binaries print it as one line and exit with code 2 (see [`exit_code`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// A configuration error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// How a binary ends: nothing on success; otherwise the error and its causes
/// on one line of stderr (never a backtrace, whatever `RUST_BACKTRACE`
/// says), and exit code 2 for a configuration error, 1 for anything else.
pub fn exit_code(program: &str, error: Option<&(dyn std::error::Error + 'static)>) -> ExitCode {
    let Some(error) = error else {
        return ExitCode::SUCCESS;
    };
    let mut line = error.to_string();
    let mut is_config = error.is::<ConfigError>();
    let mut source = error.source();
    while let Some(cause) = source {
        is_config |= cause.is::<ConfigError>();
        let text = cause.to_string();
        // Context that repeats its cause adds nothing.
        if !line.ends_with(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    eprintln!("{program}: {}", line.replace('\n', " "));
    ExitCode::from(if is_config { 2 } else { 1 })
}

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
        Ok(PgPoolOptions::new()
            .max_connections(self.db_pool_size)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(self.connect_options()?))
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

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(10),
            report_max_rows: 10_000,
            report_max_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Parses a positive duration written as a whole number and a unit: `ms`,
/// `s`, `m` or `h` (`500ms`, `10s`, `2m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m or h (e.g. 10s)"))?;
    let (digits, unit) = text.split_at(at);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s or 2m"))?;
    let millis = match unit {
        "ms" => Some(amount),
        "s" => amount.checked_mul(1_000),
        "m" => amount.checked_mul(60_000),
        "h" => amount.checked_mul(3_600_000),
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    // Postgres takes a statement timeout of up to i32::MAX milliseconds.
    match millis {
        Some(millis) if millis > 0 && millis <= i32::MAX as u64 => {
            Ok(Duration::from_millis(millis))
        }
        Some(0) => Err(format!("{text:?} is not a positive duration")),
        _ => Err(format!("{text:?} is too long (at most about 24 days)")),
    }
}

/// Shows a duration the way [`parse_duration`] reads it (`500ms`, `10s`).
pub fn show_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
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
    fn durations_read_with_their_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        for bad in ["", "10", "0s", "5y", "-1s", "1.5s", "ms", "9999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(show_duration(Duration::from_secs(10)), "10s");
        assert_eq!(show_duration(Duration::from_millis(1_500)), "1500ms");
    }

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
