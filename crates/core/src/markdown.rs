//! Safe Markdown for Discord: text shown literally ([`escape_markdown`]),
//! code blocks that no input can break out of, and the cleaning the
//! templates apply to text from tools and the model: redact first (an
//! escaped or half-cut secret would no longer be recognised), then defuse
//! mass mentions, then escape or fence, then cut.

use crate::embed::{defuse_mass_mentions, truncate_chars};
use crate::redact::redact_text;

/// Zero-width space: invisible, and enough to break a run of backticks or a
/// mass mention.
pub(crate) const ZWSP: char = '\u{200b}';

/// Escapes Discord Markdown so `text` shows literally: `\ * _ ~ ` | [ ] < >`
/// everywhere, `# - + >` and `1.` at the start of a line (headings, lists,
/// quotes). Mentions are not touched here; see [`crate::embed::defuse_mass_mentions`]
/// and `allowed_mentions`.
///
/// ```
/// use omp_discord_core::markdown::escape_markdown;
///
/// assert_eq!(escape_markdown("**bold** [x](y)"), r"\*\*bold\*\* \[x\](y)");
/// assert_eq!(escape_markdown("# h\n1. a\n- b"), "\\# h\n1\\. a\n\\- b");
/// ```
#[must_use]
pub fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    let mut line_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' | '*' | '_' | '~' | '`' | '|' | '[' | ']' | '<' | '>' => {
                out.push('\\');
                out.push(c);
                line_start = false;
            }
            '#' | '-' | '+' if line_start => {
                out.push('\\');
                out.push(c);
                line_start = false;
            }
            '0'..='9' if line_start => {
                out.push(c);
                while let Some(&d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    out.push(d);
                    chars.next();
                }
                if chars.peek() == Some(&'.') {
                    chars.next();
                    out.push_str("\\.");
                }
                line_start = false;
            }
            '\n' => {
                out.push(c);
                line_start = true;
            }
            c if c.is_whitespace() => out.push(c),
            c => {
                out.push(c);
                line_start = false;
            }
        }
    }
    out
}

/// The language tag of a code block: ASCII letters, digits and `+-#._`, at
/// most 16 characters; anything else becomes no tag at all.
pub(crate) fn code_lang(lang: &str) -> &str {
    let lang = lang.trim();
    let ok = lang.len() <= 16 && lang.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-#._".contains(&b));
    if ok { lang } else { "" }
}

/// Puts a zero-width space between backticks that follow each other, so no
/// run of two or more (and so no fence) is left.
pub(crate) fn break_backtick_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut previous_tick = false;
    for c in text.chars() {
        if c == '`' && previous_tick {
            out.push(ZWSP);
        }
        previous_tick = c == '`';
        out.push(c);
    }
    out
}

/// Fences `body` as a code block in language `lang`, so nothing in it can end
/// the block early: a zero-width space goes between any two backticks in a row
/// (the text still reads the same). `lang` is kept only if it looks like a
/// language tag (`rust`, `c++`, `sh`), otherwise the block has none.
///
/// The block is at most `max` characters including its fences; a body that
/// does not fit is cut, and the marker stays inside the block.
fn fenced(lang: &str, body: &str, max: usize) -> String {
    let lang = code_lang(lang);
    let overhead = fence_overhead(lang);
    let Some(room) = max.checked_sub(overhead).filter(|room| *room > 0) else {
        return String::new();
    };
    let body = truncate_chars(&break_backtick_runs(body), room);
    format!("```{lang}\n{body}\n```")
}

/// Characters a fence adds around its body: "```lang\n" and "\n```".
pub(crate) fn fence_overhead(lang: &str) -> usize {
    8 + lang.chars().count()
}

/// Redacts, defuses mentions and fences as code, within `max` characters.
pub(crate) fn clean_code(lang: &str, text: &str, max: usize) -> String {
    let text = if text.trim().is_empty() { "(empty)" } else { text };
    fenced(lang, &defuse_mass_mentions(&redact_text(text)), max)
}

/// Redacts, defuses mentions and escapes Markdown, within `max` characters.
/// Redaction comes first: an escaped secret (`sk\_live\_…`) would no longer
/// match its pattern, and a secret cut in half would not be recognised.
pub(crate) fn clean_literal(text: &str, max: usize) -> String {
    truncate_chars(&escape_markdown(&defuse_mass_mentions(&redact_text(text))), max)
}

/// [`clean_literal`] on one line: line breaks become spaces after redaction
/// (a PEM block is recognised by its lines).
pub(crate) fn clean_line(text: &str, max: usize) -> String {
    let redacted = redact_text(text);
    let line = redacted.replace(['\r', '\n'], " ");
    truncate_chars(&escape_markdown(&defuse_mass_mentions(&line)), max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed;

    #[test]
    fn escape_markdown_neutralises_formatting() {
        assert_eq!(escape_markdown("a_b*c~d`e|f\\g"), r"a\_b\*c\~d\`e\|f\\g");
        assert_eq!(
            escape_markdown("> quote\n  - item\n12. x\nx - y 1. z"),
            "\\> quote\n  \\- item\n12\\. x\nx - y 1. z"
        );
        assert_eq!(escape_markdown("<@123> [a](b)"), r"\<@123\> \[a\](b)");
        assert_eq!(escape_markdown("Ünïcødé ✓"), "Ünïcødé ✓");
    }

    #[test]
    fn code_block_cannot_be_escaped() {
        for evil in ["```", "````", "a```\n@everyone```b", "`", "``", "x`"] {
            let block = fenced("sh", evil, 1000);
            assert_eq!(block.matches("```").count(), 2, "{block:?}");
            assert!(block.starts_with("```sh\n") && block.ends_with("\n```"));
            assert_eq!(block.replace(ZWSP, ""), format!("```sh\n{evil}\n```"));
        }
        assert_eq!(fenced("rust\n```", "x", 1000), "```\nx\n```", "a hostile language tag is dropped");
    }

    #[test]
    fn fenced_keeps_the_marker_inside() {
        let block = fenced("", &"x".repeat(100), 50);
        assert_eq!(block.chars().count(), 50);
        assert!(block.ends_with(&format!("{}\n```", embed::TRUNCATION_MARKER)), "{block}");
        assert_eq!(fenced("", "x", 3), "");
    }
}
