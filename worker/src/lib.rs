//! The Crust worker as a library: `run` works until the shutdown token
//! fires, so the binary and the tests start it the same way.

use std::sync::Arc;

use crust_shared::config::DbConfig;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What `crust-worker` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbConfig,

    /// Address of the health endpoints (`/healthz`, `/readyz`).
    #[arg(long, env = "CRUST_HTTP_ADDR", default_value = "127.0.0.1:0")]
    pub http_addr: std::net::SocketAddr,
}

/// Serves health probes on `listener` until `shutdown` is cancelled.
pub async fn run(config: Config, listener: TcpListener, shutdown: CancellationToken) -> anyhow::Result<()> {
    let pool = config.db.pool().map_err(anyhow::Error::msg)?;
    tracing::info!(addr = %listener.local_addr()?, "crust-worker started");
    let ready: crust_shared::health::ReadyCheck = Arc::new(move || {
        let pool = pool.clone();
        Box::pin(async move {
            crust_shared::db::ping(&pool)
                .await
                .map_err(|err| format!("postgres: {err}"))
        })
    });
    crust_shared::health::serve(listener, ready, shutdown).await?;
    tracing::info!("crust-worker stopped");
    Ok(())
}
