//! Record-event triggers and revisions: the job a write triggers is written
//! by the write's own statement (it exists iff the write committed), filters
//! and `fields` decide, a debounced burst is one job with the last values,
//! loops are cut by lineage, and every change leaves one revision.

use crust_model::module::ModuleInput;
use crust_model::workflow::{WorkflowInput, WorkflowPatch};
use crust_model::Id;
use crust_store::modules::ModuleCache;
use crust_store::records::{self, Actor};
use crust_store::triggers::TriggerCache;
use crust_store::{jobs, modules, workflows};
use serde_json::{json, Map, Value};
use sqlx::PgPool;

use crate::support::Store;

const USER: Id = Id(7);

async fn module(pool: &PgPool) -> Id {
    let input: ModuleInput = serde_json::from_value(json!({
        "name": "deals",
        "fields": [{"name": "title", "kind": "String"}, {"name": "amount", "kind": "Number"},
                   {"name": "stage", "kind": "String"}]
    }))
    .unwrap();
    modules::create(pool, input).await.unwrap().id
}

async fn workflow(pool: &PgPool, triggers: Value) -> Id {
    let input: WorkflowInput = serde_json::from_value(json!({
        "name": "on deals",
        "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}],
        "parameters": {"fromWorkflow": 1},
        "triggers": triggers,
    }))
    .unwrap();
    workflows::create(pool, input.validate().unwrap())
        .await
        .unwrap()
        .id
}

fn values(value: Value) -> Map<String, Value> {
    serde_json::from_value(value).unwrap()
}

#[derive(Debug, sqlx::FromRow)]
struct JobRow {
    id: Id,
    parameters: sqlx::types::Json<Value>,
    trigger_depth: i32,
    start_at: Option<chrono::DateTime<chrono::Utc>>,
}

async fn jobs_of(pool: &PgPool, workflow: Id) -> Vec<JobRow> {
    sqlx::query_as(
        "SELECT id, parameters, trigger_depth, start_at FROM jobs WHERE workflow_id = $1 AND status = 'queued' ORDER BY id",
    )
    .bind(workflow)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_created_record_starts_a_job_with_the_record_in_its_parameters() {
    let store = Store::new().await;
    let pool = &store.pool;
    let module = module(pool).await;
    let workflow = workflow(pool, json!([{"on": "record.created", "moduleID": module}])).await;
    let written = records::create(
        pool,
        module,
        &Actor::User(USER),
        values(json!({"title": "a", "amount": 5})),
    )
    .await
    .unwrap();
    let jobs = jobs_of(pool, workflow).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        written.due,
        vec![jobs[0].id],
        "due now, for the api to publish"
    );
    assert_eq!(
        jobs[0].parameters.0,
        json!({"fromWorkflow": 1, "event": "record.created", "moduleID": module.to_string(),
               "recordID": written.record.id.to_string(),
               "record": {"title": "a", "amount": 5}})
    );
    assert_eq!(jobs[0].trigger_depth, 1);
    let job = jobs::api::get(pool, jobs[0].id).await.unwrap();
    assert_eq!(job.workflow_version, 1);
}

