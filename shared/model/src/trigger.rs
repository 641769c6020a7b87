//! Record-event triggers of a workflow (`triggers`) and the revisions a
//! record write leaves: the shapes and the checks that need no database
//! (the store checks modules, fields and filters against Postgres).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::workflow::MAX_SECONDS;
use crate::{Error, Id, Result};

/// Most triggers of one workflow, and most `fields` of one trigger.
pub const MAX_TRIGGERS: usize = 20;
/// See [`MAX_TRIGGERS`].
pub const MAX_TRIGGER_FIELDS: usize = 100;
/// Longest trigger filter, in characters (the query language's own limit).
pub const MAX_FILTER_LEN: usize = 4096;
/// Chains of triggered jobs stop at this depth: a job this deep writing a
/// record starts no further job (its log says so).
pub const MAX_TRIGGER_DEPTH: i32 = 5;

/// What happened to a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum RecordEvent {
    #[serde(rename = "record.created")]
    Created,
    #[serde(rename = "record.updated")]
    Updated,
    #[serde(rename = "record.deleted")]
    Deleted,
}

impl RecordEvent {
    /// All events, in a fixed order.
    pub const ALL: [RecordEvent; 3] = [
        RecordEvent::Created,
        RecordEvent::Updated,
        RecordEvent::Deleted,
    ];

    /// The event's name, as in `on` and a job's `event` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordEvent::Created => "record.created",
            RecordEvent::Updated => "record.updated",
            RecordEvent::Deleted => "record.deleted",
        }
    }

    /// The revision operation it writes.
    pub fn operation(self) -> &'static str {
        match self {
            RecordEvent::Created => "created",
            RecordEvent::Updated => "updated",
            RecordEvent::Deleted => "deleted",
        }
    }

    /// The event named `text`, if any.
    pub fn parse(text: &str) -> Option<RecordEvent> {
        RecordEvent::ALL.into_iter().find(|e| e.as_str() == text)
    }
}

/// Starts a job of the workflow when a record of `moduleID` is created,
/// updated or deleted. The job's parameters are the workflow's defaults
/// with `{event, moduleID, recordID, record: {field: value}, previous?}`
/// over them (`previous`: the values before an update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    pub on: RecordEvent,
    #[serde(rename = "moduleID")]
    #[schema(value_type = String, example = "3")]
    pub module_id: Id,
    /// A condition in the query language, evaluated on the record after
    /// the change (as it was, for a delete); false: no job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 4096)]
    pub filter: Option<String>,
    /// Updates only: fire only when one of these fields changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100)]
    pub fields: Option<Vec<String>>,
    /// Seconds: events for one record within this window (counted from the
    /// first) collapse into one job that starts at its end with the latest
    /// record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86_400)]
    pub debounce: Option<u32>,
}

impl Trigger {
    /// The filter, unless blank.
    pub fn filter(&self) -> Option<&str> {
        self.filter
            .as_deref()
            .map(str::trim)
            .filter(|f| !f.is_empty())
    }
}

/// Checks what can be checked without the modules: counts, lengths,
/// `fields` only on updates, the debounce range. Errors name
/// `triggers[i].<key>`.
pub fn check_triggers(triggers: &[Trigger]) -> Result<()> {
    if triggers.len() > MAX_TRIGGERS {
        return Err(Error::invalid(format!(
            "triggers: at most {MAX_TRIGGERS} triggers"
        )));
    }
    for (index, trigger) in triggers.iter().enumerate() {
        let at = format!("triggers[{index}]");
        if let Some(filter) = &trigger.filter {
            if filter.chars().count() > MAX_FILTER_LEN {
                return Err(Error::invalid(format!(
                    "{at}.filter: at most {MAX_FILTER_LEN} characters"
                )));
            }
        }
        if let Some(fields) = &trigger.fields {
            if trigger.on != RecordEvent::Updated {
                return Err(Error::invalid(format!(
                    "{at}.fields: only a record.updated trigger compares fields"
                )));
            }
            if fields.is_empty() || fields.len() > MAX_TRIGGER_FIELDS {
                return Err(Error::invalid(format!(
                    "{at}.fields: list 1 to {MAX_TRIGGER_FIELDS} field names"
                )));
            }
        }
        if let Some(debounce) = trigger.debounce {
            if !(1..=MAX_SECONDS).contains(&debounce) {
                return Err(Error::invalid(format!(
                    "{at}.debounce: must be between 1 and {MAX_SECONDS} seconds"
                )));
            }
        }
    }
    Ok(())
}

/// Who made a change: a user (through the api) or a task of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ChangedBy {
    Job {
        #[serde(rename = "jobID")]
        #[schema(value_type = String)]
        job_id: Id,
        task: String,
    },
    User {
        #[serde(rename = "userID")]
        #[schema(value_type = String)]
        user_id: Id,
    },
}

/// One field's change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    #[schema(value_type = Object)]
    pub old: Value,
    #[schema(value_type = Object)]
    pub new: Value,
}

/// One change of a record: `GET /module/{moduleID}/record/{recordID}/revisions`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Revision {
    /// 1 for the create, one more for each later change.
    pub revision: i32,
    pub at: DateTime<Utc>,
    /// `created`, `updated` or `deleted`.
    pub operation: String,
    pub by: ChangedBy,
    /// The fields that changed (all of them for a create or delete).
    pub changes: BTreeMap<String, Change>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn triggers(value: Value) -> Vec<Trigger> {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn fields_are_only_for_updates() {
        let list = triggers(json!([{"on": "record.created", "moduleID": "3", "fields": ["a"]}]));
        assert_eq!(
            check_triggers(&list).unwrap_err().to_string(),
            "triggers[0].fields: only a record.updated trigger compares fields"
        );
        let list = triggers(json!([{"on": "record.updated", "moduleID": 3, "fields": ["a"]}]));
        check_triggers(&list).unwrap();
    }

    #[test]
    fn debounce_is_bounded() {
        let list = triggers(json!([{"on": "record.updated", "moduleID": "3", "debounce": 0}]));
        assert!(check_triggers(&list)
            .unwrap_err()
            .to_string()
            .starts_with("triggers[0].debounce:"));
    }

    #[test]
    fn an_unknown_event_is_refused_as_the_json_is_read() {
        let err = serde_json::from_value::<Vec<Trigger>>(
            json!([{"on": "record.renamed", "moduleID": "3"}]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("record.renamed"), "{err}");
    }

    #[test]
    fn changed_by_shows_a_user_or_a_job_task() {
        let by = ChangedBy::Job {
            job_id: Id::from(4),
            task: "t".into(),
        };
        assert_eq!(
            serde_json::to_value(by).unwrap(),
            json!({"jobID": "4", "task": "t"})
        );
        let by = ChangedBy::User {
            user_id: Id::from(7),
        };
        assert_eq!(serde_json::to_value(by).unwrap(), json!({"userID": "7"}));
    }
}
