//! JSON Schemas of the tools the model sees. The shim registers them as they
//! are; OMP validates the model's arguments against them.

use serde::Serialize;
use serde_json::{Value, json};

use crate::embed::limits;

/// A tool as the shim registers it with OMP.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
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

/// A snowflake argument, described for the model.
fn snowflake(description: &str) -> Value {
    json!({ "type": "string", "pattern": "^[0-9]{1,20}$", "description": description })
}

/// `discord_send`: post text, embeds and small text files to a channel, or
/// to the session's thread.
#[must_use]
pub fn discord_send() -> ToolDefinition {
    let field = json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "minLength": 1, "maxLength": limits::FIELD_NAME },
            "value": { "type": "string", "minLength": 1, "maxLength": limits::FIELD_VALUE },
            "inline": { "type": "boolean" },
        },
        "required": ["name", "value"],
    });
    ToolDefinition {
        name: "discord_send",
        label: "Discord send",
        description: "Send a message to a Discord channel or thread the bot can see (ids from discord_channels): \
                      text, embeds (title, description, fields, color, url) and small text files (a log, a diff). \
                      Without channelId it goes to this session's thread. Text longer than 2000 characters is \
                      attached whole as message.md. Secrets are redacted and mentions never ping.",
        parameters: json!({
            "type": "object",
            "properties": {
                "channelId": snowflake("The channel or thread id; defaults to this session's thread."),
                "message": {
                    "type": "string",
                    "description": "The text (Markdown).",
                    "maxLength": limits::FILES_BYTES,
                },
                "embeds": {
                    "type": "array",
                    "description": "Rich embeds (optional); at most 6000 characters of embed text in all.",
                    "maxItems": limits::EMBEDS,
                    "items": {
                        "type": "object",
                        "properties": {
                            "title": { "type": "string", "maxLength": limits::TITLE },
                            "description": { "type": "string", "maxLength": limits::DESCRIPTION, "description": "Markdown." },
                            "url": { "type": "string", "description": "Link of the title (http or https)." },
                            "color": { "type": "integer", "minimum": 0, "maximum": 0xFF_FFFF, "description": "0xRRGGBB as a number." },
                            "fields": { "type": "array", "maxItems": limits::FIELDS, "items": field },
                        },
                    },
                },
                "files": {
                    "type": "array",
                    "description": format!("Text files to attach (optional); at most {} KiB in all.", limits::FILES_BYTES / 1024),
                    "maxItems": limits::FILES,
                    "items": {
                        "type": "object",
                        "properties": {
                            "filename": { "type": "string", "minLength": 1, "maxLength": limits::FILENAME, "description": "e.g. build.log or fix.diff" },
                            "content": { "type": "string", "minLength": 1, "description": "The file's text." },
                        },
                        "required": ["filename", "content"],
                    },
                },
            },
        }),
    }
}

/// `discord_read`: recent messages of a channel or of the session's thread.
#[must_use]
pub fn discord_read() -> ToolDefinition {
    ToolDefinition {
        name: "discord_read",
        label: "Discord read",
        description: "Read messages of a Discord channel or thread (listed oldest first, with their attached \
                      files' names, sizes and URLs). Without channelId it reads this session's thread, where \
                      people answer and give instructions. Without before/after it reads the newest.",
        parameters: json!({
            "type": "object",
            "properties": {
                "channelId": snowflake("The channel or thread id; defaults to this session's thread."),
                "limit": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 100,
                    "description": "How many of the newest messages (default 20).",
                },
                "before": snowflake("Only messages older than this message id (to page back)."),
                "after": snowflake("Only messages newer than this message id (to catch up), the oldest of them first."),
            },
        }),
    }
}

/// `discord_channels`: the guilds and channels the bot can see.
#[must_use]
pub fn discord_channels() -> ToolDefinition {
    ToolDefinition {
        name: "discord_channels",
        label: "Discord channels",
        description: "List the Discord servers (guilds) the bot is in and the channels it can see in each, \
                      with their ids, for discord_send and discord_read.",
        parameters: json!({
            "type": "object",
            "properties": {
                "guildId": snowflake("Only this server."),
            },
        }),
    }
}

/// `discord_guilds`: the guilds the bot is in (MCP mode; the extension has `discord_channels`).
#[must_use]
pub fn discord_guilds() -> ToolDefinition {
    ToolDefinition {
        name: "discord_guilds",
        label: "Discord guilds",
        description: "List the Discord servers (guilds) the bot is in, with their ids.",
        parameters: json!({ "type": "object", "properties": {} }),
    }
}

/// `discord_ask`: ask the people in the session's thread and wait for an answer.
#[must_use]
pub fn discord_ask() -> ToolDefinition {
    ToolDefinition {
        name: "discord_ask",
        label: "Discord ask",
        description: "Ask the people following this session in Discord a question and wait for the first \
                      answer from someone allowed to drive the session. Offer options to show buttons; \
                      without options they reply in the thread. Use it when you cannot go on without them.",
        parameters: json!({
            "type": "object",
            "properties": {
                "question": {
                    "type": "string",
                    "description": "The question (Markdown).",
                    "minLength": 1,
                    "maxLength": crate::ask::MAX_QUESTION_CHARS,
                },
                "options": {
                    "type": "array",
                    "description": "Answers to offer as buttons (optional).",
                    "maxItems": crate::ask::MAX_OPTIONS,
                    "items": { "type": "string", "minLength": 1, "maxLength": crate::ask::MAX_OPTION_CHARS },
                },
                "timeoutSeconds": {
                    "type": "integer",
                    "minimum": 10,
                    "maximum": crate::tools::MAX_ASK_SECS,
                    "description": "How long to wait (default 600 s).",
                },
            },
            "required": ["question"],
        }),
    }
}

/// Every tool the OMP extension registers.
#[must_use]
pub fn all_tools() -> Vec<ToolDefinition> {
    vec![discord_notify(), discord_send(), discord_read(), discord_channels(), discord_ask()]
}

/// Every tool `omp-discord mcp` serves: the extension's, plus `discord_guilds`.
#[must_use]
pub fn mcp_tools() -> Vec<ToolDefinition> {
    let mut tools = all_tools();
    tools.push(discord_guilds());
    tools
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
        for tool in mcp_tools() {
            assert!(tool.name.starts_with("discord_"));
            assert!(tool.name.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
