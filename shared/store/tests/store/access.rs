//! Roles, the role version, the audit entry's transaction, and whom a cron
//! job acts for.

use std::sync::Arc;

use crust_model::access::{Actor, Operation, Resource, Rule};
use crust_model::workflow::WorkflowInput;
use crust_model::Id;
use crust_store::audit::{self, RequestAudit};
use crust_store::{charts, jobs, roles, workflows};
use serde_json::json;

use crate::support::Store;

fn editor(user: i64) -> Actor {
    Actor {
        user: Id(user),
        roles: Some(vec!["editor".into(), "operator".into()]),
    }
}

fn request(actor: Actor, method: &str, path: &str) -> Arc<RequestAudit> {
    Arc::new(RequestAudit::new(actor, method, path, "chart:*", 201))
}

async fn entries(s: &Store) -> Vec<(i64, String, i32)> {
    sqlx::query_as("SELECT user_id, path, status FROM audit_log ORDER BY id")
        .fetch_all(&s.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_role_change_bumps_the_version_and_resolves_with_the_built_in_roles() {
    let s = Store::new().await;
    let before = roles::version(&s.pool).await.unwrap();
    let rule = Rule {
        resource: "record:9".into(),
        operations: vec![Operation::Delete],
        allow: true,
    };
    let (_, created) = roles::put(&s.pool, "cleaner", &[rule]).await.unwrap();
    assert!(created);
    let (permissions, version) = roles::resolve(&s.pool, &["editor".into(), "cleaner".into()])
        .await
        .unwrap();
    assert_eq!(version, before + 1);
    assert!(permissions.allows(Resource::Records(Id(9)), Operation::Delete));
    assert!(permissions.allows(Resource::Records(Id(3)), Operation::Write));
    assert!(!permissions.allows(Resource::Records(Id(3)), Operation::Delete));
    roles::delete(&s.pool, "cleaner").await.unwrap();
    let (permissions, version) = roles::resolve(&s.pool, &["cleaner".into()]).await.unwrap();
    assert_eq!(version, before + 2);
    assert!(!permissions.allows(Resource::Records(Id(9)), Operation::Delete));
    assert!(roles::put(&s.pool, "admin", &[]).await.is_err());
}

#[tokio::test]
async fn a_change_commits_with_its_entry_and_a_failed_request_gets_one_afterwards() {
    let s = Store::new().await;
    let input = crust_model::chart::ChartInput {
        name: "c".into(),
        config: json!({}),
    };
    // A change: its entry is in its transaction, once.
    let created = request(editor(5), "POST", "/chart");
    let chart = audit::scope(created.clone(), charts::create(&s.pool, input.clone()))
        .await
        .unwrap();
    audit::finish(&s.pool, &created, 201).await.unwrap();
    // A refused change (nothing to delete): no entry until the request
    // ends, then one with the real status.
    let missing = request(editor(6), "DELETE", "/chart/999");
    assert!(
        audit::scope(missing.clone(), charts::delete(&s.pool, Id(999)))
            .await
            .is_err()
    );
    assert_eq!(entries(&s).await.len(), 1);
    audit::finish(&s.pool, &missing, 404).await.unwrap();
    // Outside a request (worker, scheduler): no entry.
    charts::delete(&s.pool, chart.id).await.unwrap();
    assert_eq!(
        entries(&s).await,
        [
            (5, "/chart".to_owned(), 201),
            (6, "/chart/999".to_owned(), 404)
        ]
    );
}

#[tokio::test]
async fn a_cron_job_acts_for_the_workflow_s_last_editor() {
    let s = Store::new().await;
    let input: WorkflowInput = serde_json::from_value(json!({"name": "w", "schedule": "* * * * *",
        "tasks": [{"name": "t", "kind": "log", "params": {"message": "hi"}}]}))
    .unwrap();
    let edit = request(editor(8), "POST", "/workflow");
    let workflow = audit::scope(
        edit.clone(),
        workflows::create(&s.pool, input.validate().unwrap()),
    )
    .await
    .unwrap();
    sqlx::query("UPDATE workflows SET next_fire_at = now() - interval '1 second' WHERE id = $1")
        .bind(workflow.id)
        .execute(&s.pool)
        .await
        .unwrap();
    let fired = jobs::schedule::fire_schedules(&s.pool, |_, _| None)
        .await
        .unwrap();
    assert_eq!(fired, 1);
    let (created_by, roles): (Id, Option<Vec<String>>) =
        sqlx::query_as("SELECT created_by, creator_roles FROM jobs WHERE workflow_id = $1")
            .bind(workflow.id)
            .fetch_one(&s.pool)
            .await
            .unwrap();
    assert_eq!(created_by, Id(8));
    assert_eq!(
        roles,
        Some(vec!["editor".to_owned(), "operator".to_owned()])
    );
}
