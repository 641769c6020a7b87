//! Modules: typed schemas whose fields drive record validation and queries.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{bounded_text, required_name, MAX_NAME_LEN, MAX_TEXT_LEN};
use crate::{Error, Id, Result};

/// The kind of value a field holds, and the `options` each kind reads:
///
/// | kind | value | `options` |
/// |---|---|---|
/// | `String` | text | `multiLine` (bool, a hint for the front end) |
/// | `Number` | a decimal number | `precision` (0–12 decimal places kept) |
/// | `Bool` | true or false | none |
/// | `DateTime` | RFC 3339, stored in UTC | `onlyDate` (store `YYYY-MM-DD`) or `onlyTime` (store `HH:MM:SS`), not both |
/// | `Email` | an email address | none |
/// | `Url` | an http(s) URL | none |
/// | `Select` | one of a fixed list | `options` (required: a non-empty list of strings) |
/// | `Record` | the ID of a live record | `moduleID` (required: the module it references) |
/// | `User` | a user ID | none |
///
/// For example `{"name": "stage", "kind": "Select", "options": {"options": ["new", "won", "lost"]}}`,
/// `{"name": "account", "kind": "Record", "options": {"moduleID": "3"}}`,
/// `{"name": "amount", "kind": "Number", "options": {"precision": 2}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum FieldKind {
    /// Free text; `options.multiLine` is a hint for the front end.
    String,
    /// A decimal number; `options.precision` caps the decimal places.
    Number,
    /// true or false.
    Bool,
    /// An instant, stored as RFC 3339 UTC; `options.onlyDate` stores
    /// `YYYY-MM-DD`, `options.onlyTime` stores `HH:MM:SS`.
    DateTime,
    /// An email address.
    Email,
    /// An http(s) URL.
    Url,
    /// One of `options.options`.
    Select,
    /// The ID of a live record in module `options.moduleID`.
    Record,
    /// A user ID.
    User,
}

/// One field of a module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "stage", "kind": "Select", "label": "Stage",
    "options": {"options": ["new", "won", "lost"]}, "isRequired": true}))]
pub struct Field {
    /// Identifier (`[A-Za-z][A-Za-z0-9_]*`), unique within the module.
    pub name: String,
    pub kind: FieldKind,
    /// Display label; defaults to the name.
    #[serde(default)]
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help_text: Option<String>,
    /// Used when a record is created without this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_value: Option<Value>,
    /// Most characters a String, Email or Url value may have.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// Kind-specific options: `options` (list of strings, required) for a
    /// Select, `moduleID` (required) for a Record, `precision` for a Number,
    /// `onlyDate` or `onlyTime` for a DateTime, `multiLine` for a String;
    /// see the `FieldKind` schema.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub options: Value,
    #[serde(default)]
    pub is_required: bool,
    #[serde(default)]
    pub is_private: bool,
    #[serde(default = "yes")]
    pub is_visible: bool,
    /// Holds a list of values instead of one.
    #[serde(default)]
    pub is_multi: bool,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn yes() -> bool {
    true
}

/// Most fields a module may have.
pub const MAX_FIELDS: usize = 200;
/// Longest field name.
pub const MAX_FIELD_NAME_LEN: usize = 64;
/// Names the query language gives to record columns; fields may not take them.
pub const SYSTEM_NAMES: &[&str] = &[
    "id",
    "recordid",
    "moduleid",
    "createdat",
    "created_at",
    "updatedat",
    "updated_at",
    "deletedat",
    "deleted_at",
    "userid",
    "user_id",
];

/// Whether `name` is a valid identifier for a field.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Field {
    /// `options.moduleID` of a Record field.
    pub fn referenced_module(&self) -> Option<Id> {
        serde_json::from_value(self.options.get("moduleID")?.clone()).ok()
    }

