//! OMP event payloads the extension reports, and the messages built from them.
//!
//! Payloads are read leniently: OMP adds fields between versions, and a field
//! this crate does not know must never make a report fail.

use serde::Deserialize;
use serde_json::Value;
use twilight_model::channel::message::embed::EmbedField;

use crate::embed::{self, Level, MessagePayload, clean, limits};

/// What one agent run (prompt → final answer) did, read from `agent_end`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunSummary {
    /// The last assistant text, if any.
    pub answer: Option<String>,
    /// How the run stopped (`stop`, `error`, `aborted`, `length`).
    pub stop_reason: Option<String>,
    /// The provider's error message when the run failed.
    pub error: Option<String>,
    /// Tool calls made during the run, by name, in order.
    pub tool_calls: Vec<String>,
    /// Assistant turns in the run.
    pub turns: usize,
    /// Output tokens summed over the run's assistant messages.
    pub output_tokens: u64,
}

impl RunSummary {
    /// Whether the run ended in an error.
    #[must_use]
    pub fn failed(&self) -> bool {
        matches!(self.stop_reason.as_deref(), Some("error")) || self.error.is_some()
    }
}

#[derive(Deserialize)]
struct AgentEnd {
    #[serde(default)]
    messages: Vec<Value>,
}

/// Reads an `agent_end` event payload (`{messages, willContinue}`).
#[must_use]
pub fn summarize_agent_end(event: &Value) -> RunSummary {
    let Ok(AgentEnd { messages }) = AgentEnd::deserialize(event) else {
        return RunSummary::default();
    };
    let mut summary = RunSummary::default();
    for message in messages.iter().filter(|m| m["role"] == "assistant") {
        summary.turns += 1;
        summary.output_tokens += message["usage"]["output"].as_u64().unwrap_or(0);
        summary.stop_reason = message["stopReason"].as_str().map(str::to_owned);
        summary.error = message["errorMessage"].as_str().map(str::to_owned);
        let blocks = message["content"].as_array().map(Vec::as_slice).unwrap_or_default();
        let text: Vec<&str> = blocks
            .iter()
            .filter(|b| b["type"] == "text")
            .filter_map(|b| b["text"].as_str())
            .filter(|t| !t.trim().is_empty())
            .collect();
        if !text.is_empty() {
            summary.answer = Some(text.join("\n"));
        }
        summary.tool_calls.extend(
            blocks.iter().filter(|b| b["type"] == "toolCall").filter_map(|b| b["name"].as_str()).map(str::to_owned),
        );
    }
    summary
}

/// Builds the "run finished" or "run failed" message.
#[must_use]
pub fn build_run_finished(summary: &RunSummary, project: &str) -> MessagePayload {
    let failed = summary.failed();
    let level = if failed { Level::Error } else { Level::Success };
    let mut embed = embed::empty_embed(level);
    embed.title = Some(if failed { "Run failed" } else { "Run finished" }.to_owned());
    let body = match (&summary.error, &summary.answer) {
        (Some(error), _) if failed => error.as_str(),
        (_, Some(answer)) => answer.as_str(),
        _ => "(no text answer)",
    };
    embed.description = Some(clean(body, limits::DESCRIPTION));
    let mut fields = vec![field("Turns", summary.turns.to_string())];
    if !summary.tool_calls.is_empty() {
        fields.push(field("Tool calls", tool_histogram(&summary.tool_calls)));
    }
    if summary.output_tokens > 0 {
        fields.push(field("Output tokens", summary.output_tokens.to_string()));
    }
    embed.fields = fields;
    embed.footer = Some(embed::footer(project));
    let mut payload = embed::single_embed(embed);
    embed::fit_total(&mut payload);
    payload
}

fn field(name: &str, value: String) -> EmbedField {
    EmbedField { name: name.to_owned(), value: clean(&value, limits::FIELD_VALUE), inline: true }
}

/// `read ×3, bash ×1` in first-use order.
fn tool_histogram(calls: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for call in calls {
        match counts.iter_mut().find(|(name, _)| name == call) {
            Some((_, n)) => *n += 1,
            None => counts.push((call, 1)),
        }
    }
    counts.iter().map(|(name, n)| format!("{name} ×{n}")).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn assistant(content: Value, stop: &str) -> Value {
        json!({ "role": "assistant", "content": content, "stopReason": stop, "usage": { "output": 10 } })
    }

    #[test]
    fn summary_reads_answer_tools_and_tokens() {
        let event = json!({ "willContinue": false, "messages": [
            { "role": "user", "content": "hi" },
            assistant(json!([{ "type": "toolCall", "name": "bash", "id": "1", "arguments": {} },
                             { "type": "toolCall", "name": "bash", "id": "2", "arguments": {} }]), "toolUse"),
            { "role": "toolResult", "toolName": "bash", "content": [] },
            assistant(json!([{ "type": "text", "text": "All done." }]), "stop"),
        ]});
        let summary = summarize_agent_end(&event);
        assert_eq!(summary.answer.as_deref(), Some("All done."));
        assert_eq!(summary.tool_calls, ["bash", "bash"]);
        assert_eq!(summary.turns, 2);
        assert_eq!(summary.output_tokens, 20);
        assert!(!summary.failed());
        let payload = build_run_finished(&summary, "proj");
        assert_eq!(payload.embeds[0].fields[1].value, "bash ×2");
        embed::validate_message(&payload).unwrap();
    }

    #[test]
    fn failed_run_shows_the_error() {
        let mut failed = assistant(json!([]), "error");
        failed["errorMessage"] = json!("rate limited by provider");
        let summary = summarize_agent_end(&json!({ "messages": [failed] }));
        assert!(summary.failed());
        let payload = build_run_finished(&summary, "proj");
        assert_eq!(payload.embeds[0].title.as_deref(), Some("Run failed"));
        assert_eq!(payload.embeds[0].description.as_deref(), Some("rate limited by provider"));
    }

    #[test]
    fn unknown_shapes_never_fail() {
        for event in [json!(null), json!({ "messages": "x" }), json!({ "messages": [1, "a", {}] })] {
            let payload = build_run_finished(&summarize_agent_end(&event), "p");
            embed::validate_message(&payload).unwrap();
        }
    }
}
