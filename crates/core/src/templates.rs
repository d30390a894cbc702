//! Message templates: what omp-discord posts for a session, a run (its live
//! card and its summary), tool errors, tool calls and an approval request.
//!
//! Every template returns a [`MessagePayload`] that Discord accepts by
//! construction:
//!
//! - all text is redacted ([`crate::redact::redact_text`]) before anything
//!   else, so escaping cannot hide a secret from the scanner;
//! - `@everyone` and `@here` are defused and `allowed_mentions` is empty;
//! - each part is budgeted below its limit in [`embed::limits`], and text that
//!   must be cut ends with [`embed::TRUNCATION_MARKER`], never silently;
//! - text from tools and the model that is shown as code is fenced so that no
//!   input can break out ([`crate::markdown`]); names and paths are escaped.
//!   The model's own answers stay Markdown.
//!
//! What does not fit (a long answer, a tool's whole output) follows in parts
//! made by [`split_long_output`].
//!
//! ```
//! use omp_discord_core::embed::validate_message;
//! use omp_discord_core::event::RunSummary;
//! use omp_discord_core::templates::run_finished;
//!
//! let summary = RunSummary { answer: Some("Done.".into()), stop_reason: Some("stop".into()), ..Default::default() };
//! let payload = run_finished(&summary, "my-app");
//! validate_message(&payload)?;
//! assert_eq!(payload.embeds[0].title.as_deref(), Some("Run finished"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;
use twilight_model::channel::message::Embed;
use twilight_model::channel::message::embed::{EmbedField, EmbedFooter};

use crate::embed::{self, Level, MessagePayload, clean, limits, non_blank, truncate_chars};
use crate::event::RunSummary;
use crate::format::{
    format_cost, format_counts, format_duration, format_tokens, project_name, strip_system_reminders, summarize_input,
    tool_histogram,
};
use crate::markdown::{clean_code, clean_line, clean_literal};
use crate::redact::redact_text;
use crate::split::split_long_output;

/// Characters of a run's answer shown in its summary; longer answers are cut
/// there (visibly) and [`answer_overflows`] tells the caller to post them in
/// full with [`split_long_output`].
pub const ANSWER_MAX: usize = 3000;

/// Embed text a template may use in total: the rest is kept free for the
/// subagent marker and footer notes, so [`embed::fit_total`] never has to cut
/// through a code block.
const TEMPLATE_BUDGET: usize = limits::EMBED_TOTAL - 200;

/// Prefix of every title posted for a subagent session.
pub const SUBAGENT_MARK: &str = "↳ subagent · ";

/// The code-block language for a tool's summarised input.
fn input_lang(tool: &str) -> &'static str {
    if tool == "bash" { "sh" } else { "" }
}

fn field(name: &str, value: String, inline: bool) -> EmbedField {
    EmbedField { name: non_blank(clean(name, limits::FIELD_NAME)), value: non_blank(value), inline }
}

/// Wraps a finished embed: footer, one-embed payload, and the total-size
/// safety net (templates stay under [`TEMPLATE_BUDGET`], so it never cuts).
fn finish(mut embed: Embed, project: &str) -> MessagePayload {
    embed.footer = Some(footer(&format!("omp · {project}")));
    finish_with_footer(embed)
}

/// Characters of a template's footer: a long project name must not take the
/// room of the text (the footer's own limit is 2048).
const FOOTER_MAX: usize = 200;

fn footer(text: &str) -> EmbedFooter {
    EmbedFooter { icon_url: None, proxy_icon_url: None, text: clean(text, FOOTER_MAX) }
}

fn finish_with_footer(embed: Embed) -> MessagePayload {
    let mut payload = embed::single_embed(embed);
    embed::fit_total(&mut payload);
    payload
}

/// What is known when a session starts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionStart {
    /// The session's working directory; its last component names the project.
    pub cwd: String,
    /// The machine's host name (several machines may share a bot).
    #[serde(default)]
    pub host: String,
    /// The model, e.g. `anthropic/claude-sonnet-4`, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The first prompt, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// "Session started": project, directory, host, model and first prompt.
