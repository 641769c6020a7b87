//! Records: values checked against their module's fields and normalised to
//! the one stored shape per kind, which the query language relies on.

use chrono::{DateTime, NaiveDate, NaiveTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use utoipa::ToSchema;

use crate::module::{Field, FieldKind, Module};
use crate::MAX_TEXT_LEN;
use crate::{Error, Id, Result};

/// One `{name, value}` pair of a record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RecordValue {
    pub name: String,
    #[schema(value_type = serde_json::Value)]
    pub value: Value,
}

/// A record as shown: fields in the module's field order.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    #[serde(rename = "recordID")]
    #[schema(value_type = String, example = "7")]
    pub id: Id,
    #[serde(rename = "moduleID")]
    #[schema(value_type = String, example = "42")]
    pub module_id: Id,
    #[serde(rename = "userID")]
    #[schema(value_type = String, example = "1")]
    pub user_id: Id,
    pub fields: Vec<RecordValue>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Record {
    /// Stored values as shown, in the module's field order.
    pub fn fields_in_order(module: &Module, values: &Map<String, Value>) -> Vec<RecordValue> {
        module
            .fields
            .iter()
            .filter_map(|field| {
                values.get(&field.name).map(|value| RecordValue {
                    name: field.name.clone(),
                    value: shown_value(field, value),
                })
            })
            .collect()
    }
}

/// The body of a record create or update: `fields` as `[{name, value}]` or
/// as an object `{name: value}`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    #[schema(value_type = Object)]
    pub fields: RecordFields,
}

/// Either accepted shape of record values.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RecordFields {
    List(Vec<RecordValue>),
    Object(Map<String, Value>),
}

impl RecordFields {
    /// The values as one object, refusing a name given twice.
    pub fn into_map(self) -> Result<Map<String, Value>> {
        match self {
            RecordFields::Object(map) => Ok(map),
            RecordFields::List(list) => {
                let mut map = Map::new();
                for (index, item) in list.into_iter().enumerate() {
                    if map.insert(item.name.clone(), item.value).is_some() {
                        return Err(Error::invalid(format!(
                            "fields[{index}]: field {:?} is given twice",
                            item.name
                        )));
                    }
                }
                Ok(map)
            }
        }
    }
}

/// Record IDs a Record field points at, to be checked against the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub field: String,
    pub module_id: Id,
    pub record_ids: Vec<Id>,
}

/// Validated values ready to store, plus the references still to check.
#[derive(Debug, Clone)]
pub struct CheckedValues {
    pub values: Map<String, Value>,
    pub references: Vec<Reference>,
}

/// Checks `input` against `module`. For an update, `existing` holds the
/// stored values: given fields replace them, `null` clears one, and fields
/// not given keep their value. On create, missing fields take their default.
pub fn check_values(
    module: &Module,
    input: Map<String, Value>,
    existing: Option<&Map<String, Value>>,
) -> Result<CheckedValues> {
    if let Some(unknown) = input.keys().find(|name| module.field(name).is_none()) {
        return Err(Error::invalid(format!(
            "field {unknown:?}: module {:?} has no such field",
            module.name
        )));
    }
    let mut values = existing.cloned().unwrap_or_default();
    let mut references = Vec::new();
    for field in &module.fields {
        let given = match input.get(&field.name) {
            Some(value) => Some(value.clone()),
            None if existing.is_none() => field.default_value.clone(),
            None => None,
        };
        // Only values being written are checked: a stored reference whose
        // target was deleted since must not block edits of other fields.
        let Some(given) = given else {
            continue;
        };
        let normalised = normalise_value(field, given)
            .map_err(|reason| Error::invalid(format!("field {:?}: {reason}", field.name)))?;
        match normalised {
            Some(value) => {
                collect_reference(field, &value, &mut references);
                values.insert(field.name.clone(), value);
            }
            None => {
                values.remove(&field.name);
            }
        }
    }
    if let Some(missing) = module
        .fields
        .iter()
        .find(|field| field.is_required && !values.contains_key(&field.name))
    {
        return Err(Error::invalid(format!(
            "field {:?}: is required",
            missing.name
        )));
    }
    Ok(CheckedValues { values, references })
}

