//! The engine's job moves: a park never misses what it waits for, a
//! signal wakes a waiting job, a child's end wakes its parent whoever ends
//! it, cancelling a parent cancels its children, deleting a workflow
//! cancels its waiting jobs.

use crate::support::Store;
use chrono::{Duration as Span, Utc};
use crust_model::job::JobStatus;
use crust_model::Id;
use crust_store::jobs::run::{self, Park};
use crust_store::jobs::{api, schedule};
use crust_store::workflows;
use serde_json::json;

impl Store {
    async fn workflow(&self) -> Id {
        sqlx::query_scalar("INSERT INTO workflows (name) VALUES ('w') RETURNING id")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// A job in `status` under attempt 1, optionally the child of `parent`'s step `step`.
    async fn job(&self, workflow: Id, status: &str, parent: Option<(Id, &str)>) -> Id {
        sqlx::query_scalar(
            "INSERT INTO jobs (workflow_id, status, attempt, parent_job_id, parent_step)
             VALUES ($1, $2, 1, $3, $4) RETURNING id",
        )
        .bind(workflow)
        .bind(status)
        .bind(parent.map(|(id, _)| id))
        .bind(parent.map(|(_, step)| step))
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    async fn status(&self, id: Id) -> JobStatus {
        api::get(&self.pool, id).await.unwrap().status
    }
}

fn waits_for(event: &str) -> Park {
    Park {
        events: vec![event.into()],
        ..Park::default()
    }
}

#[tokio::test]
async fn a_park_goes_back_to_the_queue_when_what_it_waits_for_has_come() {
    let s = Store::new().await;
    let w = s.workflow().await;
    let job = s.job(w, "running", None).await;
    // A signal arrived while the run was deciding to park: it must not sleep.
    sqlx::query("INSERT INTO job_signals (job_id, event) VALUES ($1, 'go')")
        .bind(job)
        .execute(&s.pool)
        .await
        .unwrap();
    assert!(run::park(&s.pool, job, 1, &waits_for("go")).await.unwrap());
    assert_eq!(s.status(job).await, JobStatus::Queued);

    // A signal for another event does not count.
    let other = s.job(w, "running", None).await;
    sqlx::query("INSERT INTO job_signals (job_id, event) VALUES ($1, 'else')")
        .bind(other)
        .execute(&s.pool)
        .await
        .unwrap();
    assert!(run::park(&s.pool, other, 1, &waits_for("go"))
        .await
        .unwrap());
    assert_eq!(s.status(other).await, JobStatus::Waiting);

    // A child that already ended counts; so does a wake-up time past.
    let parent = s.job(w, "running", None).await;
    s.job(w, "ok", Some((parent, "call"))).await;
    let park = Park {
        children: vec!["call".into()],
        ..Park::default()
    };
    assert!(run::park(&s.pool, parent, 1, &park).await.unwrap());
    assert_eq!(s.status(parent).await, JobStatus::Queued);
    let late = s.job(w, "running", None).await;
    let park = Park {
        wake_at: Some(Utc::now() - Span::seconds(1)),
        ..Park::default()
    };
    assert!(run::park(&s.pool, late, 1, &park).await.unwrap());
    assert_eq!(s.status(late).await, JobStatus::Queued);

    // A run that lost its claim parks nothing.
    let lost = s.job(w, "running", None).await;
    assert!(!run::park(&s.pool, lost, 2, &waits_for("go")).await.unwrap());
    assert_eq!(s.status(lost).await, JobStatus::Running);
}

#[tokio::test]
async fn a_signal_wakes_a_waiting_job_and_the_scheduler_wakes_one_whose_time_came() {
    let s = Store::new().await;
    let w = s.workflow().await;
    let job = s.job(w, "running", None).await;
    assert!(run::park(&s.pool, job, 1, &waits_for("go")).await.unwrap());
    assert_eq!(s.status(job).await, JobStatus::Waiting);
    let signalled = api::signal(&s.pool, job, "go", Some(&json!({"n": 1})))
        .await
        .unwrap();
    assert!(signalled.woke);
    assert_eq!(s.status(job).await, JobStatus::Queued);

    let sleeper = s.job(w, "running", None).await;
    let park = Park {
        wake_at: Some(Utc::now() + Span::milliseconds(200)),
        ..Park::default()
    };
    assert!(run::park(&s.pool, sleeper, 1, &park).await.unwrap());
    assert_eq!(schedule::wake_due(&s.pool).await.unwrap(), 0, "not yet");
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(schedule::wake_due(&s.pool).await.unwrap(), 1);
    assert_eq!(s.status(sleeper).await, JobStatus::Queued);

    let done = s.job(w, "ok", None).await;
    assert!(api::signal(&s.pool, done, "go", None).await.is_err(), "409");
}

#[tokio::test]
async fn a_child_s_end_wakes_its_parent_whoever_ends_it() {
    let s = Store::new().await;
    let w = s.workflow().await;
    let parent = s.job(w, "running", None).await;
    let child = s.job(w, "queued", Some((parent, "call"))).await;
    let park = Park {
        children: vec!["call".into()],
        ..Park::default()
    };
    assert!(run::park(&s.pool, parent, 1, &park).await.unwrap());
    assert_eq!(s.status(parent).await, JobStatus::Waiting);
    // Cancelled through the api (no worker involved): the trigger wakes it.
    api::cancel(&s.pool, child).await.unwrap();
    assert_eq!(s.status(child).await, JobStatus::Cancelled);
    assert_eq!(s.status(parent).await, JobStatus::Queued);
}

#[tokio::test]
async fn cancelling_a_parent_cancels_its_children_and_deleting_a_workflow_its_waiting_jobs() {
    let s = Store::new().await;
    let w = s.workflow().await;
    let parent = s.job(w, "waiting", None).await;
    let waiting = s.job(w, "waiting", Some((parent, "a"))).await;
    let running = s.job(w, "running", Some((parent, "b"))).await;
    let grandchild = s.job(w, "queued", Some((waiting, "c"))).await;
    api::cancel(&s.pool, parent).await.unwrap();
    assert_eq!(s.status(parent).await, JobStatus::Cancelled);
    assert_eq!(s.status(waiting).await, JobStatus::Cancelled);
    assert_eq!(s.status(grandchild).await, JobStatus::Cancelled);
    // A running child is asked to stop; its worker ends it.
    let asked: bool = sqlx::query_scalar("SELECT cancel_requested FROM jobs WHERE id = $1")
        .bind(running)
        .fetch_one(&s.pool)
        .await
        .unwrap();
    assert!(asked);

    let other = s.workflow().await;
    let parked = s.job(other, "waiting", None).await;
    workflows::delete(&s.pool, other).await.unwrap();
    assert_eq!(s.status(parked).await, JobStatus::Cancelled);
}
