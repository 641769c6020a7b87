//! Starts a real crust-api on a port-0 listener over a fresh database cloned
//! from a migrated template, and talks to it over HTTP.

use crust_api::Config;
use crust_model::auth::TokenKey;
use crust_model::Id;
use crust_queue::AmqpConfig;
use crust_store::config::DbConfig;
use crust_testing::{amqp_url, TestDb};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret-test-secret-test-secret";

/// A running API and a client with a valid `admin` token.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
    pub user: Id,
    pub db: TestDb,
    shutdown: CancellationToken,
}

/// Starts the API over a database of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the API after letting the test adjust its configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let db = TestDb::new().await;
    let mut config = Config {
        db: DbConfig {
            database_url: db.url.clone(),
            db_pool_size: 8,
        },
        amqp: AmqpConfig {
            amqp_url: amqp_url(),
            queue_prefix: db.name.clone(),
        },
        http_addr: "127.0.0.1:0".parse().unwrap(),
        jwt_secret: Some(SECRET.into()),
        body_limit: 1024 * 1024,
        queries: Default::default(),
        trace_url: None,
        http_read_timeout: std::time::Duration::from_secs(30),
        max_connections: 1024,
        cors_origins: Vec::new(),
        job_key_ttl: std::time::Duration::from_secs(86_400),
        secrets: crust_store::secrets::SecretsConfig {
            secrets_key: Some(crust_testing::SECRETS_KEY.into()),
            secrets_previous_key: None,
        },
    };
    adjust(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if let Err(err) = crust_api::run(config, listener, stop).await {
            panic!("api stopped: {err:#}");
        }
    });
    let user = Id(7);
    let token =
        TokenKey::new(SECRET)
            .unwrap()
            .sign(user, &["admin"], chrono::Utc::now().timestamp(), 3600);
    TestApp {
        base,
        client: reqwest::Client::new(),
        token,
        user,
        db,
        shutdown,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// A token for `user` granting `roles` (none: a token that may do nothing).
    pub fn token_for(&self, user: Id, roles: &[&str]) -> String {
        TokenKey::new(SECRET)
            .unwrap()
            .sign(user, roles, chrono::Utc::now().timestamp(), 3600)
    }

    /// Sends a request with the (admin) token; returns status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    /// Sends a request with `token`; returns status and JSON body.
    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, None).await
    }

    /// Sends raw bytes as the body, with the token.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
    ) -> (StatusCode, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        read(response).await
    }

    /// Creates a module and returns its ID.
    pub async fn create_module(&self, name: &str, fields: Value) -> String {
        let (status, body) = self
            .post(
                "/module/",
                serde_json::json!({"name": name, "fields": fields}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["response"]["moduleID"].as_str().unwrap().to_owned()
    }

    /// Creates a record and returns its ID.
    pub async fn create_record(&self, module: &str, fields: Value) -> String {
        let (status, body) = self
            .post(
                &format!("/module/{module}/record"),
                serde_json::json!({"fields": fields}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["response"]["recordID"].as_str().unwrap().to_owned()
    }

    /// A direct connection to this test's database.
    pub async fn db(&self) -> PgConnection {
        self.db.connect().await
    }
}

/// Status and JSON body (Null when the body is not JSON).
pub async fn read(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The error message of an error envelope.
pub fn message(body: &Value) -> &str {
    body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error envelope: {body}"))
}