#[must_use]
pub fn session_started(start: &SessionStart) -> MessagePayload {
    let project = project_name(&start.cwd);
    let mut embed = embed::empty_embed(Level::Info);
    embed.title = Some(clean(&format!("Session started · {project}"), limits::TITLE));
    embed.description = Some(match start.prompt.as_deref().map(strip_system_reminders) {
        Some(prompt) if !prompt.trim().is_empty() => clean(&prompt, 2000),
        _ => "*Waiting for the first prompt.*".to_owned(),
    });
    let mut fields = vec![field("Directory", clean_literal(&start.cwd, 1000), false)];
    if !start.host.trim().is_empty() {
        fields.push(field("Host", clean_literal(&start.host, 200), true));
    }
    if let Some(model) = start.model.as_deref().filter(|m| !m.trim().is_empty()) {
        fields.push(field("Model", clean_literal(model, 200), true));
    }
    embed.fields = fields;
    finish(embed, &project)
}

/// The titles of a run's last report (the run card's final edit, or its
/// summary): after one of them, the session's agent no longer works on that run.
pub const RUN_END_TITLES: [&str; 5] =
    ["Run finished", "Run failed", "Run aborted", "Run interrupted", "Run stopped at the output limit"];

/// Whether `payload` ends a run of the session itself (a subagent's
/// summary, marked as such, does not: its parent still works).
#[must_use]
pub fn ends_run(payload: &MessagePayload) -> bool {
    payload.embeds.first().and_then(|embed| embed.title.as_deref()).is_some_and(|title| RUN_END_TITLES.contains(&title))
}

/// "Run finished", "Run failed", "Run aborted" or "Run interrupted": the
/// answer (or error), turns, tools used, duration, tokens, cost and files
/// changed, whichever are known.
#[must_use]
pub fn run_finished(summary: &RunSummary, project: &str) -> MessagePayload {
    let (title, level) = if summary.failed() {
        ("Run failed", Level::Error)
    } else {
        match summary.stop_reason.as_deref() {
            Some("aborted") => ("Run aborted", Level::Warning),
            Some("interrupted") => ("Run interrupted", Level::Warning),
            Some("length") => ("Run stopped at the output limit", Level::Warning),
            _ => ("Run finished", Level::Success),
        }
    };
    let mut embed = embed::empty_embed(level);
    embed.title = Some(title.to_owned());
    let body = match (&summary.error, &summary.answer) {
        (Some(error), _) if summary.failed() => error.as_str(),
        (_, Some(answer)) => answer.as_str(),
        _ if summary.stop_reason.as_deref() == Some("interrupted") => "(the session ended before the run finished)",
        _ if summary.stop_reason.as_deref() == Some("aborted") => "(stopped before it finished)",
        _ => "(no text answer)",
    };
    embed.description = Some(clean(body, ANSWER_MAX));
    // Field order is part of the contract: `Turns`, then `Tool calls`.
    let mut fields = vec![field("Turns", summary.turns.to_string(), true)];
    if !summary.tool_calls.is_empty() {
        fields.push(field("Tool calls", clean(&tool_histogram(&summary.tool_calls), limits::FIELD_VALUE), true));
    }
    if let Some(ms) = summary.duration_ms {
        fields.push(field("Duration", format_duration(ms), true));
    }
    if summary.output_tokens > 0 || summary.input_tokens > 0 {
        let tokens = if summary.input_tokens > 0 {
            format!("{} in · {} out", format_tokens(summary.input_tokens), format_tokens(summary.output_tokens))
        } else {
            format_tokens(summary.output_tokens)
        };
        // The title stays "Output tokens" when only output is known, as before.
        let name = if summary.input_tokens > 0 { "Tokens" } else { "Output tokens" };
        let value = if summary.input_tokens > 0 { tokens } else { summary.output_tokens.to_string() };
        fields.push(field(name, value, true));
    }
    if summary.cost > 0.0 && summary.cost.is_finite() {
        fields.push(field("Cost", format_cost(summary.cost), true));
    }
    if !summary.files_changed.is_empty() {
        fields.push(field("Files changed", list_literals(&summary.files_changed, limits::FIELD_VALUE), false));
    }
    embed.fields = fields;
    finish(embed, project)
}

/// Whether a run's answer is longer than [`run_finished`] shows, so the caller
/// should post it in full with [`split_long_output`].
#[must_use]
pub fn answer_overflows(summary: &RunSummary) -> bool {
    !summary.failed() && summary.answer.as_deref().is_some_and(|a| redact_text(a).chars().count() > ANSWER_MAX)
}

