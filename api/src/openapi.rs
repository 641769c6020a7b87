//! The OpenAPI document, derived from the handlers' annotations, served at
//! `/openapi.json`, and a Swagger UI at `/docs` whose assets are compiled
//! into the binary (no network needed to browse it).

use axum::Router;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use crate::routes::{chart, health, job, module, page, record, report, workflow};
use crate::AppState;

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(title = "Crust", description = "CRM modules, records, pages, charts, workflows and jobs.
IDs are decimal strings. Every endpoint but health and docs needs `Authorization: Bearer <JWT>`.
Errors are `{\"error\": {\"message\": …}}`. An unknown ID in the path is a 404; an unknown ID
referenced in a body (a job's `workflowID`, a page's `selfID` or `moduleID`, a Record field's
`options.moduleID` or value) is a 400 that names the field. Edits (`POST` to a resource's own URL)
are partial: keys left out keep their value (`\"schedule\": null` removes a workflow's schedule;
in a record's `fields`, `null` clears a field)."),
    paths(
        health::healthz, health::readyz, health::metrics,
        module::list_modules, module::create_module, module::read_module, module::edit_module, module::delete_module,
        record::list_records, record::create_record, record::read_record, record::update_record, record::delete_record,
        report::module_report, chart::chart_data,
        page::list_pages, page::page_tree, page::create_page, page::read_page, page::edit_page, page::reorder_pages, page::delete_page,
        chart::list_charts, chart::create_chart, chart::read_chart, chart::edit_chart, chart::delete_chart,
        workflow::list_workflows, workflow::create_workflow, workflow::read_workflow, workflow::update_workflow, workflow::delete_workflow,
        job::list_jobs, job::create_job, job::read_job, job::update_job, job::cancel_job, job::job_logs,
    ),
    components(schemas(
        crust_shared::model::module::Module, crust_shared::model::module::Field,
        crust_shared::model::module::FieldKind, crust_shared::model::record::Record,
        crust_shared::model::page::Page, crust_shared::model::chart::Chart,
        crust_shared::model::workflow::Workflow, crust_shared::model::workflow::Task,
        crust_shared::model::job::Job, crust_shared::model::job::JobStatus, crust_shared::model::job::LogEntry,
        crate::routes::Success, crate::routes::ErrorBody,
    )),
    modifiers(&BearerAuth),
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

/// `/openapi.json` and the `/docs` UI.
pub fn router() -> Router<AppState> {
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", ApiDoc::openapi()))
}
