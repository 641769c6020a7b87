//! Access control: resources, operations, rules, the built-in roles and the
//! resolved permission set a request (or a job) acts with.
//!
//! A permission is an operation on a resource. Resources are named
//! `kind:id` or `kind:*`:
//!
//! | resource | what it guards | operations |
//! |---|---|---|
//! | `module:<id>` | a module's definition (schema) | read, write, delete |
//! | `record:<moduleID>` | that module's records and reports | read, write, delete |
//! | `workflow:<id>` | a workflow and its jobs | read, write, delete, run (create, cancel, rerun, signal, update jobs) |
//! | `page:*`, `chart:*` | all pages, all charts | read, write, delete |
//! | `role:*` | custom roles | read, write, delete |
//! | `audit` | the audit log | read |
//!
//! A rule's `resource` may also be `*` (everything) or `kind:*` (every
//! resource of that kind). Deny wins: an operation is allowed when some
//! rule of some role of the caller allows it and none denies it.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Error, Id, Result};

/// What may be done to a resource.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Read,
    Write,
    Delete,
    Run,
}

impl Operation {
    /// Every operation, for `*`-style rules and the matrix.
    pub const ALL: [Operation; 4] = [
        Operation::Read,
        Operation::Write,
        Operation::Delete,
        Operation::Run,
    ];

    /// The operation's name as rules and messages write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "write",
            Operation::Delete => "delete",
            Operation::Run => "run",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource a request acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// A module's definition; `None` = modules as a whole (creating one).
    Module(Option<Id>),
    /// A module's records (and reports over them).
    Records(Id),
    /// A workflow and its jobs; `None` = workflows as a whole.
    Workflow(Option<Id>),
    Pages,
    Charts,
    Roles,
    Audit,
    /// The secrets (`/secret`): names only ever leave, never values; only
    /// `admin` (or a custom `secret:*` rule) may list or change them.
    Secrets,
}

impl Resource {
    /// The kind, as the prefix of the resource's name.
    fn kind(self) -> &'static str {
        match self {
            Resource::Module(_) => "module",
            Resource::Records(_) => "record",
            Resource::Workflow(_) => "workflow",
            Resource::Pages => "page",
            Resource::Charts => "chart",
            Resource::Roles => "role",
            Resource::Audit => "audit",
            Resource::Secrets => "secret",
        }
    }

    fn id(self) -> Option<Id> {
        match self {
            Resource::Module(id) | Resource::Workflow(id) => id,
            Resource::Records(id) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self, self.id()) {
            (Resource::Audit, _) => f.write_str("audit"),
            (_, Some(id)) => write!(f, "{}:{id}", self.kind()),
            (_, None) => write!(f, "{}:*", self.kind()),
        }
    }
}

/// The kinds a rule may name, and whether a single ID may follow.
const KINDS: [(&str, bool); 8] = [
    ("module", true),
    ("record", true),
    ("workflow", true),
    ("page", false),
    ("chart", false),
    ("role", false),
    ("audit", false),
    ("secret", false),
];

/// One rule of a role: allow or deny `operations` on `resource`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// `*`, `<kind>:*`, `<kind>:<id>` (module, record, workflow) or `audit`.
    #[schema(example = "record:7")]
    pub resource: String,
    /// Any of read, write, delete, run; `[]` is refused.
    #[schema(min_items = 1)]
    pub operations: Vec<Operation>,
    /// `false` denies, and a deny beats every allow.
    pub allow: bool,
}

impl Rule {
    fn allowing(resource: &str, operations: &[Operation]) -> Self {
        Self {
            resource: resource.to_owned(),
            operations: operations.to_vec(),
            allow: true,
        }
    }

    /// Whether this rule speaks about `resource`.
    fn matches(&self, resource: Resource) -> bool {
        if self.resource == "*" {
            return true;
        }
        let (kind, id) = match self.resource.split_once(':') {
            Some((kind, id)) => (kind, Some(id)),
            None => (self.resource.as_str(), None),
        };
        if kind != resource.kind() {
            return false;
        }
        match (id, resource.id()) {
            (None, _) | (Some("*"), _) => true,
            (Some(id), Some(wanted)) => Id::parse(id).is_ok_and(|id| id == wanted),
            (Some(_), None) => false,
        }
    }

