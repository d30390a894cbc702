//! Redaction of tool results before the model sees them (OMP's
//! `tool_result` event), with an audit count the shim puts in `details`.
//!
//! OMP hands the model the unmodified result when a handler throws or times
//! out, so this must never fail and must stay fast: it only walks the
//! content blocks and redacts their text.

use serde::Serialize;
use serde_json::Value;

use crate::redact::{RedactionReport, Redactor};

/// What the `tool_result` handler returns to OMP.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedactedToolResult {
    /// The content blocks, with secrets replaced; `None` when nothing changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    /// How many secrets were replaced, by kind.
    pub report: RedactionReport,
}

/// Redacts the text blocks of a tool result's `content` (`[{type: "text",
/// text}, …]`, or a bare string). Other blocks (images) pass unchanged.
#[must_use]
pub fn redact_tool_content(content: &Value, redactor: Redactor) -> RedactedToolResult {
    let mut report = RedactionReport::default();
    let mut redact = |text: &str| -> Option<String> {
        let redacted = redactor.redact(text);
        if redacted.report.count == 0 {
            return None;
        }
        report.count += redacted.report.count;
        for (kind, n) in &redacted.report.kinds {
            *report.kinds.entry(kind).or_insert(0) += n;
        }
        Some(redacted.text.into_owned())
    };
    let content = match content {
        Value::String(text) => redact(text).map(Value::String),
        Value::Array(blocks) => {
            let mut changed = false;
            let blocks: Vec<Value> = blocks
                .iter()
                .map(|block| match block["text"].as_str().filter(|_| block["type"] == "text").and_then(&mut redact) {
                    Some(text) => {
                        changed = true;
                        let mut block = block.clone();
                        block["text"] = Value::String(text);
                        block
                    }
                    None => block.clone(),
                })
                .collect();
            changed.then_some(Value::Array(blocks))
        }
        _ => None,
    };
    RedactedToolResult { content, report }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token

    #[test]
    fn text_blocks_are_redacted_and_counted() {
        let content = json!([
            { "type": "text", "text": format!("token: {SECRET}") },
            { "type": "image", "data": "aGk=", "mimeType": "image/png" },
            { "type": "text", "text": "nothing here" },
        ]);
        let result = redact_tool_content(&content, Redactor::new());
        let blocks = result.content.unwrap();
        assert!(!blocks.to_string().contains(SECRET));
        assert_eq!(blocks[1], content[1]);
        assert_eq!(blocks[2], content[2]);
        assert_eq!(result.report.count, 1);
    }

    #[test]
    fn clean_results_are_left_alone() {
        let content = json!([{ "type": "text", "text": "cargo test: 14 passed" }]);
        let result = redact_tool_content(&content, Redactor::new());
        assert_eq!((result.content, result.report.count), (None, 0));
    }

    #[test]
    fn odd_shapes_never_fail() {
        for content in [json!(null), json!(42), json!([1, "x", {"type": "text"}]), json!(format!("raw {SECRET}"))] {
            let result = redact_tool_content(&content, Redactor::new());
            assert!(!serde_json::to_string(&result).unwrap().contains(SECRET));
        }
    }
}
