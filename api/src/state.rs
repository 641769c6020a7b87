//! The one state every handler shares: pool, token key and limits.

use std::ops::Deref;
use std::sync::Arc;

use crust_model::auth::TokenKey;
use crust_queue::Publisher;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::publisher::JobQueue;
use crate::Config;

/// Cheap to clone; everything lives behind one `Arc`.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
pub struct Inner {
    pub pool: PgPool,
    pub tokens: TokenKey,
    pub body_limit: usize,
    /// `CRUST_QUERY_TIMEOUT` and `CRUST_REPORT_MAX_ROWS`.
    pub queries: crust_store::config::QueryLimits,
    /// `CRUST_HTTP_READ_TIMEOUT`: how long a request body may take to arrive.
    pub read_timeout: std::time::Duration,
    /// `CRUST_JOB_KEY_TTL`: how long a job's idempotency key holds.
    pub job_key_ttl: std::time::Duration,
    /// `CRUST_TRACE_URL`: how a job's `traceID` becomes a `traceURL`.
    pub trace_url: Option<String>,
    /// Publishes jobs to RabbitMQ after their rows commit.
    pub queue: JobQueue,
    /// `CRUST_CORS_ORIGINS`; `None` leaves CORS off.
    pub cors: Option<crate::cors::Cors>,
    /// `CRUST_SECRETS_KEY` (and the previous key during a rotation); `None`
    /// disables the secret endpoints.
    pub secrets: Option<crust_store::secrets::Keyring>,
    /// Live log followers: the LISTEN connection and per-job feeds.
    pub followers: Arc<crate::follow::Hub>,
    /// Module definitions for record creates (checked by version on write).
    pub modules: crust_store::modules::ModuleCache,
    /// Resolved permission sets per role list and role version.
    pub permissions: crate::access::PermissionCache,
    /// Compiled record-event triggers by module (checked by stamp on write).
    pub triggers: crust_store::triggers::TriggerCache,
}

impl AppState {
    /// Builds the state from configuration; bad settings fail here, at start.
    pub fn new(config: &Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let tokens = config.token_key()?;
        config.validate()?;
        let cors = crate::cors::Cors::new(&config.cors_origins)
            .map_err(crust_model::config::ConfigError::new)?;
        let pool = config.db.pool()?;
        let queue = JobQueue::start(
            Arc::new(Publisher::new(&config.amqp)),
            pool.clone(),
            shutdown.clone(),
        );
        let followers = crate::follow::Hub::start(pool.clone(), shutdown);
        Ok(Self(Arc::new(Inner {
            pool,
            tokens,
            body_limit: config.body_limit,
            queries: config.queries.clone(),
            job_key_ttl: config.job_key_ttl,
            read_timeout: config.http_read_timeout,
            trace_url: config.trace_url.clone(),
            queue,
            followers,
            cors,
            modules: Default::default(),
            secrets: config.secrets.keyring()?,
            permissions: Default::default(),
            triggers: Default::default(),
        })))
    }
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}
