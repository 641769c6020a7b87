//! The one error type of the domain: input that breaks a rule, a thing that
//! does not exist, or a clash with the current state, each in words a client
//! can act on.

/// Result with the domain [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A domain failure. Every message is written for the client and names the
/// offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

impl From<crust_query::QueryError> for Error {
    fn from(err: crust_query::QueryError) -> Self {
        Error::Invalid(err.to_string())
    }
}
