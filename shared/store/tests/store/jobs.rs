//! Claim, heartbeat, finish, hand back, log appends, release, rescue and
//! cron, each against its rule; the api's grace and lease; and the one
//! outcome of an unreadable stored status.

use std::time::Duration;

use chrono::Utc;
use crust_model::job::{JobStatus, JobUpdate, NewJob};
use crust_model::paging::Paging;
use crust_model::workflow::WorkflowInput;
use crust_model::Id;
use crust_store::config::QueryLimits;
use crust_store::jobs;
use crust_store::jobs::run::{Outcome, APPEND_LOGS_SQL};
use crust_store::workflows;
use crust_testing::TestDb;
use serde_json::{json, Value};
use sqlx::PgPool;

const LEASE: Duration = Duration::from_secs(60);
/// The idempotency keys' TTL these tests create jobs with.
const DAY: Duration = Duration::from_secs(86_400);

struct Store {
    pool: PgPool,
    _db: TestDb,
}

async fn store() -> Store {
    let db = TestDb::new().await;
    let pool = PgPool::connect(&db.url).await.unwrap();
    Store { pool, _db: db }
}

impl Store {
    async fn workflow(&self, definition: Value) -> Id {
        let input: WorkflowInput = serde_json::from_value(definition).unwrap();
        workflows::create(&self.pool, input.validate().unwrap())
            .await
            .unwrap()
            .id
    }

    async fn job(&self) -> Id {
        let workflow = self
            .workflow(json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}))
            .await;
        let job = NewJob {
            workflow_id: workflow,
            start_at: None,
            parameters: Default::default(),
            key: None,
        };
        jobs::api::create(&self.pool, job, Id(1), None, DAY)
            .await
            .unwrap()
            .job
            .id
    }

    async fn status(&self, id: Id) -> (JobStatus, i32, Option<String>) {
        let job = jobs::api::get(&self.pool, id).await.unwrap();
        (job.status, job.attempt, job.error)
    }

    /// Moves a running job's lease into the past, as if its worker died.
    async fn expire(&self, id: Id) {
        sqlx::query("UPDATE jobs SET lease_until = now() - interval '1 second' WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .unwrap();
    }

    async fn append(&self, id: Id, attempt: i32, messages: &[&str]) -> u64 {
        append(&self.pool, id, attempt, messages).await
    }

    async fn seqs(&self, id: Id) -> Vec<i32> {
        sqlx::query_scalar("SELECT seq FROM job_logs WHERE job_id = $1 ORDER BY seq")
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .unwrap()
    }
}

/// Appends log lines of one run with the worker's statement; returns how
/// many were written (the statement answers the job's new `log_seq` when
/// its lines went in, nothing when the run no longer held the job).
async fn append(pool: &PgPool, id: Id, attempt: i32, messages: &[&str]) -> u64 {
    let n = messages.len();
    let bumped: Vec<(Id, i32)> = sqlx::query_as(APPEND_LOGS_SQL)
        .bind(vec![id; n])
        .bind(vec![attempt; n])
        .bind(vec![Utc::now(); n])
        .bind(vec!["info"; n])
        .bind(vec![None::<String>; n])
        .bind(messages)
        .bind(vec![None::<Value>; n])
        .fetch_all(pool)
        .await
        .unwrap();
    let Some(&(job, seq)) = bumped.first() else {
        return 0;
    };
    assert_eq!((job, bumped.len()), (id, 1), "one row for the one job");
    let written: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM job_logs WHERE job_id = $1 AND seq > $2 - $3 AND seq <= $2",
    )
    .bind(id)
    .bind(seq)
    .bind(n as i32)
    .fetch_one(pool)
    .await
    .unwrap();
    written as u64
}

fn outcome(id: Id, attempt: i32, status: JobStatus) -> Outcome {
    Outcome {
        id,
        attempt,
        status,
        error: None,
    }
}

#[tokio::test]
async fn a_claim_bumps_the_attempt_and_a_second_claim_gets_nothing() {
    let s = store().await;
    let id = s.job().await;
    let claimed = jobs::run::claim(&s.pool, &[id], "w1", LEASE)
        .await
        .unwrap()
        .runs;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].attempt, 1);
    assert_eq!(
        claimed[0].tasks.len(),
        1,
        "the definition comes with the claim"
    );
    assert_eq!(s.status(id).await.0, JobStatus::Running);
    let again = jobs::run::claim(&s.pool, &[id], "w2", LEASE)
        .await
        .unwrap()
        .runs;
    assert!(again.is_empty(), "a running job cannot be claimed twice");
}

