//! # crust-testing
//!
//! Test support for the integration tests of every crate (a dev-dependency
//! only): a fresh database per test cloned from a migrated template,
//! broker clean-up, and a TCP proxy that can cut a process off from a
//! service to simulate an outage without disturbing other tests.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OnceCell};

use crust_queue::{self as queue, Names};

static TEMPLATE: OnceCell<String> = OnceCell::const_new();

/// The `CRUST_SECRETS_KEY` test systems run with (api and workers share
/// it, as a deployment's do).
pub const SECRETS_KEY: &str = "7d1a0c7d9c3b4e5f60718293a4b5c6d7e8f90112233445566778899aabbccdde";

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The Postgres server tests use (`DATABASE_URL`, any database name).
pub fn server_options() -> PgConnectOptions {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    url.parse::<PgConnectOptions>()
        .unwrap_or_else(|err| panic!("DATABASE_URL is not a Postgres URL: {err}"))
        .database("postgres")
}

/// A plain URL (usable by sqlx and tokio-postgres alike) of database
/// `name` on the test server.
pub fn database_url(name: &str) -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let mut url =
        url::Url::parse(&base).unwrap_or_else(|err| panic!("DATABASE_URL is not a URL: {err}"));
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// The broker tests use (`AMQP_URL`).
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

async fn admin() -> PgConnection {
    server_options()
        .connect()
        .await
        .unwrap_or_else(|err| panic!("Postgres is not reachable: {err}"))
}

async fn execute(sql: &str) {
    let mut admin = admin().await;
    sqlx::query(sql)
        .execute(&mut admin)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// A database with every migration applied, named after the migrations'
/// checksums so a changed migration gets a new template. Built under a
/// temporary name and renamed, so a crash never leaves a half-made one.
async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let mut digest = 0u64;
            for migration in crust_store::MIGRATOR.iter() {
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
                    .unwrap_or(false);
            if !exists {
                let building = format!("{name}_{}", std::process::id());
                execute(&format!("CREATE DATABASE {building}")).await;
                let mut conn = server_options()
                    .database(&building)
                    .connect()
                    .await
                    .unwrap_or_else(|err| panic!("connect to {building}: {err}"));
                crust_store::MIGRATOR
                    .run(&mut conn)
                    .await
                    .unwrap_or_else(|err| panic!("migrations: {err}"));
                let _ = conn.close().await;
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

/// A database of one test's own, dropped (with its broker names) when the
/// value is dropped. Its name doubles as the test's queue prefix.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    /// Clones the migrated template into a new database.
    pub async fn new() -> TestDb {
        let template = template().await;
        let name = format!(
            "crust_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        execute(&format!("CREATE DATABASE {name} TEMPLATE {template}")).await;
        TestDb {
            url: database_url(&name),
            name,
        }
    }

    /// A direct connection.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .unwrap_or_else(|err| panic!("connect to {}: {err}", self.name))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                // The named queues are those of the test's workflows.
                let mut queues = vec![crust_model::workflow::DEFAULT_QUEUE.to_owned()];
                if let Ok(mut db) = PgConnection::connect(&database_url(&name)).await {
                    let named: Vec<String> =
                        sqlx::query_scalar("SELECT DISTINCT queue FROM workflows")
                            .fetch_all(&mut db)
                            .await
                            .unwrap_or_default();
                    queues.extend(named);
                    let _ = db.close().await;
                }
                queues.sort();
                queues.dedup();
                delete_queues(&name, &queues).await;
                let mut admin = admin().await;
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            });
        })
        .join();
    }
}

/// Deletes the exchanges under `prefix` and the named queues `queues`
/// (with their dead-letter queues).
pub async fn delete_queues(prefix: &str, queues: &[String]) {
    if let Ok(connection) = queue::connect(&amqp_url()).await {
        if let Ok(channel) = connection.create_channel().await {
            let queues: Vec<&str> = queues.iter().map(String::as_str).collect();
            let _ = queue::delete_topology(&channel, &Names::new(prefix), &queues).await;
        }
        let _ = connection.close(200, "test done").await;
    }
}

/// A TCP proxy in front of a service. While "down" it refuses new
/// connections and has cut the ones it carried, as a stopped server would.
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl Proxy {
    /// Starts forwarding a local port to `target` (host:port).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|err| panic!("bind proxy: {err}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Notify::new());
        let target = target.to_owned();
        let (accept_up, accept_cut) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !accept_up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (target, cut) = (target.clone(), accept_cut.clone());
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    let (mut inbound, mut outbound) = (inbound, outbound);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    /// Cuts every connection and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    /// Accepts connections again.
    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// A loopback port free right now (bound, then released), for a child
/// process's `CRUST_HTTP_ADDR`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .unwrap_or_else(|err| panic!("no free port: {err}"))
}

/// A real binary running as a child process, its stderr kept in a file so a
/// test can read everything it logged after stopping it.
pub struct Process {
    child: std::process::Child,
    stderr: std::path::PathBuf,
}

impl Process {
    /// Starts `command` with stderr captured (stdout discarded).
    pub fn start(mut command: std::process::Command) -> Process {
        let stderr = std::env::temp_dir().join(format!(
            "crust-test-{}-{}.stderr",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&stderr)
            .unwrap_or_else(|err| panic!("create {}: {err}", stderr.display()));
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|err| panic!("start {command:?}: {err}"));
        Process { child, stderr }
    }

    /// Sends SIGTERM and waits up to 60 s for the exit; returns the exit
    /// status and everything the process wrote to stderr.
    pub async fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .is_ok_and(|status| status.success());
        assert!(sent, "cannot send SIGTERM to {pid}");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for the child") {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "process {pid} did not stop within 60 s of SIGTERM"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        (status, stderr)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// The lines of a JSON log (`CRUST_LOG_FORMAT=json`) at WARN or ERROR.
pub fn warnings_and_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|line| line.contains(r#""level":"WARN""#) || line.contains(r#""level":"ERROR""#))
        .collect()
}

/// Polls `GET http://{addr}{path}` until it answers 200, or panics after
/// 30 s. Plain HTTP/1.1 over a socket, so tests need no HTTP client.
pub async fn wait_until_ok(addr: &str, path: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = TcpStream::connect(addr).await {
            let request =
                format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
            let mut answer = Vec::new();
            if stream.write_all(request.as_bytes()).await.is_ok()
                && stream.read_to_end(&mut answer).await.is_ok()
                && answer.starts_with(b"HTTP/1.1 200")
            {
                return;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "http://{addr}{path} never answered 200"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
