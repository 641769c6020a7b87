//! The one error type of the shared library: what went wrong, in words a
//! client can act on, sorted by who has to fix it.

use std::time::Duration;

use crate::config::show_duration;

/// Result with the shared [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failure of a shared operation. The message of every variant but
/// `Database` is written for the client and names the offending input.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input breaks a rule (a 400).
    #[error("{0}")]
    Invalid(String),
    /// The thing asked for does not exist or is deleted (a 404).
    #[error("{0}")]
    NotFound(String),
    /// The request is valid but clashes with the current state (a 409).
    #[error("{0}")]
    Conflict(String),
    /// Postgres failed; details are for the log, not the client.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }

    /// Shorthand for [`Error::Conflict`].
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict(message.into())
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

impl From<crate::query::QueryError> for Error {
    fn from(err: crate::query::QueryError) -> Self {
        Error::Invalid(err.to_string())
    }
}

/// The name of the unique constraint a database error violated, if any.
pub(crate) fn unique_violation(err: &sqlx::Error) -> Option<&str> {
    match err {
        sqlx::Error::Database(db) if db.is_unique_violation() => db.constraint(),
        _ => None,
    }
}
