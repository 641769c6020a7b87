//! Records as CSV: `GET /module/{moduleID}/record/export` streams a module's
//! records (constant memory for any number), and
//! `POST /module/{moduleID}/record/import` stores an upload with the job
//! that imports it (the worker's `record.import` task) and answers 202.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::mpsc;

use super::ApiResult;
use crate::access::Access;
use crate::error::ApiError;
use crate::extract::{Envelope, Ids, Query};
use crate::AppState;
use crust_model::module::Module;
use crust_model::Id;
use crust_store::{imports, modules, records};

/// Longest an export may stream (a statement timeout in Postgres).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Bytes of CSV gathered before they are sent on.
const EXPORT_PIECE: usize = 64 * 1024;
/// Pieces waiting for a slow client, at most: the export then waits.
const EXPORT_QUEUE: usize = 8;
/// Largest upload accepted for an import.
pub const IMPORT_MAX_BYTES: u64 = 256 << 20;

/// `?filter=&sort=` of an export.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// Filter expression, as for listing records.
    #[serde(default)]
    pub filter: String,
    /// Sort list, as for listing records; default: oldest first.
    #[serde(default)]
    pub sort: String,
}

/// `?dryRun=true` of an import.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImportQuery {
    /// Check every row, create nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// The answer to an import: the job that runs it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportStarted {
    #[serde(rename = "jobID")]
    #[schema(value_type = String, example = "42")]
    pub job_id: Id,
}

/// Export a module's records as CSV: a header of `recordID` and the field
/// names, then one row per live record matching `filter`, in `sort` order;
/// multi-value fields join their values with `;`. Streamed as read, in one
/// snapshot of the database.
#[utoipa::path(get, path = "/module/{moduleID}/record/export", tag = "records",
    params(("moduleID" = String, Path, description = "Module ID"), ExportQuery),
    responses((status = 200, description = "The records as CSV", content_type = "text/csv", body = String),
              (status = 404, body = super::ErrorBody)))]
