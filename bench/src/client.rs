//! What every bench needs to reach the system under test: the api (its
//! URL, an HTTP client and a bearer token minted from the api's JWT
//! secret) and its Postgres (a pool, with the URL's password kept out of
//! messages). The options are `#[command(flatten)]`ed into each bench's
//! own; each bench adds its own calls in an `impl Api` block of its own.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use crust_model::auth::TokenKey;
use crust_model::Id;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

/// The user the bench token speaks for (and direct INSERTs write as).
pub const BENCH_USER: Id = Id(1);
/// Lifetime of the bench token: longer than any bench runs (loading a
/// million records for `query` takes minutes).
const TOKEN_TTL: Duration = Duration::from_secs(3 * 3600);
/// How long a pool waits for a Postgres connection.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the api is and how to sign in to it.
#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Base URL of the running API.
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub api: String,

    /// The API's HS256 secret, to mint a bearer token.
    #[arg(long, env = "CRUST_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
}

/// The role of the bench token unless a bench asks for others.
pub const BENCH_ROLE: &str = "admin";

impl ApiArgs {
    /// A client of the api holding a fresh bench token. `connections` is
    /// how many it keeps open (the bench's concurrency); `timeout` bounds
    /// each request.
    pub fn connect(&self, connections: usize, timeout: Duration) -> anyhow::Result<Api> {
        self.connect_as(connections, timeout, &[BENCH_ROLE])
    }

    /// [`ApiArgs::connect`] with a token granting `roles` instead of admin.
    pub fn connect_as(
        &self,
        connections: usize,
        timeout: Duration,
        roles: &[&str],
    ) -> anyhow::Result<Api> {
        let key = TokenKey::new(&self.jwt_secret)
            .map_err(anyhow::Error::msg)
            .context("--jwt-secret / CRUST_JWT_SECRET")?;
        let now =
            i64::try_from(unix_now()?.as_secs()).context("the system clock is out of range")?;
        let ttl = i64::try_from(TOKEN_TTL.as_secs()).unwrap_or(i64::MAX);
        let token = key.sign(BENCH_USER, roles, now, ttl);
        Ok(Api {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .timeout(timeout)
                .build()
                .context("cannot build the HTTP client")?,
            base: self.api.trim_end_matches('/').to_owned(),
            auth: format!("Bearer {token}"),
        })
    }
}

/// The api's Postgres, which the baselines write to and the clean-ups use.
#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// The API's Postgres, for the Postgres baseline and the bench's own
    /// reads and clean-up (the jobs bench gives it to its workers too).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/crust"
    )]
    pub database_url: String,
}

impl DbArgs {
    /// A pool of at most `connections`, with one connection opened now.
    pub async fn connect(&self, connections: u32) -> anyhow::Result<PgPool> {
        pool(connections)
            .connect(&self.database_url)
            .await
            .with_context(|| format!("cannot connect to Postgres at {}", self.redacted()))
    }

    /// A pool of at most `connections` that connects on first use.
    pub fn connect_lazy(&self, connections: u32) -> anyhow::Result<PgPool> {
        pool(connections)
            .connect_lazy(&self.database_url)
            .with_context(|| format!("cannot use Postgres at {}", self.redacted()))
    }

    /// The URL without its password, for messages.
    pub fn redacted(&self) -> String {
        redact(&self.database_url)
    }
}

fn pool(connections: u32) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
}

/// The time since the Unix epoch, for tokens and run-unique names.
pub fn unix_now() -> anyhow::Result<Duration> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")
}

/// A client of a running api, with its bearer token.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub auth: String,
}

impl Api {
    /// The absolute URL of an api path (`/job/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request and reads the whole body; any status but `expected`
    /// becomes an error carrying the start of the body. Load phases count
    /// these errors; one-off calls use [`Api::send`].
    pub async fn call(
        &self,
        request: reqwest::RequestBuilder,
        expected: StatusCode,
    ) -> Result<Value, String> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, &self.auth)
            .send()
            .await
            .map_err(|err| format!("request failed: {err}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|err| format!("HTTP {status}, body unreadable: {err}"))?;
        if status != expected {
            let text = String::from_utf8_lossy(&body);
            let cut: String = text.chars().take(300).collect();
            return Err(format!("HTTP {status} (expected {expected}): {cut}"));
        }
        serde_json::from_slice(&body)
            .map_err(|err| format!("HTTP {status}, body is not JSON: {err}"))
    }

    /// One call the bench cannot go on without: `method path` with an
    /// optional JSON body, expecting `expected`; a failure names the call.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        expected: StatusCode,
    ) -> anyhow::Result<Value> {
        let url = self.url(path);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            request = request.json(body);
        }
        self.call(request, expected)
            .await
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("{method} {url}"))
    }

    /// `POST path` expecting 201; yields the new object's `response.<field>`.
    pub async fn create(&self, path: &str, body: &Value, field: &str) -> anyhow::Result<Id> {
        let answer = self
            .send(Method::POST, path, Some(body), StatusCode::CREATED)
            .await?;
        response_id(&answer, field)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("POST {}", self.url(path)))
    }
}

/// `response.<field>` of an API answer, as an ID.
pub fn response_id(answer: &Value, field: &str) -> Result<Id, String> {
    let text = answer
        .pointer(&format!("/response/{field}"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("answer has no response.{field} string"))?;
    Id::parse(text)
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_are_read_from_the_envelope() {
        let answer = json!({"response": {"recordID": "42", "moduleID": "7"}});
        assert_eq!(response_id(&answer, "recordID"), Ok(Id(42)));
        assert!(response_id(&answer, "pageID").is_err());
        assert!(response_id(&json!({"response": {"recordID": 42}}), "recordID").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://u:secret@host/db"),
            "postgres://u:***@host/db"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1:5432/crust"),
            "postgres://postgres@127.0.0.1:5432/crust"
        );
    }
}
