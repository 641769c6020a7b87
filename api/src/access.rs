//! Access control in the api: the permission each route needs, the cache of
//! resolved permission sets, and the audit entry of every mutating request.
//!
//! [`authorize`] runs after the token check (it needs the caller) and before
//! any handler or body extractor, so a caller without the permission gets
//! the 403 whatever it sent. The permission a route needs is written in one
//! table, [`requirement`]: a fixed resource and operation (the ID from the
//! path), the job's workflow (`/job/{jobID}…`), or a check in the handler
//! (lists filter by what may be read; job creates check the workflow their
//! body names). A route missing from the table is refused for everyone.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, MatchedPath, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use crust_model::access::{role_key, Actor, Operation, Permissions, Resource};
use crust_model::Id;
use crust_store::audit::{self, RequestAudit};
use sqlx::PgPool;

use crate::error::ApiError;
use crate::AppState;

/// How long a replica trusts the role version it last read: a role change
/// made through another replica takes effect here within this time (at
/// once on the replica that made it). One cheap query per second per
/// replica, instead of one per request.
pub const VERSION_TTL: Duration = Duration::from_secs(1);

/// Who a request acts for and what it may do; in the request's extensions.
#[derive(Debug, Clone)]
pub struct Access {
    pub user: Id,
    pub roles: Vec<String>,
    pub permissions: Arc<Permissions>,
}

impl Access {
    /// `Ok` when allowed, else the 403 naming the missing permission. Names
    /// the resource in the request's audit entry either way.
    pub fn require(&self, resource: Resource, operation: Operation) -> Result<(), ApiError> {
        audit::set_resource(&resource.to_string());
        self.permissions
            .check(resource, operation)
            .map_err(ApiError::Forbidden)
    }

    /// Whether `operation` is allowed on `resource` (for filtering lists).
    pub fn allows(&self, resource: Resource, operation: Operation) -> bool {
        self.permissions.allows(resource, operation)
    }

    /// The caller as the creator of a job.
    pub fn actor(&self) -> Actor {
        Actor {
            user: self.user,
            roles: Some(self.roles.clone()),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Access>()
            .cloned()
            .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))
    }
}

/// Resolved permission sets per role list, valid for one role version.
#[derive(Default)]
pub struct PermissionCache {
    state: RwLock<CacheState>,
    refreshing: tokio::sync::Mutex<()>,
}

struct CacheState {
    version: i64,
    checked_at: Option<Instant>,
    sets: HashMap<Vec<String>, Arc<Permissions>>,
}

impl Default for CacheState {
    fn default() -> Self {
        Self {
            version: i64::MIN,
            checked_at: None,
            sets: HashMap::new(),
        }
    }
}

impl PermissionCache {
    /// The permissions of `roles` (cached per role list and role version).
    pub async fn permissions(
        &self,
        pool: &PgPool,
        roles: &[String],
    ) -> crust_store::Result<Arc<Permissions>> {
        self.check_version(pool).await?;
        let key = role_key(roles);
        if let Some(set) = self.read(|state| state.sets.get(&key).cloned()) {
            return Ok(set);
        }
        let (permissions, version) = crust_store::roles::resolve(pool, &key).await?;
        let permissions = Arc::new(permissions);
        if let Ok(mut state) = self.state.write() {
            if version > state.version {
                state.sets.clear();
                state.version = version;
            }
            if version == state.version {
                state.sets.insert(key, permissions.clone());
            }
        }
        Ok(permissions)
    }

    /// Makes the next request read the role version (after a role change
    /// made here).
    pub fn invalidate(&self) {
        if let Ok(mut state) = self.state.write() {
            state.checked_at = None;
        }
    }

