//! `crust-scheduler`: parse config, start telemetry, run until SIGTERM.

use std::process::ExitCode;

use anyhow::Context;

#[derive(clap::Parser)]
#[command(name = "crust-scheduler", version, about = "The Crust scheduler")]
struct Cli {
    #[command(flatten)]
    config: crust_scheduler::Config,
}

#[tokio::main]
async fn main() -> ExitCode {
    // A setting clap refuses is one line and exit 2, like every ConfigError.
    let cli: Cli = match crust_model::config::parse() {
        Ok(cli) => cli,
        Err(err) => return crust_model::config::exit_code("crust-scheduler", Some(&err)),
    };
    let telemetry = crust_runtime::telemetry::init("crust-scheduler");
    let result = run(cli.config).await;
    telemetry.shutdown();
    crust_model::config::exit_code(
        "crust-scheduler",
        result.as_ref().err().map(|err| &**err as _),
    )
}

async fn run(config: crust_scheduler::Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    crust_scheduler::run(config, listener, crust_runtime::shutdown::on_signal()).await
}
