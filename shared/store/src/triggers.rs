//! Record-event triggers: saving a workflow's triggers (checked against
//! their modules), and the per-module statements that write a record, its
//! revision and its triggered jobs in one go.
//!
//! Invariants:
//! - A triggered job is inserted by the very statement that writes the
//!   record (data-modifying CTEs), so it exists iff the write committed.
//! - Each process compiles a module's triggers once per trigger set
//!   ([`TriggerCache`]): filters are compiled to SQL then, not per write.
//!   A set is valid for one module version and one `modules.triggers_stamp`,
//!   which every workflow save touching the module's triggers bumps; the
//!   write statement checks both, so a stale set makes it write nothing and
//!   the caller reloads and tries again.
//! - Loops are cut by lineage: a write made by a job does not fire its own
//!   workflow's triggers, and a job at depth [`MAX_TRIGGER_DEPTH`] starts
//!   no further job (the write reports how many it did not follow).
//! - Debounce: a queued, unpublished, delayed job per (workflow, record)
//!   (`jobs.debounce_key`) takes the latest record and keeps its `startAt`
//!   and its first `previous`. The record row is locked by the write, so two
//!   events of one record never race; the scheduler's release locks the job
//!   row and marks it published, and the write's `FOR UPDATE` re-checks
//!   `published_at` after waiting, so an event after the release starts a
//!   new window instead of editing a job already sent.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor};

use crate::{modules, Error, Result};
use crust_model::module::Module;
use crust_model::trigger::{RecordEvent, Trigger, MAX_TRIGGER_DEPTH};
use crust_model::Id;
use crust_query::{compile_filter, Params};

