//! `record.import`: imports the CSV upload stored with this job, in
//! batches. Each row is checked as a record create (unknown columns were
//! refused when the upload was accepted); a bad row is one log line naming
//! its CSV line and field and is counted, not imported. Each batch's
//! records commit together with the import's progress, so a run that took
//! over from a lost worker skips the lines already done. The output is
//! `{created, failed, dryRun}`.

use std::collections::{HashMap, HashSet};

use csv::{ByteRecord, ReaderBuilder};
use serde_json::{json, Map, Value};

use super::{TaskContext, TaskError};
use crust_model::access::Operation;
use crust_model::module::{FieldKind, Module};
use crust_model::record::check_values;
use crust_model::task::RecordImportParams;
use crust_store::imports::{self, Batch, Import};
use crust_store::{modules, records};

/// Rows checked and committed per batch.
const BATCH_ROWS: usize = 1_000;

/// Runs the import.
pub async fn run(params: RecordImportParams, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    let pool = &ctx.env.pool;
    let failed = |err: crust_store::Error| TaskError::failed(err.to_string());
    let mut import = imports::get(pool, params.import_id).await.map_err(failed)?;
    if import.job_id != Some(ctx.job_id) {
        return Err(TaskError::failed(format!(
            "import {} belongs to another job; an import runs only as the job its upload made",
            import.id
        )));
    }
    // The job acts for whoever uploaded: a dry run reads, an import writes.
    let operation = if import.dry_run {
        Operation::Read
    } else {
        Operation::Write
    };
    super::record::permit(pool, ctx.roles, import.module_id, operation)
        .await
        .map_err(TaskError::Failed)?;
    let module = modules::get(pool, import.module_id).await.map_err(failed)?;
    if import.done_line > 0 {
        ctx.log(
            "info",
            format!(
                "continuing after line {} ({} created, {} failed so far)",
                import.done_line, import.created, import.failed
            ),
            None,
        )
        .await;
    }
    let mut reader = Rows::default();
    let mut header: Option<Vec<Column>> = None;
    let mut batch = Batch::default();
    // The CSV line of each of `batch.records`.
    let mut lines = Vec::new();
    let mut rows_in_batch = 0;
    let mut seq = 0;
    loop {
        seq += 1;
        let chunk = imports::chunk(pool, import.id, seq).await.map_err(failed)?;
        let last = chunk.is_none();
        let rows = reader.push(chunk.as_deref().unwrap_or_default(), last);
        for (line, row) in rows {
            let Some(columns) = &header else {
                header = Some(columns_of(&module, &row)?);
                continue;
            };
            if line <= import.done_line {
                continue;
            }
            batch.done_line = line;
            rows_in_batch += 1;
            match record_of(&module, columns, &row) {
                Ok(values) => {
                    batch.records.push(values);
                    lines.push(line);
                }
                Err(reason) => {
                    batch.failed += 1;
                    ctx.log("warn", format!("line {line}: {reason}"), None)
                        .await;
                }
            }
            if rows_in_batch >= BATCH_ROWS {
                commit(ctx, &module, &mut import, &mut batch, &mut lines).await?;
                rows_in_batch = 0;
            }
        }
        if last {
            break;
        }
    }
    if rows_in_batch > 0 {
        commit(ctx, &module, &mut import, &mut batch, &mut lines).await?;
    }
    if header.is_none() {
        return Err(TaskError::failed(
            "the upload is empty (or was imported already)",
        ));
    }
    imports::finish(pool, import.id).await.map_err(failed)?;
    let verb = if import.dry_run {
        "would be created"
    } else {
        "created"
    };
    ctx.log(
        "info",
        format!(
            "import done: {} records {verb}, {} rows failed",
            import.created, import.failed
        ),
        None,
    )
    .await;
    Ok(json!({"created": import.created, "failed": import.failed, "dryRun": import.dry_run}))
}

