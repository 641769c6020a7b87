//! `log`: writes one line to the job's log.

use serde_json::{json, Value};

use super::{TaskContext, TaskError};
use crust_model::task::LogParams;

/// Writes the line; the output is `{"message": …}`.
pub async fn run(params: LogParams, ctx: &TaskContext<'_>) -> Result<Value, TaskError> {
    ctx.log(&params.level, params.message.clone(), params.data)
        .await;
    Ok(json!({ "message": params.message }))
}

#[cfg(test)]
mod tests {
    use crate::tasks::test_support::Harness;
    use serde_json::json;

    #[tokio::test]
    async fn writes_one_line() {
        let mut h = Harness::new();
        let out = h
            .run(
                "log",
                json!({"message": "hello", "level": "warn", "data": {"a": 1}}),
            )
            .await
            .unwrap();
        assert_eq!(out, json!({"message": "hello"}));
        assert_eq!(
            h.logged(),
            vec![("warn".into(), "hello".into(), Some(json!({"a": 1})))]
        );
        h.run("log", json!({"message": "plain"})).await.unwrap();
        assert_eq!(h.logged(), vec![("info".into(), "plain".into(), None)]);
    }
}
