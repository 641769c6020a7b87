//! The worker's settings (environment first, each also a `--flag`). Every
//! numeric one carries its allowed range, so a value out of it stops the
//! process at start with one line naming the variable (see
//! `crust_model::config`); [`Config::validate`] checks what clap cannot.

use std::time::Duration;

use crust_model::config::ConfigError;
use crust_queue::AmqpConfig;
use crust_store::config::DbConfig;
use crust_store::secrets::SecretsConfig;

use crate::logs;
use crate::tasks;
use crate::tasks::egress::Egress;

/// What `crust-worker` needs.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DbConfig,

    #[command(flatten)]
    pub amqp: AmqpConfig,

    /// Address of the health endpoints (`/healthz`, `/readyz`).
    #[arg(long, env = "CRUST_HTTP_ADDR", default_value = "127.0.0.1:0")]
    pub http_addr: std::net::SocketAddr,

    /// Jobs this process runs at once (and its RabbitMQ prefetch).
    #[arg(long, env = "CRUST_WORKER_CONCURRENCY", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub concurrency: u16,

    /// Lease of a claimed job in milliseconds; renewed four times per lease.
    /// A dead worker's jobs run again once their lease expires. 1 s to 1 h.
    #[arg(long, env = "CRUST_WORKER_LEASE_MS", default_value_t = 5_000,
          value_parser = clap::value_parser!(u64).range(1_000..=3_600_000))]
    pub lease_ms: u64,

    /// Seconds running jobs get to finish after SIGTERM before they are
    /// handed back to the queue. 0 (hand back at once) to 3600.
    #[arg(long, env = "CRUST_WORKER_DRAIN_SECS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub drain_secs: u64,

    /// The named queues this worker takes jobs from, comma-separated
    /// (each 1 to 64 letters, digits, `_` or `-`).
    #[arg(long, env = "CRUST_WORKER_QUEUES", default_value = "default",
          value_delimiter = ',', value_parser = parse_queue)]
    pub queues: Vec<String>,

    /// This worker's name in job rows (default: host name and process id).
    #[arg(long, env = "CRUST_WORKER_NAME")]
    pub name: Option<String>,

    /// Internal targets the `http` task may reach anyway: comma-separated
    /// CIDR blocks, addresses and host names (e.g. `10.0.0.0/8,billing.internal`).
    /// Loopback, private, link-local, multicast and unspecified addresses are
    /// refused unless listed here.
    #[arg(long, env = "CRUST_HTTP_ALLOW", default_value = "", value_parser = Egress::parse)]
    pub http_allow: Egress,

    /// How long an `http` task's request may take, body included, when the
    /// task sets no `timeout` (`30s`, `2m`).
    #[arg(long, env = "CRUST_HTTP_TIMEOUT", default_value = "30s",
          value_parser = crust_model::config::parse_duration)]
    pub http_timeout: Duration,

    #[command(flatten)]
    pub limits: Limits,

    #[command(flatten)]
    pub secrets: SecretsConfig,
}

/// What one job may cost the worker.
#[derive(Debug, Clone, clap::Args)]
pub struct Limits {
    /// Largest output of a task, in bytes of its JSON (also the most a
    /// task's rendered params may take and the largest `http` body read).
    #[arg(long, env = "CRUST_WORKER_MAX_OUTPUT_BYTES", default_value_t = tasks::DEFAULT_MAX_OUTPUT_BYTES,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1024..=(256 << 20)))]
    pub max_output_bytes: usize,

    /// Most log lines one run of a job writes; then one "log truncated" line.
    #[arg(long, env = "CRUST_JOB_LOG_MAX_LINES", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub job_log_max_lines: u64,

    /// Most bytes of log (messages and data) one run of a job writes.
    #[arg(long, env = "CRUST_JOB_LOG_MAX_BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub job_log_max_bytes: u64,

    /// A `sleep` task longer than this many seconds parks its job
    /// (`waiting`, holding no slot) instead of sleeping on the worker.
    #[arg(long, env = "CRUST_DURABLE_SLEEP_SECS", default_value_t = tasks::DEFAULT_DURABLE_SLEEP_SECS,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub durable_sleep_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        let logs = logs::LogLimits::default();
        Limits {
            max_output_bytes: tasks::DEFAULT_MAX_OUTPUT_BYTES,
            job_log_max_lines: logs.max_lines,
            job_log_max_bytes: logs.max_bytes,
            durable_sleep_secs: tasks::DEFAULT_DURABLE_SLEEP_SECS,
        }
    }
}

/// One name of `CRUST_WORKER_QUEUES`.
fn parse_queue(text: &str) -> Result<String, String> {
    let name = text.trim();
    crust_model::workflow::check_queue(name)?;
    Ok(name.to_owned())
}

