//! Secrets: named values (API keys, passwords) that task params reference as
//! `{{ secrets.name }}`. Their values are never shown: the API lists names
//! and times only, and whatever a job writes (log lines, outputs, errors)
//! has each value it used replaced by [`MASK`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{Error, Result};

/// What a secret's value is replaced with.
pub const MASK: &str = "***";
/// Shortest value, in characters: masking a shorter one would mask
/// ordinary text.
pub const MIN_VALUE_LEN: usize = 6;
/// Longest value, in characters.
pub const MAX_VALUE_LEN: usize = 16 * 1024;
/// Longest name.
pub const MAX_NAME_LEN: usize = 64;

/// The body of `PUT /secret/{name}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretInput {
    /// The value, 6 to 16384 characters; stored encrypted, never shown again.
    #[schema(min_length = 6, max_length = 16384, pattern = "^[^\\u0000]*$")]
    pub value: String,
}

/// A secret as the API shows it: its name and times, never its value.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// Checks a secret's name: an identifier of at most 64 characters.
pub fn check_name(name: &str) -> Result<()> {
    if !crate::module::is_identifier(name) || name.len() > MAX_NAME_LEN {
        return Err(Error::invalid(format!(
            "name: {name:?} is not an identifier of at most {MAX_NAME_LEN} characters \
             (a letter, then letters, digits or _)"
        )));
    }
    Ok(())
}

impl SecretInput {
    /// Checks the value's length and that Postgres can hold it.
    pub fn validate(&self) -> Result<&str> {
        let len = self.value.chars().count();
        if !(MIN_VALUE_LEN..=MAX_VALUE_LEN).contains(&len) {
            return Err(Error::invalid(format!(
                "value: must be {MIN_VALUE_LEN} to {MAX_VALUE_LEN} characters (got {len}); \
                 shorter values cannot be masked in logs without masking ordinary words"
            )));
        }
        Ok(&self.value)
    }
}

/// Replaces every occurrence of each of `values` in `text` with [`MASK`],
/// also as it appears escaped inside a JSON string.
pub fn redact(text: &str, values: &[String]) -> String {
    let mut out = text.to_owned();
    for value in values {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), MASK);
        }
        let escaped = json_escaped(value);
        if escaped != *value && out.contains(escaped.as_str()) {
            out = out.replace(escaped.as_str(), MASK);
        }
    }
    out
}

/// True when `text` holds any of `values` (plain or JSON-escaped).
pub fn contains_any(text: &str, values: &[String]) -> bool {
    values
        .iter()
        .any(|value| text.contains(value.as_str()) || text.contains(json_escaped(value).as_str()))
}

/// Redacts every string (and object key) in `value`; numbers and other
/// scalars are kept, so the result is still the same shape of JSON.
pub fn redact_value(value: &mut Value, values: &[String]) {
    match value {
        Value::String(text) => {
            if contains_any(text, values) {
                *text = redact(text, values);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| redact_value(item, values)),
        Value::Object(map) => {
            let entries = std::mem::take(map);
            for (key, mut item) in entries {
                redact_value(&mut item, values);
                map.insert(redact(&key, values), item);
            }
        }
        Value::Number(number) => {
            if values.iter().any(|secret| *secret == number.to_string()) {
                *value = Value::String(MASK.to_owned());
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// `value` as it is written inside a JSON string (without the quotes).
fn json_escaped(value: &str) -> String {
    let quoted = serde_json::to_string(value).unwrap_or_default();
    quoted
        .get(1..quoted.len().saturating_sub(1))
        .unwrap_or_default()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_identifiers_and_values_have_bounds() {
        assert!(check_name("stripe_key").is_ok());
        assert!(check_name("9lives").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
        let short = SecretInput {
            value: "abc".into(),
        };
        assert!(short.validate().unwrap_err().to_string().contains("value:"));
    }

    #[test]
    fn values_are_masked_plain_escaped_and_inside_json() {
        let secrets = vec!["s3cr\"et-value".to_owned(), "123456789".to_owned()];
        assert_eq!(
            redact("token s3cr\"et-value here", &secrets),
            "token *** here"
        );
        assert_eq!(
            redact(r#"{"t":"s3cr\"et-value"}"#, &secrets),
            r#"{"t":"***"}"#
        );
        let mut value = json!({"a": ["x s3cr\"et-value y"], "s3cr\"et-value": 1, "n": 123456789});
        redact_value(&mut value, &secrets);
        assert_eq!(value, json!({"a": ["x *** y"], "***": 1, "n": "***"}));
        assert!(!contains_any("nothing here", &secrets));
    }
}