/// One item per line, escaped, within `max` characters: `+N more` closes a
/// list that does not fit.
fn list_literals(items: &[String], max: usize) -> String {
    let mut out = String::new();
    for (index, item) in items.iter().enumerate() {
        let line = clean_literal(item, 200);
        let more = format!("+{} more", items.len() - index);
        if out.chars().count() + line.chars().count() + more.chars().count() + 2 > max {
            out.push_str(&more);
            return out;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out.trim_end().to_owned()
}

/// Characters of one failure's output kept for [`attach_full_errors`]
/// (redacted first); longer output ends with a visible cut.
pub const OUTPUT_KEEP: usize = 128 * 1024;

/// The whole output of each failure whose message ([`tool_errors`]) shows
/// only its beginning: attached to `payload` as `<tool>-output.txt` while
/// the files fit ([`limits::FILES`], [`limits::FILES_BYTES`]), else posted
/// after it in parts ([`split_long_output`]), which this returns. Nothing is
/// cut silently.
pub fn attach_full_errors(payload: &mut MessagePayload, failures: &[ToolFailure]) -> Vec<MessagePayload> {
    let cut = |text: Option<&String>| text.is_some_and(|t| t.contains(embed::TRUNCATION_MARKER));
    let embed = payload.embeds.first();
    let shown: Vec<bool> = match failures {
        [_] => vec![cut(embed.and_then(|e| e.description.as_ref()))],
        _ => (0..failures.len()).map(|i| cut(embed.and_then(|e| e.fields.get(i)).map(|f| &f.value))).collect(),
    };
    let mut bytes: usize = payload.files.iter().map(|f| f.content.len()).sum();
    let mut extra = Vec::new();
    for (index, (failure, was_cut)) in failures.iter().zip(shown).enumerate() {
        if !was_cut {
            continue;
        }
        let text = redact_text(&failure.error).into_owned();
        // Escaped size: the file travels inside a JSON frame.
        let size = serde_json::to_string(&text).map_or(usize::MAX, |s| s.len());
        if payload.files.len() < limits::FILES && bytes.saturating_add(size) <= limits::FILES_BYTES {
            let name = if failures.len() > 1 {
                format!("{}-{}-output.txt", failure.tool, index + 1)
            } else {
                format!("{}-output.txt", failure.tool)
            };
            let filename = embed::file_name(&name).unwrap_or_else(|| "output.txt".to_owned());
            payload.files.push(embed::FileUpload { filename, content: text });
            bytes += size;
        } else {
            extra.extend(split_long_output(&format!("Full output of {}", failure.tool), &text, "text"));
        }
    }
    extra
}

/// A tool call that failed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolFailure {
    /// The tool's name.
    pub tool: String,
    /// The arguments it was called with.
    #[serde(default)]
    pub input: Value,
    /// The error text the tool returned.
    #[serde(default)]
    pub error: String,
}

/// "Tool error": the tool, its input summarised ([`summarize_input`]) and the
/// error text, all redacted. Several failures make one message
/// ([`tool_errors`]).
#[must_use]
pub fn tool_error(failure: &ToolFailure, project: &str) -> MessagePayload {
    let mut embed = embed::empty_embed(Level::Error);
    embed.title = Some(clean(&format!("Tool error: {}", failure.tool), limits::TITLE));
    embed.description = Some(clean_code("", &failure.error, 3000));
    let input = summarize_input(&failure.tool, &failure.input);
    if !input.is_empty() {
        embed.fields = vec![field("Input", clean_code(input_lang(&failure.tool), &input, 1000), false)];
    }
    finish(embed, project)
}

/// One message for a burst of tool failures: a field per failure (at most
/// [`limits::FIELDS`], the rest counted), each with its input and error.
#[must_use]
pub fn tool_errors(failures: &[ToolFailure], project: &str) -> MessagePayload {
    if let [one] = failures {
        return tool_error(one, project);
    }
    let mut embed = embed::empty_embed(Level::Error);
    embed.title = Some(format!("{} tool errors", failures.len()));
    let shown = failures.len().min(limits::FIELDS);
    // Each field gets an equal share of the budget (fields never get cut later).
    let share = ((TEMPLATE_BUDGET - 400) / shown.max(1)).min(limits::FIELD_VALUE);
    embed.fields = failures
        .iter()
        .take(shown)
        .map(|f| {
            let input = clean_literal(&summarize_input(&f.tool, &f.input), share / 3);
            let room = share.saturating_sub(input.chars().count() + 1);
            let value = format!("{input}\n{}", clean_code("", &f.error, room));
            field(&f.tool, truncate_chars(&value, share), false)
        })
        .collect();
    if failures.len() > shown {
        embed.description = Some(format!("{} more not shown.", failures.len() - shown));
    }
    finish(embed, project)
}

/// A tool call, as verbose reports list it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ToolUse {
    /// The tool's name.
    pub tool: String,
    /// The arguments it was called with.
    #[serde(default)]
    pub input: Value,
}

