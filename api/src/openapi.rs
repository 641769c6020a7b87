//! The OpenAPI document, derived from the handlers' annotations, served at
//! `/openapi.json`, and a Swagger UI at `/docs` whose assets are compiled
//! into the binary (no network needed to browse it).

use axum::Router;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::routes::{
    audit, chart, csv, health, hook, job, module, page, queue, record, report, role, secret, ui,
    worker, workflow,
};
use crate::AppState;
use crust_model::task::TaskKind;

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Crust", description = "CRM modules, records, pages, charts, workflows and jobs.
IDs are decimal strings. Every endpoint but /healthz, /readyz, /metrics, /openapi.json and the
docs needs `Authorization: Bearer <JWT>`. Errors are `{\"error\": {\"message\": …}}`. An unknown
ID in the path is a 404; an unknown ID referenced in a body (a job's `workflowID`, a page's `selfID`
or `moduleID`, a Record field's `options.moduleID` or value) is a 400 that names the field. Edits
(`POST` to a resource's own URL) are partial: keys left out keep their value (`\"schedule\": null`
removes a workflow's schedule; in a record's `fields`, `null` clears a field). A token's `roles`
decide what it may do: a 403 names the missing permission."),
    paths(
        health::healthz, health::readyz, health::metrics,
        module::list_modules, module::create_module, module::read_module, module::edit_module, module::delete_module,
        record::list_records, record::create_record, record::read_record, record::update_record, record::delete_record,
        csv::export_records, csv::import_records,
        record::record_revisions,
        report::module_report, chart::chart_data, chart::render_chart,
        page::list_pages, page::page_tree, page::create_page, page::read_page, page::edit_page, page::reorder_pages, page::delete_page,
        chart::list_charts, chart::create_chart, chart::read_chart, chart::edit_chart, chart::delete_chart,
        workflow::list_workflows, workflow::create_workflow, workflow::read_workflow, workflow::update_workflow, workflow::delete_workflow,
        workflow::workflow_versions, workflow::pause_workflow, workflow::resume_workflow,
        hook::deliver,
        job::list_jobs, job::create_job, job::create_jobs, job::read_job, job::update_job, job::cancel_job, job::job_logs,
        job::job_steps, job::signal_job, job::rerun_job, job::cancel_jobs, job::rerun_jobs, worker::list_workers,
        queue::list_queues,
        secret::list_secrets, secret::put_secret, secret::delete_secret,
        role::list_roles, role::read_role, role::put_role, role::delete_role,
        audit::list_audit,
        ui::ui_index, ui::login_page, ui::login, ui::logout, ui::app_js, ui::app_css,
    ),
    components(schemas(
        crust_model::module::Module, crust_model::module::Field,
        crust_model::module::FieldKind, crust_model::record::Record,
        crust_model::page::Page, crust_model::chart::Chart,
        crust_model::workflow::Workflow, crust_model::workflow::Task,
        crust_model::workflow::WorkflowVersion, crust_model::workflow::Definition,
        crust_model::flow::Concurrency, crust_model::flow::RateLimit,
        crust_model::trigger::Trigger, crust_model::trigger::RecordEvent, crust_model::trigger::Revision,
        crust_model::trigger::ChangedBy, crust_model::trigger::Change,
        crust_model::job::Job, crust_model::job::JobStatus, crust_model::job::LogEntry,
        crust_model::job::SignalInput, crust_model::job::RerunInput, crust_model::step::Step,
        crust_model::step::StepStatus, job::StepList, job::LogEvent,
        crust_model::secret::Secret, crust_model::secret::SecretInput, csv::ImportStarted,
        crust_model::access::Role, crust_model::access::Rule, crust_model::access::Operation,
        crust_model::access::RoleInput, crust_model::access::AuditEntry,
        job::BulkFilter, job::BulkCount, crust_model::worker::WorkerInfo,
        queue::QueueInfo, ui::LoginForm,
        crate::routes::Success, crate::routes::SuccessMessage, crate::routes::ErrorBody, crate::routes::ErrorMessage,
    )),
    modifiers(&BearerAuth, &Conventions),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// Decimal IDs from 0 to 9223372036854775807 (`i64::MAX`, what a Postgres
/// `BIGINT` holds), leading zeros allowed: exactly what `Id::parse` accepts.
pub const ID_PATTERN: &str = "^0*([0-9]{1,18}|[1-8][0-9]{18}|9[0-1][0-9]{17}|92[0-1][0-9]{16}|\
922[0-2][0-9]{15}|9223[0-2][0-9]{14}|92233[0-6][0-9]{13}|922337[0-1][0-9]{12}|\
92233720[0-2][0-9]{10}|922337203[0-5][0-9]{9}|9223372036[0-7][0-9]{8}|92233720368[0-4][0-9]{7}|\
922337203685[0-3][0-9]{6}|9223372036854[0-6][0-9]{5}|92233720368547[0-6][0-9]{4}|\
922337203685477[0-4][0-9]{3}|9223372036854775[0-7][0-9]{2}|922337203685477580[0-6]|\
9223372036854775807)$";

/// Text without NUL, which Postgres cannot store.
const NO_NUL: &str = "^[^\\u0000]*$";

/// The routes that need no token.
const PUBLIC_PATHS: &[&str] = &[
    "/healthz",
    "/readyz",
    "/metrics",
    // The web UI: its pages and sign-in work without a token.
    "/ui/",
    "/ui/login",
    "/ui/logout",
    "/ui/app.js",
    "/ui/app.css",
];
/// Routes that take no token but a signature of their own (they answer 401
/// for a bad one, like the rest for a bad token).
const SIGNED_PATHS: &[&str] = &["/hook/{workflowID}"];

/// What the whole API has in common, added to every operation rather than
/// written on each: the `ID` schema on every path ID; the statuses the
/// layers around the handlers answer (400 for a bad path ID, query or body;
/// 401 without a valid token; 413 and 415 for bodies; 500 and 503); no
/// security on the public routes.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.schemas.insert(
            "ID".into(),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(ID_PATTERN))
                .description(Some(
                    "A decimal ID from 0 to 9223372036854775807, digits only.",
                ))
                .examples(["42"])
                .into(),
        );
        components.schemas.insert(
            "IDInput".into(),
            OneOfBuilder::new()
                .item(Ref::from_schema_name("ID"))
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(0))
                        .maximum(Some(i64::MAX)),
                )
                .description(Some("An ID, as a decimal string or a JSON integer."))
                .into(),
        );
        // IDs in bodies: a decimal string or an integer; `null` only where
        // it means "not given".
        let id_input = || RefOr::from(Ref::from_schema_name("IDInput"));
        let nullable_id_input = || {
            RefOr::T(
                OneOfBuilder::new()
                    .item(Ref::from_schema_name("IDInput"))
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .into(),
            )
        };
        let any_object = || ObjectBuilder::new().schema_type(Type::Object);
        // Both shapes the server takes; `null` means "no log entry".
        let log_entry = OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(any_object())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .description(Some(
                "A log entry to append: an object {level?, message, task?, data?} or a bare \
                 string (the message).",
            ));
        let record_fields = OneOfBuilder::new()
            .item(any_object())
            .item(
                utoipa::openapi::schema::ArrayBuilder::new()
                    .items(Ref::from_schema_name("RecordValue")),
            )
            .description(Some(
                "The values, as an object {name: value} or a list [{name, value}].",
            ));
        for (schema, property, value) in [
            ("JobUpdate", "log", RefOr::T(log_entry.into())),
            ("RecordInput", "fields", RefOr::T(record_fields.into())),
            ("JobInput", "workflowID", id_input()),
            ("JobUpdate", "workflowID", nullable_id_input()),
            ("PageInput", "selfID", id_input()),
            ("PageInput", "moduleID", id_input()),
            // Partial edits: null (or absent) keeps the current value.
            ("PagePatch", "selfID", nullable_id_input()),
            ("PagePatch", "moduleID", nullable_id_input()),
            (
                "ReorderInput",
                "pageIDs",
                RefOr::T(
                    utoipa::openapi::schema::ArrayBuilder::new()
                        .items(id_input())
                        .into(),
                ),
            ),
        ] {
            if let Some(RefOr::T(utoipa::openapi::Schema::Object(object))) =
                components.schemas.get_mut(schema)
            {
                object.properties.insert(property.to_owned(), value);
            }
        }
        if let Some(RefOr::T(utoipa::openapi::Schema::Object(task))) =
            components.schemas.get_mut("Task")
        {
            task.properties.insert(
                "kind".to_owned(),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(TaskKind::ALL.iter().map(|kind| kind.name())))
                    .description(Some("The task kind."))
                    .into(),
            );
        }
        for (name, description) in [
            (
                "BadRequest",
                "bad input: the message names the parameter or JSON path and why",
            ),
            ("Unauthorized", "no token, or a bad or expired one"),
            (
                "Forbidden",
                "the token's roles do not grant the permission the message names",
            ),
            (
                "PayloadTooLarge",
                "the body is larger than CRUST_BODY_LIMIT",
            ),
            (
                "UnsupportedMediaType",
                "the body is not sent as application/json",
            ),
            (
                "InternalError",
                "a server fault; the message carries a request id, the details are in the log",
            ),
            ("Unavailable", "Postgres is unreachable; try again shortly"),
        ] {
            let mut response = ResponseBuilder::new().description(description).content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
            if name == "Unauthorized" {
                response = response.header(
                    "WWW-Authenticate",
                    utoipa::openapi::HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::String))
                        .description(Some("`Bearer`"))
                        .build(),
                );
            }
            components
                .responses
                .insert(name.to_owned(), RefOr::T(response.build()));
        }
        for (path, item) in &mut openapi.paths.paths {
            let public = PUBLIC_PATHS.contains(&path.as_str());
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                if public {
                    // An empty list overrides the document's bearer requirement.
                    operation.security = Some(Vec::new());
                    continue;
                }
                if SIGNED_PATHS.contains(&path.as_str()) {
                    operation.security = Some(Vec::new());
                }
                conventions(operation);
            }
        }
    }
}