/// A constraint trigger that fails at commit, after the record, its
/// revision and its job were inserted: the write rolls back after the
/// trigger point.
async fn fail_commits_of(pool: &PgPool, title: &str) {
    sqlx::query(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS
         $$ BEGIN RAISE EXCEPTION 'refused at commit'; END $$",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT OR UPDATE ON jobs
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
         WHEN (NEW.parameters -> 'record' ->> 'title' = '{title}') EXECUTE FUNCTION refuse()"
    ))
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_triggered_job_exists_if_and_only_if_the_write_committed() {
    let store = Store::new().await;
    let pool = &store.pool;
    let module = module(pool).await;
    let workflow = workflow(
        pool,
        json!([{"on": "record.created", "moduleID": module},
               {"on": "record.updated", "moduleID": module}]),
    )
    .await;
    fail_commits_of(pool, "boom").await;

    let err = records::create(
        pool,
        module,
        &Actor::User(USER),
        values(json!({"title": "boom"})),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("refused at commit"), "{err}");
    assert_eq!(count(pool, "SELECT count(*) FROM records").await, 0);
    assert_eq!(
        count(pool, "SELECT count(*) FROM record_revisions").await,
        0
    );
    assert!(jobs_of(pool, workflow).await.is_empty());

    // An update rolled back at commit keeps the old values, no revision, no job.
    let kept = records::create(
        pool,
        module,
        &Actor::User(USER),
        values(json!({"title": "ok"})),
    )
    .await
    .unwrap();
    assert_eq!(jobs_of(pool, workflow).await.len(), 1);
    let err = records::update(
        pool,
        module,
        kept.record.id,
        &Actor::User(USER),
        values(json!({"title": "boom"})),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("refused at commit"), "{err}");
    assert_eq!(jobs_of(pool, workflow).await.len(), 1);
    assert_eq!(
        count(pool, "SELECT count(*) FROM record_revisions").await,
        1
    );
    let stored = records::get(
        pool,
        &modules::get(pool, module).await.unwrap(),
        kept.record.id,
    )
    .await
    .unwrap();
    assert_eq!(stored.fields[0].value, json!("ok"));

    // A validation failure comes before any write: nothing either.
    records::update(
        pool,
        module,
        kept.record.id,
        &Actor::User(USER),
        values(json!({"amount": "lots"})),
    )
    .await
    .unwrap_err();
    assert_eq!(jobs_of(pool, workflow).await.len(), 1);
}

#[tokio::test]
async fn filters_and_fields_decide_which_writes_fire() {
    let store = Store::new().await;
    let pool = &store.pool;
    let module = module(pool).await;
    let big = workflow(
        pool,
        json!([{"on": "record.created", "moduleID": module, "filter": "amount > 100"}]),
    )
    .await;
    let staged = workflow(
        pool,
        json!([{"on": "record.updated", "moduleID": module, "fields": ["stage"],
                "filter": "stage != 'lost'"}]),
    )
    .await;
    let small = records::create(
        pool,
        module,
        &Actor::User(USER),
        values(json!({"title": "s", "amount": 5})),
    )
    .await
    .unwrap();
    records::create(
        pool,
        module,
        &Actor::User(USER),
        values(json!({"title": "b", "amount": 500})),
    )
    .await
    .unwrap();
    let fired = jobs_of(pool, big).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].parameters.0["record"]["amount"], json!(500));

    let id = small.record.id;
    let update =
        |fields: Value| records::update(pool, module, id, &Actor::User(USER), values(fields));
    update(json!({"amount": 6})).await.unwrap(); // stage unchanged: no job
    update(json!({"stage": "lost"})).await.unwrap(); // filter false: no job
    assert!(jobs_of(pool, staged).await.is_empty());
    update(json!({"stage": "won", "amount": 7})).await.unwrap();
    let fired = jobs_of(pool, staged).await;
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].parameters.0["event"], json!("record.updated"));
    assert_eq!(fired[0].parameters.0["record"]["stage"], json!("won"));
    assert_eq!(
        fired[0].parameters.0["previous"],
        json!({"title": "s", "amount": 6, "stage": "lost"})
    );
}

