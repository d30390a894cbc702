//! How values read for people: a project's name, durations, token counts,
//! costs, tool histograms, one-line summaries of a tool's input, and prompts
//! without the system reminders OMP wraps around them.

use serde_json::Value;

use crate::embed::truncate_chars;
use crate::redact::redact_text;

/// The project's name as shown in footers and titles: the last component of
/// `cwd` (either slash), or `cwd` itself when it has none.
///
/// ```
/// use omp_discord_core::format::project_name;
///
/// assert_eq!(project_name("/home/ana/src/omp-discord/"), "omp-discord");
/// assert_eq!(project_name(r"C:\work\app"), "app");
/// assert_eq!(project_name("/"), "/");
/// ```
#[must_use]
pub fn project_name(cwd: &str) -> String {
    let trimmed = cwd.trim_end_matches(['/', '\\']);
    match trimmed.rsplit(['/', '\\']).next() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ if cwd.is_empty() => "omp".to_owned(),
        _ => cwd.to_owned(),
    }
}

/// A duration for people: `850 ms`, `42s`, `3m 07s`, `2h 05m`.
///
/// ```
/// use omp_discord_core::format::format_duration;
///
/// assert_eq!(format_duration(850), "850 ms");
/// assert_eq!(format_duration(187_000), "3m 07s");
/// ```
#[must_use]
pub fn format_duration(ms: u64) -> String {
    let secs = ms / 1000;
    match secs {
        0 => format!("{ms} ms"),
        1..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m {:02}s", secs / 60, secs % 60),
        _ => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
    }
}

/// Token counts for people: `950`, `12.3k`, `1.20M`.
pub(crate) fn format_tokens(n: u64) -> String {
    match n {
        0..=999 => n.to_string(),
        1000..=999_999 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.2}M", n as f64 / 1e6),
    }
}

/// A cost in US dollars with enough digits to be non-zero.
pub(crate) fn format_cost(cost: f64) -> String {
    if cost >= 1.0 { format!("${cost:.2}") } else { format!("${cost:.4}") }
}

/// `read ×3, bash ×1` in first-use order.
#[must_use]
pub fn tool_histogram(calls: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for call in calls {
        match counts.iter_mut().find(|(name, _)| name == call) {
            Some((_, n)) => *n += 1,
            None => counts.push((call, 1)),
        }
    }
    format_counts(counts.iter().map(|(name, n)| (*name, *n)))
}

pub(crate) fn format_counts<'a>(counts: impl Iterator<Item = (&'a str, usize)>) -> String {
    counts.map(|(name, n)| format!("{name} ×{n}")).collect::<Vec<_>>().join(", ")
}

/// One line saying what a tool was asked to do, without dumping its whole
/// input: the command for `bash`, the path (and size) for file tools, compact
/// JSON otherwise; redacted, then cut to 300 characters (in that order, so a
/// secret cut in half cannot slip past the scanner).
///
/// ```
/// use omp_discord_core::format::summarize_input;
/// use serde_json::json;
///
/// assert_eq!(summarize_input("bash", &json!({ "command": "cargo test" })), "cargo test");
/// assert_eq!(summarize_input("write", &json!({ "path": "a.rs", "content": "fn main() {}" })), "a.rs (12 chars)");
/// ```
#[must_use]
pub fn summarize_input(tool: &str, input: &Value) -> String {
    const MAX: usize = 300;
    let text = |key: &str| input.get(key).and_then(Value::as_str);
    let path = ["path", "file_path", "filePath", "file"].into_iter().find_map(text);
    let summary = match (tool, path) {
        ("bash", _) if text("command").is_some() => text("command").unwrap_or_default().to_owned(),
        ("write", Some(path)) => match text("content") {
            Some(content) => format!("{path} ({} chars)", content.chars().count()),
            None => path.to_owned(),
        },
        ("edit", Some(path)) => match input.get("edits").and_then(Value::as_array) {
            Some(edits) => format!("{path} ({} edits)", edits.len()),
            None => path.to_owned(),
        },
        (_, Some(path)) => path.to_owned(),
        _ => match input {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        },
    };
    truncate_chars(&redact_text(&summary), MAX)
}

/// Removes `<system-reminder>…</system-reminder>` blocks OMP wraps around a
/// prompt (date, cwd): they are for the model, not for people.
#[must_use]
pub fn strip_system_reminders(prompt: &str) -> String {
    const OPEN: &str = "<system-reminder>";
    const CLOSE: &str = "</system-reminder>";
    let mut out = String::with_capacity(prompt.len());
    let mut rest = prompt;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        match rest[start..].find(CLOSE) {
            Some(end) => rest = &rest[start + end + CLOSE.len()..],
            None => {
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_and_duration_formatting() {
        assert_eq!(project_name(""), "omp");
        assert_eq!(project_name("repo"), "repo");
        assert_eq!(format_duration(0), "0 ms");
        assert_eq!(format_duration(59_999), "59s");
        assert_eq!(format_duration(60_000), "1m 00s");
        assert_eq!(format_duration(7_500_000), "2h 05m");
        assert_eq!(format_tokens(12_345), "12.3k");
        assert_eq!(format_cost(0.01234), "$0.0123");
    }
}
