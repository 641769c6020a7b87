//! `crust-bench records`: record create and read throughput through the API,
//! against single-row INSERTs and SELECTs sent straight to Postgres at the
//! same concurrency in the same run (the physical limit on this machine),
//! and creates whose one matching trigger starts a job each (the record,
//! its revision and the job in one statement, the job then published),
//! against the creates without triggers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use crust_model::Id;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::types::Json;
use sqlx::PgPool;

use crate::client::{response_id, unix_now, Api, ApiArgs, DbArgs, BENCH_USER};
use crate::report::{cores, ms, run_load, show_errors, Op, Summary, Table, Verdicts};

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Target: API create throughput as a share of direct INSERT throughput.
const TARGET_CREATE_SHARE: f64 = 0.50;
/// Target: creates with one matching trigger as a share of creates without.
const TARGET_TRIGGER_SHARE: f64 = 0.80;
/// Target: API p99 latency.
const TARGET_P99: Duration = Duration::from_millis(20);

/// Options of `crust-bench records`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: ApiArgs,

    #[command(flatten)]
    db: DbArgs,

    /// Concurrent clients (HTTP connections, and Postgres connections for
    /// the baseline).
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    clients: u32,

    /// Requests per measured phase.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    requests: u64,

    /// Unmeasured creates (API) and INSERTs (Postgres) before measuring.
    #[arg(long, default_value_t = 500)]
    warmup: u64,

    /// Also measure access control's cost: `--requests` creates with the
    /// admin token against as many with a token of a custom role that has
    /// rules on the bench module (and a deny elsewhere), in alternating
    /// halves, and print the ratio (target ≥ 95 %).
    #[arg(long)]
    access: bool,
}

/// The custom role `--access` creates (and removes).
const ACCESS_ROLE: &str = "crust-bench-records";
/// Target of `--access`: creates as a custom role ÷ creates as admin.
const TARGET_ACCESS_SHARE: f64 = 0.95;

/// Runs the bench; the bench module and its records are removed afterwards
/// whether or not the measurement succeeded.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let clients = usize::try_from(args.clients).context("--clients does not fit in usize")?;
    let requests = usize::try_from(args.requests).context("--requests does not fit in usize")?;
    let warmup = usize::try_from(args.warmup).context("--warmup does not fit in usize")?;

    let api = args.target.connect(clients, REQUEST_TIMEOUT)?;
    let pool = args.db.connect(args.clients).await?;

    let module_name = format!("bench_records_{}", unix_now()?.as_nanos());
    let module_id = api
        .create_module(&module_name)
        .await
        .context("cannot create the bench module")?;
    println!("bench module {module_name} (id {module_id}) created");

    let mut workflow = None;
    let measured = measure(
        &api,
        &pool,
        module_id,
        &mut workflow,
        clients,
        requests,
        warmup,
    )
    .await;
    // Print first, so a failed clean-up does not lose the measurement.
    if let Ok(report) = &measured {
        report.print(clients, requests);
    }
    let compared = if args.access && measured.is_ok() {
        let compared = compare_access(&args.target, &api, module_id, clients, requests).await;
        // The role goes whether or not the comparison worked.
        let removed = api
            .send(
                Method::DELETE,
                &format!("/role/{ACCESS_ROLE}"),
                None,
                StatusCode::OK,
            )
            .await;
        compared.and(removed.map(drop))
    } else {
        Ok(())
    };
    let cleaned = clean_up(&api, &pool, module_id, workflow).await;
    pool.close().await;
    measured?;
    compared?;
    cleaned
}