#[tokio::test]
async fn a_debounced_burst_of_updates_is_one_job_with_the_last_values() {
    let store = Store::new().await;
    let pool = &store.pool;
    let module = module(pool).await;
    let workflow = workflow(
        pool,
        json!([{"on": "record.updated", "moduleID": module, "debounce": 60}]),
    )
    .await;
    let record = records::create(
        pool,
        module,
        &Actor::User(USER),
        values(json!({"title": "t", "amount": 0})),
    )
    .await
    .unwrap()
    .record;
    for n in 1..=20 {
        let written = records::update(
            pool,
            module,
            record.id,
            &Actor::User(USER),
            values(json!({"amount": n})),
        )
        .await
        .unwrap();
        assert!(
            written.due.is_empty(),
            "a debounced job is the scheduler's to release"
        );
    }
    let jobs = jobs_of(pool, workflow).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let job = &jobs[0];
    assert_eq!(job.parameters.0["record"]["amount"], json!(20));
    assert_eq!(
        job.parameters.0["previous"]["amount"],
        json!(0),
        "the window's first previous values are kept"
    );
    let start_at = job.start_at.expect("a delayed job");
    let window = start_at - chrono::Utc::now();
    assert!(
        window > chrono::Duration::seconds(50) && window <= chrono::Duration::seconds(60),
        "{window}"
    );

    // Once released (published), the next event opens a new window.
    jobs::api::mark_published(pool, &[job.id]).await.unwrap();
    records::update(
        pool,
        module,
        record.id,
        &Actor::User(USER),
        values(json!({"amount": 21})),
    )
    .await
    .unwrap();
    let jobs = jobs_of(pool, workflow).await;
    assert_eq!(jobs.len(), 2);
    assert_eq!(
        jobs[0].parameters.0["record"]["amount"],
        json!(20),
        "the sent job is untouched"
    );
    assert_eq!(jobs[1].parameters.0["record"]["amount"], json!(21));
}

/// A running job of `workflow` at `depth`, as a writer.
async fn job_at_depth(pool: &PgPool, workflow: Id, depth: i32) -> Actor {
    let id: Id = sqlx::query_scalar(
        "INSERT INTO jobs (workflow_id, workflow_version, status, trigger_depth) VALUES ($1, 1, 'running', $2)
         RETURNING id",
    )
    .bind(workflow)
    .bind(depth)
    .fetch_one(pool)
    .await
    .unwrap();
    Actor::Job {
        job_id: id,
        task: "write".into(),
        user: USER,
    }
}

#[tokio::test]
async fn a_job_does_not_fire_its_own_workflow_and_chains_stop_at_depth_five() {
    let store = Store::new().await;
    let pool = &store.pool;
    let module = module(pool).await;
    let on_create = json!([{"on": "record.created", "moduleID": module}]);
    let fired = workflow(pool, on_create.clone()).await;
    let other = workflow(pool, json!([])).await;
    let create = |actor: Actor| async move {
        records::create(pool, module, &actor, values(json!({"title": "x"})))
            .await
            .unwrap()
    };

    let own = create(job_at_depth(pool, fired, 1).await).await;
    assert_eq!(own.not_followed, 0);
    assert!(
        jobs_of(pool, fired).await.is_empty(),
        "its own write is not followed"
    );

    let deep = create(job_at_depth(pool, other, 4).await).await;
    assert_eq!(deep.not_followed, 0);
    let jobs = jobs_of(pool, fired).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].trigger_depth, 5);

    let last = create(job_at_depth(pool, other, 5).await).await;
    assert_eq!(last.not_followed, 1, "reported for the writer's log");
    assert_eq!(jobs_of(pool, fired).await.len(), 1);
}