    /// Checks the rule's shape; `at` prefixes messages (`rules[2].`).
    pub fn validate(&self, at: &str) -> Result<()> {
        if self.operations.is_empty() {
            return Err(Error::invalid(format!(
                "{at}operations: must name at least one of read, write, delete, run"
            )));
        }
        if self.resource == "*" {
            return Ok(());
        }
        let (kind, id) = match self.resource.split_once(':') {
            Some((kind, id)) => (kind, Some(id)),
            None => (self.resource.as_str(), None),
        };
        let Some((_, takes_id)) = KINDS.iter().find(|(name, _)| *name == kind) else {
            return Err(Error::invalid(format!(
                "{at}resource: {:?} is not a resource (one of *, module:, record:, workflow:, \
                 page:*, chart:*, role:*, secret:*, audit)",
                self.resource
            )));
        };
        match id {
            None if kind == "audit" => Ok(()),
            None => Err(Error::invalid(format!(
                "{at}resource: {:?} needs an ID or * after \"{kind}:\"",
                self.resource
            ))),
            Some("*") => Ok(()),
            Some(id) if *takes_id => crust_id(id).map_err(|reason| {
                Error::invalid(format!("{at}resource: {:?}: {reason}", self.resource))
            }),
            Some(_) => Err(Error::invalid(format!(
                "{at}resource: {:?}: {kind}s are governed as a whole, write \"{kind}:*\"",
                self.resource
            ))),
        }
    }
}

fn crust_id(text: &str) -> std::result::Result<(), String> {
    let id = Id::parse(text)?;
    if id.get() <= 0 {
        return Err("the ID must be positive".into());
    }
    Ok(())
}

/// The built-in roles, in the order the README's matrix lists them.
pub const BUILT_IN: [&str; 5] = ["admin", "designer", "editor", "operator", "viewer"];

/// The rules of a built-in role, or `None` for any other name.
pub fn built_in(name: &str) -> Option<Vec<Rule>> {
    use Operation::{Delete, Read, Run, Write};
    let viewer = || {
        [
            "module:*",
            "record:*",
            "workflow:*",
            "page:*",
            "chart:*",
            "role:*",
        ]
        .map(|resource| Rule::allowing(resource, &[Read]))
        .to_vec()
    };
    Some(match name {
        "admin" => vec![Rule::allowing("*", &Operation::ALL)],
        "viewer" => viewer(),
        "editor" => {
            let mut rules = viewer();
            rules.push(Rule::allowing("record:*", &[Write]));
            rules
        }
        "designer" => {
            let mut rules = viewer();
            for resource in ["module:*", "record:*", "workflow:*", "page:*", "chart:*"] {
                rules.push(Rule::allowing(resource, &[Read, Write, Delete]));
            }
            rules
        }
        "operator" => vec![Rule::allowing("workflow:*", &[Read, Run])],
        _ => return None,
    })
}

/// Whether `name` has the shape of a role name: 1 to 64 of `A-Z a-z 0-9 _ - .`.
pub fn is_role_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// Checks a role name for a custom role: an identifier-like name that is
/// not a built-in one.
pub fn check_role_name(name: &str) -> Result<()> {
    if !is_role_name(name) {
        return Err(Error::invalid(format!(
            "name: {name:?} is not a role name (1 to 64 of A-Z a-z 0-9 _ - .)"
        )));
    }
    if BUILT_IN.contains(&name) {
        return Err(Error::Conflict(format!(
            "role {name:?} is built in and cannot be redefined or deleted"
        )));
    }
    Ok(())
}

/// What a caller may do: the rules of all its roles together.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    rules: Vec<Rule>,
}

impl Permissions {
    /// The union of these rule lists (one per role).
    pub fn from_rules(rules: impl IntoIterator<Item = Rule>) -> Self {
        Self {
            rules: rules.into_iter().collect(),
        }
    }

    /// Allowed when some rule allows and none denies (deny wins).
    pub fn allows(&self, resource: Resource, operation: Operation) -> bool {
        let mut allowed = false;
        for rule in &self.rules {
            if rule.operations.contains(&operation) && rule.matches(resource) {
                if !rule.allow {
                    return false;
                }
                allowed = true;
            }
        }
        allowed
    }

    /// `Ok` when allowed, else the message of the 403 naming the permission.
    pub fn check(
        &self,
        resource: Resource,
        operation: Operation,
    ) -> std::result::Result<(), String> {
        if self.allows(resource, operation) {
            return Ok(());
        }
        Err(denied(resource, operation))
    }

    /// Whether no rule denies some IDs of a kind while allowing the kind as a
    /// whole, i.e. whether `kind:*` decides for every ID (lists can then
    /// skip per-item checks).
    pub fn is_uniform(&self, whole: Resource, operation: Operation) -> bool {
        self.allows(whole, operation)
            && !self.rules.iter().any(|rule| {
                !rule.allow
                    && rule.operations.contains(&operation)
                    && rule.resource.starts_with(&format!("{}:", whole.kind()))
            })
    }
}

/// The message of a refusal: which operation on which resource is missing.
pub fn denied(resource: Resource, operation: Operation) -> String {
    format!("forbidden: this needs permission \"{operation}\" on \"{resource}\"")
}

/// Who a job acts for: its creator's user ID and roles. `roles: None` is a
/// system job (created outside the api), which is not restricted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    pub user: Id,
    pub roles: Option<Vec<String>>,
}

impl From<Id> for Actor {
    fn from(user: Id) -> Self {
        Self { user, roles: None }
    }
}

