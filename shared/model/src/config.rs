//! The vocabulary of settings every process shares: how a binary reads its
//! settings, the error a bad setting raises and how a binary exits on it,
//! durations as people write them, and URLs shown with their password hidden.
//!
//! One pattern in all three binaries: every numeric setting carries its
//! allowed range in its clap `value_parser`; what clap cannot check (URLs
//! that must parse, rules across settings) is the config's `validate()`,
//! returning a [`ConfigError`]; and `main` reads the settings with
//! [`parse`], so whatever is wrong is one line on stderr and exit code 2.

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

/// Reads a binary's settings from its arguments and environment. `--help`
/// and `--version` print and exit 0 as usual; anything clap refuses (a value
/// out of its range, an unknown flag) is a [`ConfigError`] naming the
/// setting's environment variable, which `main` reports through
/// [`exit_code`] as one line and exit code 2.
pub fn parse<C: clap::Parser>() -> Result<C, ConfigError> {
    parse_from(std::env::args_os())
}

/// [`parse`] over the given arguments (the first is the program name).
pub fn parse_from<C, I, T>(args: I) -> Result<C, ConfigError>
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    C::try_parse_from(args).map_err(|err| {
        if !err.use_stderr() {
            // --help or --version: clap prints it and exits 0.
            err.exit()
        }
        let mut command = C::command();
        // Arguments show themselves as clap does only once built.
        command.build();
        settings_error(&command, &err)
    })
}

/// clap's error as one line, led by the environment variable of the setting
/// it is about (people set these through the environment far more than
/// through flags): `CRUST_WORKER_CONCURRENCY: invalid value '0' for
/// '--concurrency <CONCURRENCY>': 0 is not in 1..=1000`.
fn settings_error(command: &clap::Command, err: &clap::Error) -> ConfigError {
    let rendered = err.render().to_string();
    let line = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.starts_with("Usage:") && !line.starts_with("For more information"))
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let line = line.strip_prefix("error: ").unwrap_or(&line);
    let env = match err.get(clap::error::ContextKind::InvalidArg) {
        Some(clap::error::ContextValue::String(arg)) => find_env(command, arg),
        _ => None,
    };
    match env {
        Some(env) => ConfigError::new(format!("{env}: {line}")),
        None => ConfigError::new(line),
    }
}

/// The environment variable of the argument clap shows as `shown`
/// (`--concurrency <CONCURRENCY>`), in `command` or its subcommands.
fn find_env(command: &clap::Command, shown: &str) -> Option<String> {
    command
        .get_arguments()
        .find(|arg| arg.to_string() == shown)
        .and_then(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned())
        .or_else(|| {
            command
                .get_subcommands()
                .find_map(|sub| find_env(sub, shown))
        })
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

    #[derive(Debug, clap::Parser)]
    struct Cli {
        /// A bounded number.
        #[arg(long, env = "CRUST_TEST_WIDGETS", default_value_t = 4,
              value_parser = clap::value_parser!(u16).range(1..=10))]
        widgets: u16,
    }

    #[test]
    fn a_refused_setting_is_one_line_naming_its_environment_variable() {
        let cli: Cli = parse_from(["test", "--widgets", "10"]).unwrap();
        assert_eq!(cli.widgets, 10);
        for bad in ["0", "11", "-1", "many"] {
            let err =
                parse_from::<Cli, _, _>(["test".into(), format!("--widgets={bad}")]).unwrap_err();
            let message = err.to_string();
            assert!(message.starts_with("CRUST_TEST_WIDGETS: "), "{message}");
            assert!(message.contains(bad), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        let err = parse_from::<Cli, _, _>(["test", "--gadgets", "1"]).unwrap_err();
        assert!(err.to_string().contains("--gadgets"), "{err}");
        assert!(!err.to_string().contains('\n'), "{err}");
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