pub async fn export_records(
    State(state): State<AppState>,
    Ids([module_id]): Ids<1>,
    Query(query): Query<ExportQuery>,
) -> ApiResult<Response> {
    let module = modules::get(&state.pool, module_id).await?;
    let compiled = records::export_query(&module, &query.filter, &query.sort)?;
    let (pieces, received) = mpsc::channel::<Result<Bytes, std::io::Error>>(EXPORT_QUEUE);
    let pool = state.pool.clone();
    tokio::spawn(async move {
        let mut out = Vec::with_capacity(EXPORT_PIECE * 2);
        write_row(
            &mut out,
            std::iter::once("recordID").chain(module.fields.iter().map(|f| f.name.as_str())),
        );
        let result = records::export(&pool, &compiled, EXPORT_TIMEOUT, |id, values| {
            write_record(&mut out, &module, id, &values);
            let full = (out.len() >= EXPORT_PIECE).then(|| Bytes::from(std::mem::take(&mut out)));
            let pieces = pieces.clone();
            async move {
                match full {
                    Some(piece) => pieces.send(Ok(piece)).await.is_ok(),
                    None => true,
                }
            }
        })
        .await;
        match result {
            Ok(_) => {
                let _ = pieces.send(Ok(Bytes::from(out))).await;
            }
            Err(err) => {
                // The client sees a cut-off response, never a short file
                // that looks complete.
                tracing::error!(error = %err, "export failed part-way");
                let _ = pieces
                    .send(Err(std::io::Error::other("export failed")))
                    .await;
            }
        }
    });
    let body = futures_util::stream::unfold(received, |mut received| async move {
        received.recv().await.map(|piece| (piece, received))
    });
    let mut response = Body::from_stream(body.boxed()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) =
        HeaderValue::from_str(&format!("attachment; filename=\"module-{module_id}.csv\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// One record as a CSV row, in the module's field order.
fn write_record(out: &mut Vec<u8>, module: &Module, id: Id, values: &Map<String, Value>) {
    let id = id.to_string();
    let cells: Vec<String> = module
        .fields
        .iter()
        .map(|field| crust_model::csv::cell(values.get(&field.name)))
        .collect();
    write_row(
        out,
        std::iter::once(id.as_str()).chain(cells.iter().map(String::as_str)),
    );
}

/// Appends one CSV row (RFC 4180: a cell with a comma, quote or line break
/// is quoted, its quotes doubled; rows end with CRLF).
fn write_row<'a>(out: &mut Vec<u8>, cells: impl Iterator<Item = &'a str>) {
    for (index, cell) in cells.enumerate() {
        if index > 0 {
            out.push(b',');
        }
        if cell.contains([',', '"', '\n', '\r']) {
            out.push(b'"');
            out.extend_from_slice(cell.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        } else {
            out.extend_from_slice(cell.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Import records from CSV (`Content-Type: text/csv`): the first row names
/// the fields (an export's `recordID` column is ignored), each further row
/// becomes a record, checked as a record create. The upload is stored with
/// its job and the job answered at once (202); a worker imports it in
/// batches, each bad row a log line naming its line and field, and the job's
/// output is `{created, failed}`. With `dryRun=true` rows are only checked.
#[utoipa::path(post, path = "/module/{moduleID}/record/import", tag = "records",
    params(("moduleID" = String, Path, description = "Module ID"), ImportQuery),
    request_body(content = String, content_type = "text/csv", description = "CSV with a header row of field names"),
    responses((status = 202, description = "Accepted: the job that imports it", body = inline(crate::extract::Envelope<ImportStarted>)),
              (status = 400, body = super::ErrorBody), (status = 404, body = super::ErrorBody),
              (status = 408, body = super::ErrorBody), (status = 413, body = super::ErrorBody),
              (status = 415, body = super::ErrorBody)))]
pub async fn import_records(
    State(state): State<AppState>,
    access: Access,
    Ids([module_id]): Ids<1>,
    Query(query): Query<ImportQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let is_csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("text/csv"));
    if !is_csv {
        return Err(ApiError::UnsupportedMediaType(
            "send the CSV with Content-Type: text/csv".into(),
        ));
    }
    let module = modules::get(&state.pool, module_id).await?;
    let mut upload = imports::begin(&state.pool, module_id, access.actor(), query.dry_run).await?;
    let mut stream = body.into_data_stream();
    let mut pending: Vec<u8> = Vec::with_capacity(imports::CHUNK_BYTES);
    let mut header_checked = false;
    let mut total: u64 = 0;
    loop {
        let next = tokio::time::timeout(state.read_timeout, stream.next())
            .await
            .map_err(|_| {
                ApiError::RequestTimeout(format!(
                    "the upload stalled for {} s",
                    state.read_timeout.as_secs()
                ))
            })?;
        let Some(piece) = next else { break };
        let piece = piece.map_err(|err| ApiError::bad_request(format!("body: {err}")))?;
        total += piece.len() as u64;
        if total > IMPORT_MAX_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "an import takes at most {IMPORT_MAX_BYTES} bytes"
            )));
        }
        pending.extend_from_slice(&piece);
        if !header_checked {
            if let Some(end) = pending.iter().position(|b| *b == b'\n') {
                check_header(&module, &pending[..end])?;
                header_checked = true;
            }
        }
        while pending.len() >= imports::CHUNK_BYTES {
            let rest = pending.split_off(imports::CHUNK_BYTES);
            upload.chunk(&pending).await?;
            pending = rest;
        }
    }
    if !header_checked {
        check_header(&module, &pending)?;
    }
    upload.chunk(&pending).await?;
    let trace_parent = crust_runtime::telemetry::current_traceparent();
    let created = upload.finish(trace_parent.as_deref()).await?;
    crust_runtime::metrics::metrics().jobs_created.inc();
    state
        .queue
        .run(created.job.id, &created.job.queue, trace_parent);
    Ok((
        StatusCode::ACCEPTED,
        Json(Envelope {
            response: ImportStarted {
                job_id: created.job.id,
            },
        }),
    )
        .into_response())
}

/// The header row must name fields of the module (or `recordID`), each once.
fn check_header(module: &Module, line: &[u8]) -> Result<(), ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line);
    let mut row = csv::StringRecord::new();
    let read = reader
        .read_record(&mut row)
        .map_err(|err| ApiError::bad_request(format!("line 1: {err}")))?;
    if !read || row.iter().all(|cell| cell.trim().is_empty()) {
        return Err(ApiError::bad_request(
            "line 1: the header row naming the fields is missing",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for cell in &row {
        // A byte-order mark (spreadsheets write one) is not part of the name.
        let name = cell.trim_start_matches('\u{feff}').trim();
        if name != "recordID" && module.field(name).is_none() {
            let names: Vec<&str> = module.fields.iter().map(|f| f.name.as_str()).collect();
            return Err(ApiError::bad_request(format!(
                "line 1: column {name:?} is not a field of module {:?} (its fields: {})",
                module.name,
                names.join(", ")
            )));
        }
        if !seen.insert(name) {
            return Err(ApiError::bad_request(format!(
                "line 1: column {name:?} appears twice"
            )));
        }
    }
    Ok(())
}

/// CSV routes (before the record routes, so `export` is not read as an ID).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/module/{moduleID}/record/export", get(export_records))
        .route("/module/{moduleID}/record/import", post(import_records))
}

#[cfg(test)]
mod tests {
    use super::write_row;

    #[test]
    fn cells_are_quoted_only_when_they_must_be() {
        let mut out = Vec::new();
        write_row(
            &mut out,
            ["a", "b,c", "say \"hi\"", "two\nlines", ""].into_iter(),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n"
        );
    }
}
