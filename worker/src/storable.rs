//! What may leave a task for Postgres: JSON that `jsonb` stores and that
//! reads back (no NUL in strings or keys, no number that Postgres prints in
//! a form the reader cannot turn back into an `f64`), within a size cap.
//! Outputs are kept as serialised JSON ([`RawValue`]), which costs their
//! size, not the 10–20× of a `serde_json::Value` tree.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

/// Why a value cannot be stored, with the JSON path where (`$.a.b[2]`).
pub type Unstorable = String;

/// Checks a value tree; the error names the first bad spot.
pub fn check(value: &Value) -> Result<(), Unstorable> {
    fn walk(value: &Value, path: &mut String) -> Result<(), Unstorable> {
        match value {
            Value::String(text) => check_text(text, path),
            Value::Number(number) => match number.as_f64() {
                Some(float) if number.is_f64() => check_float(float, path),
                _ => Ok(()),
            },
            Value::Array(items) => {
                for (at, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{at}]"));
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Object(map) => {
                for (key, item) in map {
                    let len = path.len();
                    push_key(path, key);
                    check_text(key, path)?;
                    walk(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Null | Value::Bool(_) => Ok(()),
        }
    }
    walk(value, &mut "$".to_owned())
}

/// Serialises a value that passes [`check`] and is at most `max` bytes.
pub fn to_raw(value: &Value, max: usize) -> Result<Box<RawValue>, Unstorable> {
    check(value)?;
    let text = serde_json::to_string(value).map_err(|err| err.to_string())?;
    if text.len() > max {
        return Err(format!(
            "the value is {} bytes of JSON, more than the limit of {max}",
            text.len()
        ));
    }
    RawValue::from_string(text).map_err(|err| err.to_string())
}

/// `raw` with every occurrence of the secret `values` masked: parsed and
/// rewritten only when one occurs, so an ordinary output is returned as is.
pub fn mask_raw(raw: Box<RawValue>, values: &[String]) -> Box<RawValue> {
    if !crust_model::secret::contains_any(raw.get(), values) {
        return raw;
    }
    let mut value: Value = match serde_json::from_str(raw.get()) {
        Ok(value) => value,
        Err(_) => Value::String(crust_model::secret::MASK.to_owned()),
    };
    crust_model::secret::redact_value(&mut value, values);
    to_raw(&value, usize::MAX).unwrap_or_else(|_| raw_mask())
}

fn raw_mask() -> Box<RawValue> {
    serde_json::value::to_raw_value(crust_model::secret::MASK).expect("a string is JSON")
}

/// Checks JSON text without building a tree (an HTTP body): it must parse
/// and everything in it must be storable.
pub fn check_text_json(text: &str) -> Result<(), Unstorable> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let mut path = "$".to_owned();
    Checker { path: &mut path }
        .deserialize(&mut deserializer)
        .map_err(|err| err.to_string())?;
    deserializer.end().map_err(|err| err.to_string())
}

fn push_key(path: &mut String, key: &str) {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        path.push('.');
        path.push_str(key);
    } else {
        path.push_str(&format!("[{key:?}]"));
    }
}

fn check_text(text: &str, path: &str) -> Result<(), Unstorable> {
    if text.contains('\0') {
        return Err(format!("{path}: contains a NUL character (\\u0000)"));
    }
    Ok(())
}

/// A float is storable when the plain decimal form Postgres prints for it
/// (`jsonb` keeps numbers as `numeric`, printed without an exponent) reads
/// back as a finite `f64`. 1.7976931348623157e308 does not.
fn check_float(float: f64, path: &str) -> Result<(), Unstorable> {
    // One rule with the api's edge: numbers near `f64::MAX` do not survive
    // being stored and copied from row to row (see the constant).
    if float.is_finite() && float.abs() <= crust_model::MAX_STORABLE_NUMBER {
        Ok(())
    } else {
        Err(format!(
            "{path}: the number {float:e} cannot be stored and read back (out of range)"
        ))
    }
}

/// Walks JSON text checking each value, keeping only the current path.
struct Checker<'p> {
    path: &'p mut String,
}

impl<'de> DeserializeSeed<'de> for Checker<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checker<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        check_float(v, self.path).map_err(E::custom)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        check_text(v, self.path).map_err(E::custom)
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut at = 0usize;
        loop {
            let len = self.path.len();
            self.path.push_str(&format!("[{at}]"));
            let more = seq.next_element_seed(Checker { path: self.path })?;
            self.path.truncate(len);
            if more.is_none() {
                return Ok(());
            }
            at += 1;
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let len = self.path.len();
            push_key(self.path, &key);
            check_text(&key, self.path).map_err(de::Error::custom)?;
            map.next_value_seed(Checker { path: self.path })?;
            self.path.truncate(len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_limit_is_where_reading_back_fails() {
        for ok in [1e308, -1e308, 1.7e308, 5e-324] {
            check(&json!(ok)).unwrap();
        }
        for bad in [1.7976931348623157e308, -1.7976931348623157e308] {
            check(&json!(bad)).unwrap_err();
        }
    }

    #[test]
    fn numbers_near_the_largest_double_are_refused_as_at_the_api() {
        let max = crust_model::MAX_STORABLE_NUMBER;
        assert!(check(&serde_json::json!({"v": max})).is_ok());
        assert!(check(&serde_json::json!({"v": 1e308})).is_ok());
        for steps in 1..=6 {
            let above = f64::from_bits(max.to_bits() + steps);
            assert!(
                check(&serde_json::json!({"v": above})).is_err(),
                "{above:e}"
            );
            assert!(
                check(&serde_json::json!({"v": -above})).is_err(),
                "-{above:e}"
            );
        }
    }

    #[test]
    fn ordinary_values_are_storable() {
        let value = json!({"a": [1, -2.5, 1e300, 1e-300, 0.1, "x"], "b": {"c": null, "d": true}});
        check(&value).unwrap();
        check_text_json(&value.to_string()).unwrap();
        assert_eq!(to_raw(&value, 1000).unwrap().get(), value.to_string());
    }

    #[test]
    fn huge_numbers_nul_and_oversize_values_are_not() {
        let value = json!({"a": [1, {"v": 1.7976931348623157e308}]});
        assert_eq!(
            check(&value).unwrap_err(),
            "$.a[1].v: the number 1.7976931348623157e308 cannot be stored and read back (out of range)"
        );
        assert_eq!(
            check_text_json(r#"{"a": [1, {"v": 1.7976931348623157e308}]}"#).unwrap_err(),
            "$.a[1].v: the number 1.7976931348623157e308 cannot be stored and read back (out of range) at line 1 column 38"
        );
        assert_eq!(
            check(&json!({"x y": "a\u{0}b"})).unwrap_err(),
            "$[\"x y\"]: contains a NUL character (\\u0000)"
        );
        assert!(check_text_json(r#"{"k\u0000": 1}"#)
            .unwrap_err()
            .starts_with("$[\"k\\0\"]: contains a NUL"));
        assert_eq!(
            to_raw(&json!("0123456789"), 5).unwrap_err(),
            "the value is 12 bytes of JSON, more than the limit of 5"
        );
    }
}
