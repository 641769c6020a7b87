//! Modules: list, read, create, edit (converting stored values when a
//! field's kind changes) and delete.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use crate::error::unique_violation;
use crate::partitions;
use crate::{Error, Result};
use crust_model::module::{Field, FieldKind, Module, ModuleInput, ModulePatch};
use crust_model::record::{normalise_value, shown_value};
use crust_model::Id;

#[derive(sqlx::FromRow)]
struct ModuleRow {
    id: Id,
    name: String,
    meta: Json<Value>,
    fields: Json<Vec<Field>>,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
}

impl From<ModuleRow> for Module {
    fn from(row: ModuleRow) -> Self {
        Module {
            id: row.id,
            name: row.name,
            meta: row.meta.0,
            fields: row.fields.0,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

const COLUMNS: &str = "id, name, meta, fields, created_at, updated_at";

fn missing(id: Id) -> Error {
    Error::not_found(format!("module {id} does not exist"))
}

fn name_taken(err: sqlx::Error, name: &str) -> Error {
    match unique_violation(&err) {
        Some("modules_live_name") => {
            Error::conflict(format!("a module named {name:?} already exists"))
        }
        _ => err.into(),
    }
}

/// Live modules, by ID; `query` keeps those whose name contains it
/// (case-insensitively).
pub async fn list(pool: &PgPool, query: Option<&str>) -> Result<Vec<Module>> {
    let pattern = query
        .map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| format!("%{}%", escape_like(q)));
    let rows: Vec<ModuleRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM modules
         WHERE deleted_at IS NULL AND ($1::text IS NULL OR name ILIKE $1)
         ORDER BY id"
    ))
    .bind(pattern)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(Module::from).collect())
}

