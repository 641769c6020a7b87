//! The secrets a worker renders `{{ secrets.name }}` with: read from
//! Postgres and opened with `CRUST_SECRETS_KEY` when a task's params name
//! them, kept for [`FRESH_FOR`] so a busy worker reads them once per
//! interval (a changed or deleted secret is seen within it).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crust_store::secrets::Keyring;
use sqlx::PgPool;
use tokio::sync::Mutex;

/// How long a read of the secrets is reused.
pub const FRESH_FOR: Duration = Duration::from_secs(2);

/// Secret values by name.
pub type Values = Arc<BTreeMap<String, String>>;

/// The worker's view of the secrets.
pub struct Secrets {
    pool: PgPool,
    keys: Option<Keyring>,
    cache: Mutex<Option<(Instant, Values)>>,
}

impl Secrets {
    /// Secrets read from `pool`, opened with `keys` (`None`: none can be used).
    pub fn new(pool: PgPool, keys: Option<Keyring>) -> Self {
        Self {
            pool,
            keys,
            cache: Mutex::new(None),
        }
    }

    /// Every secret's value; an error a task fails with when they cannot
    /// be read.
    pub async fn values(&self) -> Result<Values, String> {
        let keys = self
            .keys
            .as_ref()
            .ok_or("secrets are unavailable: CRUST_SECRETS_KEY is not set on this worker")?;
        let mut cache = self.cache.lock().await;
        if let Some((at, values)) = &*cache {
            if at.elapsed() < FRESH_FOR {
                return Ok(values.clone());
            }
        }
        let values = Arc::new(
            crust_store::secrets::load(&self.pool, keys)
                .await
                .map_err(|err| format!("secrets: {err}"))?,
        );
        *cache = Some((Instant::now(), values.clone()));
        Ok(values)
    }
}
