//! The API's settings (environment first, each also a `--flag`).

use std::net::SocketAddr;

use crust_shared::auth::TokenKey;
use crust_shared::config::{ConfigError, DbConfig, QueryLimits};
use crust_shared::queue::AmqpConfig;

/// What `crust-api` needs to serve.
#[derive(Debug, Clone, clap::Args)]
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