    /// `options.options` of a Select field.
    pub fn select_options(&self) -> Vec<&str> {
        self.options
            .get("options")
            .and_then(Value::as_array)
            .map(|values| values.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// `options.precision` of a Number field.
    pub fn precision(&self) -> Option<u32> {
        self.options
            .get("precision")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok())
    }

    fn option_flag(&self, name: &str) -> bool {
        self.options
            .get(name)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    /// DateTime field holding dates only.
    pub fn only_date(&self) -> bool {
        self.option_flag("onlyDate")
    }

    /// DateTime field holding times of day only.
    pub fn only_time(&self) -> bool {
        self.option_flag("onlyTime")
    }

    /// How the query language types this field's values. Times of day are
    /// stored as `HH:MM:SS`, which compares correctly as text.
    pub fn query_type(&self) -> crust_query::FieldType {
        use crust_query::FieldType;
        match self.kind {
            FieldKind::String | FieldKind::Email | FieldKind::Url | FieldKind::Select => {
                FieldType::Text
            }
            FieldKind::Number => FieldType::Number,
            FieldKind::Bool => FieldType::Bool,
            FieldKind::DateTime if self.only_time() => FieldType::Text,
            FieldKind::DateTime => FieldType::Timestamp,
            FieldKind::Record | FieldKind::User => FieldType::Id,
        }
    }

    /// Checks the definition itself (not values); `at` locates it in input.
    fn validate(&mut self, at: &str) -> Result<()> {
        let name = self.name.trim().to_owned();
        if !is_identifier(&name) {
            return Err(Error::invalid(format!(
                "{at}.name: {name:?} is not an identifier (a letter, then letters, digits or _)"
            )));
        }
        if name.len() > MAX_FIELD_NAME_LEN {
            return Err(Error::invalid(format!(
                "{at}.name: longer than {MAX_FIELD_NAME_LEN} characters"
            )));
        }
        if SYSTEM_NAMES.contains(&name.to_ascii_lowercase().as_str()) {
            return Err(Error::invalid(format!(
                "{at}.name: {name:?} is reserved for a system column"
            )));
        }
        self.name = name;
        let label = self.label.trim();
        self.label = if label.is_empty() {
            self.name.clone()
        } else {
            label.to_owned()
        };
        bounded_text(&format!("{at}.label"), &self.label, MAX_NAME_LEN)?;
        if let Some(help) = &self.help_text {
            bounded_text(&format!("{at}.helpText"), help, MAX_TEXT_LEN)?;
        }
        if !self.options.is_object() {
            return Err(Error::invalid(format!("{at}.options: must be an object")));
        }
        match self.max_length {
            Some(0) => {
                return Err(Error::invalid(format!(
                    "{at}.maxLength: must be at least 1"
                )))
            }
            Some(_)
                if !matches!(
                    self.kind,
                    FieldKind::String | FieldKind::Email | FieldKind::Url
                ) =>
            {
                return Err(Error::invalid(format!(
                    "{at}.maxLength: only String, Email and Url fields have a length"
                )))
            }
            _ => {}
        }
        match self.kind {
            FieldKind::Select => {
                let options = self.options.get("options").and_then(Value::as_array);
                let valid = options.is_some_and(|values| {
                    !values.is_empty() && values.iter().all(Value::is_string)
                });
                if !valid {
                    return Err(Error::invalid(format!(
                        "{at}.options.options: a Select field needs a non-empty list of strings"
                    )));
                }
            }
            FieldKind::Record if self.referenced_module().is_none_or(|id| id == Id::ZERO) => {
                return Err(Error::invalid(format!(
                    "{at}.options.moduleID: a Record field needs the ID of the module it references"
                )));
            }
            FieldKind::Number
                if self
                    .options
                    .get("precision")
                    .is_some_and(|p| p.as_u64().is_none_or(|p| p > 12)) =>
            {
                return Err(Error::invalid(format!(
                    "{at}.options.precision: must be a whole number from 0 to 12"
                )));
            }
            FieldKind::DateTime if self.only_date() && self.only_time() => {
                return Err(Error::invalid(format!(
                    "{at}.options: onlyDate and onlyTime cannot both be set"
                )));
            }
            _ => {}
        }
        Ok(())
    }
}

/// A module as stored and shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Module {
    #[serde(rename = "moduleID")]
    #[schema(value_type = String, example = "42")]
    pub id: Id,
    pub name: String,
    #[schema(value_type = Object)]
    pub meta: Value,
    pub fields: Vec<Field>,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

impl Module {
    /// The field called `name`, if the module has one.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|field| field.name == name)
    }

    /// Changes whenever the module is edited: what a record write checks to
    /// know it validated against the current definition.
    pub fn version(&self) -> DateTime<Utc> {
        self.updated_at.unwrap_or(self.created_at)
    }

    /// The module's fields as the query language types them.
    pub fn query_schema(&self) -> crust_query::Schema {
        crust_query::Schema {
            fields: self
                .fields
                .iter()
                .map(|field| crust_query::FieldSpec {
                    name: field.name.clone(),
                    ty: field.query_type(),
                    multi: field.is_multi,
                })
                .collect(),
        }
    }
}

/// The body of a module create or edit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModuleInput {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    #[schema(min_items = 1, max_items = 200)]
    pub fields: Vec<Field>,
    /// Free-form JSON for the front end; defaults to `{}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub meta: Option<Value>,
}

