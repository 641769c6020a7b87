//! `sleep`: waits, stopping early when the job is cancelled.

use std::time::Duration;

use serde_json::{json, Value};

use super::{TaskContext, TaskError};
use crust_model::task::SleepParams;

/// Sleeps `seconds`; the output is `{"slept": seconds}`.
pub async fn run(params: SleepParams, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    let duration = Duration::try_from_secs_f64(params.seconds)
        .map_err(|err| TaskError::failed(format!("seconds: {err}")))?;
    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        _ = ctx.cancel.cancelled() => return Err(TaskError::cancelled()),
    }
    let slept = if params.seconds.fract() == 0.0 {
        json!(params.seconds as u64)
    } else {
        json!(params.seconds)
    };
    Ok(json!({ "slept": slept }))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::tasks::test_support::Harness;
    use serde_json::json;

    #[tokio::test]
    async fn sleeps() {
        let h = Harness::new();
        let started = Instant::now();
        let out = h.run("sleep", json!({"seconds": 0.05})).await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(out, json!({"slept": 0.05}));
        assert_eq!(
            h.run("sleep", json!({"seconds": "0"})).await.unwrap(),
            json!({"slept": 0})
        );
    }

    #[tokio::test]
    async fn stops_when_cancelled() {
        let h = Harness::new();
        let cancel = h.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            cancel.cancel();
        });
        let started = Instant::now();
        let err = h.run("sleep", json!({"seconds": 60})).await.unwrap_err();
        assert_eq!(err.to_string(), "cancelled");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
