//! Charts: a name and a JSON config whose `reports` the server can run.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::required_name;
use crate::{Error, Id, Result};

/// A chart as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Chart {
    #[serde(rename = "chartID")]
    #[schema(value_type = String, example = "5")]
    pub id: Id,
    pub name: String,
    #[schema(value_type = Object)]
    pub config: Value,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
}

/// The body of a chart create or edit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartInput {
    #[schema(min_length = 1, max_length = 255)]
    pub name: String,
    /// Chart JSON; `reports` is a list of `{moduleID, metrics, dimensions, filter}`.
    #[schema(value_type = Object)]
    pub config: Value,
}

/// The body of a chart edit: every key is optional and an absent one keeps
/// its current value; `config`, when given, replaces the whole config.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChartPatch {
    pub name: Option<String>,
    /// Chart JSON; `reports` is a list of `{moduleID, metrics, dimensions, filter}`.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
}

impl ChartPatch {
    /// The full input this edit makes of `current`.
    pub fn apply(self, current: Chart) -> ChartInput {
        ChartInput {
            name: self.name.unwrap_or(current.name),
            config: self.config.unwrap_or(current.config),
        }
    }
}

impl ChartInput {
    /// Checks the name and the config's shape.
    pub fn validate(mut self) -> Result<ChartInput> {
        self.name = required_name("name", &self.name)?;
        if !self.config.is_object() {
            return Err(Error::invalid("config: must be a JSON object"));
        }
        if self.config.to_string().len() > crate::MAX_TEXT_LEN * 4 {
            return Err(Error::invalid("config: is larger than 256 KiB"));
        }
        self.reports()?;
        Ok(self)
    }

    /// The entries of `config.reports` (none when absent).
    pub fn reports(&self) -> Result<Vec<ChartReport>> {
        let Some(reports) = self.config.get("reports") else {
            return Ok(Vec::new());
        };
        let Some(reports) = reports.as_array() else {
            return Err(Error::invalid("config.reports: must be a list"));
        };
        reports
            .iter()
            .enumerate()
            .map(|(index, report)| {
                ChartReport::from_value(report)
                    .map_err(|reason| Error::invalid(format!("config.reports[{index}]: {reason}")))
            })
            .collect()
    }
}

/// One report of a chart's config.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChartReport {
    #[serde(rename = "moduleID")]
    pub module_id: Id,
    #[serde(default)]
    pub metrics: String,
    #[serde(default)]
    pub dimensions: String,
    #[serde(default)]
    pub filter: String,
}

impl ChartReport {
    /// Reads one entry of `config.reports`.
    pub fn from_value(value: &Value) -> std::result::Result<ChartReport, String> {
        serde_json::from_value(value.clone()).map_err(|err| err.to_string())
    }
}
