//! `script`: a sandboxed Rhai script. It sees `parameters`, `outputs` and
//! `error`, may log and read or write records, and its final value is the
//! task's output.
//!
//! The sandbox: no module or file loading, no `eval`, limits on operations,
//! expression depth, call depth, string, array and map sizes, and a
//! wall-clock limit (the try's timeout, 30 s without one) that also stops
//! the script when the job is cancelled. The engine runs on a blocking
//! thread; record functions reach Postgres through the runtime's handle.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, Engine, EvalAltResult, Position, Scope};
use serde_json::{Map, Value};
use sqlx::PgPool;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::record::{create_record, delete_record, query_records, update_record, Writer};
use super::{TaskContext, TaskError};
use crate::logs::JobLogger;
use crust_model::job::LOG_LEVELS;
use crust_model::record::RecordFields;
use crust_model::task::ScriptParams;
use crust_model::Id;

/// Wall-clock limit of a script whose try has no timeout.
pub const DEFAULT_TIME_LIMIT: Duration = Duration::from_secs(30);
/// Longest string a script may build, in bytes (1 MiB).
pub const MAX_STRING_SIZE: usize = 1024 * 1024;
/// Most items in one array.
pub const MAX_ARRAY_SIZE: usize = 100_000;
/// Most entries in one object map.
pub const MAX_MAP_SIZE: usize = 10_000;
/// Most log lines (including `print` and `debug`) one run may write.
pub const MAX_LOG_LINES: usize = 1_000;

/// Operations between two checks of the clock and the cancel token.
const CHECK_EVERY: u64 = 256;

/// Runs the script; its final value (as JSON) is the output.
pub async fn run(params: ScriptParams, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    let parameters = serde_json::to_value(ctx.parameters)
        .map_err(|err| TaskError::failed(format!("script: {err}")))?;
    let script = Script {
        source: params.source,
        max_operations: params.max_operations,
        time_limit: ctx.timeout.unwrap_or(DEFAULT_TIME_LIMIT),
        parameters,
        outputs: {
            use crust_model::template::Scope;
            ctx.lookup(&["outputs".to_owned()])
                .map_err(|err| TaskError::failed(format!("script: {err}")))?
        },
        error: ctx.error.map(str::to_owned),
        item: ctx.item.map(|(item, index)| (item.clone(), index)),
        host: Host {
            pool: ctx.env.pool.clone(),
            roles: ctx.roles.map(<[String]>::to_vec),
            writer: super::record::writer(ctx),
            log: ctx.log.clone(),
            task: ctx.task_name.to_owned(),
            handle: Handle::current(),
            lines: Arc::new(AtomicUsize::new(0)),
        },
        cancel: ctx.cancel.clone(),
    };
    tokio::task::spawn_blocking(move || script.run())
        .await
        .map_err(|err| TaskError::failed(format!("script: the engine stopped: {err}")))?
}

/// Everything the blocking thread needs, owned.
struct Script {
    source: String,
    max_operations: u64,
    time_limit: Duration,
    parameters: Value,
    outputs: Value,
    error: Option<String>,
    /// In a `forEach` task: the item and its position.
    item: Option<(Value, usize)>,
    host: Host,
    cancel: CancellationToken,
}

/// What the functions offered to scripts use.
#[derive(Clone)]
struct Host {
    pool: PgPool,
    /// The job creator's roles (`None`: a system job).
    roles: Option<Vec<String>>,
    /// Record writes, as this job's task.
    writer: Writer,
    log: JobLogger,
    task: String,
    handle: Handle,
    lines: Arc<AtomicUsize>,
}

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

const STOP_TIME: &str = "time";
const STOP_CANCEL: &str = "cancelled";

impl Script {
    fn run(self) -> Result<Value, TaskError> {
        let engine = self.engine();
        let ast = engine
            .compile(&self.source)
            .map_err(|err| TaskError::failed(format!("script: compile error: {err}")))?;
        let mut scope = Scope::new();
        scope.push_dynamic("parameters", to_dynamic(&self.parameters)?);
        scope.push_dynamic("outputs", to_dynamic(&self.outputs)?);
        match &self.error {
            Some(error) => scope.push("error", error.clone()),
            None => scope.push("error", ()),
        };
        if let Some((item, index)) = &self.item {
            scope.push_dynamic("item", to_dynamic(item)?);
            scope.push("index", *index as i64);
        }
        let result = engine
            .eval_ast_with_scope::<Dynamic>(&mut scope, &ast)
            .map_err(|err| self.explain(&err))?;
        rhai::serde::from_dynamic::<Value>(&result).map_err(|err| {
            TaskError::failed(format!(
                "script: the result cannot be turned into JSON: {err}"
            ))
        })
    }

