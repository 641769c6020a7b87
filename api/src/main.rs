//! `crust-api`: serve the REST API, apply migrations, or print a token.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use crust_api::Config;
use crust_model::auth::{parse_ttl, parse_user_id};
use crust_model::config::ConfigError;

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
    /// Print a signed bearer token (needs CRUST_JWT_SECRET, the api's secret).
    Token {
        /// The user ID the token speaks for (a positive number).
        #[arg(long)]
        sub: String,
        /// How long it is valid: 90s, 15m, 24h, 7d.
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// A role the token grants (built-in: admin, designer, editor,
        /// operator, viewer; or a custom role's name). Repeat for several;
        /// without any, the token is an `admin` one.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Manage the encryption of secrets.
    Secrets {
        #[command(subcommand)]
        action: SecretsAction,
    },
}

#[derive(Subcommand)]
enum SecretsAction {
    /// Seal every secret again under CRUST_SECRETS_KEY (after a key
    /// rotation: the old key in CRUST_SECRETS_PREVIOUS_KEY), in one
    /// transaction; prints how many were re-sealed.
    Reencrypt,
}

#[tokio::main]
async fn main() -> ExitCode {
    // A setting clap refuses is one line and exit 2, like every ConfigError.
    let cli: Cli = match crust_model::config::parse() {
        Ok(cli) => cli,
        Err(err) => return crust_model::config::exit_code("crust-api", Some(&err)),
    };
    let telemetry = crust_runtime::telemetry::init("crust-api");
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => crust_api::migrate(&cli.config.db).await,
        Command::Token { sub, ttl, roles } => token(&cli.config, &sub, &ttl, &roles),
        Command::Secrets {
            action: SecretsAction::Reencrypt,
        } => crust_api::reencrypt_secrets(&cli.config)
            .await
            .map(|count| println!("{count} secrets sealed again under the current key")),
    };
    telemetry.shutdown();
    crust_model::config::exit_code("crust-api", result.as_ref().err().map(|err| &**err as _))
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.http_addr)
        .await
        .with_context(|| format!("cannot listen on {}", config.http_addr))?;
    crust_api::run(config, listener, crust_runtime::shutdown::on_signal()).await
}

fn token(config: &Config, sub: &str, ttl: &str, roles: &[String]) -> anyhow::Result<()> {
    let key = config.token_key()?;
    let user = parse_user_id(sub).map_err(|reason| ConfigError::new(format!("--sub: {reason}")))?;
    let ttl = parse_ttl(ttl).map_err(|reason| ConfigError::new(format!("--ttl: {reason}")))?;
    for role in roles {
        if !crust_model::access::is_role_name(role) {
            return Err(ConfigError::new(format!(
                "--role: {role:?} is not a role name (1 to 64 of A-Z a-z 0-9 _ - .)"
            ))
            .into());
        }
    }
    let mut roles: Vec<&str> = roles.iter().map(String::as_str).collect();
    if roles.is_empty() {
        roles.push("admin");
    }
    println!(
        "{}",
        key.sign(user, &roles, chrono::Utc::now().timestamp(), ttl)
    );
    Ok(())
}