/// "Tool calls": one line per call (tool and summarised input), for the
/// verbose level. At most 40 lines; the rest are counted.
#[must_use]
pub fn tool_calls(calls: &[ToolUse], project: &str) -> MessagePayload {
    const SHOWN: usize = 40;
    let mut embed = embed::empty_embed(Level::Info);
    embed.title = Some(match calls.len() {
        1 => "Tool call".to_owned(),
        n => format!("{n} tool calls"),
    });
    let share = (limits::DESCRIPTION - 100) / calls.len().clamp(1, SHOWN);
    let mut lines: Vec<String> = calls
        .iter()
        .take(SHOWN)
        .map(|c| {
            let name = clean_literal(&c.tool, 100);
            let input = clean_line(&summarize_input(&c.tool, &c.input), 300);
            truncate_chars(&format!("**{name}** {input}"), share)
        })
        .collect();
    if calls.len() > SHOWN {
        lines.push(format!("… {} more", calls.len() - SHOWN));
    }
    if lines.is_empty() {
        lines.push("(none)".to_owned());
    }
    embed.description = Some(truncate_chars(&lines.join("\n"), limits::DESCRIPTION));
    finish(embed, project)
}

/// A tool call waiting for a person's approval.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ApprovalRequest {
    /// The tool's name.
    pub tool: String,
    /// The exact arguments it would run with.
    #[serde(default)]
    pub input: Value,
    /// Why OMP asks, when it says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// "Approval needed": the tool and the exact command (for `bash`) or input
/// (as JSON), redacted and fenced. Only the embed; buttons are added by the
/// caller. Input longer than the embed allows is cut with a visible marker.
#[must_use]
pub fn approval_request(request: &ApprovalRequest, project: &str) -> MessagePayload {
    let mut embed = embed::empty_embed(Level::Warning);
    embed.title = Some(clean(&format!("Approval needed: {}", request.tool), limits::TITLE));
    let command = request.input.get("command").and_then(Value::as_str).filter(|_| request.tool == "bash");
    let mut fields = Vec::new();
    let description = match command {
        Some(command) => {
            let mut rest = request.input.clone();
            if let Some(map) = rest.as_object_mut() {
                map.remove("command");
                if !map.is_empty() {
                    fields.push(field("Other input", clean_code("json", &rest.to_string(), 1000), false));
                }
            }
            clean_code("sh", command, 3500)
        }
        None => {
            let json = serde_json::to_string_pretty(&request.input).unwrap_or_default();
            clean_code("json", &json, 3500)
        }
    };
    embed.description = Some(description);
    if let Some(reason) = request.reason.as_deref().filter(|r| !r.trim().is_empty()) {
        fields.push(field("Reason", clean(reason, 500), false));
    }
    embed.fields = fields;
    finish(embed, project)
}

/// The state of a running agent run, as its live card shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunCard {
    /// The prompt that started the run, when known.
    pub prompt: Option<String>,
    /// Time since the run started.
    pub elapsed_ms: u64,
    /// Tools running now, by name with their summarised input (latest last).
    pub running: Vec<(String, String)>,
    /// What OMP does besides tools, e.g. "compacting context".
    pub activity: Option<String>,
    /// Finished tool calls by name, in first-use order.
    pub tools_done: Vec<(String, usize)>,
    /// Tool calls that failed.
    pub tool_errors: usize,
    /// Assistant turns so far.
    pub turns: usize,
    /// Input tokens so far.
    pub input_tokens: u64,
    /// Output tokens so far.
    pub output_tokens: u64,
    /// Cost so far in US dollars.
    pub cost: f64,
}

