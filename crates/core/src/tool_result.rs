//! Redaction of tool results before the model sees them (OMP's
//! `tool_result` event), with an audit count the shim puts in `details`.
//!
//! OMP hands the model the unmodified result when a handler throws or times
//! out, so this must never fail and must stay fast. The shim walks the
//! content blocks itself and passes only the text of `{type: "text"}` blocks,
//! one string at a time: nothing else (an image's data) crosses into wasm.

use serde::Serialize;

use crate::redact::{RedactionReport, Redactor};

/// A redacted text block and what was replaced in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedactedText {
    /// The text with secrets replaced.
    pub text: String,
    /// How many secrets were replaced, by kind.
    pub report: RedactionReport,
}

/// One text block of a tool result, redacted: `None` when it holds no secret
/// (the common case, which then costs no copy).
#[must_use]
pub fn redact_tool_text(text: &str, redactor: Redactor) -> Option<RedactedText> {
    let redacted = redactor.redact(text);
    (redacted.report.count > 0).then(|| RedactedText { text: redacted.text.into_owned(), report: redacted.report })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token

    #[test]
    fn a_text_block_is_redacted_and_counted() {
        let redacted = redact_tool_text(&format!("token: {SECRET} and {SECRET}"), Redactor::new()).unwrap();
        assert!(!redacted.text.contains(SECRET), "{}", redacted.text);
        assert_eq!(redacted.report.count, 2);
        assert_eq!(redacted.report.kinds.values().sum::<usize>(), 2);
    }

    #[test]
    fn clean_text_is_left_alone() {
        assert_eq!(redact_tool_text("cargo test: 14 passed", Redactor::new()), None);
        assert_eq!(redact_tool_text("", Redactor::conservative()), None);
    }
}