/// `--access`: record creates as admin (whose `*` rule short-cuts nothing:
/// the same lookup, cache and audit entry) against creates as a custom
/// role whose rules name the module, alternating halves (admin, role, role,
/// admin) so drift over the run weighs on both alike.
async fn compare_access(
    target: &ApiArgs,
    admin: &Api,
    module_id: Id,
    clients: usize,
    requests: usize,
) -> anyhow::Result<()> {
    let rules = json!({"rules": [
        {"resource": format!("module:{module_id}"), "operations": ["read"], "allow": true},
        {"resource": format!("record:{module_id}"), "operations": ["read", "write"], "allow": true},
        {"resource": "record:*", "operations": ["delete"], "allow": false},
    ]});
    admin
        .send(
            Method::PUT,
            &format!("/role/{ACCESS_ROLE}"),
            Some(&rules),
            StatusCode::CREATED,
        )
        .await
        .context("cannot create the bench role")?;
    let custom = target.connect_as(clients, REQUEST_TIMEOUT, &[ACCESS_ROLE])?;
    let half = (requests / 2).max(1);
    let mut as_admin = Vec::new();
    let mut as_role = Vec::new();
    for (round, api) in [admin, &custom, &custom, admin].into_iter().enumerate() {
        let who = if round % 3 == 0 { "admin" } else { ACCESS_ROLE };
        eprintln!("access: {half} creates as {who}");
        let phase = run_load(clients, half, api_create(api, module_id)).await?;
        show_errors(&format!("create as {who}"), &phase);
        let ok = phase.latencies.len().saturating_sub(phase.errors);
        let entry = (ok, phase.elapsed.as_secs_f64());
        if round % 3 == 0 {
            as_admin.push(entry);
        } else {
            as_role.push(entry);
        }
    }
    let rate = |phases: &[(usize, f64)]| {
        let (ok, seconds) = phases
            .iter()
            .fold((0, 0.0), |(n, s), (ok, secs)| (n + ok, s + secs));
        if seconds > 0.0 {
            ok as f64 / seconds
        } else {
            0.0
        }
    };
    let (admin_rate, role_rate) = (rate(&as_admin), rate(&as_role));
    let share = if admin_rate > 0.0 {
        role_rate / admin_rate
    } else {
        0.0
    };
    println!();
    let mut table = Table::new(["op", "token", "requests", "req/s"]);
    table.row([
        "create".to_owned(),
        "admin".to_owned(),
        (2 * half).to_string(),
        format!("{admin_rate:.0}"),
    ]);
    table.row([
        "create".to_owned(),
        format!("role {ACCESS_ROLE}"),
        (2 * half).to_string(),
        format!("{role_rate:.0}"),
    ]);
    print!("{}", table.render());
    println!(
        "targets: create as a custom role ≥ {:.0}% of create as admin: {:.1}% {}",
        100.0 * TARGET_ACCESS_SHARE,
        100.0 * share,
        verdict(share >= TARGET_ACCESS_SHARE),
    );
    Ok(())
}

/// The four measured phases.
/// The five measured phases.
struct Report {
    api_create: Summary,
    api_create_triggered: Summary,
    api_read: Summary,
    pg_insert: Summary,
    pg_select: Summary,
}

async fn measure(
    api: &Api,
    pool: &PgPool,
    module_id: Id,
    workflow: &mut Option<Id>,
    clients: usize,
    requests: usize,
    warmup: usize,
) -> anyhow::Result<Report> {
    eprintln!("warming up: {warmup} API creates, {warmup} direct INSERTs");
    // Open every pooled connection before anything is timed.
    let mut held = Vec::with_capacity(clients);
    for _ in 0..clients {
        held.push(
            pool.acquire()
                .await
                .context("cannot open a Postgres connection")?,
        );
    }
    drop(held);
    let warm = run_load(clients, warmup, api_create(api, module_id)).await?;
    show_errors("warm-up create (API)", &warm);
    let warm_pg = run_load(clients, warmup, pg_insert(pool, module_id)).await?;
    show_errors("warm-up INSERT (Postgres)", &warm_pg);
    if warmup > 0 && (warm.values.is_empty() || warm_pg.values.is_empty()) {
        bail!("every warm-up request failed; not measuring");
    }

    eprintln!("phase A: {requests} creates through the API, {clients} clients");
    let mut create = run_load(clients, requests, api_create(api, module_id)).await?;
    show_errors("create (API)", &create);
    let api_ids = Arc::new(std::mem::take(&mut create.values));

    // A workflow whose trigger matches every create (its filter is true for
    // each record), so each create also writes and publishes one job.
    let triggered = api
        .create_trigger_workflow(module_id)
        .await
        .context("cannot create the bench workflow")?;
    *workflow = Some(triggered);
    eprintln!(
        "phase C: {requests} creates through the API, each starting a job by one matching trigger"
    );
    let warm = run_load(clients, warmup, api_create(api, module_id)).await?;
    show_errors("warm-up create with a trigger (API)", &warm);
    let mut create_triggered = run_load(clients, requests, api_create(api, module_id)).await?;
    show_errors("create with a trigger (API)", &create_triggered);
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE workflow_id = $1")
        .bind(triggered.get())
        .fetch_one(pool)
        .await
        .context("cannot count the triggered jobs")?;
    let expected = warm.values.len() + create_triggered.values.len();
    if jobs != expected as i64 {
        bail!("{expected} creates with a matching trigger made {jobs} jobs");
    }

    eprintln!("phase B: {requests} reads through the API");
    let mut read = run_load(clients, requests, api_read(api, module_id, &api_ids)).await?;
    show_errors("read (API)", &read);

    eprintln!("baseline: {requests} single-row INSERTs straight into Postgres");
    let mut insert = run_load(clients, requests, pg_insert(pool, module_id)).await?;
    show_errors("INSERT (Postgres)", &insert);
    let pg_ids = Arc::new(std::mem::take(&mut insert.values));

    eprintln!("baseline: {requests} single-row SELECTs straight from Postgres");
    let mut select = run_load(clients, requests, pg_select(pool, module_id, &pg_ids)).await?;
    show_errors("SELECT (Postgres)", &select);

    Ok(Report {
        api_create: Summary::of(&mut create),
        api_create_triggered: Summary::of(&mut create_triggered),
        api_read: Summary::of(&mut read),
        pg_insert: Summary::of(&mut insert),
        pg_select: Summary::of(&mut select),
    })
}