/// The live run card: elapsed time in the title, the prompt, the current tool
/// and activity, tools done with counts, errors, tokens and cost.
#[must_use]
pub fn run_card(card: &RunCard, project: &str) -> MessagePayload {
    let mut embed = embed::empty_embed(Level::Info);
    embed.title = Some(format!("Running · {}", format_duration(card.elapsed_ms)));
    embed.description = Some(match card.prompt.as_deref().map(strip_system_reminders) {
        Some(prompt) if !prompt.is_empty() => clean(&prompt, 1000),
        _ => "*Working…*".to_owned(),
    });
    let mut fields = Vec::new();
    if let Some((tool, input)) = card.running.last() {
        let mut now = format!("**{}**", clean_literal(tool, 100));
        if !input.is_empty() {
            now.push(' ');
            now.push_str(&clean_line(input, 300));
        }
        if card.running.len() > 1 {
            now.push_str(&format!(" (+{} more running)", card.running.len() - 1));
        }
        fields.push(field("Now", now, false));
    }
    if let Some(activity) = card.activity.as_deref() {
        fields.push(field("Status", clean(activity, 500), false));
    }
    if !card.tools_done.is_empty() {
        let total: usize = card.tools_done.iter().map(|(_, n)| n).sum();
        let list = format_counts(card.tools_done.iter().map(|(name, n)| (name.as_str(), *n)));
        fields.push(field("Tools done", clean(&format!("{total}: {list}"), limits::FIELD_VALUE), false));
    }
    if card.tool_errors > 0 {
        fields.push(field("Tool errors", card.tool_errors.to_string(), true));
    }
    if card.turns > 0 {
        fields.push(field("Turns", card.turns.to_string(), true));
    }
    if card.input_tokens > 0 || card.output_tokens > 0 {
        let tokens = format!("{} in · {} out", format_tokens(card.input_tokens), format_tokens(card.output_tokens));
        fields.push(field("Tokens", tokens, true));
    }
    if card.cost > 0.0 && card.cost.is_finite() {
        fields.push(field("Cost", format_cost(card.cost), true));
    }
    embed.fields = fields;
    finish(embed, project)
}