/// Checks the batch's references, commits it with the progress, logs the
/// progress and starts the next batch.
async fn commit(
    ctx: &TaskContext<'_>,
    module: &Module,
    import: &mut Import,
    batch: &mut Batch,
    lines: &mut Vec<i64>,
) -> Result<(), TaskError> {
    if ctx.cancel.is_cancelled() {
        return Err(TaskError::cancelled());
    }
    drop_dangling_references(ctx, module, batch, lines).await?;
    let from = import.done_line;
    let moved = imports::commit_batch(&ctx.env.pool, import, from, batch)
        .await
        .map_err(|err| TaskError::failed(err.to_string()))?;
    if !moved {
        return Err(TaskError::failed(
            "another run of this import moved on meanwhile; this one stops",
        ));
    }
    import.done_line = batch.done_line;
    import.created += batch.records.len() as i64;
    import.failed += batch.failed;
    ctx.log(
        "info",
        format!(
            "up to line {}: {} records {}, {} rows failed",
            import.done_line,
            import.created,
            if import.dry_run { "checked" } else { "created" },
            import.failed
        ),
        None,
    )
    .await;
    *batch = Batch::default();
    lines.clear();
    Ok(())
}

/// Fails the rows of a batch whose Record fields name records that do not
/// exist (one query per referenced module, not one per row).
async fn drop_dangling_references(
    ctx: &TaskContext<'_>,
    module: &Module,
    batch: &mut Batch,
    lines: &mut Vec<i64>,
) -> Result<(), TaskError> {
    let reference_fields: Vec<_> = module
        .fields
        .iter()
        .filter(|field| field.kind == FieldKind::Record)
        .filter_map(|field| Some((field.name.clone(), field.referenced_module()?)))
        .collect();
    if reference_fields.is_empty() {
        return Ok(());
    }
    let mut wanted: HashMap<crust_model::Id, Vec<i64>> = HashMap::new();
    for values in &batch.records {
        for (name, target) in &reference_fields {
            wanted
                .entry(*target)
                .or_default()
                .extend(ids_in(values.get(name)));
        }
    }
    let mut live: HashMap<crust_model::Id, HashSet<i64>> = HashMap::new();
    for (target, ids) in wanted {
        let found = records::live_ids(&ctx.env.pool, target, &ids)
            .await
            .map_err(|err| TaskError::failed(err.to_string()))?;
        live.insert(target, found);
    }
    let mut kept = Vec::with_capacity(batch.records.len());
    let mut kept_lines = Vec::with_capacity(lines.len());
    let rows = std::mem::take(&mut batch.records);
    for (values, line) in rows.into_iter().zip(lines.iter().copied()) {
        let dangling = reference_fields.iter().find_map(|(name, target)| {
            ids_in(values.get(name))
                .find(|id| !live.get(target).is_some_and(|found| found.contains(id)))
                .map(|id| format!("field {name:?}: record {id} does not exist in module {target}"))
        });
        match dangling {
            Some(reason) => {
                batch.failed += 1;
                ctx.log("warn", format!("line {line}: {reason}"), None)
                    .await;
            }
            None => {
                kept.push(values);
                kept_lines.push(line);
            }
        }
    }
    batch.records = kept;
    *lines = kept_lines;
    Ok(())
}

/// The record IDs a Record field's value holds.
fn ids_in(value: Option<&Value>) -> impl Iterator<Item = i64> + '_ {
    let items: Vec<&Value> = match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
        None => Vec::new(),
    };
    items
        .into_iter()
        .filter_map(|item| item.as_str().and_then(|text| text.parse().ok()))
}

/// A header cell: the field it fills, or `None` for `recordID` (an
/// export's first column, ignored so an export imports as is).
type Column = Option<String>;

/// The header row's columns; an unknown name fails the import (the api
/// refuses such uploads, so this is only a module edited since).
fn columns_of(module: &Module, row: &ByteRecord) -> Result<Vec<Column>, TaskError> {
    row.iter()
        .map(|cell| {
            let name = String::from_utf8_lossy(cell)
                .trim_start_matches('\u{feff}')
                .trim()
                .to_owned();
            if name == "recordID" {
                return Ok(None);
            }
            module
                .field(&name)
                .map(|field| Some(field.name.clone()))
                .ok_or_else(|| {
                    TaskError::failed(format!(
                        "line 1: column {name:?} is not a field of module {:?}",
                        module.name
                    ))
                })
        })
        .collect()
}

