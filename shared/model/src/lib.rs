//! # crust-model
//!
//! Crust's domain: the types the API shows (modules, records, pages, charts,
//! workflows and their tasks, jobs), the validation that turns client input
//! into them, the [`Id`] every resource is named by, API tokens, and the one
//! domain [`Error`]. Nothing here does I/O: `crust-store` reads and writes
//! these types in Postgres, `crust-api` takes them off the wire.
//!
//! Depends only on `crust-query` (a module's fields are the schema its
//! filters compile against) and on pure libraries; `sqlx` is an optional
//! feature so [`Id`] and [`job::JobStatus`] can be bound and read by the
//! store.

pub mod access;
pub mod auth;
pub mod chart;
pub mod config;
pub mod csv;
pub mod error;
pub mod flow;
pub mod graph;
pub mod id;
pub mod job;
pub mod module;
pub mod page;
pub mod paging;
pub mod record;
pub mod secret;
pub mod step;
pub mod task;
pub mod template;
pub mod trigger;
pub mod webhook;
pub mod worker;
pub mod workflow;

pub use error::{Error, Result};
pub use id::Id;

/// Longest name or title accepted (modules, charts, pages), in characters.
pub const MAX_NAME_LEN: usize = 255;
/// Longest free text accepted where no field limit is set, in characters.
pub const MAX_TEXT_LEN: usize = 65_536;

/// The largest magnitude a JSON number may have: six steps below
/// `f64::MAX`, written `1.7976931348623145e308`.
///
/// Postgres keeps JSON numbers as `numeric` and prints them without an
/// exponent (`1e300` comes back as 301 digits). serde_json reads that long
/// form less exactly than the short one, sometimes one step higher than what
/// was written, and `f64::MAX` itself does not read back at all (`number out
/// of range`). Numbers the worker copies from row to row can climb that way
/// step by step; the five doubles just below `f64::MAX` climb all the way to
/// it, the sixth is a fixed point that nothing below can pass. The api's
/// unit tests replay the trip and an api test checks the replay against
/// Postgres itself. The api refuses larger numbers at the edge; the worker
/// fails a task whose output holds one.
pub const MAX_STORABLE_NUMBER: f64 = 1.797_693_134_862_314_5e308;

/// Checks a required, bounded, non-blank name and returns it trimmed. The
/// length is that of the name as sent, as the API document states it.
pub fn required_name(field: &str, value: &str) -> Result<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::invalid(format!("{field}: must not be empty")));
    }
    bounded_text(field, value, MAX_NAME_LEN)?;
    Ok(trimmed.to_owned())
}

/// Rejects text longer than `max` characters, naming the field.
pub fn bounded_text(field: &str, value: &str, max: usize) -> Result<()> {
    let length = value.chars().count();
    if length > max {
        return Err(Error::invalid(format!(
            "{field}: is {length} characters long; the limit is {max}"
        )));
    }
    Ok(())
}

/// Deserialises a field that may be absent (outer `None`: keep the current
/// value), `null` (`Some(None)`: clear it) or a value, for partial edits.
/// Use with `#[serde(default, deserialize_with = "explicit_null")]`.
pub fn explicit_null<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_measured_as_sent_and_kept_trimmed() {
        assert_eq!(required_name("name", "  ann ").unwrap(), "ann");
        let padded = format!("{}  ", "a".repeat(MAX_NAME_LEN - 1));
        assert!(required_name("name", &padded)
            .unwrap_err()
            .to_string()
            .contains("the limit is 255"));
        assert!(required_name("name", &"a".repeat(MAX_NAME_LEN)).is_ok());
        assert!(required_name("name", " \t").is_err());
    }
}