/// The record every create and INSERT writes, varied a little by index.
fn record_fields(index: usize) -> Value {
    json!({
        "title": format!("deal {index}"),
        "amount": 1234.5,
        "stage": "won",
        "closeAt": "2019-05-01T10:00:00Z",
        "email": format!("a{index}@example.com"),
    })
}

impl Api {
    async fn create_module(&self, name: &str) -> anyhow::Result<Id> {
        let body = json!({
            "name": name,
            "fields": [
                {"name": "title", "kind": "String", "isRequired": true},
                {"name": "amount", "kind": "Number"},
                {"name": "stage", "kind": "Select", "options": {"options": ["new", "won", "lost"]}},
                {"name": "closeAt", "kind": "DateTime"},
                {"name": "email", "kind": "Email"},
            ],
        });
        self.create("/module/", &body, "moduleID").await
    }

    /// A workflow of one `log` task triggered by every record created in
    /// the module.
    async fn create_trigger_workflow(&self, module_id: Id) -> anyhow::Result<Id> {
        let body = json!({
            "name": format!("bench_trigger_{module_id}"),
            "tasks": [{"name": "t", "kind": "log", "params": {"message": "created"}}],
            "triggers": [{"on": "record.created", "moduleID": module_id, "filter": "amount > 0"}],
        });
        self.create("/workflow/", &body, "workflowID").await
    }

    async fn delete_module(&self, id: Id) -> anyhow::Result<()> {
        let path = format!("/module/{id}?force=true");
        self.send(Method::DELETE, &path, None, StatusCode::OK)
            .await
            .map(drop)
    }
}

/// `POST /module/{id}/record`, expecting 201; yields the new record's ID.
fn api_create(api: &Api, module_id: Id) -> impl Fn(usize) -> Op<Id> + Clone + Send + 'static {
    let api = api.clone();
    let url: Arc<str> = format!("{}/module/{module_id}/record", api.base).into();
    move |index| {
        let api = api.clone();
        let url = Arc::clone(&url);
        Box::pin(async move {
            let body = json!({ "fields": record_fields(index) });
            let answer = api
                .call(api.http.post(&*url).json(&body), StatusCode::CREATED)
                .await?;
            response_id(&answer, "recordID")
        })
    }
}

/// `GET /module/{id}/record/{recordID}` over `ids` round-robin, expecting 200.
fn api_read(
    api: &Api,
    module_id: Id,
    ids: &Arc<Vec<Id>>,
) -> impl Fn(usize) -> Op<()> + Clone + Send + 'static {
    let api = api.clone();
    let ids = Arc::clone(ids);
    let prefix: Arc<str> = format!("{}/module/{module_id}/record/", api.base).into();
    move |index| {
        let api = api.clone();
        let target = pick(&ids, index).map(|id| format!("{prefix}{id}"));
        Box::pin(async move {
            let url = target?;
            api.call(api.http.get(&url), StatusCode::OK).await.map(drop)
        })
    }
}

