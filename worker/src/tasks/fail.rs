//! `fail`: always fails, to test error handling and `onError` tasks.

use serde_json::Value;

use super::TaskError;
use crust_model::task::FailParams;

/// Fails with the message ("failed on purpose" by default).
pub fn run(params: FailParams) -> Result<Value, TaskError> {
    Err(TaskError::Failed(params.message))
}

#[cfg(test)]
mod tests {
    use crate::tasks::test_support::Harness;
    use serde_json::json;

    #[tokio::test]
    async fn always_fails() {
        let h = Harness::new();
        let err = h.run("fail", json!({})).await.unwrap_err();
        assert_eq!(err.to_string(), "failed on purpose");
        let err = h.run("fail", json!({"message": "nope"})).await.unwrap_err();
        assert_eq!(err.to_string(), "nope");
    }
}