fn conventions(operation: &mut Operation) {
    let mut has_input = operation.request_body.is_some();
    for parameter in operation.parameters.iter_mut().flatten() {
        has_input = true;
        if parameter.name.ends_with("ID") {
            parameter.schema = Some(Ref::from_schema_name("ID").into());
        } else if let Some(RefOr::T(Schema::Object(schema))) = &mut parameter.schema {
            // Postgres text cannot hold NUL, so no query parameter may carry one.
            if schema.schema_type == Type::String.into() && schema.pattern.is_none() {
                schema.pattern = Some(NO_NUL.to_owned());
            }
        }
    }
    let responses = &mut operation.responses.responses;
    let mut add = |status: &str, name: &str| {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| Ref::from_response_name(name).into());
    };
    if has_input {
        add("400", "BadRequest");
    }
    add("401", "Unauthorized");
    add("403", "Forbidden");
    if operation.request_body.is_some() {
        add("413", "PayloadTooLarge");
        add("415", "UnsupportedMediaType");
    }
    add("500", "InternalError");
    add("503", "Unavailable");
}

/// `/openapi.json` and the `/docs` UI.
pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::routes::{job, record};
    use crust_model::paging::Paging;
    use crust_model::Id;

    fn document() -> Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    /// Every (path, method, operation) of the document.
    fn operations(doc: &Value) -> Vec<(String, String, Value)> {
        let mut found = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                found.push((path.clone(), method.clone(), operation.clone()));
            }
        }
        assert!(found.len() > 30, "{} operations", found.len());
        found
    }

    fn param<'a>(operation: &'a Value, name: &str) -> &'a Value {
        operation["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|param| param["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}"))
    }

    #[test]
    fn every_operation_lists_the_statuses_the_layers_answer() {
        let doc = document();
        for (path, method, operation) in operations(&doc) {
            let statuses = operation["responses"].as_object().unwrap();
            let has = |status: &str| statuses.contains_key(status);
            let at = format!("{method} {path}");
            if PUBLIC_PATHS.contains(&path.as_str()) {
                // Only the sign-in form judges a token (a bad one is a 401).
                assert_eq!(has("401"), at == "post /ui/login", "{at}");
                continue;
            }
            for status in ["401", "403", "500", "503"] {
                assert!(has(status), "{at} lacks {status}");
            }
            let has_body = operation.get("requestBody").is_some();
            let has_params = operation
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|params| !params.is_empty());
            if has_body || has_params {
                assert!(has("400"), "{at} lacks 400");
            }
            if has_body {
                assert!(has("413") && has("415"), "{at} lacks 413 or 415");
            }
            // An ID in the path may name nothing (a name-keyed PUT creates).
            if path.contains("ID}") {
                assert!(has("404"), "{at} lacks 404");
            }
        }
    }

    #[test]
    fn public_routes_need_no_token_and_the_rest_do() {
        let doc = document();
        assert_eq!(doc["security"], serde_json::json!([{"bearer": []}]));
        for (path, method, operation) in operations(&doc) {
            if PUBLIC_PATHS.contains(&path.as_str()) || SIGNED_PATHS.contains(&path.as_str()) {
                assert_eq!(
                    operation["security"],
                    serde_json::json!([]),
                    "{method} {path}"
                );
            } else {
                assert!(operation.get("security").is_none(), "{method} {path}");
            }
        }
    }

    #[test]
    fn every_id_parameter_has_the_id_pattern_and_it_is_what_the_server_accepts() {
        let doc = document();
        for (path, method, operation) in operations(&doc) {
            for param in operation["parameters"].as_array().into_iter().flatten() {
                let name = param["name"].as_str().unwrap();
                if name.ends_with("ID") {
                    assert_eq!(
                        param["schema"]["$ref"], "#/components/schemas/ID",
                        "{method} {path} {name}"
                    );
                } else if param["in"] == "path" {
                    // A name in the path (a secret's): its own pattern.
                    assert!(
                        param["schema"]["pattern"].is_string(),
                        "{method} {path} {name}"
                    );
                }
            }
        }
        assert_eq!(doc["components"]["schemas"]["ID"]["pattern"], ID_PATTERN);
        let pattern = regex::Regex::new(ID_PATTERN).unwrap();
        for text in [
            "0",
            "42",
            "0042",
            "9223372036854775807",
            "0009223372036854775807",
            "9223372036854775799",
            "8999999999999999999",
            "999999999999999999",
            "9223372036854775808",
            "9223372036854775810",
            "9300000000000000000",
            "10000000000000000000",
            "99999999999999999999",
            "",
            " 42",
            "42 ",
            "-1",
            "4a",
            "+1",
        ] {
            assert_eq!(
                pattern.is_match(text),
                Id::parse(text).is_ok(),
                "the pattern and Id::parse disagree on {text:?}"
            );
        }
    }

    #[test]
    fn paging_parameters_state_their_ranges() {
        let doc = document();
        for (path, cap) in [
            ("/module/{moduleID}/record", record::MAX_PER_PAGE),
            ("/job/", job::MAX_PER_PAGE),
            ("/job/{jobID}/logs", job::MAX_LOGS_PER_PAGE),
            (
                "/workflow/{workflowID}/versions",
                workflow::MAX_VERSIONS_PER_PAGE,
            ),
        ] {
            let operation = &doc["paths"][path]["get"];
            let page = &param(operation, "page")["schema"];
            assert_eq!(page["minimum"], 0, "{path}");
            assert_eq!(page["maximum"], Paging::max_page(cap), "{path}");
            let per_page = param(operation, "perPage");
            assert_eq!(per_page["schema"]["minimum"], 1, "{path}");
            let description = per_page["description"].as_str().unwrap();
            assert!(
                description.contains(&format!("lowered to {cap}")),
                "{path}: {description}"
            );
        }
        let status = &param(&doc["paths"]["/job/"]["get"], "status")["schema"];
        assert_eq!(
            status["pattern"],
            "^(queued|running|waiting|ok|error|cancelled)?$"
        );
    }

    #[test]
    fn query_text_parameters_refuse_nul() {
        let doc = document();
        let report = &doc["paths"]["/module/{moduleID}/report"]["get"];
        for name in ["metrics", "dimensions", "filter"] {
            assert_eq!(param(report, name)["schema"]["pattern"], NO_NUL, "{name}");
        }
        let modules = &doc["paths"]["/module/"]["get"];
        assert_eq!(param(modules, "query")["schema"]["pattern"], NO_NUL);
    }

    #[test]
    fn descriptions_are_plain_text_and_error_examples_are_errors() {
        let text = serde_json::to_string(&ApiDoc::openapi()).unwrap();
        assert!(!text.contains("[`"), "rustdoc link syntax in the document");
        let doc = document();
        let error = &doc["components"]["schemas"]["ErrorMessage"]["properties"]["message"];
        assert_ne!(error["example"], "OK");
        assert_eq!(
            doc["components"]["schemas"]["ErrorBody"]["properties"]["error"]["$ref"],
            "#/components/schemas/ErrorMessage"
        );
        // The `kind` enum is exactly what the model reads: every listed name
        // deserializes to a distinct kind and every kind is listed.
        let kinds = &doc["components"]["schemas"]["Task"]["properties"]["kind"]["enum"];
        let read: Vec<TaskKind> = serde_json::from_value(kinds.clone()).unwrap();
        assert_eq!(read, TaskKind::ALL);
    }

    #[test]
    fn body_limits_in_the_document_are_the_servers() {
        use crust_model::{module, workflow, MAX_NAME_LEN, MAX_TEXT_LEN};
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        for (schema, property) in [
            ("ModuleInput", "name"),
            ("ChartInput", "name"),
            ("PageInput", "title"),
            ("WorkflowInput", "name"),
        ] {
            let name = &schemas[schema]["properties"][property];
            assert_eq!(name["minLength"], 1, "{schema}.{property}");
            assert_eq!(name["maxLength"], MAX_NAME_LEN, "{schema}.{property}");
        }
        let fields = &schemas["ModuleInput"]["properties"]["fields"];
        assert_eq!(fields["minItems"], 1);
        assert_eq!(fields["maxItems"], module::MAX_FIELDS);
        assert_eq!(
            schemas["PageInput"]["properties"]["description"]["maxLength"],
            MAX_TEXT_LEN
        );
        let workflow = &schemas["WorkflowInput"]["properties"];
        assert_eq!(workflow["tasks"]["maxItems"], workflow::MAX_TASKS);
        assert_eq!(workflow["onError"]["maxItems"], workflow::MAX_TASKS);
        assert_eq!(workflow["timeout"]["maximum"], workflow::MAX_SECONDS);
        let task_name = &schemas["Task"]["properties"]["name"];
        assert_eq!(task_name["maxLength"], 64);
        assert_eq!(task_name["pattern"], "^[A-Za-z][A-Za-z0-9_]*$");
    }
}