#[tokio::test]
async fn every_write_of_a_run_is_fenced_on_its_attempt() {
    let s = store().await;
    let id = s.job().await;
    jobs::run::claim(&s.pool, &[id], "old", LEASE)
        .await
        .unwrap();
    s.expire(id).await;
    jobs::schedule::rescue_expired(&s.pool, 3).await.unwrap();
    let second = jobs::run::claim(&s.pool, &[id], "new", LEASE)
        .await
        .unwrap()
        .runs;
    assert_eq!(second[0].attempt, 2);

    // The first run lost its claim: none of its writes apply.
    assert!(jobs::run::heartbeat(&s.pool, &[(id, 1)], LEASE)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.append(id, 1, &["late line"]).await, 0);
    assert!(!jobs::run::hand_back(&s.pool, id, 1).await.unwrap());
    assert!(jobs::run::finish(&s.pool, &[outcome(id, 1, JobStatus::Ok)])
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.status(id).await.0, JobStatus::Running);

    // The live run's do.
    assert_eq!(s.append(id, 2, &["line"]).await, 1);
    assert_eq!(
        jobs::run::finish(&s.pool, &[outcome(id, 2, JobStatus::Ok)])
            .await
            .unwrap(),
        [id]
    );
    assert_eq!(s.status(id).await.0, JobStatus::Ok);
}

#[tokio::test]
async fn heartbeats_extend_only_live_leases() {
    let s = store().await;
    let live = s.job().await;
    let done = s.job().await;
    jobs::run::claim(&s.pool, &[live, done], "w", Duration::from_secs(1))
        .await
        .unwrap();
    jobs::run::finish(&s.pool, &[outcome(done, 1, JobStatus::Ok)])
        .await
        .unwrap();
    let before: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT lease_until FROM jobs WHERE id = $1")
            .bind(live)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    let held = jobs::run::heartbeat(&s.pool, &[(live, 1), (done, 1)], LEASE)
        .await
        .unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].id, live);
    let (after, finished_lease): (chrono::DateTime<Utc>, Option<chrono::DateTime<Utc>>) =
        sqlx::query_as(
            "SELECT (SELECT lease_until FROM jobs WHERE id = $1),
                    (SELECT lease_until FROM jobs WHERE id = $2)",
        )
        .bind(live)
        .bind(done)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert!(after > before + chrono::Duration::seconds(30));
    assert_eq!(finished_lease, None, "a finished run holds no lease");
}

