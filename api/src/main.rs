//! `crust-api`: serve the REST API, apply migrations, or print a token.

use anyhow::Context;
use clap::{Parser, Subcommand};
use crust_api::Config;
use crust_shared::auth::{parse_ttl, parse_user_id, TokenKey};

#[derive(Parser)]
#[command(name = "crust-api", version, about = "The Crust REST API")]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Create the database if missing, apply migrations and exit.
    Migrate,
    /// Print a signed bearer token.
    Token {
        /// The user ID the token speaks for (a positive number).
        #[arg(long)]
        sub: String,
        /// How long it is valid: 90s, 15m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let telemetry = crust_shared::telemetry::init("crust-api");
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let listener = tokio::net::TcpListener::bind(cli.config.http_addr)
                .await
                .with_context(|| format!("cannot listen on {}", cli.config.http_addr))?;
            crust_api::run(cli.config, listener, crust_shared::shutdown::on_signal()).await
        }
        Command::Migrate => crust_api::migrate(&cli.config.db).await,
        Command::Token { sub, ttl } => {
            let secret = cli
                .config
                .jwt_secret
                .context("CRUST_JWT_SECRET is not set")?;
            let key = TokenKey::new(&secret).map_err(anyhow::Error::msg)?;
            let user = parse_user_id(&sub).map_err(|reason| anyhow::anyhow!("--sub: {reason}"))?;
            let ttl = parse_ttl(&ttl).map_err(|reason| anyhow::anyhow!("--ttl: {reason}"))?;
            println!("{}", key.sign(user, chrono::Utc::now().timestamp(), ttl));
            Ok(())
        }
    };
    telemetry.shutdown();
    result
}
