//! Pages: a tree of front-end layouts, some of them a module's record page.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::{bounded_text, required_name, MAX_TEXT_LEN};
use crate::{Error, Id, Result};

/// A page as shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    #[serde(rename = "pageID")]
    #[schema(value_type = String, example = "3")]
    pub id: Id,
    /// The parent page; "0" is the root.
    #[serde(rename = "selfID")]
    #[schema(value_type = String, example = "0")]
    pub parent_id: Id,
    /// "0" for an ordinary page, else the module whose record page this is.
    #[serde(rename = "moduleID")]
    #[schema(value_type = String, example = "0")]
    pub module_id: Id,
    pub title: String,
    pub description: String,
    pub visible: bool,
    #[schema(value_type = Vec<serde_json::Value>)]
    pub blocks: Value,
    pub weight: i32,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Sub-pages, in weight order (in the tree only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub children: Option<Vec<Page>>,
}

/// The body of a page create or edit.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PageInput {
    #[serde(rename = "selfID", default)]
    #[schema(value_type = Option<String>)]
    pub parent_id: Id,
    #[serde(rename = "moduleID", default)]
    #[schema(value_type = Option<String>)]
    pub module_id: Id,
    #[schema(min_length = 1, max_length = 255)]
    pub title: String,
    #[serde(default)]
    #[schema(max_length = 65_536)]
    pub description: String,
    #[serde(default)]
    pub visible: bool,
    #[schema(value_type = Vec<serde_json::Value>)]
    pub blocks: Value,
}

/// The body of a page edit: every key is optional and an absent one keeps
/// its current value (`"selfID": "0"` moves a page to the top level,
/// `"moduleID": "0"` makes it an ordinary page).
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PagePatch {
    #[serde(rename = "selfID")]
    #[schema(value_type = Option<String>)]
    pub parent_id: Option<Id>,
    #[serde(rename = "moduleID")]
    #[schema(value_type = Option<String>)]
    pub module_id: Option<Id>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub visible: Option<bool>,
    #[schema(value_type = Option<Vec<serde_json::Value>>)]
    pub blocks: Option<Value>,
}

impl PagePatch {
    /// The full input this edit makes of `current`.
    pub fn apply(self, current: Page) -> PageInput {
        PageInput {
            parent_id: self.parent_id.unwrap_or(current.parent_id),
            module_id: self.module_id.unwrap_or(current.module_id),
            title: self.title.unwrap_or(current.title),
            description: self.description.unwrap_or(current.description),
            visible: self.visible.unwrap_or(current.visible),
            blocks: self.blocks.unwrap_or(current.blocks),
        }
    }
}

impl PageInput {
    /// Checks what needs no database and normalises the title.
    pub fn validate(mut self) -> Result<PageInput> {
        self.title = required_name("title", &self.title)?;
        bounded_text("description", &self.description, MAX_TEXT_LEN)?;
        if !self.blocks.is_array() {
            return Err(Error::invalid("blocks: must be a JSON array"));
        }
        if self.blocks.to_string().len() > MAX_TEXT_LEN * 4 {
            return Err(Error::invalid("blocks: is larger than 256 KiB"));
        }
        Ok(self)
    }
}

/// The body of a reorder.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReorderInput {
    #[serde(rename = "pageIDs")]
    #[schema(value_type = Vec<String>)]
    pub page_ids: Vec<Id>,
}

/// Nests a flat list (ordered by weight) under parents, from `root` down.
pub fn build_tree(pages: Vec<Page>) -> Vec<Page> {
    use std::collections::HashMap;
    let mut by_parent: HashMap<Id, Vec<Page>> = HashMap::new();
    for page in pages {
        by_parent.entry(page.parent_id).or_default().push(page);
    }
    // Iterative, so a deep tree cannot overflow the stack: attach children
    // bottom-up by first ordering the pages depth-first.
    fn attach(parent: Id, by_parent: &mut HashMap<Id, Vec<Page>>, depth: usize) -> Vec<Page> {
        let mut children = by_parent.remove(&parent).unwrap_or_default();
        if depth < 256 {
            for child in &mut children {
                child.children = Some(attach(child.id, by_parent, depth + 1));
            }
        }
        children
    }
    attach(Id::ZERO, &mut by_parent, 0)
}