/// One autocommit single-row INSERT; yields the new row's ID.
fn pg_insert(pool: &PgPool, module_id: Id) -> impl Fn(usize) -> Op<Id> + Clone + Send + 'static {
    let pool = pool.clone();
    move |index| {
        let pool = pool.clone();
        Box::pin(async move {
            // RETURNING id costs no extra round trip and gives the SELECT
            // baseline its rows.
            sqlx::query_scalar::<_, i64>(
                r#"INSERT INTO records (module_id, user_id, "values") VALUES ($1, $2, $3) RETURNING id"#,
            )
            .bind(module_id.get())
            .bind(BENCH_USER.get())
            .bind(Json(record_fields(index)))
            .fetch_one(&pool)
            .await
            .map(Id)
            .map_err(|err| format!("INSERT failed: {err}"))
        })
    }
}

/// One single-row SELECT by primary key `(module_id, id)` over `ids`
/// round-robin, as the API reads (records are partitioned by module).
fn pg_select(
    pool: &PgPool,
    module_id: Id,
    ids: &Arc<Vec<Id>>,
) -> impl Fn(usize) -> Op<()> + Clone + Send + 'static {
    let pool = pool.clone();
    let ids = Arc::clone(ids);
    move |index| {
        let pool = pool.clone();
        let id = pick(&ids, index);
        Box::pin(async move {
            let id = id?;
            let row: Option<(i64, Json<Value>)> = sqlx::query_as(
                r#"SELECT id, "values" FROM records WHERE module_id = $2 AND id = $1"#,
            )
            .bind(id.get())
            .bind(module_id.get())
            .fetch_optional(&pool)
            .await
            .map_err(|err| format!("SELECT failed: {err}"))?;
            row.map(drop)
                .ok_or_else(|| format!("record {id} not found"))
        })
    }
}

/// The `index`-th ID, wrapping around; an error when there are none.
fn pick(ids: &[Id], index: usize) -> Result<Id, String> {
    if ids.is_empty() {
        return Err("no records were created, so there is nothing to read".into());
    }
    Ok(ids[index % ids.len()])
}

/// Removes the bench records directly, then the module through the API,
/// then the module's soft-deleted row and its records partition, so the
/// bench leaves nothing behind.
///
/// The trigger phase's workflow is deleted through the API (which cancels
/// its jobs), then its rows are removed; the jobs' messages left in the
/// broker are acknowledged and dropped by the next worker that receives
/// them, since their jobs no longer exist.
async fn clean_up(
    api: &Api,
    pool: &PgPool,
    module_id: Id,
    workflow: Option<Id>,
) -> anyhow::Result<()> {
    if let Some(workflow) = workflow {
        let path = format!("/workflow/{workflow}");
        api.send(Method::DELETE, &path, None, StatusCode::OK)
            .await
            .with_context(|| format!("cannot delete bench workflow {workflow}"))?;
        for sql in [
            "DELETE FROM jobs WHERE workflow_id = $1",
            "DELETE FROM workflow_triggers WHERE workflow_id = $1",
            "DELETE FROM workflow_versions WHERE workflow_id = $1",
            "DELETE FROM workflows WHERE id = $1",
        ] {
            sqlx::query(sql)
                .bind(workflow.get())
                .execute(pool)
                .await
                .with_context(|| format!("cannot remove bench workflow {workflow}: {sql}"))?;
        }
    }
    sqlx::query("DELETE FROM record_revisions WHERE module_id = $1")
        .bind(module_id.get())
        .execute(pool)
        .await
        .with_context(|| format!("cannot delete the revisions of bench module {module_id}"))?;
    let deleted = sqlx::query("DELETE FROM records WHERE module_id = $1")
        .bind(module_id.get())
        .execute(pool)
        .await
        .with_context(|| format!("cannot delete the records of bench module {module_id}"))?;
    api.delete_module(module_id)
        .await
        .with_context(|| format!("cannot delete bench module {module_id}"))?;
    // The API only soft-deletes modules; drop the row it left.
    sqlx::query("DELETE FROM modules WHERE id = $1 AND deleted_at IS NOT NULL")
        .bind(module_id.get())
        .execute(pool)
        .await
        .with_context(|| format!("cannot remove the deleted bench module {module_id}"))?;
    // Each module's records live in a partition of their own, which the
    // API keeps after a delete; drop the bench's (now empty) one.
    let partition = crust_store::partitions::partition(module_id);
    let attached: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                        WHERE i.inhparent = 'records'::regclass AND c.relname = $1)",
    )
    .bind(&partition)
    .fetch_one(pool)
    .await
    .with_context(|| format!("cannot look up partition {partition}"))?;
    if attached {
        sqlx::query(&format!("DROP TABLE {partition}"))
            .execute(pool)
            .await
            .with_context(|| format!("cannot drop partition {partition}"))?;
    }
    eprintln!(
        "cleaned up: {} records and module {module_id} removed",
        deleted.rows_affected()
    );
    Ok(())
}