/// Marks a payload as coming from a subagent: every title gets
/// [`SUBAGENT_MARK`] in front (an untitled first embed gets the mark as its
/// title), so the reader of the parent's thread sees where it came from.
pub fn mark_subagent(payload: &mut MessagePayload) {
    for (index, embed) in payload.embeds.iter_mut().enumerate() {
        match &mut embed.title {
            Some(title) => *title = truncate_chars(&format!("{SUBAGENT_MARK}{title}"), limits::TITLE),
            None if index == 0 => embed.title = Some(SUBAGENT_MARK.trim_end_matches([' ', '·']).to_owned()),
            None => {}
        }
    }
    embed::fit_total(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::validate_message;
    use crate::markdown::ZWSP;
    use serde_json::json;

    #[test]
    fn session_started_shows_what_is_known() {
        let start = SessionStart {
            cwd: "/home/ana/my_app".into(),
            host: "box".into(),
            model: Some("anthropic/claude".into()),
            prompt: Some("<system-reminder>date</system-reminder>\nFix the @everyone bug".into()),
        };
        let payload = session_started(&start);
        validate_message(&payload).unwrap();
        let embed = &payload.embeds[0];
        assert_eq!(embed.title.as_deref(), Some("Session started · my_app"));
        assert_eq!(embed.description.as_deref(), Some("Fix the @\u{200b}everyone bug"));
        assert_eq!(embed.fields[0].value, r"/home/ana/my\_app");
        assert_eq!(embed.fields.len(), 3);
        let bare = session_started(&SessionStart { cwd: "/x".into(), ..Default::default() });
        assert_eq!(bare.embeds[0].fields.len(), 1);
    }

    #[test]
    fn run_finished_adds_duration_cost_and_files() {
        let summary = RunSummary {
            answer: Some("Done.".into()),
            stop_reason: Some("stop".into()),
            tool_calls: vec!["edit".into(), "bash".into(), "edit".into()],
            turns: 3,
            output_tokens: 1200,
            input_tokens: 50_000,
            duration_ms: Some(65_000),
            cost: 0.25,
            files_changed: vec!["src/a_b.rs".into(), "README.md".into()],
            ..Default::default()
        };
        let payload = run_finished(&summary, "p");
        validate_message(&payload).unwrap();
        let fields: Vec<(&str, &str)> =
            payload.embeds[0].fields.iter().map(|f| (f.name.as_str(), f.value.as_str())).collect();
        assert_eq!(
            fields,
            [
                ("Turns", "3"),
                ("Tool calls", "edit ×2, bash ×1"),
                ("Duration", "1m 05s"),
                ("Tokens", "50.0k in · 1.2k out"),
                ("Cost", "$0.2500"),
                ("Files changed", "src/a\\_b.rs\nREADME.md"),
            ]
        );
    }

    #[test]
    fn run_titles_follow_the_stop_reason() {
        let title = |stop: &str, error: Option<&str>| {
            let summary =
                RunSummary { stop_reason: Some(stop.into()), error: error.map(str::to_owned), ..Default::default() };
            run_finished(&summary, "p").embeds[0].title.clone().unwrap()
        };
        assert_eq!(title("stop", None), "Run finished");
        assert_eq!(title("error", Some("boom")), "Run failed");
        assert_eq!(title("aborted", None), "Run aborted");
        // OMP puts an error text on an aborted message: still a stop, not a failure.
        assert_eq!(title("aborted", Some("Request was aborted")), "Run aborted");
        assert_eq!(title("interrupted", None), "Run interrupted");
        assert_eq!(title("length", None), "Run stopped at the output limit");
    }

    #[test]
    fn only_a_runs_last_report_ends_it() {
        for (stop, error) in
            [("stop", None), ("error", Some("boom")), ("aborted", None), ("interrupted", None), ("length", None)]
        {
            let summary =
                RunSummary { stop_reason: Some(stop.into()), error: error.map(str::to_owned), ..Default::default() };
            let mut payload = run_finished(&summary, "p");
            assert!(ends_run(&payload), "{stop}");
            mark_subagent(&mut payload);
            assert!(!ends_run(&payload), "a subagent's end is not its parent's: {stop}");
        }
        let card = run_card(&RunCard { prompt: Some("x".into()), ..Default::default() }, "p");
        assert!(!ends_run(&card));
        assert!(!ends_run(&MessagePayload::default()));
    }

    #[test]
    fn long_answers_overflow_into_parts() {
        let summary = RunSummary { answer: Some("a".repeat(ANSWER_MAX + 1)), ..Default::default() };
        assert!(answer_overflows(&summary));
        let description = run_finished(&summary, "p").embeds[0].description.clone().unwrap();
        assert!(description.ends_with(embed::TRUNCATION_MARKER));
        assert!(!answer_overflows(&RunSummary { answer: Some("a".repeat(ANSWER_MAX)), ..Default::default() }));
    }

    #[test]
    fn tool_error_redacts_input_and_error() {
        let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
        let failure = ToolFailure {
            tool: "bash".into(),
            input: json!({ "command": format!("curl -H 'Authorization: token {secret}' x") }),
            error: format!("exit 1: bad credentials {secret} ```\n@here"),
        };
        let payload = tool_error(&failure, "p");
        validate_message(&payload).unwrap();
        let json = serde_json::to_string(&payload).unwrap();
        assert!(!json.contains(secret) && !json.contains("@here"), "{json}");
        assert_eq!(payload.embeds[0].title.as_deref(), Some("Tool error: bash"));
        assert_eq!(payload.embeds[0].description.as_deref().unwrap().matches("```").count(), 2);
        assert!(payload.embeds[0].fields[0].value.starts_with("```sh\ncurl"));
    }

    #[test]
    fn secrets_are_redacted_before_anything_is_cut() {
        let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
        let command = format!("{} {secret}", "x".repeat(279));
        let summary = summarize_input("bash", &json!({ "command": command }));
        assert!(!summary.contains("ghp_"), "{summary}");
        // A line of its own is redacted before its line breaks become spaces
        // (a PEM block is recognised by its lines).
        let key = format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{}\n-----END OPENSSH PRIVATE KEY-----", "A".repeat(70));
        let card = run_card(&RunCard { running: vec![("bash".into(), key)], ..Default::default() }, "p");
        assert!(!card.embeds[0].fields[0].value.contains("AAAAAAAAAA"), "{card:?}");
    }

    #[test]
    fn many_tool_errors_fit_one_message() {
        let failures: Vec<ToolFailure> = (0..40)
            .map(|i| ToolFailure {
                tool: format!("t{i}"),
                input: json!({ "x": "y".repeat(2000) }),
                error: "e".repeat(5000),
            })
            .collect();
        let payload = tool_errors(&failures, "p");
        validate_message(&payload).unwrap();
        let embed = &payload.embeds[0];
        assert_eq!(embed.title.as_deref(), Some("40 tool errors"));
        assert_eq!(embed.fields.len(), limits::FIELDS);
        assert_eq!(embed.description.as_deref(), Some("15 more not shown."));
        assert!(embed.fields.iter().all(|f| f.value.matches("```").count() == 2), "no field is cut inside a fence");
    }

    #[test]
    fn approval_shows_the_exact_command() {
        let request = ApprovalRequest {
            tool: "bash".into(),
            input: json!({ "command": "rm -rf build && echo ```done```", "timeout": 30 }),
            reason: Some("destructive command".into()),
        };
        let payload = approval_request(&request, "p");
        validate_message(&payload).unwrap();
        let embed = &payload.embeds[0];
        let description = embed.description.as_deref().unwrap();
        assert_eq!(description.replace(ZWSP, ""), "```sh\nrm -rf build && echo ```done```\n```");
        assert_eq!(embed.fields[0].name, "Other input");
        assert_eq!(embed.fields[1].value, "destructive command");
        let other = approval_request(
            &ApprovalRequest { tool: "write".into(), input: json!({ "path": "a" }), reason: None },
            "p",
        );
        assert!(other.embeds[0].description.as_deref().unwrap().starts_with("```json\n{\n  \"path\": \"a\""));
    }

    #[test]
    fn run_card_shows_progress() {
        let card = RunCard {
            prompt: Some("fix tests".into()),
            elapsed_ms: 12_000,
            running: vec![("bash".into(), "cargo test".into())],
            tools_done: vec![("read".into(), 3), ("bash".into(), 1)],
            tool_errors: 1,
            turns: 2,
            input_tokens: 1000,
            output_tokens: 200,
            ..Default::default()
        };
        let payload = run_card(&card, "p");
        validate_message(&payload).unwrap();
        let embed = &payload.embeds[0];
        assert_eq!(embed.title.as_deref(), Some("Running · 12s"));
        assert_eq!(embed.fields[0].value, "**bash** cargo test");
        assert_eq!(embed.fields[1].value, "4: read ×3, bash ×1");
    }

    #[test]
    fn huge_project_names_do_not_squeeze_code_blocks() {
        let project = "p".repeat(5000);
        let failure = ToolFailure { tool: "bash".into(), input: json!({ "command": "x" }), error: "e".repeat(9000) };
        let payload = tool_error(&failure, &project);
        validate_message(&payload).unwrap();
        assert_eq!(payload.embeds[0].description.as_deref().unwrap().matches("```").count(), 2);
        assert_eq!(payload.embeds[0].footer.as_ref().unwrap().text.chars().count(), FOOTER_MAX);
        let request =
            ApprovalRequest { tool: "bash".into(), input: json!({ "command": "y".repeat(9000) }), reason: None };
        let approval = approval_request(&request, &project);
        validate_message(&approval).unwrap();
        assert_eq!(approval.embeds[0].description.as_deref().unwrap().matches("```").count(), 2);
    }

    #[test]
    fn subagent_mark_prefixes_titles() {
        let mut payload = run_finished(&RunSummary::default(), "p");
        mark_subagent(&mut payload);
        assert_eq!(payload.embeds[0].title.as_deref(), Some("↳ subagent · Run finished"));
        let mut long = tool_error(&ToolFailure { tool: "x".repeat(300), ..Default::default() }, "p");
        mark_subagent(&mut long);
        validate_message(&long).unwrap();
    }
}
