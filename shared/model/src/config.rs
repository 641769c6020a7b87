//! The vocabulary of settings every process shares: the error a bad setting
//! raises and how a binary exits on it, durations as people write them, and
//! URLs shown with their password hidden.

use std::process::ExitCode;
use std::time::Duration;

/// A setting that is missing or invalid, so the process cannot start. The
/// binaries print it as one line and exit with code 2 (see [`exit_code`]).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// A configuration error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// How a binary ends: nothing on success; otherwise the error and its causes
/// on one line of stderr (never a backtrace, whatever `RUST_BACKTRACE`
/// says), and exit code 2 for a configuration error, 1 for anything else.
pub fn exit_code(program: &str, error: Option<&(dyn std::error::Error + 'static)>) -> ExitCode {
    let Some(error) = error else {
        return ExitCode::SUCCESS;
    };
    let mut line = error.to_string();
    let mut is_config = error.is::<ConfigError>();
    let mut source = error.source();
    while let Some(cause) = source {
        is_config |= cause.is::<ConfigError>();
        let text = cause.to_string();
        // Context that repeats its cause adds nothing.
        if !line.ends_with(&text) {
            line = format!("{line}: {text}");
        }
        source = cause.source();
    }
    eprintln!("{program}: {}", line.replace('\n', " "));
    ExitCode::from(if is_config { 2 } else { 1 })
}

/// `url` with any password replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

/// Parses a positive duration written as a whole number and a unit: `ms`,
/// `s`, `m` or `h` (`500ms`, `10s`, `2m`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?} needs a unit: ms, s, m or h (e.g. 10s)"))?;
    let (digits, unit) = text.split_at(at);
    let amount: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 10s or 2m"))?;
    let millis = match unit {
        "ms" => Some(amount),
        "s" => amount.checked_mul(1_000),
        "m" => amount.checked_mul(60_000),
        "h" => amount.checked_mul(3_600_000),
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    // Postgres takes a statement timeout of up to i32::MAX milliseconds.
    match millis {
        Some(millis) if millis > 0 && millis <= i32::MAX as u64 => {
            Ok(Duration::from_millis(millis))
        }
        Some(0) => Err(format!("{text:?} is not a positive duration")),
        _ => Err(format!("{text:?} is too long (at most about 24 days)")),
    }
}

/// Shows a duration the way [`parse_duration`] reads it (`500ms`, `10s`).
pub fn show_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1_000) {
        format!("{}s", millis / 1_000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3_600)));
        for bad in ["", "10", "0s", "5y", "-1s", "1.5s", "ms", "9999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
        assert_eq!(show_duration(Duration::from_secs(10)), "10s");
        assert_eq!(show_duration(Duration::from_millis(1_500)), "1500ms");
    }

    #[test]
    fn urls_are_shown_without_their_password() {
        assert_eq!(
            redact_url("postgres://crust:s3cret@db:5432/crust?sslmode=require"),
            "postgres://crust:***@db:5432/crust?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/crust"), "postgres://db/crust");
        assert_eq!(redact_url("amqp://guest@mq/%2f"), "amqp://guest@mq/%2f");
    }
}
