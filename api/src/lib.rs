//! The Crust REST API as a library: `run` serves it on a listener until a
//! shutdown token fires, so the binary and the tests start it the same way.

pub mod access;
pub mod auth;
pub mod chart_svg;
pub mod config;
pub mod cors;
pub mod error;
pub mod extract;
pub mod follow;
pub mod listener;
pub mod openapi;
pub mod publisher;
pub mod query_params;
pub mod routes;
pub mod server;
pub mod state;

use axum::extract::Request;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Layer;

pub use config::Config;
pub use state::AppState;

/// Serves the API on `listener` until `shutdown` is cancelled, then lets
/// in-flight requests finish.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let state = AppState::new(&config, shutdown.clone())?;
    let router = routes::router(state.clone());
    // Trailing slashes are optional: strip one before routing, so
    // `/module/` and `/module` reach the same handler.
    let app = tower::util::MapRequestLayer::new(trim_trailing_slash).layer(router);
    tracing::info!(addr = %listener.local_addr()?, "crust-api listening");
    let limits = server::Limits {
        header_timeout: config.http_read_timeout,
        max_connections: config.max_connections as usize,
    };
    server::serve(listener, app, limits, shutdown.clone()).await?;
    // The publisher drains once shutdown fires; then the broker connection
    // is closed while the runtime still runs.
    shutdown.cancel();
    state.queue.close().await;
    tracing::info!("crust-api stopped");
    Ok(())
}

fn trim_trailing_slash(mut request: Request) -> Request {
    let path = request.uri().path();
    // The docs UI serves its assets below `/docs/` and redirects there.
    if path.len() > 1 && path.ends_with('/') && !path.starts_with("/docs/") {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rebuilt = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_owned(),
        };
        if let Ok(uri) = rebuilt.parse() {
            *request.uri_mut() = uri;
        }
    }
    request
}

/// Creates the database if it is missing and applies every migration.
pub async fn migrate(db: &crust_store::config::DbConfig) -> anyhow::Result<()> {
    use anyhow::Context;
    let options = db.connect_options()?;
    crust_store::config::create_database_if_missing(&options)
        .await
        .context("cannot create the database")?;
    let pool = sqlx::PgPool::connect_with(options)
        .await
        .context("cannot connect to Postgres")?;
    crust_store::MIGRATOR
        .run(&pool)
        .await
        .context("migrations failed")?;
    tracing::info!("migrations applied");
    pool.close().await;
    Ok(())
}

/// `crust-api secrets reencrypt`: seals every secret again under
/// `CRUST_SECRETS_KEY`, opening each with the key that sealed it (the
/// current one or `CRUST_SECRETS_PREVIOUS_KEY`); returns how many changed.
pub async fn reencrypt_secrets(config: &Config) -> anyhow::Result<u64> {
    use anyhow::Context;
    let keys = config.secrets.keyring()?.ok_or_else(|| {
        crust_model::config::ConfigError::new(
            "CRUST_SECRETS_KEY is not set: give the new key there and the old one in              CRUST_SECRETS_PREVIOUS_KEY",
        )
    })?;
    let pool = sqlx::PgPool::connect_with(config.db.connect_options()?)
        .await
        .context("cannot connect to Postgres")?;
    let count = crust_store::secrets::reencrypt(&pool, &keys).await?;
    pool.close().await;
    Ok(count)
}
