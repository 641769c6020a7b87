//! Custom roles and the role version. Built-in roles live in
//! `crust_model::access` and are never stored; every change here bumps
//! `role_version` in the same transaction, so each api replica (and worker)
//! knows its cached permission sets are stale.

use chrono::{DateTime, Utc};
use crust_model::access::{self, Permissions, Role, Rule};
use sqlx::types::Json;
use sqlx::PgPool;

use crate::{audit, Error, Result};

#[derive(sqlx::FromRow)]
struct RoleRow {
    name: String,
    rules: Json<Vec<Rule>>,
    created_at: DateTime<Utc>,
    updated_at: Option<DateTime<Utc>>,
}

impl From<RoleRow> for Role {
    fn from(row: RoleRow) -> Self {
        Role {
            name: row.name,
            rules: row.rules.0,
            built_in: false,
            created_at: Some(row.created_at),
            updated_at: row.updated_at,
        }
    }
}

fn built_in(name: &str) -> Option<Role> {
    access::built_in(name).map(|rules| Role {
        name: name.to_owned(),
        rules,
        built_in: true,
        created_at: None,
        updated_at: None,
    })
}

/// Every role: the built-in ones, then the custom ones by name.
pub async fn list(pool: &PgPool) -> Result<Vec<Role>> {
    let rows: Vec<RoleRow> =
        sqlx::query_as("SELECT name, rules, created_at, updated_at FROM roles ORDER BY name")
            .fetch_all(pool)
            .await?;
    let mut roles: Vec<Role> = access::BUILT_IN
        .iter()
        .filter_map(|name| built_in(name))
        .collect();
    roles.extend(rows.into_iter().map(Role::from));
    Ok(roles)
}

/// One role, built-in or custom.
pub async fn get(pool: &PgPool, name: &str) -> Result<Role> {
    if let Some(role) = built_in(name) {
        return Ok(role);
    }
    sqlx::query_as::<_, RoleRow>(
        "SELECT name, rules, created_at, updated_at FROM roles WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await?
    .map(Role::from)
    .ok_or_else(|| Error::not_found(format!("role {name:?} does not exist")))
}

/// Creates or replaces a custom role (`true` when created). Built-in names
/// are refused with a conflict.
pub async fn put(pool: &PgPool, name: &str, rules: &[Rule]) -> Result<(Role, bool)> {
    access::check_role_name(name)?;
    let mut tx = pool.begin().await?;
    let (row, created): (RoleRow, bool) = {
        let row: RoleRowCreated = sqlx::query_as(
            "INSERT INTO roles (name, rules) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET rules = EXCLUDED.rules, updated_at = now()
             RETURNING name, rules, created_at, updated_at, (xmax = 0) AS created",
        )
        .bind(name)
        .bind(Json(rules))
        .fetch_one(&mut *tx)
        .await?;
        (row.row, row.created)
    };
    bump(&mut tx).await?;
    audit::commit(tx).await?;
    Ok((row.into(), created))
}

#[derive(sqlx::FromRow)]
struct RoleRowCreated {
    #[sqlx(flatten)]
    row: RoleRow,
    created: bool,
}

/// Deletes a custom role; tokens naming it lose what it granted.
pub async fn delete(pool: &PgPool, name: &str) -> Result<()> {
    access::check_role_name(name)?;
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query("DELETE FROM roles WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if deleted.rows_affected() == 0 {
        return Err(Error::not_found(format!("role {name:?} does not exist")));
    }
    bump(&mut tx).await?;
    audit::commit(tx).await?;
    Ok(())
}

async fn bump(conn: &mut sqlx::PgConnection) -> Result<()> {
    sqlx::query("UPDATE role_version SET version = version + 1")
        .execute(conn)
        .await?;
    Ok(())
}

/// The current role version (bumped by every role change).
pub async fn version(pool: &PgPool) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT version FROM role_version")
        .fetch_one(pool)
        .await?)
}

/// The permissions of a list of role names: built-in ones from code, custom
/// ones from the table; a name that is neither grants nothing. Also returns
/// the role version the answer was read at (one statement, so they match).
pub async fn resolve(pool: &PgPool, roles: &[String]) -> Result<(Permissions, i64)> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut custom = Vec::new();
    for name in roles {
        match access::built_in(name) {
            Some(built) => rules.extend(built),
            None => custom.push(name.clone()),
        }
    }
    let (stored, version): (Option<Json<Vec<Rule>>>, i64) = sqlx::query_as(
        "SELECT (SELECT jsonb_agg(rule) FROM roles, jsonb_array_elements(rules) rule
                 WHERE name = ANY($1)),
                (SELECT version FROM role_version)",
    )
    .bind(&custom)
    .fetch_one(pool)
    .await?;
    rules.extend(stored.map(|stored| stored.0).unwrap_or_default());
    Ok((Permissions::from_rules(rules), version))
}

/// The permissions of a list of role names, without the version: no query
/// at all when every name is a built-in role (the worker's check per
/// record operation).
pub async fn permissions(pool: &PgPool, roles: &[String]) -> Result<Permissions> {
    if roles.iter().all(|name| access::built_in(name).is_some()) {
        let rules = roles
            .iter()
            .filter_map(|name| access::built_in(name))
            .flatten();
        return Ok(Permissions::from_rules(rules));
    }
    Ok(resolve(pool, roles).await?.0)
}
