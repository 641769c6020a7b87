//! Everything the Crust processes share: domain types and their validation,
//! Postgres access (every SQL statement lives under `db`), configuration,
//! telemetry, tokens and shutdown handling.

pub mod auth;
pub mod config;
pub mod db;
pub mod error;
pub mod health;
pub mod id;
pub mod metrics;
pub mod model;
pub mod query;
pub mod queue;
pub mod shutdown;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use error::{Error, Result};
pub use id::Id;

/// The migrations every process expects, embedded so `crust-api migrate`
/// and the tests need no files at run time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");