#[tokio::test]
async fn rescue_requeues_a_lost_run_then_ends_it_worker_lost_at_the_bound() {
    let s = store().await;
    let id = s.job().await;
    jobs::run::claim(&s.pool, &[id], "w", LEASE).await.unwrap();
    s.expire(id).await;
    let rescued = jobs::schedule::rescue_expired(&s.pool, 2).await.unwrap();
    assert_eq!(rescued.len(), 1);
    assert_eq!(rescued[0].status, JobStatus::Queued);
    assert_eq!(s.status(id).await.0, JobStatus::Queued);

    jobs::run::claim(&s.pool, &[id], "w", LEASE).await.unwrap();
    s.expire(id).await;
    let rescued = jobs::schedule::rescue_expired(&s.pool, 2).await.unwrap();
    assert_eq!(rescued[0].status, JobStatus::Error);
    assert_eq!(
        s.status(id).await,
        (JobStatus::Error, 2, Some("worker lost".into()))
    );
    // Each rescue wrote one log line, numbered after the run's own.
    assert_eq!(s.seqs(id).await, [1, 2]);
    assert!(jobs::schedule::rescue_expired(&s.pool, 2)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_due_job_is_released_once_with_two_schedulers_racing() {
    let s = store().await;
    let id = s.job().await;
    // Due and unpublished (as a delayed job whose time has come, or one
    // the api queued with `JobQueue::run` and never marked): the
    // scheduler's to release.
    sqlx::query(
        "UPDATE jobs SET release_at = now() - interval '1 second', published_at = NULL WHERE id = $1",
    )
        .bind(id)
        .execute(&s.pool)
        .await
        .unwrap();
    let mut first = s.pool.begin().await.unwrap();
    let mut second = s.pool.begin().await.unwrap();
    let taken = jobs::schedule::lock_releasable(&mut first, 10)
        .await
        .unwrap();
    let skipped = jobs::schedule::lock_releasable(&mut second, 10)
        .await
        .unwrap();
    assert_eq!(taken.iter().map(|job| job.id).collect::<Vec<_>>(), [id]);
    assert!(
        skipped.is_empty(),
        "the second scheduler skips the locked row"
    );
    jobs::schedule::mark_released(&mut first, &[id])
        .await
        .unwrap();
    first.commit().await.unwrap();
    second.rollback().await.unwrap();
    let mut third = s.pool.begin().await.unwrap();
    assert!(jobs::schedule::lock_releasable(&mut third, 10)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_cron_slot_fires_once_with_schedulers_racing() {
    let s = store().await;
    let workflow = s
        .workflow(json!({"name": "cron", "schedule": "0 3 * * *",
                         "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    sqlx::query("UPDATE workflows SET next_fire_at = now() - interval '1 second' WHERE id = $1")
        .bind(workflow)
        .execute(&s.pool)
        .await
        .unwrap();
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let pool = s.pool.clone();
            tokio::spawn(async move {
                jobs::schedule::fire_schedules(&pool, |_, _| None)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut fired = 0;
    for racer in racers {
        fired += racer.await.unwrap();
    }
    assert_eq!(fired, 1);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE workflow_id = $1")
        .bind(workflow)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(count, 1);
    let next: chrono::DateTime<Utc> =
        sqlx::query_scalar("SELECT next_fire_at FROM workflows WHERE id = $1")
            .bind(workflow)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert!(next > Utc::now(), "the workflow moved on to its next slot");
}

#[tokio::test]
async fn log_seq_is_gap_free_under_concurrent_appends() {
    let s = store().await;
    let id = s.job().await;
    jobs::run::claim(&s.pool, &[id], "w", LEASE).await.unwrap();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let pool = s.pool.clone();
            tokio::spawn(async move {
                let mut written = 0;
                for batch in 0..10 {
                    let messages: Vec<String> =
                        (0..5).map(|n| format!("w{writer} b{batch} l{n}")).collect();
                    let messages: Vec<&str> = messages.iter().map(String::as_str).collect();
                    written += append(&pool, id, 1, &messages).await;
                }
                written
            })
        })
        .collect();
    let mut written = 0;
    for writer in writers {
        written += writer.await.unwrap();
    }
    assert_eq!(written, 400);
    assert_eq!(s.seqs(id).await, (1..=400).collect::<Vec<i32>>());
}

#[tokio::test]
async fn log_seq_is_gap_free_with_the_api_and_a_worker_appending_at_once() {
    let s = store().await;
    let id = s.job().await;
    jobs::run::claim(&s.pool, &[id], "w", LEASE).await.unwrap();
    let worker = {
        let pool = s.pool.clone();
        tokio::spawn(async move {
            for batch in 0..20 {
                append(
                    &pool,
                    id,
                    1,
                    &[&format!("w{batch}a"), &format!("w{batch}b")],
                )
                .await;
            }
        })
    };
    let api: Vec<_> = (0..4)
        .map(|writer| {
            let pool = s.pool.clone();
            tokio::spawn(async move {
                for line in 0..10 {
                    let update = JobUpdate {
                        log: Some(json!(format!("api {writer} {line}"))),
                        ..JobUpdate::default()
                    };
                    jobs::api::update(&pool, id, update).await.unwrap();
                }
            })
        })
        .collect();
    worker.await.unwrap();
    for writer in api {
        writer.await.unwrap();
    }
    assert_eq!(s.seqs(id).await, (1..=80).collect::<Vec<i32>>());
    let (entries, total) =
        jobs::api::logs(&s.pool, id, 0, Paging::new(None, Some(100), 100).unwrap())
            .await
            .unwrap();
    assert_eq!((entries.len(), total), (80, 80));
}

/// Seconds from the database's now to a timestamp column of a job.
async fn seconds_until(s: &Store, column: &str, id: Id) -> f64 {
    sqlx::query_scalar(&format!(
        "SELECT extract(epoch from {column} - now())::float8 FROM jobs WHERE id = $1"
    ))
    .bind(id)
    .fetch_one(&s.pool)
    .await
    .unwrap()
}

fn status_update(status: &str) -> JobUpdate {
    JobUpdate {
        status: Some(status.into()),
        ..JobUpdate::default()
    }
}

#[tokio::test]
async fn the_api_queues_with_the_publish_grace_and_starts_by_hand_with_its_lease() {
    let grace = jobs::PUBLISH_GRACE.as_secs_f64();
    let lease = jobs::api::HAND_STARTED_LEASE.as_secs_f64();
    let near = |seconds: f64, expected: f64| (expected - 1.0..=expected + 0.5).contains(&seconds);
    let s = store().await;
    let id = s.job().await;
    let release = seconds_until(&s, "release_at", id).await;
    assert!(near(release, grace), "created: released after {release}s");

    // Started by hand: a claim like a worker's, with the api's lease.
    let started = jobs::api::update(&s.pool, id, status_update("running"))
        .await
        .unwrap();
    assert_eq!(
        (started.job.status, started.job.attempt),
        (JobStatus::Running, 1)
    );
    let held = seconds_until(&s, "lease_until", id).await;
    assert!(near(held, lease), "started by hand: lease of {held}s");

    // Requeued by hand: for the api to publish, within the grace.
    let requeued = jobs::api::update(&s.pool, id, status_update("queued"))
        .await
        .unwrap();
    assert!(requeued.publish);
    let release = seconds_until(&s, "release_at", id).await;
    assert!(near(release, grace), "requeued: released after {release}s");

    // Handed back by a worker with its live attempt: queued again, already
    // published, released after the same grace should its message be lost.
    let run = jobs::run::claim(&s.pool, &[id], "w", LEASE)
        .await
        .unwrap()
        .runs;
    assert_eq!(run[0].attempt, 2, "every claim bumps the attempt");
    assert!(jobs::run::hand_back(&s.pool, id, 2).await.unwrap());
    assert_eq!(s.status(id).await, (JobStatus::Queued, 2, None));
    let release = seconds_until(&s, "release_at", id).await;
    assert!(
        near(release, grace),
        "handed back: released after {release}s"
    );
}

/// True for the one outcome of reading an unreadable stored status: a
/// database (not a client) error that names the column and the value.
fn is_data_error<T: std::fmt::Debug>(result: &crust_store::Result<T>) -> bool {
    match result {
        Err(crust_store::Error::Database(err @ sqlx::Error::ColumnDecode { .. })) => {
            let text = err.to_string();
            text.contains("status") && text.contains("\"paused\" is not a job status")
        }
        _ => false,
    }
}

#[tokio::test]
async fn an_unreadable_stored_status_is_the_same_data_error_on_every_path() {
    let s = store().await;
    let corrupt = s.job().await;
    let fine = s.job().await;
    // Only a bypassed CHECK can store such a value.
    sqlx::query("ALTER TABLE jobs DROP CONSTRAINT jobs_status_check")
        .execute(&s.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE jobs SET status = 'paused' WHERE id = $1")
        .bind(corrupt)
        .execute(&s.pool)
        .await
        .unwrap();

    let get = jobs::api::get(&s.pool, corrupt).await;
    assert!(is_data_error(&get), "get: {get:?}");
    let paging = Paging::new(None, None, 100).unwrap();
    let list = jobs::api::list(&s.pool, None, None, paging, &QueryLimits::default()).await;
    assert!(is_data_error(&list), "list: {list:?}");
    let log = JobUpdate {
        log: Some(json!("a line")),
        ..JobUpdate::default()
    };
    let update = jobs::api::update(&s.pool, corrupt, log).await;
    assert!(is_data_error(&update), "update: {update:?}");
    let update = jobs::api::update(&s.pool, corrupt, status_update("cancelled")).await;
    assert!(is_data_error(&update), "status update: {update:?}");
    let cancel = jobs::api::cancel(&s.pool, corrupt).await;
    assert!(is_data_error(&cancel), "cancel: {cancel:?}");
    assert_eq!(
        s.seqs(corrupt).await,
        Vec::<i32>::new(),
        "the failed update wrote nothing"
    );

    // A worker's claim never reads the column: it takes the readable job
    // of the batch and leaves the other alone, failing nothing.
    let claims = jobs::run::claim(&s.pool, &[corrupt, fine], "w", LEASE)
        .await
        .unwrap();
    assert_eq!(
        claims.runs.iter().map(|run| run.id).collect::<Vec<_>>(),
        [fine]
    );
    assert!(claims.unreadable.is_empty());
    // Nor do the scheduler's passes over queued and running jobs.
    s.expire(fine).await;
    let rescued = jobs::schedule::rescue_expired(&s.pool, 3).await.unwrap();
    assert_eq!(rescued.iter().map(|r| r.id).collect::<Vec<_>>(), [fine]);
}

fn keyed(workflow_id: Id, key: Option<&str>) -> NewJob {
    NewJob {
        workflow_id,
        start_at: None,
        parameters: Default::default(),
        key: key.map(str::to_owned),
    }
}

#[tokio::test]
async fn a_key_returns_its_job_within_the_ttl_and_moves_to_a_new_one_after() {
    let s = store().await;
    let workflow = s
        .workflow(json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let first = jobs::api::create(&s.pool, keyed(workflow, Some("k")), Id(1), None, DAY)
        .await
        .unwrap();
    assert!(first.new && first.due_now);
    assert_eq!(first.job.key.as_deref(), Some("k"));
    let again = jobs::api::create(&s.pool, keyed(workflow, Some("k")), Id(1), None, DAY)
        .await
        .unwrap();
    assert!(
        !again.new && !again.due_now,
        "a found job is not published again"
    );
    assert_eq!(again.job.id, first.job.id);
    // With a TTL shorter than the job's age the key is taken over.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let short = Duration::from_millis(10);
    let taken = jobs::api::create(&s.pool, keyed(workflow, Some("k")), Id(1), None, short)
        .await
        .unwrap();
    assert!(taken.new);
    assert_ne!(taken.job.id, first.job.id);
    assert_eq!(
        jobs::api::get(&s.pool, first.job.id).await.unwrap().key,
        None
    );
    assert_eq!(
        jobs::api::get(&s.pool, taken.job.id)
            .await
            .unwrap()
            .key
            .as_deref(),
        Some("k")
    );
}

#[tokio::test]
async fn a_bulk_create_is_all_or_nothing_and_names_the_failing_item() {
    let s = store().await;
    let workflow = s
        .workflow(json!({"name": "w", "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}))
        .await;
    let err = jobs::api::create_many(
        &s.pool,
        vec![keyed(workflow, Some("a")), keyed(Id(424_242), None)],
        Id(1),
        None,
        DAY,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("jobs[1].workflowID: workflow 424242 does not exist"),
        "{err}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(count, 0);
    let created = jobs::api::create_many(
        &s.pool,
        vec![
            keyed(workflow, Some("a")),
            keyed(workflow, None),
            keyed(workflow, Some("a")),
        ],
        Id(1),
        None,
        DAY,
    )
    .await
    .unwrap();
    let news: Vec<bool> = created.iter().map(|one| one.new).collect();
    assert_eq!(news, [true, true, false]);
    assert_eq!(created[2].job.id, created[0].job.id);
    assert!(created[0].job.id < created[1].job.id);
}

/// The plan a worker's claim runs with on the worst day: prepared once
/// (generic, reused for the connection's life) while `jobs` is empty and
/// without statistics (fresh database, autovacuum off). On a plain session
/// that plan scanned the whole table and tested `id = ANY($1)` on every
/// row, a cost that grew with the table (1 s a claim at 100 000 jobs); on a
/// worker's session (`DbConfig::pool_by_key`) it must reach `jobs` by
/// index only, and must not be JIT-compiled (the disabled scans' costs once
/// had LLVM compile every claim).
#[tokio::test]
async fn a_claim_planned_on_an_empty_table_reaches_jobs_by_index_only() {
    let s = store().await;
    let config = crust_store::config::DbConfig {
        database_url: s._db.url.clone(),
        db_pool_size: 1,
    };
    let pool = config.pool_by_key().unwrap();
    let (scans, plan) = generic_claim_plan(&pool).await;
    assert!(
        scans.iter().any(|(node, _)| node.contains("Index")),
        "no index scan on jobs: {scans:?}"
    );
    assert!(
        !scans.iter().any(|(node, _)| node == "Seq Scan"),
        "a sequential scan of jobs: {scans:?}"
    );
    assert!(plan[0].get("JIT").is_none(), "JIT in the plan: {plan}");

    // The same on a plain pool does scan: the check can fail.
    let (scans, _) = generic_claim_plan(&s.pool).await;
    assert!(
        scans.iter().any(|(node, _)| node == "Seq Scan"),
        "a plain session no longer scans an empty jobs table; this test no longer shows the fix: {scans:?}"
    );
}

/// The claim prepared on a session of `pool` with a generic plan, and that
/// plan's scans on `jobs` (see [`collect_scans`]) and its JSON.
async fn generic_claim_plan(pool: &PgPool) -> (Vec<(String, String)>, Value) {
    let mut conn = pool.acquire().await.unwrap();
    sqlx::query("SET plan_cache_mode = force_generic_plan")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query(&format!(
        "PREPARE claim(bigint[], text, bigint) AS {}",
        jobs::run::CLAIM_SQL
    ))
    .execute(&mut *conn)
    .await
    .unwrap();
    let plan: Value =
        sqlx::query_scalar("EXPLAIN (FORMAT JSON, COSTS OFF) EXECUTE claim('{1,2,3}', 'w', 5000)")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    // The session goes back to the pool: drop what this set on it.
    for reset in ["DEALLOCATE claim", "RESET plan_cache_mode"] {
        sqlx::query(reset).execute(&mut *conn).await.unwrap();
    }
    let mut scans = Vec::new();
    collect_scans(&plan[0]["Plan"], &mut scans);
    (scans, plan)
}

/// The scan nodes on `jobs` in a JSON plan: (node type, index name).
fn collect_scans(node: &Value, scans: &mut Vec<(String, String)>) {
    if node["Relation Name"] == "jobs" {
        scans.push((
            node["Node Type"].as_str().unwrap_or_default().to_owned(),
            node["Index Name"].as_str().unwrap_or_default().to_owned(),
        ));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect_scans(child, scans);
    }
}

/// A bulk create without keys is one statement (`insert_all`): it must
/// still keep the items' order, merge each item's parameters over the
/// workflow's, store due jobs as published and delayed ones as not, name a
/// missing workflow by its item, and create nothing then.
#[tokio::test]
async fn a_bulk_create_without_keys_keeps_order_parameters_and_publish_state() {
    let s = store().await;
    let defaults: WorkflowInput = serde_json::from_value(json!({
        "name": "w", "parameters": {"currency": "EUR", "n": -1},
        "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}))
    .unwrap();
    let workflow = workflows::create(&s.pool, defaults.validate().unwrap())
        .await
        .unwrap()
        .id;
    let later = Utc::now() + chrono::Duration::hours(1);
    let items: Vec<NewJob> = (0..5)
        .map(|n| NewJob {
            workflow_id: workflow,
            start_at: (n == 3).then_some(later),
            parameters: serde_json::from_value(json!({ "n": n })).unwrap(),
            key: None,
        })
        .collect();
    let created = jobs::api::create_many(&s.pool, items, Id(1), None, DAY)
        .await
        .unwrap();
    let ids: Vec<Id> = created.iter().map(|one| one.job.id).collect();
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    for (n, one) in created.iter().enumerate() {
        assert_eq!(
            serde_json::to_value(&one.job.parameters).unwrap(),
            json!({"currency": "EUR", "n": n}),
            "item {n}"
        );
        assert!(one.new);
        assert_eq!(one.due_now, n != 3, "item {n}");
    }
    let published: Vec<bool> = sqlx::query_scalar(
        "SELECT published_at IS NOT NULL FROM jobs WHERE id = ANY($1) ORDER BY id",
    )
    .bind(&ids)
    .fetch_all(&s.pool)
    .await
    .unwrap();
    assert_eq!(published, [true, true, true, false, true]);

    let err = jobs::api::create_many(
        &s.pool,
        vec![
            keyed(workflow, None),
            keyed(workflow, None),
            keyed(Id(424_242), None),
        ],
        Id(1),
        None,
        DAY,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("jobs[2].workflowID: workflow 424242 does not exist"),
        "{err}"
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert_eq!(count, 5, "nothing of the failed call was created");
}
