//! JSON Schemas of the tools the model sees. The shim registers them as they
//! are; OMP validates the model's arguments against them.

use serde::Serialize;
use serde_json::{Value, json};

use crate::embed::limits;

/// A tool as the shim registers it with OMP.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolDefinition {
    /// Tool name the model calls.
    pub name: &'static str,
    /// Short human label shown in OMP's UI.
    pub label: &'static str,
    /// What the tool does, for the model.
    pub description: &'static str,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

/// `discord_notify`: post a notification to the session's Discord thread.
#[must_use]
pub fn discord_notify() -> ToolDefinition {
    ToolDefinition {
        name: "discord_notify",
        label: "Discord notify",
        description: "Post a short notification to this session's Discord thread, for the people \
                      following the work there (progress, a finished task, something that needs \
                      them). Secrets are redacted and mentions never ping.",
        parameters: json!({
            "type": "object",
            "properties": {
                "message": {
                    "type": "string",
                    "description": "The notification text (Markdown).",
                    "minLength": 1,
                    "maxLength": limits::DESCRIPTION,
                },
                "title": {
                    "type": "string",
                    "description": "Optional headline.",
                    "maxLength": limits::TITLE,
                },
                "level": {
                    "type": "string",
                    "enum": ["info", "success", "warning", "error"],
                    "description": "Colour and urgency; defaults to info.",
                },
                "fields": {
                    "type": "array",
                    "description": "Optional name/value pairs shown under the text.",
                    "maxItems": limits::FIELDS,
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": { "type": "string", "minLength": 1, "maxLength": limits::FIELD_NAME },
                            "value": { "type": "string", "minLength": 1, "maxLength": limits::FIELD_VALUE },
                            "inline": { "type": "boolean" },
                        },
                        "required": ["name", "value"],
                    },
                },
            },
            "required": ["message"],
        }),
    }
}

/// Every tool the extension registers.
#[must_use]
pub fn all_tools() -> Vec<ToolDefinition> {
    vec![discord_notify()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::Notification;

    #[test]
    fn notify_schema_accepts_what_the_notification_type_reads() {
        let tool = discord_notify();
        let properties = tool.parameters["properties"].as_object().unwrap();
        let sample = json!({ "message": "m", "title": "t", "level": "warning",
                             "fields": [{ "name": "n", "value": "v", "inline": true }] });
        for key in sample.as_object().unwrap().keys() {
            assert!(properties.contains_key(key), "schema lacks {key}");
        }
        let note: Notification = serde_json::from_value(sample).unwrap();
        assert_eq!(note.fields.len(), 1);
    }

    #[test]
    fn tool_names_are_discord_snake_case() {
        for tool in all_tools() {
            assert!(tool.name.starts_with("discord_"));
            assert!(tool.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