/// Replaces workflow `workflow_id`'s triggers (in its saving transaction),
/// after checking each against its module: it must exist, `fields` must be
/// its fields and `filter` must compile against it (errors name
/// `triggers[i].<key>`). Bumps the trigger stamp of every module that had
/// or has one of them, so every process recompiles its trigger set.
pub(crate) async fn save(
    tx: &mut PgConnection,
    workflow_id: Id,
    triggers: &[Trigger],
) -> Result<()> {
    // Lock every module whose triggers change, in ID order, before reading
    // any: two saves touching one module then queue instead of deadlocking
    // on the stamp update below.
    let old: Vec<i64> =
        sqlx::query_scalar("SELECT module_id FROM workflow_triggers WHERE workflow_id = $1")
            .bind(workflow_id)
            .fetch_all(&mut *tx)
            .await?;
    let mut touched: BTreeSet<i64> = old.into_iter().collect();
    touched.extend(triggers.iter().map(|t| t.module_id.get()));
    let touched: Vec<i64> = touched.into_iter().collect();
    sqlx::query("SELECT id FROM modules WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
        .bind(&touched)
        .execute(&mut *tx)
        .await?;
    for (index, trigger) in triggers.iter().enumerate() {
        let at = format!("triggers[{index}]");
        let module = match modules::get_for_share(&mut *tx, trigger.module_id).await {
            Ok(module) => module,
            Err(Error::Domain(crust_model::Error::NotFound(_))) => {
                return Err(Error::invalid(format!(
                    "{at}.moduleID: module {} does not exist",
                    trigger.module_id
                )))
            }
            Err(other) => return Err(other),
        };
        for name in trigger.fields.iter().flatten() {
            if module.field(name).is_none() {
                return Err(Error::invalid(format!(
                    "{at}.fields: module {} has no field {name:?}",
                    module.id
                )));
            }
        }
        if let Some(filter) = trigger.filter() {
            compile_filter(filter, &module.query_schema(), &mut Params::new())
                .map_err(|err| Error::invalid(format!("{at}.filter: {err}")))?;
        }
    }
    sqlx::query("DELETE FROM workflow_triggers WHERE workflow_id = $1")
        .bind(workflow_id)
        .execute(&mut *tx)
        .await?;
    for (index, trigger) in triggers.iter().enumerate() {
        sqlx::query(
            "INSERT INTO workflow_triggers (workflow_id, position, module_id, event, filter, fields,
                                            debounce_secs)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(workflow_id)
        .bind(index as i32)
        .bind(trigger.module_id)
        .bind(trigger.on.as_str())
        .bind(trigger.filter().unwrap_or_default())
        .bind(trigger.fields.clone().unwrap_or_default())
        .bind(trigger.debounce.unwrap_or(0) as i32)
        .execute(&mut *tx)
        .await?;
    }
    if !touched.is_empty() {
        sqlx::query("UPDATE modules SET triggers_stamp = triggers_stamp + 1 WHERE id = ANY($1)")
            .bind(&touched)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// One `workflow_triggers` row of a live workflow.
#[derive(Debug, Clone)]
struct StoredTrigger {
    workflow_id: Id,
    position: i32,
    event: String,
    filter: String,
    fields: Vec<String>,
    debounce_secs: i32,
}

/// The statement that makes one kind of write of one module, with its
/// triggers compiled in. Placeholders `$1`–`$12` are the write's own (see
/// `records::write`); the filters' values follow.
#[derive(Debug)]
pub(crate) struct Statement {
    pub sql: String,
    pub filter_params: Vec<String>,
}

/// A module's triggers, compiled into its three write statements.
#[derive(Debug)]
pub(crate) struct TriggerSet {
    pub module_version: DateTime<Utc>,
    pub stamp: i64,
    created: Statement,
    updated: Statement,
    deleted: Statement,
}

impl TriggerSet {
    /// The statement for `event`.
    pub fn statement(&self, event: RecordEvent) -> &Statement {
        match event {
            RecordEvent::Created => &self.created,
            RecordEvent::Updated => &self.updated,
            RecordEvent::Deleted => &self.deleted,
        }
    }
}

/// Compiled trigger sets by module, kept by one process (see the module
/// doc for how staleness is caught).
#[derive(Debug, Default, Clone)]
pub struct TriggerCache(Arc<RwLock<HashMap<Id, Arc<TriggerSet>>>>);

impl TriggerCache {
    /// `module`'s trigger set, from the cache if compiled for this module
    /// version, else read (through `executor`) and compiled.
    pub(crate) async fn get<'e, E: PgExecutor<'e>>(
        &self,
        executor: E,
        module: &Module,
    ) -> Result<Arc<TriggerSet>> {
        if let Some(set) = self
            .0
            .read()
            .ok()
            .and_then(|cache| cache.get(&module.id).cloned())
            .filter(|set| set.module_version == module.version())
        {
            return Ok(set);
        }
        let set = Arc::new(load(executor, module).await?);
        if let Ok(mut cache) = self.0.write() {
            cache.insert(module.id, set.clone());
        }
        Ok(set)
    }

    /// Drops a stale entry.
    pub fn forget(&self, module: Id) {
        if let Ok(mut cache) = self.0.write() {
            cache.remove(&module);
        }
    }
}

/// The stamp and one trigger (absent when the module has none).
type LoadRow = (
    i64,
    Option<Id>,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<Vec<String>>,
    Option<i32>,
);

/// Reads the stamp and the live triggers of `module` in one statement (one
/// snapshot) and compiles them.
async fn load<'e, E: PgExecutor<'e>>(executor: E, module: &Module) -> Result<TriggerSet> {
    let rows: Vec<LoadRow> = sqlx::query_as(
        "SELECT m.triggers_stamp, t.workflow_id, t.position, t.event, t.filter, t.fields,
                    t.debounce_secs
             FROM modules m
             LEFT JOIN (workflow_triggers t JOIN workflows w
                        ON w.id = t.workflow_id AND w.deleted_at IS NULL)
                    ON t.module_id = m.id
             WHERE m.id = $1 AND m.deleted_at IS NULL
             ORDER BY t.workflow_id, t.position",
    )
    .bind(module.id)
    .fetch_all(executor)
    .await?;
    let Some(stamp) = rows.first().map(|row| row.0) else {
        return Err(Error::not_found(format!(
            "module {} does not exist",
            module.id
        )));
    };
    let triggers: Vec<StoredTrigger> = rows
        .into_iter()
        .filter_map(|row| {
            Some(StoredTrigger {
                workflow_id: row.1?,
                position: row.2?,
                event: row.3?,
                filter: row.4?,
                fields: row.5?,
                debounce_secs: row.6?,
            })
        })
        .collect();
    let of = |event: RecordEvent| {
        let mine: Vec<&StoredTrigger> = triggers
            .iter()
            .filter(|t| RecordEvent::parse(&t.event) == Some(event))
            .collect();
        build(event, module, &mine)
    };
    Ok(TriggerSet {
        module_version: module.version(),
        stamp,
        created: of(RecordEvent::Created),
        updated: of(RecordEvent::Updated),
        deleted: of(RecordEvent::Deleted),
    })
}

/// How many placeholders the write itself binds (`records::write`).
pub(crate) const FIXED_PARAMS: usize = 17;

const RETURNED: &str = r#"id, module_id, user_id, "values", created_at, updated_at"#;

/// Builds the write statement of `event` with `triggers` (all of that
/// event) compiled in. A trigger whose filter no longer compiles (its module
/// changed after the workflow was saved) is left out, with a warning.
fn build(event: RecordEvent, module: &Module, triggers: &[&StoredTrigger]) -> Statement {
    let mut params = Params::new();
    params.values.resize(FIXED_PARAMS, String::new());
    let mut sql = String::from(
        "WITH m AS (SELECT id FROM modules
                    WHERE id = $1 AND deleted_at IS NULL
                      AND coalesce(updated_at, created_at) = $4 AND triggers_stamp = $5
                    FOR KEY SHARE),\n",
    );
    let returned_x = RETURNED
        .split(", ")
        .map(|c| format!("x.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let (source, revision, changes) = match event {
        RecordEvent::Created => (
            format!(
                r#"INSERT INTO records (module_id, user_id, "values") SELECT m.id, $2, $3 FROM m
                   RETURNING {RETURNED}"#
            ),
            "1".to_owned(),
            r#"(SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('old', NULL, 'new', v)), '{}')
                FROM jsonb_each(r."values") AS e(k, v))"#,
        ),
        RecordEvent::Updated => (
            format!(
                r#"UPDATE records AS x SET "values" = $3, updated_at = now() FROM m
                   WHERE x.module_id = m.id AND x.id = $6 AND x.deleted_at IS NULL
                   RETURNING {returned_x}"#
            ),
            NEXT_REVISION.to_owned(),
            r#"(SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('old', $7::jsonb -> k,
                                                                       'new', r."values" -> k)), '{}')
                FROM (SELECT jsonb_object_keys($7::jsonb) UNION SELECT jsonb_object_keys(r."values")) AS keys(k)
                WHERE ($7::jsonb -> k) IS DISTINCT FROM (r."values" -> k))"#,
        ),
        RecordEvent::Deleted => (
            format!(
                r#"UPDATE records AS x SET deleted_at = now() FROM m
                   WHERE x.module_id = m.id AND x.id = $6 AND x.deleted_at IS NULL
                   RETURNING {returned_x}"#
            ),
            NEXT_REVISION.to_owned(),
            r#"(SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('old', v, 'new', NULL)), '{}')
                FROM jsonb_each(r."values") AS e(k, v))"#,
        ),
    };
    let operation = event.operation();
    let _ = write!(
        sql,
        "r AS ({source}),
         rev AS (INSERT INTO record_revisions (module_id, record_id, revision, operation, user_id,
                                               job_id, task, changes)
                 SELECT r.module_id, r.id, {revision}, '{operation}',
                        CASE WHEN $9::bigint IS NULL THEN $2::bigint END, $9::bigint, $10::text,
                        {changes}
                 FROM r)"
    );
    let schema = module.query_schema();
    let mut due = Vec::new();
    let mut delayed = Vec::new();
    let mut matched = Vec::new();
    let name = event.as_str();
    let previous = if event == RecordEvent::Updated {
        ", 'previous', $7::jsonb"
    } else {
        ""
    };
    let job_parameters = format!(
        r#"jsonb_build_object('event', '{name}', 'moduleID', r.module_id::text,
                              'recordID', r.id::text, 'record', r."values"{previous})"#
    );
    if !triggers.is_empty() {
        sql.push_str(
            ",
         lin AS (SELECT coalesce(max(j.trigger_depth), 0) AS depth, max(j.workflow_id) AS workflow_id
                 FROM jobs j WHERE j.id = $9::bigint)",
        );
    }
    for (index, trigger) in triggers.iter().enumerate() {
        let filter = if trigger.filter.trim().is_empty() {
            "true".to_owned()
        } else {
            let mut attempt = params.clone();
            match compile_filter(&trigger.filter, &schema, &mut attempt) {
                Ok(compiled) => {
                    params = attempt;
                    compiled.unwrap_or_else(|| "true".to_owned())
                }
                Err(err) => {
                    tracing::warn!(
                        workflow.id = %trigger.workflow_id, module.id = %module.id,
                        trigger = trigger.position, error = %err,
                        "trigger filter no longer compiles against its module; trigger skipped"
                    );
                    continue;
                }
            }
        };
        // Field names were checked as identifiers of the module when the
        // workflow was saved; quoting keeps them literals all the same.
        let fields = if event == RecordEvent::Updated && !trigger.fields.is_empty() {
            trigger
                .fields
                .iter()
                .map(|f| {
                    let f = f.replace('\'', "''");
                    format!(r#"(r."values" -> '{f}') IS DISTINCT FROM ($7::jsonb -> '{f}')"#)
                })
                .collect::<Vec<_>>()
                .join(" OR ")
        } else {
            "true".to_owned()
        };
        let workflow = trigger.workflow_id;
        let _ = write!(
            sql,
            ",
         t{index} AS (SELECT w.id, w.version, w.parameters FROM r, lin, workflows w
                      WHERE w.id = {workflow} AND w.deleted_at IS NULL
                        AND w.id IS DISTINCT FROM lin.workflow_id AND ({fields}) AND ({filter}))"
        );
        matched.push(format!("(SELECT count(*) FROM t{index})"));
        if trigger.debounce_secs > 0 {
            let secs = trigger.debounce_secs;
            let _ = write!(
                sql,
                ",
         d{index} AS (UPDATE jobs AS q
                      SET parameters = t.parameters || {job_parameters}
                                       || CASE WHEN q.parameters ? 'previous'
                                               THEN jsonb_build_object('previous', q.parameters -> 'previous')
                                               ELSE '{{}}'::jsonb END,
                          workflow_version = t.version, updated_at = now()
                      FROM t{index} t, lin, r
                      WHERE lin.depth < {MAX_TRIGGER_DEPTH}
                        AND q.id = (SELECT p.id FROM jobs p
                                    WHERE p.workflow_id = {workflow} AND p.debounce_key = r.id::text
                                      AND p.status = 'queued' AND p.published_at IS NULL
                                      AND p.start_at > now()
                                    ORDER BY p.id DESC LIMIT 1 FOR UPDATE)
                      RETURNING q.id),
         j{index} AS (INSERT INTO jobs (workflow_id, workflow_version, parameters, start_at,
                                        release_at, created_by, trigger_depth, debounce_key)
                      SELECT t.id, t.version, t.parameters || {job_parameters},
                             now() + {secs} * interval '1 second', now() + {secs} * interval '1 second',
                             $2::bigint, lin.depth + 1, r.id::text
                      FROM t{index} t, lin, r
                      WHERE lin.depth < {MAX_TRIGGER_DEPTH} AND NOT EXISTS (SELECT 1 FROM d{index})
                      RETURNING id)"
            );
            delayed.push(format!("EXISTS (SELECT 1 FROM j{index})"));
        } else {
            let _ = write!(
                sql,
                ",
         j{index} AS (INSERT INTO jobs (workflow_id, workflow_version, parameters, release_at,
                                        created_by, trigger_depth)
                      SELECT t.id, t.version, t.parameters || {job_parameters}, $11::timestamptz,
                             $2::bigint, lin.depth + 1
                      FROM t{index} t, lin, r
                      WHERE lin.depth < {MAX_TRIGGER_DEPTH}
                      RETURNING id)"
            );
            due.push(format!("SELECT id FROM j{index}"));
        }
    }
    let due_sql = if due.is_empty() {
        "'{}'::bigint[]".to_owned()
    } else {
        format!("ARRAY({})", due.join(" UNION ALL "))
    };
    let matched_sql = if matched.is_empty() {
        "0::bigint".to_owned()
    } else {
        format!("({})::bigint", matched.join(" + "))
    };
    let depth_sql = if triggers.is_empty() {
        "0"
    } else {
        "(SELECT depth FROM lin)"
    };
    let mut wake = vec![format!("($12::bool AND cardinality({due_sql}) > 0)")];
    wake.extend(delayed);
    // The api request's audit entry ($13–$17, NULL outside a request),
    // inserted by the same statement so it commits with the change.
    sql.push_str(
        ",
         aud AS (INSERT INTO audit_log (user_id, method, path, resource, status)
                 SELECT $13, $14, $15, $16, $17 FROM r WHERE $13::bigint IS NOT NULL
                 RETURNING id)",
    );
    let _ = write!(
        sql,
        "
         SELECT r.id, r.module_id, r.user_id, r.\"values\", r.created_at, r.updated_at,
                (SELECT id FROM aud) AS audit_id,
                {due_sql} AS due, {matched_sql} AS matched, {depth_sql} AS writer_depth,
                CASE WHEN {} THEN pg_notify('{}', '') END AS notified
         FROM r",
        wake.join(" OR "),
        crate::jobs::RELEASE_CHANNEL
    );
    Statement {
        sql,
        filter_params: params.values.split_off(FIXED_PARAMS),
    }
}

/// A record's next revision number (its row is locked by the write).
const NEXT_REVISION: &str = "coalesce((SELECT max(v.revision) FROM record_revisions v
                                       WHERE v.module_id = r.module_id AND v.record_id = r.id), 0) + 1";