    /// A sandboxed engine with the host functions registered.
    fn engine(&self) -> Engine {
        let mut engine = Engine::new();
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
        engine.disable_symbol("eval");
        engine.set_max_operations(self.max_operations);
        engine.set_max_expr_depths(64, 32);
        engine.set_max_call_levels(32);
        engine.set_max_string_size(MAX_STRING_SIZE);
        engine.set_max_array_size(MAX_ARRAY_SIZE);
        engine.set_max_map_size(MAX_MAP_SIZE);
        engine.set_max_modules(0);

        let started = Instant::now();
        let limit = self.time_limit;
        let cancel = self.cancel.clone();
        engine.on_progress(move |operations| {
            if operations % CHECK_EVERY != 0 {
                return None;
            }
            if cancel.is_cancelled() {
                Some(Dynamic::from(STOP_CANCEL))
            } else if started.elapsed() > limit {
                Some(Dynamic::from(STOP_TIME))
            } else {
                None
            }
        });

        let host = self.host.clone();
        engine.on_print(move |text| {
            let _ = host.log_line("info", text.to_owned());
        });
        let host = self.host.clone();
        engine.on_debug(move |text, _, _| {
            let _ = host.log_line("debug", text.to_owned());
        });

        let host = self.host.clone();
        engine.register_fn("log", move |message: Dynamic| -> RhaiResult<()> {
            host.log_line("info", text_of(message))
        });
        let host = self.host.clone();
        engine.register_fn(
            "log",
            move |level: &str, message: Dynamic| -> RhaiResult<()> {
                let level = level.to_ascii_lowercase();
                if !LOG_LEVELS.contains(&level.as_str()) {
                    return Err(format!(
                        "log: level {level:?} is not one of {}",
                        LOG_LEVELS.join(", ")
                    )
                    .into());
                }
                host.log_line(&level, text_of(message))
            },
        );
        let host = self.host.clone();
        engine.register_fn(
            "record_create",
            move |module: Dynamic, fields: Dynamic| -> RhaiResult<Dynamic> {
                let module = id_of("record_create", "moduleID", module)?;
                let fields = fields_of("record_create", fields)?;
                let record = host.block_on(create_record(&host.writer, module, fields));
                host.reply("record_create", record)
            },
        );
        let host = self.host.clone();
        engine.register_fn(
            "record_update",
            move |module: Dynamic, record: Dynamic, fields: Dynamic| -> RhaiResult<Dynamic> {
                let module = id_of("record_update", "moduleID", module)?;
                let record = id_of("record_update", "recordID", record)?;
                let fields = fields_of("record_update", fields)?;
                let record = host.block_on(update_record(&host.writer, module, record, fields));
                host.reply("record_update", record)
            },
        );
        let host = self.host.clone();
        engine.register_fn(
            "record_delete",
            move |module: Dynamic, record: Dynamic| -> RhaiResult<Dynamic> {
                let module = id_of("record_delete", "moduleID", module)?;
                let record = id_of("record_delete", "recordID", record)?;
                let deleted = host.block_on(delete_record(&host.writer, module, record));
                host.reply("record_delete", deleted)
            },
        );
        let host = self.host.clone();
        engine.register_fn(
            "record_query",
            move |module: Dynamic, filter: &str| -> RhaiResult<Dynamic> {
                let module = id_of("record_query", "moduleID", module)?;
                let found = host.block_on(query_records(
                    &host.pool,
                    host.roles.as_deref(),
                    module,
                    filter,
                    "",
                    None,
                    Some(crust_model::task::MAX_QUERY_PER_PAGE),
                ));
                host.reply("record_query", found)
            },
        );
        engine
    }