fn collect_reference(field: &Field, value: &Value, references: &mut Vec<Reference>) {
    if field.kind != FieldKind::Record {
        return;
    }
    let Some(module_id) = field.referenced_module() else {
        return;
    };
    let ids = match value {
        Value::Array(items) => items.iter().filter_map(stored_id).collect(),
        single => stored_id(single).into_iter().collect(),
    };
    references.push(Reference {
        field: field.name.clone(),
        module_id,
        record_ids: ids,
    });
}

fn stored_id(value: &Value) -> Option<Id> {
    value.as_str().and_then(|text| Id::parse(text).ok())
}

/// Normalises one value of `field` to its stored shape. `Ok(None)` means
/// "no value" (null, an empty string or an empty list). The error says what
/// is wrong without naming the field; callers add that.
pub fn normalise_value(field: &Field, value: Value) -> std::result::Result<Option<Value>, String> {
    if is_empty(&value) {
        return Ok(None);
    }
    if field.is_multi {
        let Value::Array(items) = value else {
            return Err("holds several values; send a list".into());
        };
        let mut normalised = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            if is_empty(&item) {
                continue;
            }
            let value =
                normalise_single(field, item).map_err(|reason| format!("[{index}]: {reason}"))?;
            if !normalised.contains(&value) {
                normalised.push(value);
            }
        }
        return Ok((!normalised.is_empty()).then_some(Value::Array(normalised)));
    }
    if value.is_array() {
        return Err("holds one value, not a list".into());
    }
    normalise_single(field, value).map(Some)
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

fn kind_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn normalise_single(field: &Field, value: Value) -> std::result::Result<Value, String> {
    match field.kind {
        FieldKind::String => {
            let text = expect_string(value)?;
            check_length(field, &text)?;
            Ok(Value::String(text))
        }
        FieldKind::Email => {
            let text = expect_string(value)?.trim().to_owned();
            check_length(field, &text)?;
            if !is_email(&text) {
                return Err("not a valid email address".into());
            }
            Ok(Value::String(text))
        }
        FieldKind::Url => {
            let text = expect_string(value)?.trim().to_owned();
            check_length(field, &text)?;
            match url::Url::parse(&text) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.has_host() => {
                    Ok(Value::String(text))
                }
                _ => Err("not a valid http(s) URL".into()),
            }
        }
        FieldKind::Select => {
            let text = expect_string(value)?;
            let options = field.select_options();
            if !options.contains(&text.as_str()) {
                return Err(format!(
                    "{text:?} is not one of the options ({})",
                    options.join(", ")
                ));
            }
            Ok(Value::String(text))
        }
        FieldKind::Number => normalise_number(field, value),
        FieldKind::Bool => match value {
            Value::Bool(flag) => Ok(Value::Bool(flag)),
            Value::String(text) if text == "true" || text == "1" => Ok(Value::Bool(true)),
            Value::String(text) if text == "false" || text == "0" => Ok(Value::Bool(false)),
            other => Err(format!("expected true or false, got {}", kind_name(&other))),
        },
        FieldKind::DateTime => normalise_datetime(field, value),
        FieldKind::Record | FieldKind::User => {
            let id: Id = serde_json::from_value(value).map_err(|err| err.to_string())?;
            if id == Id::ZERO {
                return Err("0 is not an ID".into());
            }
            Ok(Value::String(id.to_string()))
        }
    }
}

fn expect_string(value: Value) -> std::result::Result<String, String> {
    match value {
        Value::String(text) => Ok(text),
        other => Err(format!("expected a string, got {}", kind_name(&other))),
    }
}

fn check_length(field: &Field, text: &str) -> std::result::Result<(), String> {
    let limit = field
        .max_length
        .map_or(MAX_TEXT_LEN, |limit| limit as usize);
    let length = text.chars().count();
    if length > limit {
        return Err(format!("is {length} characters long; the limit is {limit}"));
    }
    Ok(())
}