/// Escapes LIKE wildcards so user text matches literally.
pub fn escape_like(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// One live module.
pub async fn get(pool: &PgPool, id: Id) -> Result<Module> {
    sqlx::query_as::<_, ModuleRow>(&format!(
        "SELECT {COLUMNS} FROM modules WHERE id = $1 AND deleted_at IS NULL"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .map(Module::from)
    .ok_or_else(|| missing(id))
}

/// Module definitions by ID, kept by one process for its hot paths (record
/// creates). An entry may be stale; every write made with one checks the
/// module's version in the same statement, and a miss evicts the entry.
#[derive(Debug, Default, Clone)]
pub struct ModuleCache(Arc<RwLock<HashMap<Id, Arc<Module>>>>);

impl ModuleCache {
    /// The module, from the cache or else from Postgres.
    pub async fn get(&self, pool: &PgPool, id: Id) -> Result<Arc<Module>> {
        if let Some(module) = self.0.read().ok().and_then(|cache| cache.get(&id).cloned()) {
            return Ok(module);
        }
        let module = Arc::new(get(pool, id).await?);
        if let Ok(mut cache) = self.0.write() {
            cache.insert(id, module.clone());
        }
        Ok(module)
    }

    /// Drops a stale entry.
    pub fn forget(&self, id: Id) {
        if let Ok(mut cache) = self.0.write() {
            cache.remove(&id);
        }
    }
}

/// One live module, share-locked for the rest of the transaction so it
/// cannot be deleted or changed under a record write.
pub async fn get_for_share(conn: &mut PgConnection, id: Id) -> Result<Module> {
    sqlx::query_as::<_, ModuleRow>(&format!(
        "SELECT {COLUMNS} FROM modules WHERE id = $1 AND deleted_at IS NULL FOR SHARE"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await?
    .map(Module::from)
    .ok_or_else(|| missing(id))
}

/// Checks that every Record field points at a live module (`this` is the
/// module being edited, which may reference itself).
async fn check_references(
    conn: &mut PgConnection,
    input: &ModuleInput,
    this: Option<Id>,
) -> Result<()> {
    for (index, field) in input.fields.iter().enumerate() {
        let Some(target) = field
            .referenced_module()
            .filter(|_| field.kind == FieldKind::Record)
        else {
            continue;
        };
        if Some(target) == this {
            continue;
        }
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM modules WHERE id = $1 AND deleted_at IS NULL)",
        )
        .bind(target)
        .fetch_one(&mut *conn)
        .await?;
        if !exists {
            return Err(Error::invalid(format!(
                "fields[{index}].options.moduleID: module {target} does not exist"
            )));
        }
    }
    Ok(())
}

/// Creates a module from validated input.
pub async fn create(pool: &PgPool, input: ModuleInput) -> Result<Module> {
    let mut tx = pool.begin().await?;
    check_references(&mut tx, &input, None).await?;
    let row: ModuleRow = sqlx::query_as(&format!(
        "INSERT INTO modules (name, meta, fields) VALUES ($1, $2, $3) RETURNING {COLUMNS}"
    ))
    .bind(&input.name)
    .bind(Json(input.meta.clone().unwrap_or_default()))
    .bind(Json(&input.fields))
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| name_taken(err, &input.name))?;
    partitions::create(&mut tx, row.id, &input.fields).await?;
    crate::audit::commit(tx).await?;
    Ok(row.into())
}

/// Edits a module: the keys `patch` names change (a given `fields` is the
/// whole new list), the rest stay, and the result is validated as a whole
/// under the module's row lock. Stored values of fields whose definition
/// changed are converted to the new definition in the same transaction; if
/// some cannot be, the edit is refused with a 409 naming those records.
/// Values of removed fields are dropped.
pub async fn update(pool: &PgPool, id: Id, patch: ModulePatch) -> Result<Module> {
    let mut tx = pool.begin().await?;
    let current: Module = sqlx::query_as::<_, ModuleRow>(&format!(
        "SELECT {COLUMNS} FROM modules WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .map(Module::from)
    .ok_or_else(|| missing(id))?;
    let input = patch.apply(&current).validate()?;
    check_references(&mut tx, &input, Some(id)).await?;
    convert_values(&mut tx, &current, &input.fields).await?;
    let row: ModuleRow = sqlx::query_as(&format!(
        "UPDATE modules SET name = $2, meta = $3, fields = $4, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(&input.name)
    .bind(Json(input.meta.clone().unwrap_or_default()))
    .bind(Json(&input.fields))
    .fetch_one(&mut *tx)
    .await
    .map_err(|err| name_taken(err, &input.name))?;
    partitions::sync_indexes(&mut tx, id, &input.fields).await?;
    crate::audit::commit(tx).await?;
    Ok(row.into())
}

/// How many records an edit may convert in one go before the work is split
/// into batches of this size.
const CONVERT_BATCH: i64 = 5_000;

async fn convert_values(
    conn: &mut PgConnection,
    current: &Module,
    new_fields: &[Field],
) -> Result<()> {
    let new_by_name: HashMap<&str, &Field> =
        new_fields.iter().map(|f| (f.name.as_str(), f)).collect();
    let old_by_name: HashMap<&str, &Field> = current
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f))
        .collect();
    // Fields whose stored values might no longer fit, or must go.
    let mut changed: Vec<String> = Vec::new();
    for old in &current.fields {
        match new_by_name.get(old.name.as_str()) {
            Some(new) if storage_compatible(old, new) => {}
            _ => changed.push(old.name.clone()),
        }
    }
    if changed.is_empty() {
        return Ok(());
    }
    let mut after = 0_i64;
    let mut misfits: Vec<String> = Vec::new();
    loop {
        let rows: Vec<(Id, Json<Map<String, Value>>)> = sqlx::query_as(
            r#"SELECT id, "values" FROM records
               WHERE module_id = $1 AND id > $2 AND "values" ?| $3
               ORDER BY id LIMIT $4"#,
        )
        .bind(current.id)
        .bind(after)
        .bind(&changed)
        .bind(CONVERT_BATCH)
        .fetch_all(&mut *conn)
        .await?;
        let Some((last, _)) = rows.last() else { break };
        after = last.get();
        let mut ids = Vec::new();
        let mut values = Vec::new();
        for (record_id, Json(mut stored)) in rows {
            for name in &changed {
                let Some(old_value) = stored.remove(name) else {
                    continue;
                };
                let Some(new) = new_by_name.get(name.as_str()) else {
                    continue;
                };
                // Convert from what clients saw (a date-time's RFC 3339
                // text, not its stored epoch seconds).
                let old_value = match old_by_name.get(name.as_str()) {
                    Some(old) => shown_value(old, &old_value),
                    None => old_value,
                };
                match convert_value(new, old_value) {
                    Ok(Some(value)) => {
                        stored.insert(name.clone(), value);
                    }
                    Ok(None) => {}
                    Err(reason) => {
                        if misfits.len() < 10 {
                            misfits.push(format!("record {record_id} ({name}: {reason})"));
                        }
                    }
                }
            }
            ids.push(record_id);
            values.push(Value::Object(stored));
        }
        if misfits.is_empty() {
            sqlx::query(
                r#"UPDATE records r SET "values" = v.values
                   FROM unnest($1::bigint[], $2::jsonb[]) AS v(id, values)
                   WHERE r.module_id = $3 AND r.id = v.id"#,
            )
            .bind(&ids)
            .bind(&values)
            .bind(current.id)
            .execute(&mut *conn)
            .await?;
        }
    }
    if !misfits.is_empty() {
        return Err(Error::conflict(format!(
            "the new field definitions do not fit existing values: {}; change or delete those records first",
            misfits.join(", ")
        )));
    }
    Ok(())
}

/// True when values valid for `old` are valid for `new` without a check.
fn storage_compatible(old: &Field, new: &Field) -> bool {
    old.kind == new.kind
        && old.is_multi == new.is_multi
        && old.options == new.options
        && new
            .max_length
            .is_none_or(|max| old.max_length.is_some_and(|old_max| old_max <= max))
}

/// Converts a stored value to a new definition of its field: numbers and
/// booleans become text for text kinds, a single value becomes a list (and a
/// one-element list a single value), and whatever remains must validate.
fn convert_value(field: &Field, value: Value) -> std::result::Result<Option<Value>, String> {
    let value = match (field.is_multi, value) {
        (true, Value::Array(items)) => Value::Array(items),
        (true, single) => Value::Array(vec![single]),
        (false, Value::Array(mut items)) if items.len() <= 1 => items.pop().unwrap_or(Value::Null),
        (false, other) => other,
    };
    let textual = matches!(
        field.kind,
        FieldKind::String | FieldKind::Email | FieldKind::Url | FieldKind::Select
    );
    let as_text = |v: Value| match v {
        Value::Number(n) if textual => Value::String(n.to_string()),
        Value::Bool(b) if textual => Value::String(b.to_string()),
        other => other,
    };
    let value = match value {
        Value::Array(items) => Value::Array(items.into_iter().map(as_text).collect()),
        other => as_text(other),
    };
    normalise_value(field, value)
}

/// Deletes a module. With records or a record page this is refused unless
/// `force`, which soft-deletes the records and removes the record page.
pub async fn delete(pool: &PgPool, id: Id, force: bool) -> Result<()> {
    let mut tx = pool.begin().await?;
    let found: Option<Id> = sqlx::query_scalar(
        "SELECT id FROM modules WHERE id = $1 AND deleted_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    if found.is_none() {
        return Err(missing(id));
    }
    if !force {
        let (records, pages): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT count(*) FROM records WHERE module_id = $1 AND deleted_at IS NULL),
                    (SELECT count(*) FROM pages WHERE module_id = $1)",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        if records > 0 || pages > 0 {
            let mut holds = Vec::new();
            if records > 0 {
                holds.push(format!("{records} record(s)"));
            }
            if pages > 0 {
                holds.push("a record page".to_owned());
            }
            return Err(Error::conflict(format!(
                "module {id} has {}; delete with ?force=true to remove them too",
                holds.join(" and ")
            )));
        }
    }
    sqlx::query(
        "UPDATE records SET deleted_at = now() WHERE module_id = $1 AND deleted_at IS NULL",
    )
    .bind(id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM pages WHERE module_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE modules SET deleted_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    crate::audit::commit(tx).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(spec: Value) -> Field {
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn values_convert_between_kinds_where_they_fit() {
        let text = field(json!({"name": "a", "kind": "String"}));
        assert_eq!(
            convert_value(&text, json!(12.5)).unwrap(),
            Some(json!("12.5"))
        );
        let number = field(json!({"name": "a", "kind": "Number"}));
        assert_eq!(convert_value(&number, json!("7")).unwrap(), Some(json!(7)));
        assert!(convert_value(&number, json!("seven")).is_err());
        let multi = field(json!({"name": "a", "kind": "String", "isMulti": true}));
        assert_eq!(
            convert_value(&multi, json!("x")).unwrap(),
            Some(json!(["x"]))
        );
        assert_eq!(
            convert_value(&text, json!(["x"])).unwrap(),
            Some(json!("x"))
        );
        assert!(convert_value(&text, json!(["x", "y"])).is_err());
    }

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like("50%_a\\"), "50\\%\\_a\\\\");
    }
}