/// One data row as checked record values, or why it cannot be one.
fn record_of(
    module: &Module,
    columns: &[Column],
    row: &ByteRecord,
) -> Result<Map<String, Value>, String> {
    if row.len() != columns.len() {
        return Err(format!(
            "{} cells, but the header has {}",
            row.len(),
            columns.len()
        ));
    }
    let mut input = Map::new();
    for (column, cell) in columns.iter().zip(row.iter()) {
        let Some(name) = column else { continue };
        let text =
            std::str::from_utf8(cell).map_err(|_| format!("field {name:?}: not UTF-8 text"))?;
        if text.contains('\0') {
            return Err(format!("field {name:?}: text must not contain NUL"));
        }
        let field = module
            .field(name)
            .ok_or_else(|| format!("field {name:?}: unknown"))?;
        if let Some(value) = crust_model::csv::value_of(field, text) {
            input.insert(name.clone(), value);
        }
    }
    check_values(module, input, None)
        .map(|checked| checked.values)
        .map_err(|err| err.to_string())
}

/// CSV rows out of an upload that arrives in pieces: a row cut by the end
/// of a piece waits for the next one.
#[derive(Default)]
struct Rows {
    /// Bytes not yet turned into whole rows.
    pending: Vec<u8>,
    /// Lines before `pending` starts.
    lines_before: u64,
}

impl Rows {
    /// Appends `data` and returns the rows now complete, each with the
    /// CSV line it starts on (1 = the header). With `last`, whatever is
    /// left is the final row.
    fn push(&mut self, data: &[u8], last: bool) -> Vec<(i64, ByteRecord)> {
        self.pending.extend_from_slice(data);
        let mut reader = ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(self.pending.as_slice());
        let mut rows = Vec::new();
        let mut record = ByteRecord::new();
        // Where the last row read began: unless this is the end, that row
        // may be cut off, so it is read again with the next piece.
        let mut kept_from = (0, 0);
        loop {
            let start = reader.position().clone();
            match reader.read_byte_record(&mut record) {
                Ok(true) => {
                    kept_from = (start.byte() as usize, start.line());
                    rows.push(((self.lines_before + start.line()) as i64, record.clone()));
                }
                // A malformed row (only possible for bad UTF-8 in a way the
                // byte reader refuses) ends what this piece can give.
                Ok(false) | Err(_) => break,
            }
        }
        if last {
            self.pending.clear();
            return rows;
        }
        // Hold the last row back: it may continue in the next piece.
        if rows.pop().is_some() {
            let (byte, line) = kept_from;
            self.pending.drain(..byte);
            self.lines_before += line - 1;
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::Rows;

    fn cells(rows: &[(i64, csv::ByteRecord)]) -> Vec<(i64, Vec<String>)> {
        rows.iter()
            .map(|(line, row)| {
                (
                    *line,
                    row.iter()
                        .map(|cell| String::from_utf8_lossy(cell).into_owned())
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn rows_cut_between_pieces_are_joined_and_keep_their_line_numbers() {
        let text = "name,notes\nann,\"two\nlines\"\nbob,plain\n";
        for cut in 0..text.len() {
            let mut reader = Rows::default();
            let mut rows = reader.push(&text.as_bytes()[..cut], false);
            rows.extend(reader.push(&text.as_bytes()[cut..], false));
            rows.extend(reader.push(&[], true));
            assert_eq!(
                cells(&rows),
                vec![
                    (1, vec!["name".into(), "notes".into()]),
                    (2, vec!["ann".into(), "two\nlines".into()]),
                    (4, vec!["bob".into(), "plain".into()]),
                ],
                "cut at {cut}"
            );
        }
    }
}