impl Report {
    fn print(&self, clients: usize, requests: usize) {
        println!();
        println!(
            "machine: nproc {}, clients {clients}, requests {requests} per phase",
            cores()
        );
        let mut table = Table::new([
            "op", "path", "requests", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "api÷pg",
        ]);
        let pairs = [
            (
                "create",
                "api POST",
                &self.api_create,
                "pg INSERT",
                &self.pg_insert,
            ),
            (
                "read",
                "api GET",
                &self.api_read,
                "pg SELECT",
                &self.pg_select,
            ),
        ];
        for (op, api_name, api, pg_name, pg) in pairs {
            let share = format!("{:.1}%", 100.0 * ratio(api, pg));
            table.row(row(op, api_name, api, share));
            table.row(row(op, pg_name, pg, String::new()));
        }
        let share = format!(
            "{:.1}% of api POST",
            100.0 * ratio(&self.api_create_triggered, &self.api_create)
        );
        table.row(row(
            "create",
            "api POST + trigger",
            &self.api_create_triggered,
            share,
        ));
        print!("{}", table.render());
        println!("req/s counts successful requests over the phase's wall-clock time; latencies include failures.");

        let share = ratio(&self.api_create, &self.pg_insert);
        let share_met = share >= TARGET_CREATE_SHARE;
        let p99_met =
            self.api_create.latency.p99 < TARGET_P99 && self.api_read.latency.p99 < TARGET_P99;
        let trigger_share = ratio(&self.api_create_triggered, &self.api_create);
        let trigger_met = trigger_share >= TARGET_TRIGGER_SHARE;
        println!(
            "targets: create ≥ {:.0}% of direct INSERT: {:.1}% {}; API p99 < {} ms: create {} ms, read {} ms {}; create with a trigger ≥ {:.0}% of create: {:.1}% {}; overall {}",
            100.0 * TARGET_CREATE_SHARE,
            100.0 * share,
            verdict(share_met),
            TARGET_P99.as_millis(),
            ms(self.api_create.latency.p99),
            ms(self.api_read.latency.p99),
            verdict(p99_met),
            100.0 * TARGET_TRIGGER_SHARE,
            100.0 * trigger_share,
            verdict(trigger_met),
            verdict(share_met && p99_met && trigger_met),
        );
    }
}

fn row(op: &str, path: &str, summary: &Summary, share: String) -> Vec<String> {
    let [p50, p99, max] = summary.latency.cells();
    vec![
        op.to_owned(),
        path.to_owned(),
        summary.requests.to_string(),
        summary.rate(),
        p50,
        p99,
        max,
        summary.errors.to_string(),
        share,
    ]
}

fn ratio(api: &Summary, pg: &Summary) -> f64 {
    if pg.per_second > 0.0 {
        api.per_second / pg.per_second
    } else {
        0.0
    }
}

fn verdict(met: bool) -> &'static str {
    Verdicts::Upper.of(met)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrap_around_the_created_ids() {
        let ids = [Id(5), Id(6)];
        assert_eq!(pick(&ids, 3), Ok(Id(6)));
        assert!(pick(&[], 0).is_err());
    }
}
