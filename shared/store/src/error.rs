//! The one error type of the store: a domain error (the input or the state
//! said no) or a Postgres failure (details for the log, not the client).

use std::time::Duration;

use crust_model::config::show_duration;

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure of a store operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input or the current state refused the operation (a 4xx).
    #[error(transparent)]
    Domain(#[from] crust_model::Error),
    /// Postgres failed; details are for the log, not the client.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored secret does not open with the configured keys (a setup
    /// error of the process, never the client's).
    #[error("{0}")]
    Secrets(String),
}

impl Error {
    /// A domain [`crust_model::Error::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Domain(crust_model::Error::invalid(message))
    }

    /// A domain [`crust_model::Error::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::Domain(crust_model::Error::not_found(message))
    }

    /// A domain [`crust_model::Error::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Domain(crust_model::Error::conflict(message))
    }

    /// True when Postgres could not be reached at all (as opposed to a query
    /// failing), which callers report as "unavailable" rather than a bug.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Self::Database(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
            )
        )
    }
}

impl From<crust_query::QueryError> for Error {
    fn from(err: crust_query::QueryError) -> Self {
        Self::Domain(err.into())
    }
}

/// Maps a Postgres "data exception" (SQLSTATE class 22: a value out of
/// range, an overflow) raised while evaluating a client's query to a 400,
/// and so a query Postgres stopped at its statement timeout `timeout`
/// (57014, query_canceled); anything else stays a database error.
pub(crate) fn query_failure(timeout: Duration) -> impl Fn(sqlx::Error) -> Error {
    move |err| match &err {
        sqlx::Error::Database(db) if db.code().is_some_and(|code| code.starts_with("22")) => {
            Error::invalid(format!("the query cannot be evaluated: {}", db.message()))
        }
        sqlx::Error::Database(db) if db.code().as_deref() == Some("57014") => {
            Error::invalid(format!(
                "the query took too long: it was stopped after {} (CRUST_QUERY_TIMEOUT); \
                 narrow the filter or simplify the expressions",
                show_duration(timeout)
            ))
        }
        _ => err.into(),
    }
}

/// The name of the unique constraint a database error violated, if any.
pub(crate) fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
        _ => None,
    }
}
