//! Each module's records live in a partition of their own, with one index
//! per queryable field, built to match the SQL the query language emits, so
//! filtered and sorted listings stay fast on big modules.

use std::collections::BTreeMap;

use sqlx::PgConnection;

use crate::Result;
use crust_model::module::{Field, FieldKind};
use crust_model::Id;
use crust_query::FieldType;

/// The partition holding module `id`'s records.
pub fn partition(id: Id) -> String {
    format!("records_m{id}")
}

/// Creates the module's partition (empty, so attaching it is instant and
/// takes a lock that blocks no reads or writes of other modules).
pub async fn create(conn: &mut PgConnection, id: Id, fields: &[Field]) -> Result<()> {
    let table = partition(id);
    sqlx::query(&format!(
        "CREATE TABLE {table} (LIKE records INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::query(&format!(
        "ALTER TABLE records ATTACH PARTITION {table} FOR VALUES IN ({id})"
    ))
    .execute(&mut *conn)
    .await?;
    sync_indexes(conn, id, fields).await
}

/// Longest text (in characters) a field may hold and still be indexed: a
/// b-tree entry must stay well under Postgres's 2704-byte limit.
const MAX_INDEXED_TEXT: u32 = 500;

/// The index each field should have, by name: `(name, definition)`.
fn wanted(id: Id, fields: &[Field]) -> BTreeMap<String, String> {
    let table = partition(id);
    let mut wanted = BTreeMap::new();
    for field in fields {
        // Field names are identifiers (validated on save), so they are safe
        // inside a SQL string literal.
        let key = format!("\"values\"->'{}'", field.name);
        let definition = if field.is_multi {
            format!("USING gin (({key}) jsonb_path_ops)")
        } else {
            let accessor = match field.query_type() {
                FieldType::Bool => continue,
                FieldType::Text if !bounded_text(field) => continue,
                FieldType::Text => "crust_text",
                FieldType::Number => "crust_num",
                FieldType::Timestamp => "crust_ts",
                FieldType::Id => "crust_id",
            };
            format!("({accessor}({key}), id)")
        };
        let name = format!(
            "rx_{id}_{:08x}",
            fnv(&format!("{}:{definition}", field.name))
        );
        wanted.insert(
            name.clone(),
            // Not partial (no `WHERE deleted_at IS NULL`): Postgres ignores
            // the statistics of partial indexes when estimating, and without
            // them it guesses 0.5% for every equality, which ruins plans and
            // counts.
            format!("CREATE INDEX {name} ON {table} {definition}"),
        );
    }
    wanted
}

fn bounded_text(field: &Field) -> bool {
    match field.kind {
        FieldKind::Select | FieldKind::Email | FieldKind::DateTime => true,
        _ => field.max_length.is_some_and(|max| max <= MAX_INDEXED_TEXT),
    }
}

/// 32-bit FNV-1a, for short stable index names.
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    })
}

/// Makes the partition's field indexes match `fields`: drops those of
/// removed or changed fields, builds the missing ones. Building locks only
/// this module's partition against writes, for as long as it takes.
pub async fn sync_indexes(conn: &mut PgConnection, id: Id, fields: &[Field]) -> Result<()> {
    let wanted = wanted(id, fields);
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes
         WHERE schemaname = current_schema() AND tablename = $1 AND indexname LIKE 'rx\\_%'",
    )
    .bind(partition(id))
    .fetch_all(&mut *conn)
    .await?;
    for name in existing.iter().filter(|name| !wanted.contains_key(*name)) {
        sqlx::query(&format!("DROP INDEX {name}"))
            .execute(&mut *conn)
            .await?;
    }
    for (name, create) in &wanted {
        if !existing.contains(name) {
            sqlx::query(create).execute(&mut *conn).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(spec: serde_json::Value) -> Field {
        serde_json::from_value(spec).unwrap()
    }

    #[test]
    fn queryable_fields_get_an_index_that_matches_the_compiled_sql() {
        let fields = vec![
            field(json!({"name": "amount", "kind": "Number"})),
            field(json!({"name": "notes", "kind": "String"})),
            field(json!({"name": "code", "kind": "String", "maxLength": 20})),
            field(json!({"name": "done", "kind": "Bool"})),
            field(json!({"name": "tags", "kind": "String", "isMulti": true})),
        ];
        let wanted: Vec<String> = wanted(Id(4), &fields).into_values().collect();
        assert_eq!(wanted.len(), 3, "{wanted:?}");
        assert!(wanted
            .iter()
            .any(|sql| sql.ends_with("ON records_m4 (crust_num(\"values\"->'amount'), id)")));
        assert!(wanted
            .iter()
            .any(|sql| sql.contains("(crust_text(\"values\"->'code'), id)")));
        assert!(wanted
            .iter()
            .any(|sql| sql.contains("USING gin ((\"values\"->'tags') jsonb_path_ops)")));
    }
}