/// The body of a module edit: every key is optional and an absent one keeps
/// its current value. `fields`, when given, is the module's whole new field
/// list (fields left out are removed, with their values).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModulePatch {
    pub name: Option<String>,
    pub fields: Option<Vec<Field>>,
    /// Free-form JSON for the front end.
    #[schema(value_type = Option<Object>)]
    pub meta: Option<Value>,
}

impl ModulePatch {
    /// The full input this edit makes of `current`.
    pub fn apply(self, current: &Module) -> ModuleInput {
        ModuleInput {
            name: self.name.unwrap_or_else(|| current.name.clone()),
            fields: self.fields.unwrap_or_else(|| current.fields.clone()),
            meta: Some(self.meta.unwrap_or_else(|| current.meta.clone())),
        }
    }
}

impl ModuleInput {
    /// Checks and normalises the input. Cross-module checks (that a Record
    /// field's target exists) need the database and happen in `db::modules`.
    pub fn validate(mut self) -> Result<ModuleInput> {
        self.name = required_name("name", &self.name)?;
        if self.fields.is_empty() {
            return Err(Error::invalid("fields: a module needs at least one field"));
        }
        if self.fields.len() > MAX_FIELDS {
            return Err(Error::invalid(format!(
                "fields: a module may have at most {MAX_FIELDS} fields"
            )));
        }
        let mut seen = HashSet::new();
        for (index, field) in self.fields.iter_mut().enumerate() {
            field.validate(&format!("fields[{index}]"))?;
            if !seen.insert(field.name.to_ascii_lowercase()) {
                return Err(Error::invalid(format!(
                    "fields[{index}].name: {:?} is used twice",
                    field.name
                )));
            }
        }
        // Defaults must themselves be valid values of their field.
        for (index, field) in self.fields.iter().enumerate() {
            if let Some(default) = &field.default_value {
                crate::record::normalise_value(field, default.clone()).map_err(|err| {
                    Error::invalid(format!("fields[{index}].defaultValue: {err}"))
                })?;
            }
        }
        let meta = self.meta.take().unwrap_or_else(empty_object);
        if meta.to_string().len() > crate::MAX_TEXT_LEN * 4 {
            return Err(Error::invalid("meta: is larger than 256 KiB"));
        }
        self.meta = Some(meta);
        Ok(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(fields: Value) -> Result<ModuleInput> {
        serde_json::from_value::<ModuleInput>(json!({"name": "Leads", "fields": fields}))
            .map_err(|err| Error::invalid(err.to_string()))?
            .validate()
    }

    fn message(result: Result<ModuleInput>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn a_valid_module_is_normalised() {
        let module = input(json!([{"name": " email ", "kind": "Email"}])).unwrap();
        assert_eq!(module.fields[0].name, "email");
        assert_eq!(module.fields[0].label, "email");
        assert!(module.fields[0].is_visible);
        assert_eq!(module.meta, Some(json!({})));
    }

    #[test]
    fn field_rules_name_the_field() {
        assert_eq!(
            message(input(json!([]))),
            "fields: a module needs at least one field"
        );
        assert!(message(input(json!([{"name": "1x", "kind": "String"}])))
            .starts_with("fields[0].name: \"1x\" is not an identifier"));
        assert!(message(input(json!([
            {"name": "a", "kind": "String"}, {"name": "A", "kind": "Number"}
        ])))
        .contains("fields[1].name: \"A\" is used twice"));
        assert!(message(input(json!([{"name": "id", "kind": "String"}]))).contains("reserved"));
        assert!(message(input(json!([{"name": "s", "kind": "Select"}])))
            .starts_with("fields[0].options.options"));
        assert!(message(input(json!([{"name": "r", "kind": "Record"}])))
            .starts_with("fields[0].options.moduleID"));
        assert!(message(input(
            json!([{"name": "n", "kind": "Number", "maxLength": 3}])
        ))
        .starts_with("fields[0].maxLength"));
        assert!(message(input(
            json!([{"name": "n", "kind": "Number", "defaultValue": "abc"}])
        ))
        .starts_with("fields[0].defaultValue"));
    }
}
