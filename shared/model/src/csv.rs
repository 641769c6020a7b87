//! Records as CSV cells: how a stored value is written in an export and how
//! an imported cell is read back, so an export imports unchanged. Multi-value
//! fields join their values with `;` (a value holding `;` splits on import).

use serde_json::Value;

use crate::module::Field;

/// What separates the values of a multi-value field in a cell.
pub const MULTI_SEPARATOR: char = ';';

/// A stored value as one CSV cell (empty for none).
pub fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| cell(Some(item)))
            .collect::<Vec<_>>()
            .join(&MULTI_SEPARATOR.to_string()),
        Some(other) => other.to_string(),
    }
}

/// A cell as the value a record create takes for `field` (`None` for an
/// empty cell): the text as is, split on `;` for a multi-value field; the
/// create's own checks read numbers, booleans, dates and IDs from text.
pub fn value_of(field: &Field, text: &str) -> Option<Value> {
    if text.is_empty() {
        return None;
    }
    if field.is_multi {
        return Some(Value::Array(
            text.split(MULTI_SEPARATOR)
                .filter(|part| !part.is_empty())
                .map(|part| Value::String(part.to_owned()))
                .collect(),
        ));
    }
    Some(Value::String(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_round_trip_through_values() {
        assert_eq!(cell(Some(&json!("a,b"))), "a,b");
        assert_eq!(cell(Some(&json!(12.5))), "12.5");
        assert_eq!(cell(Some(&json!(true))), "true");
        assert_eq!(cell(Some(&json!(["x", "y"]))), "x;y");
        assert_eq!(cell(None), "");
        let multi: Field =
            serde_json::from_value(json!({"name": "tags", "kind": "String", "isMulti": true}))
                .unwrap();
        assert_eq!(value_of(&multi, "x;y"), Some(json!(["x", "y"])));
        assert_eq!(value_of(&multi, ""), None);
    }
}