    /// The task error for a failed run, naming the limit that was hit.
    fn explain(&self, err: &EvalAltResult) -> TaskError {
        let message = match err.unwrap_inner() {
            EvalAltResult::ErrorTerminated(token, _) if token.to_string() == STOP_CANCEL => {
                return TaskError::cancelled();
            }
            EvalAltResult::ErrorTerminated(..) => format!(
                "script: exceeded the time limit of {} s",
                self.time_limit.as_secs_f64()
            ),
            EvalAltResult::ErrorTooManyOperations(pos) => format!(
                "script: exceeded the limit of {} operations{}",
                self.max_operations,
                at(*pos)
            ),
            EvalAltResult::ErrorDataTooLarge(what, pos) => format!(
                "script: exceeded a size limit: {what} too large (strings {MAX_STRING_SIZE} bytes, arrays {MAX_ARRAY_SIZE} items, maps {MAX_MAP_SIZE} entries){}",
                at(*pos)
            ),
            EvalAltResult::ErrorTooManyModules(pos) => {
                format!("script: importing modules is not allowed{}", at(*pos))
            }
            EvalAltResult::ErrorStackOverflow(pos) => {
                format!("script: exceeded the call depth limit{}", at(*pos))
            }
            _ => format!("script: {}", err.to_string().replace('\n', " ")),
        };
        TaskError::Failed(message)
    }
}

impl Host {
    fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.handle.block_on(future)
    }

    /// Writes a log line unless the script has written too many.
    fn log_line(&self, level: &str, message: String) -> RhaiResult<()> {
        if self.lines.fetch_add(1, Ordering::Relaxed) >= MAX_LOG_LINES {
            return Err(format!("log: more than {MAX_LOG_LINES} log lines").into());
        }
        self.block_on(self.log.log(level, Some(&self.task), message, None));
        Ok(())
    }

    /// A host function's JSON result as a script value, or its error.
    fn reply(&self, function: &str, result: Result<Value, String>) -> RhaiResult<Dynamic> {
        let value = result.map_err(|reason| format!("{function}: {reason}"))?;
        rhai::serde::to_dynamic(&value)
    }
}

fn at(pos: Position) -> String {
    if pos.is_none() {
        String::new()
    } else {
        format!(" ({pos})")
    }
}

fn to_dynamic(value: &Value) -> Result<Dynamic, TaskError> {
    rhai::serde::to_dynamic(value).map_err(|err| TaskError::failed(format!("script: {err}")))
}

/// A log message: strings as they are, other values as Rhai shows them.
fn text_of(value: Dynamic) -> String {
    value
        .to_string()
        .chars()
        .take(crust_model::MAX_TEXT_LEN)
        .collect()
}

/// An ID from an integer or a decimal string.
fn id_of(function: &str, name: &str, value: Dynamic) -> RhaiResult<Id> {
    let parsed = if value.is_int() {
        value
            .as_int()
            .ok()
            .filter(|n| *n > 0)
            .map(Id)
            .ok_or_else(|| format!("{value} is not an ID"))
    } else if value.is_string() {
        Id::parse(&value.to_string())
    } else {
        Err(format!("a {} is not an ID", value.type_name()))
    };
    parsed.map_err(|reason| format!("{function}: {name}: {reason}").into())
}

