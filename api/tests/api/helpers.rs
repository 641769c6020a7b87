//! Starts a real crust-api on a port-0 listener over a fresh database cloned
//! from a migrated template, and talks to it over HTTP.

use std::sync::atomic::{AtomicUsize, Ordering};

use crust_api::Config;
use crust_shared::auth::TokenKey;
use crust_shared::config::DbConfig;
use crust_shared::queue::{self, AmqpConfig, Names};
use crust_shared::Id;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "test-secret-test-secret-test-secret";

static TEMPLATE: OnceCell<String> = OnceCell::const_new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

fn server_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    url.parse::<PgConnectOptions>()
        .expect("DATABASE_URL is a Postgres URL")
        .database("postgres")
}

async fn admin() -> PgConnection {
    server_options()
        .connect()
        .await
        .expect("Postgres is running")
}

/// A database with every migration applied, named after the migrations'
/// checksums so a changed migration gets a new template. Built under a
/// temporary name and renamed, so a crash never leaves a half-made template.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let mut digest = 0u64;
            for migration in crust_shared::MIGRATOR.iter() {
                for byte in migration.checksum.iter() {
                    digest = digest.wrapping_mul(31).wrapping_add(u64::from(*byte));
                }
            }
            let name = format!("crust_test_tpl_{digest:016x}");
            let mut admin = admin().await;
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap();
            if !exists {
                let building = format!("{name}_{}", std::process::id());
                sqlx::query(&format!("CREATE DATABASE {building}"))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                let mut conn = server_options()
                    .database(&building)
                    .connect()
                    .await
                    .unwrap();
                crust_shared::MIGRATOR.run(&mut conn).await.unwrap();
                conn.close().await.unwrap();
                // Another test process may have won the race; that is fine.
                let _ = sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {name}"))
                    .execute(&mut admin)
                    .await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {building}"))
                    .execute(&mut admin)
                    .await;
            }
            name
        })
        .await
}

/// A running API and a client with a valid token.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub token: String,
    pub user: Id,
    pub db_name: String,
    pub db_url: String,
    pub queue_prefix: String,
    shutdown: CancellationToken,
}

/// The broker the tests use.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Deletes every exchange and queue of `prefix`, so a test leaves the
/// broker as it found it.
pub async fn delete_queues(prefix: &str) {
    if let Ok(connection) = queue::connect(&amqp_url()).await {
        if let Ok(channel) = connection.create_channel().await {
            let _ = queue::delete_topology(&channel, &Names::new(prefix)).await;
        }
        let _ = connection.close(200, "test done").await;
    }
}

/// Starts the API over a database of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// Starts the API after letting the test adjust its configuration.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Config)) -> TestApp {
    let template = template().await;
    let db_name = format!(
        "crust_test_{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = admin().await;
    sqlx::query(&format!("CREATE DATABASE {db_name} TEMPLATE {template}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let db_url = server_options()
        .database(&db_name)
        .to_url_lossy()
        .to_string();
    let mut config = Config {
        db: DbConfig {
            database_url: db_url.clone(),
            db_pool_size: 8,
        },
        amqp: AmqpConfig {
            amqp_url: amqp_url(),
            queue_prefix: db_name.clone(),
        },
        http_addr: "127.0.0.1:0".parse().unwrap(),
        jwt_secret: Some(SECRET.into()),
        body_limit: 1024 * 1024,
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
    let token = TokenKey::new(SECRET)
        .unwrap()
        .sign(user, chrono::Utc::now().timestamp(), 3600);
    TestApp {
        base,
        client: reqwest::Client::new(),
        token,
        user,
        queue_prefix: db_name.clone(),
        db_name,
        db_url,
        shutdown,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        let name = self.db_name.clone();
        let prefix = self.queue_prefix.clone();
        // Drop runs outside async; use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                delete_queues(&prefix).await;
                let mut admin = admin().await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            });
        })
        .join();
    }
}

impl TestApp {
    /// Sends a request with the token; returns status and JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
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
        PgConnection::connect(&self.db_url).await.unwrap()
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
