//! The API's settings (environment first, each also a `--flag`).

use std::net::SocketAddr;
use std::time::Duration;

use crust_model::auth::TokenKey;
use crust_model::config::ConfigError;
use crust_queue::AmqpConfig;
use crust_store::config::{DbConfig, QueryLimits};

/// What `crust-api` needs to serve. Its `Debug` shows no secret.
#[derive(Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub amqp: AmqpConfig,

    #[command(flatten)]
    pub queries: QueryLimits,

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

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "CRUST_BODY_LIMIT", default_value_t = 1024 * 1024)]
    pub body_limit: usize,

    /// Time a client has to send a request's headers, counted from when it
    /// connects or its previous response was sent (so idle keep-alive
    /// connections close after it too), and again to send the body: `30s`,
    /// `2m`. Slow or silent connections are closed instead of held.
    #[arg(long, env = "CRUST_HTTP_READ_TIMEOUT", default_value = "30s", value_parser = parse_timeout)]
    pub http_read_timeout: Duration,

    /// Most client connections open at once; more wait to be accepted.
    #[arg(long, env = "CRUST_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

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

/// A timeout such as `30s`, `2m` or a bare number of seconds.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    crust_model::auth::parse_ttl(text).map(|seconds| Duration::from_secs(seconds.unsigned_abs()))
}

impl Config {
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
