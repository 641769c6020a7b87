//! # crust-runtime
//!
//! What every Crust process does around its work: telemetry (logs and
//! OpenTelemetry traces), Prometheus metrics, the health and metrics
//! listener, and graceful shutdown on SIGTERM/SIGINT.
//!
//! Depends on no other Crust crate; it knows no SQL and no message broker,
//! beyond reading a Postgres pool's gauges for the metrics.

pub mod health;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
