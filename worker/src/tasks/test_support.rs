//! Test helpers: a task context over a channel logger, optionally over a
//! fresh migrated database (a `crust_testing::TestDb`, dropped afterwards).

use std::time::Duration;

use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::egress::{Egress, HttpClient};
use super::{Outputs, TaskContext, TaskEnv, TaskError};
use crate::logs::{JobLogger, LogLimits, LogLine, LogSink};
use crust_model::job::Parameters;
use crust_model::module::ModuleInput;
use crust_model::Id;
use crust_testing::TestDb;

/// Creates a module `contacts` with a required `name`, an `email` and a
/// `score`.
async fn create_contacts(pool: &PgPool) -> Id {
    let input: ModuleInput = serde_json::from_value(json!({
        "name": "contacts",
        "fields": [
            {"name": "name", "kind": "String", "isRequired": true},
            {"name": "email", "kind": "Email"},
            {"name": "score", "kind": "Number"},
        ],
    }))
    .unwrap();
    crust_store::modules::create(pool, input.validate().unwrap())
        .await
        .unwrap()
        .id
}

/// Everything a [`TaskContext`] borrows, owned by the test.
pub struct Harness {
    pub env: TaskEnv,
    pub parameters: Parameters,
    pub outputs: Outputs,
    pub error: Option<String>,
    pub logger: JobLogger,
    pub lines: mpsc::Receiver<LogLine>,
    pub timeout: Option<Duration>,
    pub cancel: CancellationToken,
    pub user: Id,
    /// The database of [`Harness::with_db`], dropped with the harness.
    _db: Option<TestDb>,
}

impl Harness {
    /// A harness whose pool never connects (for tasks without records).
    pub fn new() -> Harness {
        let pool = PgPoolOptions::new().connect_lazy_with(crust_testing::server_options());
        Self::with_pool(pool, None)
    }

    /// A harness over a fresh database holding the module `contacts`,
    /// whose ID comes with it.
    pub async fn with_db() -> (Harness, Id) {
        let db = TestDb::new().await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&db.url)
            .await
            .unwrap();
        let module = create_contacts(&pool).await;
        (Self::with_pool(pool, Some(db)), module)
    }

    fn with_pool(pool: PgPool, db: Option<TestDb>) -> Harness {
        let (tx, lines) = mpsc::channel(100_000);
        Harness {
            env: TaskEnv {
                steps: crate::step_writer::StepWriter::start(pool.clone()),
                secrets: std::sync::Arc::new(crate::secrets::Secrets::new(pool.clone(), None)),
                pool,
                // The tests' servers listen on 127.0.0.1; the default
                // policy would refuse them.
                http: HttpClient::new(
                    Egress::parse("127.0.0.1/32").unwrap(),
                    Duration::from_secs(30),
                )
                .unwrap(),
                max_output_bytes: super::DEFAULT_MAX_OUTPUT_BYTES,
                durable_sleep: Duration::from_secs(super::DEFAULT_DURABLE_SLEEP_SECS),
            },
            parameters: Parameters::new(),
            outputs: Outputs::new(),
            error: None,
            logger: JobLogger::new(
                Id(1),
                1,
                LogSink::new(tx, 64 * 1024 * 1024),
                LogLimits::default(),
            ),
            lines,
            timeout: None,
            cancel: CancellationToken::new(),
            user: Id(7),
            _db: db,
        }
    }

    /// The context of a try of task `t`.
    pub fn ctx(&self) -> TaskContext<'_> {
        TaskContext {
            env: &self.env,
            job_id: Id(1),
            user: self.user,
            roles: None,
            task_name: "t",
            parameters: &self.parameters,
            outputs: &self.outputs,
            error: self.error.as_deref(),
            log: &self.logger,
            timeout: self.timeout,
            cancel: &self.cancel,
            item: None,
        }
    }

    /// Sets the output of an earlier task `name`.
    pub fn output(&mut self, name: &str, value: Value) {
        self.outputs.insert(
            name.to_owned(),
            serde_json::value::RawValue::from_string(value.to_string()).unwrap(),
        );
    }

    /// Runs a task through [`super::run`].
    pub async fn run(&self, kind: &str, params: Value) -> Result<Value, TaskError> {
        super::run(kind.parse().unwrap(), &params, &self.ctx()).await
    }

    /// The log lines written so far, as `(level, message, data)`.
    pub fn logged(&mut self) -> Vec<(String, String, Option<Value>)> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.try_recv() {
            assert_eq!(line.task.as_deref(), Some("t"));
            let data = line
                .data
                .as_ref()
                .map(|raw| serde_json::from_str(raw.get()).unwrap());
            out.push((line.level, line.message, data));
        }
        out
    }
}
