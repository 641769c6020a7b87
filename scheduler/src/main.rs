//! `crust-scheduler`: parse config, start telemetry, run until SIGTERM.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(name = "crust-scheduler", version, about = "The Crust scheduler")]
struct Cli {
    #[command(flatten)]
    config: crust_scheduler::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = crust_shared::telemetry::init("crust-scheduler");
    let listener = tokio::net::TcpListener::bind(cli.config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", cli.config.http_addr))?;
    let result =
        crust_scheduler::run(cli.config, listener, crust_shared::shutdown::on_signal()).await;
    telemetry.shutdown();
    result
}
