//! `record.create`, `record.update`, `record.delete` and `record.query`:
//! record operations through `crust_store`, with the same validation
//! (and messages) as the API. Scripts call the same operations.
//!
//! Each operation acts with the permissions of the job's creator (its
//! `creator_roles`, resolved the way the api resolves a token's roles): a
//! viewer's job cannot write or delete records, and a denied operation fails
//! the task naming the permission. A job without creator roles (a system
//! job, created outside the api) is not restricted.

use serde_json::{json, Map, Value};
use sqlx::PgPool;

use super::{TaskContext, TaskError};
use crust_model::access::{Operation, Resource};
use crust_model::paging::Paging;
use crust_model::task::{
    RecordCreateParams, RecordDeleteParams, RecordQueryParams, RecordUpdateParams,
    MAX_QUERY_PER_PAGE,
};
use crust_model::trigger::MAX_TRIGGER_DEPTH;
use crust_model::Id;
use crust_store::config::QueryLimits;
use crust_store::records::{Actor, Written};
use crust_store::{modules, records};

use crate::logs::JobLogger;

/// Creates a record as the job's user; the output is the record.
pub async fn create(params: RecordCreateParams, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    create_record(&writer(ctx), params.module_id, params.fields)
        .await
        .map_err(TaskError::Failed)
}

/// Updates a record; the output is the record after the change.
pub async fn update(params: RecordUpdateParams, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    update_record(
        &writer(ctx),
        params.module_id,
        params.record_id,
        params.fields,
    )
    .await
    .map_err(TaskError::Failed)
}

/// Deletes a record; the output is the record as it was.
pub async fn delete(params: RecordDeleteParams, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    delete_record(&writer(ctx), params.module_id, params.record_id)
        .await
        .map_err(TaskError::Failed)
}

/// Lists records; the output is `{"count": total, "records": [...]}`.
pub async fn query(params: RecordQueryParams, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    query_records(
        &ctx.env.pool,
        ctx.roles,
        params.module_id,
        &params.filter,
        &params.sort,
        params.page,
        params.per_page,
    )
    .await
    .map_err(TaskError::Failed)
}

/// Checks that a job whose creator holds `roles` may do `operation` to the
/// records of `module_id` (`None`: a system job, always).
pub async fn permit(
    pool: &PgPool,
    roles: Option<&[String]>,
    module_id: Id,
    operation: Operation,
) -> Result<(), String> {
    let Some(roles) = roles else {
        return Ok(());
    };
    let permissions = crust_store::roles::permissions(pool, roles)
        .await
        .map_err(|err| err.to_string())?;
    permissions
        .check(Resource::Records(module_id), operation)
        .map_err(|denied| {
            format!(
                "{denied} (the job acts for its creator, whose roles are [{}])",
                roles.join(", ")
            )
        })
}

/// Creates a record in `module_id` for `user`, as JSON.
/// A job's task writing records: its writes carry the job's lineage (so
/// triggers can cut loops) and show as `{jobID, task}` in revisions.
#[derive(Clone)]
pub struct Writer {
    pub pool: PgPool,
    pub actor: Actor,
    pub log: JobLogger,
    /// The job creator's roles, whose permissions each write needs
    /// (`None`: a system job).
    pub roles: Option<Vec<String>>,
}

pub(crate) fn writer(ctx: &TaskContext<'_>) -> Writer {
    Writer {
        pool: ctx.env.pool.clone(),
        actor: Actor::Job {
            job_id: ctx.job_id,
            task: ctx.task_name.to_owned(),
            user: ctx.user,
        },
        log: ctx.log.clone(),
        roles: ctx.roles.map(<[String]>::to_vec),
    }
}

impl Writer {
    /// The record of a write, after logging the triggers it did not follow
    /// because this job is at the end of a chain of triggered jobs.
    async fn finish(&self, written: Written) -> Result<Value, String> {
        if written.not_followed > 0 {
            let task = match &self.actor {
                Actor::Job { task, .. } => Some(task.as_str()),
                Actor::User(_) => None,
            };
            self.log
                .log(
                    "warn",
                    task,
                    format!(
                        "record {} of module {}: {} trigger(s) not followed: this job is at \
                         depth {MAX_TRIGGER_DEPTH} of a chain of triggered jobs",
                        written.record.id, written.record.module_id, written.not_followed
                    ),
                    None,
                )
                .await;
        }
        to_json(&written.record)
    }
}

/// Creates a record in `module_id` for the job's user, as JSON.
pub async fn create_record(
    writer: &Writer,
    module_id: Id,
    fields: Map<String, Value>,
) -> Result<Value, String> {
    permit(
        &writer.pool,
        writer.roles.as_deref(),
        module_id,
        Operation::Write,
    )
    .await?;
    let written = records::create(&writer.pool, module_id, &writer.actor, fields)
        .await
        .map_err(|err| err.to_string())?;
    writer.finish(written).await
}