/// A deliberately plain check: one `@`, a non-empty local part, a dotted
/// domain, no spaces. Deliverability is the mail server's business.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && text.len() <= 254
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !text.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn normalise_number(field: &Field, value: Value) -> std::result::Result<Value, String> {
    let text = match &value {
        Value::Number(number) => number.to_string(),
        Value::String(text) => text.trim().to_owned(),
        other => return Err(format!("expected a number, got {}", kind_name(other))),
    };
    let number: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if !number.is_finite() {
        return Err(format!("{text:?} is not a finite number"));
    }
    if let Some(precision) = field.precision() {
        let decimals = text
            .split_once('.')
            .map_or(0, |(_, fraction)| fraction.trim_end_matches('0').len());
        if decimals > precision as usize || text.contains(['e', 'E']) && precision == 0 {
            return Err(format!("has more than {precision} decimal places"));
        }
    }
    // Keep integers exact; everything else is a JSON float.
    let stored = match text.parse::<i64>() {
        Ok(integer) => Number::from(integer),
        Err(_) => Number::from_f64(number).ok_or_else(|| format!("{text:?} is not a number"))?,
    };
    Ok(Value::Number(stored))
}

/// A stored value as clients see it: date-times are stored as epoch seconds
/// and shown as RFC 3339 (`YYYY-MM-DD` for date-only fields); every other
/// kind is shown as stored.
pub fn shown_value(field: &Field, value: &Value) -> Value {
    if field.kind != FieldKind::DateTime || field.only_time() {
        return value.clone();
    }
    let show = |value: &Value| match value
        .as_i64()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
    {
        Some(instant) if field.only_date() => Value::String(instant.format("%Y-%m-%d").to_string()),
        Some(instant) => Value::String(instant.to_rfc3339_opts(SecondsFormat::Secs, true)),
        None => value.clone(),
    };
    match value {
        Value::Array(items) => Value::Array(items.iter().map(show).collect()),
        single => show(single),
    }
}

fn normalise_datetime(field: &Field, value: Value) -> std::result::Result<Value, String> {
    let text = expect_string(value)?;
    let text = text.trim();
    if field.only_time() {
        let time = NaiveTime::parse_from_str(text, "%H:%M:%S")
            .or_else(|_| NaiveTime::parse_from_str(text, "%H:%M"))
            .map_err(|_| format!("{text:?} is not a time of day (HH:MM or HH:MM:SS)"))?;
        return Ok(Value::String(time.format("%H:%M:%S").to_string()));
    }
    let instant = parse_instant(text).ok_or_else(|| {
        format!("{text:?} is not an RFC 3339 date-time (like 2019-05-01T10:00:00Z) or a date")
    })?;
    // Stored as whole epoch seconds; a date-only field at midnight UTC.
    let instant = if field.only_date() {
        instant
            .date_naive()
            .and_hms_opt(0, 0, 0)
            .map_or(instant, |midnight| midnight.and_utc())
    } else {
        instant
    };
    Ok(Value::Number(instant.timestamp().into()))
}

fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(instant) = DateTime::parse_from_rfc3339(text) {
        return Some(instant.with_timezone(&Utc));
    }
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(spec: Value) -> Field {
        serde_json::from_value(spec).unwrap()
    }

    fn module() -> Module {
        Module {
            id: Id(1),
            name: "Deals".into(),
            meta: json!({}),
            fields: vec![
                field(
                    json!({"name": "title", "kind": "String", "isRequired": true, "maxLength": 5}),
                ),
                field(json!({"name": "amount", "kind": "Number", "options": {"precision": 2}})),
                field(
                    json!({"name": "stage", "kind": "Select", "options": {"options": ["new", "won"]}, "defaultValue": "new"}),
                ),
                field(json!({"name": "tags", "kind": "String", "isMulti": true})),
                field(json!({"name": "closed", "kind": "DateTime"})),
                field(json!({"name": "owner", "kind": "Record", "options": {"moduleID": "9"}})),
            ],
            created_at: Utc::now(),
            updated_at: None,
        }
    }

    fn check(input: Value) -> Result<CheckedValues> {
        let Value::Object(map) = input else { panic!() };
        check_values(&module(), map, None)
    }

    fn error(input: Value) -> String {
        check(input).unwrap_err().to_string()
    }

    #[test]
    fn values_are_normalised_to_their_stored_shape() {
        let checked = check(json!({
            "title": "Big", "amount": "12.50", "tags": ["a", "a", "b"],
            "closed": "2019-05-01T12:00:00+02:00", "owner": 3
        }))
        .unwrap();
        assert_eq!(
            Value::Object(checked.values),
            json!({"title": "Big", "amount": 12.5, "stage": "new", "tags": ["a", "b"],
                   "closed": 1556704800, "owner": "3"})
        );
        assert_eq!(
            checked.references,
            vec![Reference {
                field: "owner".into(),
                module_id: Id(9),
                record_ids: vec![Id(3)]
            }]
        );
    }

    #[test]
    fn each_rule_names_the_field() {
        assert_eq!(error(json!({})), "field \"title\": is required");
        assert_eq!(
            error(json!({"title": "x", "nope": 1})),
            "field \"nope\": module \"Deals\" has no such field"
        );
        assert_eq!(
            error(json!({"title": "toolong"})),
            "field \"title\": is 7 characters long; the limit is 5"
        );
        assert_eq!(
            error(json!({"title": "x", "amount": "abc"})),
            "field \"amount\": \"abc\" is not a number"
        );
        assert_eq!(
            error(json!({"title": "x", "amount": 1.234})),
            "field \"amount\": has more than 2 decimal places"
        );
        assert!(error(json!({"title": "x", "stage": "lost"})).contains("not one of the options"));
        assert_eq!(
            error(json!({"title": "x", "tags": "a"})),
            "field \"tags\": holds several values; send a list"
        );
        assert_eq!(
            error(json!({"title": 5})),
            "field \"title\": expected a string, got a number"
        );
        assert!(error(json!({"title": "x", "closed": "yesterday"})).contains("RFC 3339"));
        assert!(error(json!({"title": "x", "owner": "abc"})).contains("not an ID"));
    }

    #[test]
    fn date_times_are_stored_as_epoch_seconds_and_shown_as_rfc_3339() {
        let instant = field(json!({"name": "d", "kind": "DateTime"}));
        let stored = normalise_value(&instant, json!("2019-05-01T12:00:00+02:00"))
            .unwrap()
            .unwrap();
        assert_eq!(stored, json!(1556704800));
        assert_eq!(
            shown_value(&instant, &stored),
            json!("2019-05-01T10:00:00Z")
        );
        let day = field(json!({"name": "d", "kind": "DateTime", "options": {"onlyDate": true}}));
        let stored = normalise_value(&day, json!("2019-05-01T23:30:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(shown_value(&day, &stored), json!("2019-05-01"));
        let time = field(json!({"name": "t", "kind": "DateTime", "options": {"onlyTime": true}}));
        assert_eq!(
            normalise_value(&time, json!("9:30")).unwrap(),
            Some(json!("09:30:00"))
        );
    }

    #[test]
    fn emails_and_urls_are_checked() {
        let email = field(json!({"name": "e", "kind": "Email"}));
        assert!(normalise_value(&email, json!("a@b.io")).is_ok());
        assert_eq!(
            normalise_value(&email, json!("a@b")).unwrap_err(),
            "not a valid email address"
        );
        let url = field(json!({"name": "u", "kind": "Url"}));
        assert!(normalise_value(&url, json!("https://crust.example/x")).is_ok());
        assert!(normalise_value(&url, json!("javascript:alert(1)")).is_err());
    }

    #[test]
    fn an_update_keeps_unsent_fields_and_null_clears() {
        let stored = check(json!({"title": "a", "amount": 1})).unwrap().values;
        let Value::Object(change) = json!({"amount": null, "stage": "won"}) else {
            panic!()
        };
        let updated = check_values(&module(), change, Some(&stored)).unwrap();
        assert_eq!(
            Value::Object(updated.values),
            json!({"title": "a", "stage": "won"})
        );
    }
}