impl Config {
    /// Checks what the ranges on each setting cannot: that the URLs parse
    /// and that the queues are named once each (their heartbeat is a quarter
    /// of the lease, not a setting of its own).
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.db.connect_options()?;
        self.amqp.validate()?;
        self.secrets.keyring()?;
        if self.queues.is_empty() {
            return Err(ConfigError::new("CRUST_WORKER_QUEUES: names no queue"));
        }
        for (at, queue) in self.queues.iter().enumerate() {
            if self.queues[..at].contains(queue) {
                return Err(ConfigError::new(format!(
                    "CRUST_WORKER_QUEUES: {queue:?} is named twice"
                )));
            }
        }
        Ok(())
    }

    /// How long a claim holds without a heartbeat.
    pub(crate) fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    pub(crate) fn name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
            format!("{host}-{}", std::process::id())
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn the_http_policy_settings_are_read_and_checked_at_start() {
        let cli = Cli::try_parse_from([
            "crust-worker",
            "--http-allow",
            "10.0.0.0/8,billing.internal",
            "--http-timeout",
            "2m",
        ])
        .unwrap();
        assert_eq!(
            cli.config.http_allow,
            Egress::parse("10.0.0.0/8, billing.internal").unwrap()
        );
        assert_eq!(cli.config.http_timeout, Duration::from_secs(120));
        for (flag, value) in [
            ("--http-allow", "10.0.0.0/33"),
            ("--http-allow", "127.1"),
            ("--http-timeout", "0s"),
            ("--http-timeout", "30"),
        ] {
            let err = Cli::try_parse_from(["crust-worker", flag, value])
                .err()
                .unwrap_or_else(|| panic!("{flag} {value} was accepted"));
            assert!(err.to_string().contains(flag), "{err}");
        }
    }

    #[test]
    fn the_queues_are_read_and_checked_at_start() {
        let cli: Cli = crust_model::config::parse_from(["crust-worker"]).unwrap();
        assert_eq!(cli.config.queues, ["default"]);
        let cli: Cli =
            crust_model::config::parse_from(["crust-worker", "--queues=default, mail,bulk_2"])
                .unwrap();
        assert_eq!(cli.config.queues, ["default", "mail", "bulk_2"]);
        cli.config.validate().unwrap();
        for flag in [
            "--queues=a.b",
            "--queues=",
            "--queues=-x",
            &format!("--queues={}", "q".repeat(65)),
        ] {
            let err = crust_model::config::parse_from::<Cli, _, _>(["crust-worker", flag])
                .err()
                .unwrap_or_else(|| panic!("{flag} was accepted"));
            let message = err.to_string();
            assert!(message.starts_with("CRUST_WORKER_QUEUES: "), "{message}");
        }
        let twice: Cli =
            crust_model::config::parse_from(["crust-worker", "--queues=mail,mail"]).unwrap();
        let message = twice.config.validate().unwrap_err().to_string();
        assert!(message.contains("\"mail\" is named twice"), "{message}");
    }

    #[test]
    fn numbers_out_of_range_are_refused_naming_their_variable() {
        let cli: Cli = crust_model::config::parse_from([
            "crust-worker",
            "--concurrency=1000",
            "--lease-ms=1000",
            "--drain-secs=0",
        ])
        .unwrap();
        assert_eq!(cli.config.concurrency, 1000);
        assert_eq!(cli.config.lease(), Duration::from_secs(1));
        for (flag, env) in [
            ("--concurrency=0", "CRUST_WORKER_CONCURRENCY"),
            ("--concurrency=1001", "CRUST_WORKER_CONCURRENCY"),
            ("--lease-ms=999", "CRUST_WORKER_LEASE_MS"),
            ("--lease-ms=3600001", "CRUST_WORKER_LEASE_MS"),
            ("--drain-secs=3601", "CRUST_WORKER_DRAIN_SECS"),
            ("--db-pool-size=0", "CRUST_DB_POOL_SIZE"),
            ("--max-output-bytes=0", "CRUST_WORKER_MAX_OUTPUT_BYTES"),
            ("--job-log-max-lines=0", "CRUST_JOB_LOG_MAX_LINES"),
            ("--job-log-max-bytes=0", "CRUST_JOB_LOG_MAX_BYTES"),
            ("--http-timeout=0s", "CRUST_HTTP_TIMEOUT"),
            ("--durable-sleep-secs=0", "CRUST_DURABLE_SLEEP_SECS"),
            ("--durable-sleep-secs=86401", "CRUST_DURABLE_SLEEP_SECS"),
        ] {
            let err = crust_model::config::parse_from::<Cli, _, _>(["crust-worker", flag])
                .err()
                .unwrap_or_else(|| panic!("{flag} was accepted"));
            let message = err.to_string();
            assert!(message.starts_with(&format!("{env}: ")), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
    }

    #[test]
    fn validate_refuses_a_malformed_url() {
        let mut cli = Cli::try_parse_from(["crust-worker"]).unwrap();
        cli.config.validate().unwrap();
        cli.config.amqp.amqp_url = "not a url".into();
        let err = cli.config.validate().unwrap_err();
        assert!(err.to_string().starts_with("AMQP_URL"), "{err}");
    }
}
