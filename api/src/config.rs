//! The API's settings (environment first, each also a `--flag`). Every
//! numeric one carries its allowed range, so a value out of it stops the
//! process at start with one line naming the variable (see
//! `crust_model::config`); [`Config::validate`] checks what clap cannot.

use std::net::SocketAddr;
use std::time::Duration;

use crust_model::auth::TokenKey;
use crust_model::config::ConfigError;
use crust_queue::AmqpConfig;
use crust_store::config::{DbConfig, QueryLimits};
use crust_store::secrets::SecretsConfig;

/// What `crust-api` needs to serve. Its `Debug` shows no secret.
#[derive(Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub amqp: AmqpConfig,

    #[command(flatten)]
    pub queries: QueryLimits,

    #[command(flatten)]
    pub secrets: SecretsConfig,

    /// Address to listen on.
    #[arg(long, env = "CRUST_HTTP_ADDR", default_value = "127.0.0.1:3000")]
    pub http_addr: SocketAddr,

    /// HS256 secret for bearer tokens, at least 32 bytes.
    #[arg(long, env = "CRUST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// A link to a job's trace in your tracing UI, with `{traceID}` where the
    /// trace id goes, e.g. `https://grafana.example/explore?traceId={traceID}`.
    /// Jobs then show `traceURL`.
    #[arg(long, env = "CRUST_TRACE_URL")]
    pub trace_url: Option<String>,

    /// Largest request body accepted, in bytes (1 KiB to 256 MiB).
    #[arg(long, env = "CRUST_BODY_LIMIT", default_value_t = 1024 * 1024,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=(256 << 20)))]
    pub body_limit: usize,

    /// Time a client has to send a request's headers, counted from when it
    /// connects or its previous response was sent (so idle keep-alive
    /// connections close after it too), and again to send the body: `30s`,
    /// `2m`; at most `1h`. Slow or silent connections are closed instead of held.
    #[arg(long, env = "CRUST_HTTP_READ_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub http_read_timeout: Duration,

    /// Most client connections open at once; more wait to be accepted.
    #[arg(long, env = "CRUST_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// How long a job's idempotency key (`key`, `Idempotency-Key`) holds:
    /// creating a job of the same workflow with the same key within it
    /// returns the first job instead of a new one. `24h`, `30m`; at most
    /// about 24 days.
    #[arg(long, env = "CRUST_JOB_KEY_TTL", default_value = "24h",
          value_parser = crust_model::config::parse_duration)]
    pub job_key_ttl: Duration,

    /// Browser origins allowed to call the API cross-site, comma-separated
    /// (`https://app.example.com,http://localhost:5173`). Empty: CORS off.
    #[arg(long, env = "CRUST_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("db", &self.db)
            .field("amqp", &self.amqp)
            .field("http_addr", &self.http_addr)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A timeout such as `30s`, `2m` or a bare number of seconds, up to an hour.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let seconds = crust_model::auth::parse_ttl(text)?;
    if seconds > 3600 {
        return Err(format!("{:?} is longer than 1h", text.trim()));
    }
    Ok(Duration::from_secs(seconds.unsigned_abs()))
}

impl Config {
    /// Checks what the ranges on each setting cannot: that the URLs parse
    /// and that `CRUST_TRACE_URL` says where the trace id goes. The api has
    /// no rule across settings. The secret is checked where it is needed
    /// ([`Config::token_key`]): `migrate` runs without one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.db.connect_options()?;
        self.amqp.validate()?;
        self.secrets.keyring()?;
        if let Some(url) = &self.trace_url {
            if !url.contains("{traceID}") {
                return Err(ConfigError::new(format!(
                    "CRUST_TRACE_URL must contain {{traceID}} where the trace id goes (got {url:?})"
                )));
            }
        }
        Ok(())
    }

    /// The key tokens are signed and checked with; a missing or short
    /// secret is a configuration error.
    pub fn token_key(&self) -> Result<TokenKey, ConfigError> {
        let secret = self.jwt_secret.as_deref().ok_or_else(|| {
            ConfigError::new(
                "CRUST_JWT_SECRET is not set: export the api's secret (at least 32 bytes) \
                 or pass --jwt-secret; deploy/local/up.sh keeps its own in deploy/local/.jwt-secret",
            )
        })?;
        TokenKey::new(secret).map_err(ConfigError::new)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn numbers_out_of_range_are_refused_naming_their_variable() {
        let cli: Cli = crust_model::config::parse_from([
            "crust-api",
            "--body-limit=1024",
            "--http-read-timeout=1h",
        ])
        .unwrap();
        assert_eq!(cli.config.body_limit, 1024);
        assert_eq!(cli.config.http_read_timeout, Duration::from_secs(3600));
        for (flag, env) in [
            ("--body-limit=0", "CRUST_BODY_LIMIT"),
            ("--body-limit=268435457", "CRUST_BODY_LIMIT"),
            ("--http-read-timeout=0s", "CRUST_HTTP_READ_TIMEOUT"),
            ("--http-read-timeout=61m", "CRUST_HTTP_READ_TIMEOUT"),
            ("--max-connections=0", "CRUST_MAX_CONNECTIONS"),
            ("--job-key-ttl=0s", "CRUST_JOB_KEY_TTL"),
            ("--job-key-ttl=1000h", "CRUST_JOB_KEY_TTL"),
            ("--db-pool-size=0", "CRUST_DB_POOL_SIZE"),
            ("--query-timeout=0s", "CRUST_QUERY_TIMEOUT"),
            ("--report-max-rows=0", "CRUST_REPORT_MAX_ROWS"),
            ("--report-max-bytes=0", "CRUST_REPORT_MAX_BYTES"),
        ] {
            let err = crust_model::config::parse_from::<Cli, _, _>(["crust-api", flag])
                .err()
                .unwrap_or_else(|| panic!("{flag} was accepted"));
            let message = err.to_string();
            assert!(message.starts_with(&format!("{env}: ")), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn a_trace_url_without_its_placeholder_is_a_configuration_error() {
        let mut cli = Cli::try_parse_from(["crust-api"]).unwrap();
        cli.config.validate().unwrap();
        cli.config.trace_url = Some("https://grafana.example/explore".into());
        let err = cli.config.validate().unwrap_err();
        assert!(
            err.to_string().starts_with("CRUST_TRACE_URL must contain"),
            "{err}"
        );
    }
}
