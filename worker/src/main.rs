//! `crust-worker`: parse config, start telemetry, run until SIGTERM.

use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Parser)]
#[command(name = "crust-worker", version, about = "The Crust worker")]
struct Cli {
    #[command(flatten)]
    config: crust_worker::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    // A setting clap refuses is one line and exit 2, like every ConfigError.
    let cli: Cli = match crust_model::config::parse() {
        Ok(cli) => cli,
        Err(err) => return crust_model::config::exit_code("crust-worker", Some(&err)),
    };
    let telemetry = crust_runtime::telemetry::init("crust-worker");
    let result = run(cli.config).await;
    telemetry.shutdown();
    crust_model::config::exit_code("crust-worker", result.as_ref().err().map(|err| &**err as _))
}

async fn run(config: crust_worker::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    crust_worker::run(config, listener, crust_runtime::shutdown::on_signal()).await
}