/// Record fields from a map `#{name: value}` or a list of `#{name, value}`.
fn fields_of(function: &str, value: Dynamic) -> RhaiResult<Map<String, Value>> {
    let json: Value = rhai::serde::from_dynamic(&value)?;
    let fields: RecordFields = serde_json::from_value(json).map_err(|_| {
        format!("{function}: fields must be a map #{{name: value}} or a list of #{{name, value}}")
    })?;
    fields
        .into_map()
        .map_err(|err| format!("{function}: {err}").into())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::tasks::test_support::Harness;
    use serde_json::json;

    #[tokio::test]
    async fn scripts_see_typed_nested_parameters() {
        let mut h = Harness::new();
        h.parameters.insert("n".into(), json!(5));
        h.parameters
            .insert("customer".into(), json!({"email": "a@b.io", "vip": true}));
        let out = h
            .run(
                "script",
                json!({"source": "#{ twice: parameters.n * 2, email: parameters.customer.email, vip: parameters.customer.vip }"}),
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"twice": 10, "email": "a@b.io", "vip": true}));
    }

    #[tokio::test]
    async fn the_final_value_is_the_output() {
        let mut h = Harness::new();
        h.parameters.insert("name".into(), "Ada".into());
        h.output("fetch", json!({"body": {"items": [1, 2, 3]}}));
        let out = h
            .run(
                "script",
                json!({"source": r#"
                    let total = 0;
                    for n in outputs.fetch.body.items { total += n; }
                    log("summing for " + parameters.name);
                    log("warn", total);
                    print("printed");
                    #{ total: total, who: parameters.name, error: error, list: [1, "two", 3.5] }
                "#}),
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            json!({"total": 6, "who": "Ada", "error": null, "list": [1, "two", 3.5]})
        );
        assert_eq!(
            h.logged(),
            vec![
                ("info".into(), "summing for Ada".into(), None),
                ("warn".into(), "6".into(), None),
                ("info".into(), "printed".into(), None),
            ]
        );
    }

    #[tokio::test]
    async fn the_source_is_not_a_template() {
        let mut h = Harness::new();
        h.error = Some("boom".into());
        let out = h
            .run("script", json!({"source": r#""{{ error }} " + error"#}))
            .await
            .unwrap();
        assert_eq!(out, json!("{{ error }} boom"));
    }

    #[tokio::test]
    async fn compile_and_runtime_errors_fail_with_positions() {
        let h = Harness::new();
        let err = h
            .run("script", json!({"source": "let x = ;"}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("script: compile error: "), "{err}");
        assert!(err.contains("line 1, position 9"), "{err}");
        let err = h
            .run("script", json!({"source": "let x = 1;\nx + nope"}))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("Variable not found: nope (line 2, position 5)"),
            "{err}"
        );
        let err = h
            .run("script", json!({"source": r#"log("loud", "x")"#}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("log: level \"loud\" is not one of"), "{err}");
    }

    #[tokio::test]
    async fn the_operation_limit_stops_loops() {
        let h = Harness::new();
        let err = h
            .run(
                "script",
                json!({"source": "let n = 0; loop { n += 1; }", "maxOperations": 10000}),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("script: exceeded the limit of 10000 operations"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn the_time_limit_and_cancel_stop_loops() {
        let mut h = Harness::new();
        h.timeout = Some(Duration::from_millis(200));
        let started = Instant::now();
        let err = h
            .run(
                "script",
                json!({"source": "loop {}", "maxOperations": 100_000_000}),
            )
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "script: exceeded the time limit of 0.2 s");
        assert!(started.elapsed() < Duration::from_secs(10));

        h.timeout = None;
        let cancel = h.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let err = h
            .run(
                "script",
                json!({"source": "loop {}", "maxOperations": 100_000_000}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "cancelled");
    }

    #[tokio::test]
    async fn sizes_depth_and_modules_are_limited() {
        let h = Harness::new();
        let err = h
            .run(
                "script",
                json!({"source": r#"let s = "x"; loop { s += s; }"#}),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("script: exceeded a size limit"), "{err}");
        let err = h
            .run("script", json!({"source": "fn f(n) { f(n + 1) } f(0)"}))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("script: exceeded the call depth limit"),
            "{err}"
        );
        let err = h
            .run("script", json!({"source": r#"import "std" as s; 1"#}))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("script: importing modules is not allowed"),
            "{err}"
        );
        let err = h
            .run("script", json!({"source": r#"eval("1")"#}))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("script: compile error"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn record_functions_reach_the_database() {
        let (mut h, module) = Harness::with_db().await;
        h.parameters
            .insert("module".into(), module.to_string().into());
        let out = h
            .run(
                "script",
                json!({"source": r#"
                    let m = parameters["module"];
                    let a = record_create(m, #{ name: "Ada", score: 1 });
                    let b = record_create(parse_int(m), [#{ name: "name", value: "Bob" }]);
                    let a2 = record_update(m, a.recordID, #{ score: 9 });
                    let gone = record_delete(m, b.recordID);
                    let found = record_query(m, "score > 5");
                    #{ updated: a2.fields[1].value, gone: gone.recordID == b.recordID, count: found.count,
                       first: found.records[0].recordID == a.recordID }
                "#}),
            )
            .await
            .unwrap();
        assert_eq!(
            out,
            json!({"updated": 9, "gone": true, "count": 1, "first": true})
        );
        let err = h
            .run(
                "script",
                json!({"source": "record_create(parameters[\"module\"], #{ name: \"A\", email: \"nope\" })"}),
            )
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("record_create: field \"email\": not a valid email address"),
            "{err}"
        );
        let _ = h.logged();
    }
}
