//! `crust-worker`: parse config, start telemetry, run until SIGTERM.

use anyhow::Context;
use clap::Parser;

#[derive(Parser)]
#[command(name = "crust-worker", version, about = "The Crust worker")]
struct Cli {
    #[command(flatten)]
    config: crust_worker::Config,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = crust_shared::telemetry::init("crust-worker");
    let listener = tokio::net::TcpListener::bind(cli.config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", cli.config.http_addr))?;
    let result = crust_worker::run(cli.config, listener, crust_shared::shutdown::on_signal()).await;
    telemetry.shutdown();
    result
}