#[tokio::test]
async fn every_change_is_a_revision_saying_who_made_it() {
    let store = Store::new().await;
    let pool = &store.pool;
    let module = module(pool).await;
    let id = records::create(
        pool,
        module,
        &Actor::User(USER),
        values(json!({"title": "a", "amount": 1})),
    )
    .await
    .unwrap()
    .record
    .id;
    let job = job_at_depth(pool, workflow(pool, json!([])).await, 0).await;
    records::update(
        pool,
        module,
        id,
        &job,
        values(json!({"amount": 2, "stage": "won"})),
    )
    .await
    .unwrap();
    records::delete(pool, module, id, &Actor::User(Id(8)))
        .await
        .unwrap();
    let revisions = records::revisions(pool, module, id).await.unwrap();
    let shown = serde_json::to_value(&revisions).unwrap();
    let Actor::Job { job_id, .. } = job else {
        unreachable!()
    };
    assert_eq!(
        shown
            .as_array()
            .unwrap()
            .iter()
            .map(|r| json!([r["revision"], r["operation"], r["by"], r["changes"]]))
            .collect::<Vec<_>>(),
        vec![
            json!([1, "created", {"userID": "7"},
                   {"title": {"old": null, "new": "a"}, "amount": {"old": null, "new": 1}}]),
            json!([2, "updated", {"jobID": job_id.to_string(), "task": "write"},
                   {"amount": {"old": 1, "new": 2}, "stage": {"old": null, "new": "won"}}]),
            json!([3, "deleted", {"userID": "8"},
                   {"title": {"old": "a", "new": null}, "amount": {"old": 2, "new": null},
                    "stage": {"old": "won", "new": null}}]),
        ]
    );
    let missing = records::revisions(pool, module, Id(999_999))
        .await
        .unwrap_err();
    assert_eq!(
        missing.to_string(),
        format!("record 999999 does not exist in module {module}")
    );
}

#[tokio::test]
async fn triggers_are_checked_against_their_module_when_saved() {
    let store = Store::new().await;
    let pool = &store.pool;
    let module = module(pool).await;
    let save = |triggers: Value| async move {
        let input: WorkflowInput =
            serde_json::from_value(json!({"name": "w", "triggers": triggers})).unwrap();
        workflows::create(pool, input.validate().unwrap())
            .await
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        save(json!([{"on": "record.created", "moduleID": 424242}])).await,
        "triggers[0].moduleID: module 424242 does not exist"
    );
    assert_eq!(
        save(json!([{"on": "record.updated", "moduleID": module, "fields": ["nope"]}])).await,
        format!("triggers[0].fields: module {module} has no field \"nope\"")
    );
    let err = save(json!([{"on": "record.created", "moduleID": module},
                          {"on": "record.created", "moduleID": module, "filter": "nope = 1"}]))
    .await;
    assert!(err.starts_with("triggers[1].filter: "), "{err}");
    assert_eq!(
        count(pool, "SELECT count(*) FROM workflow_triggers").await,
        0
    );
}

#[tokio::test]
async fn a_cached_trigger_set_is_replaced_when_a_workflow_changes_its_triggers() {
    let store = Store::new().await;
    let pool = &store.pool;
    let module = module(pool).await;
    let (modules_cache, triggers) = (ModuleCache::default(), TriggerCache::default());
    let create = || async {
        records::create_cached(
            pool,
            &modules_cache,
            &triggers,
            module,
            &Actor::User(USER),
            values(json!({"title": "x"})),
        )
        .await
        .unwrap()
    };
    let workflow = workflow(pool, json!([])).await;
    assert!(create().await.due.is_empty());
    let patch: WorkflowPatch =
        serde_json::from_value(json!({"triggers": [{"on": "record.created", "moduleID": module}]}))
            .unwrap();
    workflows::update(pool, workflow, patch).await.unwrap();
    assert_eq!(create().await.due.len(), 1, "the new trigger fires at once");
    workflows::delete(pool, workflow).await.unwrap();
    assert!(
        create().await.due.is_empty(),
        "a deleted workflow's triggers are gone"
    );
}

#[tokio::test]
async fn concurrent_saves_of_triggers_on_one_module_all_succeed() {
    let store = Store::new().await;
    let pool = &store.pool;
    let module = module(pool).await;
    let saves = (0..8).map(|_| {
        workflow(
            pool,
            json!([{"on": "record.created", "moduleID": module},
                   {"on": "record.updated", "moduleID": module}]),
        )
    });
    let saved = futures_util::future::join_all(saves).await;
    assert_eq!(saved.len(), 8);
    assert_eq!(count(pool, "SELECT triggers_stamp FROM modules").await, 8);
}
