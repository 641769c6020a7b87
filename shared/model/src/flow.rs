//! Flow control of a workflow's jobs: `concurrency` (at most `limit` jobs
//! of one rendered key running at once) and `rateLimit` (job starts per
//! rendered key per second or minute). Keys are templates over the job's
//! `parameters`, checked here at save time and compiled to a
//! [`KeySpec`] that the database renders once, as each job is inserted.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::template::{parse_template, Segment};
use crate::{Error, Result};

/// Largest `concurrency.limit`.
pub const MAX_LIMIT: i64 = 10_000;
/// Largest `rateLimit.perSecond` (and `perMinute` / 60).
pub const MAX_PER_SECOND: i64 = 10_000;
/// Longest key template, in characters.
pub const MAX_KEY_LEN: usize = 512;

/// `concurrency`: at most `limit` jobs of the workflow with the same
/// rendered `key` run at once, across all workers; the others wait queued,
/// in creation order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Concurrency {
    /// A template over the job's parameters (`{{ parameters.customer }}`),
    /// rendered once when the job is created; absent: one key for the
    /// whole workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub key: Option<String>,
    /// Jobs of one key that run at once, at most.
    #[schema(minimum = 1, maximum = 10_000)]
    pub limit: i64,
}

/// `rateLimit`: job starts per rendered `key`, cluster-wide; give exactly
/// one of `perSecond` and `perMinute`. A job over the rate waits queued
/// until its turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    /// A template over the job's parameters; absent: one key for the whole
    /// workflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 512)]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10_000)]
    pub per_second: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 600_000)]
    pub per_minute: Option<i64>,
}

/// A key template compiled for the database: a JSON list of
/// `{"text": ".."}` and `{"path": [..], "default"?: ..}` (paths under
/// `parameters`), rendered by `crust_render_key` (migration 0008): a string
/// value as itself, any other as its JSON text, a missing or null value as
/// its default or `null`. No template renders as the empty key.
#[derive(Debug, Clone, PartialEq)]
pub struct KeySpec(pub Value);

/// Checks a key template (`at` names the field in errors) and compiles it.
pub fn compile_key(at: &str, key: Option<&str>) -> Result<KeySpec> {
    let Some(key) = key else {
        return Ok(KeySpec(json!([])));
    };
    if key.trim().is_empty() || key.chars().count() > MAX_KEY_LEN {
        return Err(Error::invalid(format!(
            "{at}: must be a template of 1 to {MAX_KEY_LEN} characters, such as \"{{{{ parameters.customer }}}}\""
        )));
    }
    let segments =
        parse_template(key).map_err(|reason| Error::invalid(format!("{at}: {reason}")))?;
    let mut spec = Vec::with_capacity(segments.len());
    for segment in segments {
        match segment {
            Segment::Text(text) => spec.push(json!({ "text": text })),
            Segment::Ref(reference) => {
                if reference.path.first().map(String::as_str) != Some("parameters") {
                    return Err(Error::invalid(format!(
                        "{at}: {{{{ {} }}}}: a key is rendered when the job is created, so it may read only parameters",
                        reference.path.join(".")
                    )));
                }
                let mut part = json!({ "path": reference.path[1..] });
                if let Some(default) = reference.default {
                    part["default"] = default;
                }
                spec.push(part);
            }
        }
    }
    Ok(KeySpec(Value::Array(spec)))
}

/// A checked `concurrency`: its limit and compiled key.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidConcurrency {
    pub limit: i32,
    pub key: KeySpec,
}

impl Concurrency {
    /// Checks the limit and the key template.
    pub fn validate(&self) -> Result<ValidConcurrency> {
        if !(1..=MAX_LIMIT).contains(&self.limit) {
            return Err(Error::invalid(format!(
                "concurrency.limit: must be between 1 and {MAX_LIMIT}"
            )));
        }
        Ok(ValidConcurrency {
            limit: self.limit as i32,
            key: compile_key("concurrency.key", self.key.as_deref())?,
        })
    }
}

/// A checked `rateLimit`: microseconds between two starts of one key
/// (rounded up, so the rate is never exceeded) and its compiled key.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRateLimit {
    pub step_us: i64,
    pub key: KeySpec,
}

impl RateLimit {
    /// Checks that exactly one rate is given, in range, and the key.
    pub fn validate(&self) -> Result<ValidRateLimit> {
        let step_us = match (self.per_second, self.per_minute) {
            (Some(rate), None) => {
                if !(1..=MAX_PER_SECOND).contains(&rate) {
                    return Err(Error::invalid(format!(
                        "rateLimit.perSecond: must be between 1 and {MAX_PER_SECOND}"
                    )));
                }
                div_ceil(1_000_000, rate)
            }
            (None, Some(rate)) => {
                if !(1..=MAX_PER_SECOND * 60).contains(&rate) {
                    return Err(Error::invalid(format!(
                        "rateLimit.perMinute: must be between 1 and {}",
                        MAX_PER_SECOND * 60
                    )));
                }
                div_ceil(60_000_000, rate)
            }
            (Some(_), Some(_)) => {
                return Err(Error::invalid(
                    "rateLimit: give perSecond or perMinute, not both",
                ))
            }
            (None, None) => {
                return Err(Error::invalid(
                    "rateLimit.perSecond: required (or perMinute)",
                ))
            }
        };
        Ok(ValidRateLimit {
            step_us,
            key: compile_key("rateLimit.key", self.key.as_deref())?,
        })
    }
}

fn div_ceil(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn a_limit_below_one_is_refused_naming_concurrency_limit() {
        let message = invalid(
            Concurrency {
                key: None,
                limit: 0,
            }
            .validate(),
        );
        assert!(message.starts_with("concurrency.limit:"), "{message}");
    }

    #[test]
    fn a_key_may_read_only_parameters() {
        let concurrency = Concurrency {
            key: Some("{{ outputs.a }}".into()),
            limit: 1,
        };
        let message = invalid(concurrency.validate());
        assert!(message.starts_with("concurrency.key:"), "{message}");
    }

    #[test]
    fn a_key_compiles_to_text_and_paths_under_parameters() {
        let spec = compile_key("k", Some("t-{{ parameters.a.b | default: 3 }}")).unwrap();
        assert_eq!(
            spec.0,
            json!([{"text": "t-"}, {"path": ["a", "b"], "default": 3}])
        );
        assert_eq!(compile_key("k", None).unwrap().0, json!([]));
    }

    #[test]
    fn a_rate_needs_exactly_one_of_per_second_and_per_minute() {
        let both = RateLimit {
            key: None,
            per_second: Some(1),
            per_minute: Some(1),
        };
        assert!(invalid(both.validate()).starts_with("rateLimit:"));
        let none = RateLimit {
            key: None,
            per_second: None,
            per_minute: None,
        };
        assert!(invalid(none.validate()).starts_with("rateLimit.perSecond:"));
        let zero = RateLimit {
            key: None,
            per_second: None,
            per_minute: Some(0),
        };
        assert!(invalid(zero.validate()).starts_with("rateLimit.perMinute:"));
    }

    #[test]
    fn a_rate_step_is_rounded_up_so_the_rate_is_never_exceeded() {
        let three = RateLimit {
            key: None,
            per_second: Some(3),
            per_minute: None,
        };
        assert_eq!(three.validate().unwrap().step_us, 333_334);
        let per_minute = RateLimit {
            key: None,
            per_second: None,
            per_minute: Some(60),
        };
        assert_eq!(per_minute.validate().unwrap().step_us, 1_000_000);
    }
}