/// One entry of the audit log, as `GET /audit` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    #[schema(value_type = String, example = "42")]
    pub id: Id,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The token's `sub`.
    #[serde(rename = "userID")]
    #[schema(value_type = String, example = "7")]
    pub user_id: Id,
    pub method: String,
    /// The request's path, as sent.
    pub path: String,
    /// The resource whose permission was checked (`record:7`), else the route.
    pub resource: String,
    /// The HTTP status the request was answered with.
    pub status: i32,
}

/// A role as `GET /role/` shows it: a built-in one or a stored custom one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Role {
    pub name: String,
    pub rules: Vec<Rule>,
    /// Built-in roles cannot be redefined or deleted.
    pub built_in: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<chrono::DateTime<chrono::Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The body of `PUT /role/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleInput {
    /// At most 100 rules; deny wins over allow.
    #[schema(max_items = 100)]
    pub rules: Vec<Rule>,
}

/// The most rules a custom role may hold.
pub const MAX_RULES: usize = 100;

impl RoleInput {
    /// Checks every rule, naming the first bad one as `rules[i].…`.
    pub fn validate(&self) -> Result<()> {
        if self.rules.len() > MAX_RULES {
            return Err(Error::invalid(format!(
                "rules: at most {MAX_RULES} rules (got {})",
                self.rules.len()
            )));
        }
        for (index, rule) in self.rules.iter().enumerate() {
            rule.validate(&format!("rules[{index}]."))?;
        }
        Ok(())
    }
}

/// Sorted, deduplicated role names: the cache key of a permission set.
pub fn role_key(roles: &[String]) -> Vec<String> {
    roles
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Operation::*;

    fn role(name: &str) -> Permissions {
        Permissions::from_rules(built_in(name).unwrap())
    }

    #[test]
    fn the_built_in_roles_grant_what_the_design_says() {
        assert!(role("admin").allows(Resource::Audit, Read));
        assert!(!role("viewer").allows(Resource::Audit, Read));
        assert!(role("admin").allows(Resource::Secrets, Write));
        for name in ["viewer", "editor", "designer", "operator"] {
            assert!(!role(name).allows(Resource::Secrets, Read), "{name}");
        }
        assert!(role("viewer").allows(Resource::Records(Id(3)), Read));
        assert!(!role("viewer").allows(Resource::Records(Id(3)), Write));
        assert!(role("editor").allows(Resource::Records(Id(3)), Write));
        assert!(!role("editor").allows(Resource::Module(Some(Id(3))), Write));
        assert!(role("designer").allows(Resource::Module(None), Write));
        assert!(!role("designer").allows(Resource::Workflow(Some(Id(1))), Run));
        assert!(role("operator").allows(Resource::Workflow(Some(Id(1))), Run));
        assert!(!role("operator").allows(Resource::Records(Id(1)), Read));
        assert!(Permissions::default().check(Resource::Pages, Read).is_err());
    }

    #[test]
    fn deny_wins_over_any_allow() {
        let permissions = Permissions::from_rules([
            Rule::allowing("*", &Operation::ALL),
            Rule {
                resource: "record:7".into(),
                operations: vec![Delete],
                allow: false,
            },
        ]);
        assert!(permissions.allows(Resource::Records(Id(8)), Delete));
        assert!(permissions.allows(Resource::Records(Id(7)), Write));
        assert_eq!(
            permissions
                .check(Resource::Records(Id(7)), Delete)
                .unwrap_err(),
            "forbidden: this needs permission \"delete\" on \"record:7\""
        );
        assert!(!permissions.is_uniform(Resource::Records(Id(0)), Delete));
        assert!(permissions.is_uniform(Resource::Records(Id(0)), Read));
    }

    #[test]
    fn a_single_id_rule_does_not_grant_the_whole_kind() {
        let permissions = Permissions::from_rules([Rule::allowing("module:7", &[Read, Write])]);
        assert!(permissions.allows(Resource::Module(Some(Id(7))), Write));
        assert!(!permissions.allows(Resource::Module(None), Write));
        assert!(!permissions.allows(Resource::Module(Some(Id(8))), Read));
        assert!(!permissions.allows(Resource::Records(Id(7)), Read));
    }

    #[test]
    fn rules_are_checked_for_shape() {
        let rule = |resource: &str| Rule::allowing(resource, &[Read]);
        for good in [
            "*", "module:*", "module:7", "record:3", "page:*", "audit", "role:*",
        ] {
            assert!(rule(good).validate("").is_ok(), "{good}");
        }
        for bad in ["module", "module:x", "module:0", "page:3", "secrets:*", ""] {
            assert!(rule(bad).validate("rules[0].").is_err(), "{bad}");
        }
        let empty = Rule::allowing("*", &[]);
        assert!(empty.validate("").is_err());
        assert!(check_role_name("admin").is_err());
        assert!(check_role_name("sales-team").is_ok());
        assert!(check_role_name("a b").is_err());
    }
}
