//! Secret detection and replacement for everything bound for Discord.
//!
//! Secrets are replaced by `[REDACTED:<kind>]`. This first version knows a few
//! well-known prefixed token formats; the full rule set (issue #5) replaces it
//! behind the same functions.

use std::borrow::Cow;

/// One secret found in a text, as a byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What kind of secret, e.g. `github-token`.
    pub kind: &'static str,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

/// Prefixed token formats: (prefix, kind, minimum length of the part after the prefix).
const PREFIXED: &[(&str, &str, usize)] = &[
    ("ghp_", "github-token", 36),
    ("gho_", "github-token", 36),
    ("ghs_", "github-token", 36),
    ("github_pat_", "github-token", 60),
    ("sk-ant-", "anthropic-key", 32),
    ("sk-", "openai-key", 32),
    ("xoxb-", "slack-token", 20),
    ("xoxp-", "slack-token", 20),
    ("AKIA", "aws-access-key-id", 16),
];

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Finds secrets in `text`, in order, without overlaps.
#[must_use]
pub fn find_secrets(text: &str) -> Vec<Finding> {
    let bytes = text.as_bytes();
    let mut findings = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !is_token_byte(bytes[i]) || (i > 0 && is_token_byte(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let end = i + bytes[i..].iter().take_while(|b| is_token_byte(**b)).count();
        let token = &text[i..end];
        if let Some((_, kind, _)) = PREFIXED.iter().find(|(prefix, _, min)| {
            token.starts_with(prefix) && token.len() - prefix.len() >= *min
        }) {
            findings.push(Finding {
                kind,
                start: i,
                end,
            });
        }
        i = end;
    }
    findings
}

/// Replaces every secret in `text` with `[REDACTED:<kind>]`; borrows when there is none.
#[must_use]
pub fn redact_text(text: &str) -> Cow<'_, str> {
    let findings = find_secrets(text);
    if findings.is_empty() {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for finding in findings {
        out.push_str(&text[last..finding.start]);
        out.push_str("[REDACTED:");
        out.push_str(finding.kind);
        out.push(']');
        last = finding.end;
    }
    out.push_str(&text[last..]);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_token_is_redacted() {
        let text = "export GH=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB done";
        assert_eq!(redact_text(text), "export GH=[REDACTED:github-token] done");
    }

    #[test]
    fn near_misses_pass_through_borrowed() {
        for text in ["ghp_short", "task-force", "sk-learn is a library", "AKIA"] {
            assert!(matches!(redact_text(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn redaction_is_idempotent() {
        let once = redact_text("a sk-ant-abcdefghijklmnopqrstuvwxyz0123456789 b").into_owned();
        assert_eq!(redact_text(&once), once);
    }
}