/// Updates record `record_id` of `module_id`, as JSON.
pub async fn update_record(
    writer: &Writer,
    module_id: Id,
    record_id: Id,
    fields: Map<String, Value>,
) -> Result<Value, String> {
    permit(
        &writer.pool,
        writer.roles.as_deref(),
        module_id,
        Operation::Write,
    )
    .await?;
    let written = records::update(&writer.pool, module_id, record_id, &writer.actor, fields)
        .await
        .map_err(|err| err.to_string())?;
    writer.finish(written).await
}

/// Deletes record `record_id` of `module_id`; returns it as it was.
pub async fn delete_record(writer: &Writer, module_id: Id, record_id: Id) -> Result<Value, String> {
    permit(
        &writer.pool,
        writer.roles.as_deref(),
        module_id,
        Operation::Delete,
    )
    .await?;
    let written = records::delete(&writer.pool, module_id, record_id, &writer.actor)
        .await
        .map_err(|err| err.to_string())?;
    writer.finish(written).await
}

/// A page of `module_id`'s records: `{"count": total, "records": [...]}`.
pub async fn query_records(
    pool: &PgPool,
    roles: Option<&[String]>,
    module_id: Id,
    filter: &str,
    sort: &str,
    page: Option<i64>,
    per_page: Option<i64>,
) -> Result<Value, String> {
    permit(pool, roles, module_id, Operation::Read).await?;
    let paging = Paging::new(page, per_page, MAX_QUERY_PER_PAGE).map_err(|err| err.to_string())?;
    let module = modules::get(pool, module_id)
        .await
        .map_err(|err| err.to_string())?;
    let (found, count) = records::list(
        pool,
        &module,
        paging,
        filter,
        sort,
        // The api's defaults: a workflow's query is bounded like a client's.
        &QueryLimits::default(),
    )
    .await
    .map_err(|err| err.to_string())?;
    Ok(json!({ "count": count.value, "records": to_json(&found)? }))
}

fn to_json(value: &impl serde::Serialize) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|err| format!("cannot show the record: {err}"))
}

#[cfg(test)]
mod tests {
    use crate::tasks::test_support::Harness;
    use serde_json::json;

    #[tokio::test]
    async fn create_update_query_and_delete() {
        let (h, module) = Harness::with_db().await;
        let created = h
            .run(
                "record.create",
                json!({"moduleID": module.to_string(), "fields": {"name": "Ada", "email": "ada@example.com", "score": 3}}),
            )
            .await
            .unwrap();
        assert_eq!(created["moduleID"], json!(module.to_string()));
        assert_eq!(created["userID"], json!("7"));
        assert_eq!(
            created["fields"],
            json!([{"name": "name", "value": "Ada"}, {"name": "email", "value": "ada@example.com"}, {"name": "score", "value": 3}])
        );
        let id = created["recordID"].as_str().unwrap().to_owned();

        let created2 = h
            .run(
                "record.create",
                json!({"moduleID": module.get(), "fields": [{"name": "name", "value": "Bob"}]}),
            )
            .await
            .unwrap();
        assert_eq!(
            created2["fields"],
            json!([{"name": "name", "value": "Bob"}])
        );

        let updated = h
            .run(
                "record.update",
                json!({"moduleID": module.get(), "recordID": id, "fields": {"score": 5}}),
            )
            .await
            .unwrap();
        assert_eq!(updated["fields"][2], json!({"name": "score", "value": 5}));
        assert!(updated["updatedAt"].is_string());

        let found = h
            .run(
                "record.query",
                json!({"moduleID": module.get(), "filter": "score > 4", "perPage": 10}),
            )
            .await
            .unwrap();
        assert_eq!(found["count"], json!(1));
        assert_eq!(found["records"][0]["recordID"], json!(id));
        let all = h
            .run(
                "record.query",
                json!({"moduleID": module.get(), "sort": "name DESC"}),
            )
            .await
            .unwrap();
        assert_eq!(all["count"], json!(2));
        assert_eq!(all["records"][0]["fields"][0]["value"], json!("Bob"));

        let deleted = h
            .run(
                "record.delete",
                json!({"moduleID": module.get(), "recordID": id}),
            )
            .await
            .unwrap();
        // The output is the record as it was, as the README's table says.
        assert_eq!(deleted["recordID"], json!(id));
        assert_eq!(deleted["fields"], updated["fields"]);
        let err = h
            .run(
                "record.delete",
                json!({"moduleID": module.get(), "recordID": id}),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("record {id} does not exist in module {module}")
        );
    }

    #[tokio::test]
    async fn validation_errors_fail_the_task_with_the_api_message() {
        let (h, module) = Harness::with_db().await;
        let err = h
            .run(
                "record.create",
                json!({"moduleID": module.get(), "fields": {"name": "A", "email": "nope"}}),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "field \"email\": not a valid email address"
        );
        let err = h
            .run(
                "record.create",
                json!({"moduleID": module.get(), "fields": {"email": "a@b.io"}}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "field \"name\": is required");
        let err = h
            .run(
                "record.create",
                json!({"moduleID": "999", "fields": {"name": "A"}}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "module 999 does not exist");
        let err = h
            .run(
                "record.query",
                json!({"moduleID": module.get(), "filter": "nope = 1"}),
            )
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("filter: "), "{err}");
    }
}