    fn read<T>(&self, f: impl FnOnce(&CacheState) -> T) -> T {
        match self.state.read() {
            Ok(state) => f(&state),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }

    /// Reads the role version when the last read is older than
    /// [`VERSION_TTL`]; one request reads it, the others go on meanwhile.
    async fn check_version(&self, pool: &PgPool) -> crust_store::Result<()> {
        let fresh = self.read(|state| {
            state
                .checked_at
                .is_some_and(|at| at.elapsed() < VERSION_TTL)
        });
        if fresh {
            return Ok(());
        }
        let first = self.read(|state| state.checked_at.is_none());
        // Only the first fill must wait; afterwards a refresh in progress
        // elsewhere is enough.
        let _guard = if first {
            self.refreshing.lock().await
        } else {
            match self.refreshing.try_lock() {
                Ok(guard) => guard,
                Err(_) => return Ok(()),
            }
        };
        let version = crust_store::roles::version(pool).await?;
        if let Ok(mut state) = self.state.write() {
            if version != state.version {
                state.sets.clear();
                state.version = version;
            }
            state.checked_at = Some(Instant::now());
        }
        Ok(())
    }
}

/// What a route needs.
enum Need {
    /// This operation on this resource.
    Fixed(Resource, Operation),
    /// This operation on the workflow of the job in the path.
    JobWorkflow(Operation),
    /// The handler checks (filtered lists; job creates).
    Handler,
}

/// The permission each protected route needs: the one table of them. The
/// matrix test calls every documented route with every built-in role.
fn requirement(method: &Method, route: &str, ids: &[Option<Id>]) -> Option<Need> {
    use Operation::{Delete, Read, Run, Write};
    // HEAD is answered by the GET handler.
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    let id = ids.first().copied().flatten();
    let by_method = |read, write, delete| match *method {
        Method::GET => Some(read),
        Method::POST | Method::PUT => Some(write),
        Method::DELETE => Some(delete),
        _ => None,
    };
    let op = by_method(Read, Write, Delete)?;
    Some(match route {
        "/module" if method == Method::GET => Need::Handler,
        "/module" => Need::Fixed(Resource::Module(None), op),
        "/module/{moduleID}" => Need::Fixed(Resource::Module(Some(id?)), op),
        "/module/{moduleID}/record"
        | "/module/{moduleID}/record/{recordID}"
        | "/module/{moduleID}/record/{recordID}/revisions"
        | "/module/{moduleID}/record/export"
        | "/module/{moduleID}/record/import"
        | "/module/{moduleID}/report" => Need::Fixed(Resource::Records(id?), op),
        "/page" | "/page/tree" | "/page/{pageID}" | "/page/{selfID}/reorder" => {
            Need::Fixed(Resource::Pages, op)
        }
        "/chart" | "/chart/{chartID}" | "/chart/{chartID}/data" | "/chart/{chartID}/render.svg" => {
            Need::Fixed(Resource::Charts, op)
        }
        "/workflow" if method == Method::GET => Need::Handler,
        "/workflow" => Need::Fixed(Resource::Workflow(None), op),
        "/workflow/{workflowID}"
        | "/workflow/{workflowID}/versions"
        | "/workflow/{workflowID}/pause"
        | "/workflow/{workflowID}/resume" => Need::Fixed(Resource::Workflow(Some(id?)), op),
        // Bulk actions act on the jobs of the workflows the caller may run
        // (the handler narrows the filter to them).
        "/job" | "/job/bulk" | "/job/cancel" | "/job/rerun" => Need::Handler,
        // Workers and queues: what operators watch, readable with workflows.
        "/worker" | "/queue" => Need::Fixed(Resource::Workflow(None), op),
        "/job/{jobID}" | "/job/{jobID}/signal" | "/job/{jobID}/rerun" => {
            Need::JobWorkflow(by_method(Read, Run, Run)?)
        }
        "/job/{jobID}/logs" | "/job/{jobID}/steps" => Need::JobWorkflow(Read),
        "/role" | "/role/{name}" => Need::Fixed(Resource::Roles, op),
        "/audit" => Need::Fixed(Resource::Audit, op),
        "/secret" | "/secret/{name}" => Need::Fixed(Resource::Secrets, op),
        _ => return None,
    })
}

/// Whether a request changes something (and so is audited).
pub fn is_mutating(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The status a mutating route answers when it succeeds: 201 for creates,
/// else 200. The audit entry of a committed change is written with it; a
/// different real status (an idempotent job create's 200) is corrected.
fn success_status(method: &Method, route: &str) -> u16 {
    let creates = matches!(
        route,
        "/module"
            | "/module/{moduleID}/record"
            | "/page"
            | "/chart"
            | "/workflow"
            | "/job"
            | "/job/bulk"
            | "/job/{jobID}/rerun"
    );
    if method == Method::POST && route == "/module/{moduleID}/record/import" {
        202
    } else if method == Method::POST && creates {
        201
    } else {
        200
    }
}

/// Checks the caller's permission for the route (see the module doc), then
/// runs the request, inside its audit scope when it is mutating.
pub async fn authorize(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let access = parts
        .extensions
        .get::<Access>()
        .cloned()
        .ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    let route = parts
        .extensions
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_default();
    let ids: Vec<Option<Id>> = match RawPathParams::from_request_parts(&mut parts, &state).await {
        Ok(params) => params
            .iter()
            .map(|(_, value)| Id::parse(value).ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    let method = parts.method.clone();
    let audited = is_mutating(&method).then(|| {
        Arc::new(RequestAudit::new(
            access.actor(),
            method.as_str(),
            parts.uri.path(),
            &route,
            success_status(&method, &route),
        ))
    });
    let request = Request::from_parts(parts, body);
    let work = async {
        check(&state, &access, &method, &route, &ids).await?;
        Ok::<_, ApiError>(next.run(request).await)
    };
    let Some(entry) = audited else {
        return work.await;
    };
    let response = audit::scope(entry.clone(), async {
        match work.await {
            Ok(response) => response,
            Err(err) => axum::response::IntoResponse::into_response(err),
        }
    })
    .await;
    if let Err(err) = audit::finish(&state.pool, &entry, response.status().as_u16()).await {
        tracing::warn!(error = %err, "cannot write the audit entry of a failed request");
    }
    Ok(response)
}

async fn check(
    state: &AppState,
    access: &Access,
    method: &Method,
    route: &str,
    ids: &[Option<Id>],
) -> Result<(), ApiError> {
    if access.roles.is_empty() {
        return Err(ApiError::Forbidden(
            "forbidden: the token grants no roles (issue it with --role)".into(),
        ));
    }
    match requirement(method, route, ids) {
        // A malformed path ID: the handler's extractor answers 400.
        None if ids.iter().any(Option::is_none) => Ok(()),
        // A method no route has (PATCH): the router answers 405.
        None if !matches!(
            *method,
            Method::GET | Method::HEAD | Method::POST | Method::PUT | Method::DELETE
        ) =>
        {
            Ok(())
        }
        None => Err(ApiError::Forbidden(format!(
            "forbidden: no permission is defined for {method} {route}"
        ))),
        Some(Need::Handler) => Ok(()),
        Some(Need::Fixed(resource, operation)) => access.require(resource, operation),
        Some(Need::JobWorkflow(operation)) => {
            // An unrestricted caller needs no lookup.
            if access
                .permissions
                .is_uniform(Resource::Workflow(None), operation)
            {
                return Ok(());
            }
            let Some(job) = ids.first().copied().flatten() else {
                return Ok(());
            };
            match crust_store::jobs::api::workflow_of(&state.pool, job).await? {
                Some(workflow) => access.require(Resource::Workflow(Some(workflow)), operation),
                // The handler answers 404.
                None => Ok(()),
            }
        }
    }
}

/// Resolves the caller's permissions into an [`Access`] (called by the
/// token middleware).
pub async fn resolve(state: &AppState, user: Id, roles: Vec<String>) -> Result<Access, ApiError> {
    let permissions = state.permissions.permissions(&state.pool, &roles).await?;
    Ok(Access {
        user,
        roles,
        permissions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_router_has_a_requirement() {
        let routes = [
            (Method::GET, "/module"),
            (Method::POST, "/module/{moduleID}"),
            (Method::GET, "/module/{moduleID}/report"),
            (Method::POST, "/page/{selfID}/reorder"),
            (Method::GET, "/chart/{chartID}/data"),
            (Method::POST, "/workflow/{workflowID}/pause"),
            (Method::POST, "/job/{jobID}/signal"),
            (Method::PUT, "/role/{name}"),
            (Method::GET, "/audit"),
        ];
        for (method, route) in routes {
            assert!(
                requirement(&method, route, &[Some(Id(1))]).is_some(),
                "{method} {route}"
            );
        }
        assert!(requirement(&Method::GET, "/nowhere", &[]).is_none());
    }

    #[test]
    fn creates_are_audited_as_201_and_the_rest_as_200() {
        assert_eq!(success_status(&Method::POST, "/module"), 201);
        assert_eq!(success_status(&Method::POST, "/module/{moduleID}"), 200);
        assert_eq!(success_status(&Method::DELETE, "/job/{jobID}"), 200);
    }
}
