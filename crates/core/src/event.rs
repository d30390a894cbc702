//! OMP event payloads the extension reports, read into a [`RunSummary`]
//! (the run's message is [`crate::templates::run_finished`]).
//!
//! Payloads are read leniently: OMP adds fields between versions, and a field
//! this crate does not know must never make a report fail.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

/// Tools whose `path` argument names a file they change.
const FILE_TOOLS: &[&str] = &["write", "edit", "ast_edit", "multi_edit", "apply_patch", "notebook_edit"];

/// What one agent run (prompt → final answer) did, read from `agent_end`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunSummary {
    /// The last assistant text, if any.
    pub answer: Option<String>,
    /// How the run stopped (`stop`, `error`, `aborted`, `length`; the reporter
    /// adds `interrupted` for a run cut off by the session's end).
    pub stop_reason: Option<String>,
    /// The provider's error message when the run failed.
    pub error: Option<String>,
    /// Tool calls made during the run, by name, in order.
    pub tool_calls: Vec<String>,
    /// Assistant turns in the run.
    pub turns: usize,
    /// Output tokens summed over the run's assistant messages.
    pub output_tokens: u64,
    /// Input tokens summed over the run's assistant messages.
    pub input_tokens: u64,
    /// Cost in US dollars summed over `usage.cost.total`, 0 when unknown.
    pub cost: f64,
    /// Files the run's write/edit tool calls changed (calls that failed are
    /// left out), in first-change order without repeats.
    pub files_changed: Vec<String>,
    /// How long the run took, when the caller measured it (`agent_end` does not say).
    pub duration_ms: Option<u64>,
}

impl RunSummary {
    /// Whether the run ended in an error.
    #[must_use]
    pub fn failed(&self) -> bool {
        // An abort is someone's decision (Stop, Esc), not a failure, even though
        // OMP gives the aborted message an error text.
        match self.stop_reason.as_deref() {
            Some("aborted") => false,
            Some("error") => true,
            _ => self.error.is_some(),
        }
    }

    /// Adds a later part of the same run (after an `agent_end` with
    /// `willContinue: true`): counts add up, the later answer and stop reason win.
    pub fn merge(&mut self, later: RunSummary) {
        if later.answer.is_some() {
            self.answer = later.answer;
        }
        self.stop_reason = later.stop_reason.or(self.stop_reason.take());
        self.error = later.error;
        self.tool_calls.extend(later.tool_calls);
        self.turns += later.turns;
        self.output_tokens += later.output_tokens;
        self.input_tokens += later.input_tokens;
        self.cost += later.cost;
        for file in later.files_changed {
            if !self.files_changed.contains(&file) {
                self.files_changed.push(file);
            }
        }
        self.duration_ms = later.duration_ms.or(self.duration_ms);
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
    let failed_calls: BTreeSet<&str> = messages
        .iter()
        .filter(|m| m["role"] == "toolResult" && m["isError"] == true)
        .filter_map(|m| m["toolCallId"].as_str())
        .collect();
    let mut summary = RunSummary::default();
    for message in messages.iter().filter(|m| m["role"] == "assistant") {
        summary.turns += 1;
        let usage = &message["usage"];
        summary.output_tokens += usage["output"].as_u64().unwrap_or(0);
        summary.input_tokens += usage["input"].as_u64().unwrap_or(0);
        summary.cost += usage["cost"]["total"].as_f64().filter(|c| c.is_finite() && *c > 0.0).unwrap_or(0.0);
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
        for call in blocks.iter().filter(|b| b["type"] == "toolCall") {
            let Some(name) = call["name"].as_str() else { continue };
            summary.tool_calls.push(name.to_owned());
            let failed = call["id"].as_str().is_some_and(|id| failed_calls.contains(id));
            if let Some(path) = changed_file(name, &call["arguments"]).filter(|_| !failed)
                && !summary.files_changed.iter().any(|f| f == path)
            {
                summary.files_changed.push(path.to_owned());
            }
        }
    }
    summary
}

/// The file a tool call changes, if the tool writes files and names one.
#[must_use]
pub fn changed_file<'a>(tool: &str, arguments: &'a Value) -> Option<&'a str> {
    if !FILE_TOOLS.contains(&tool) {
        return None;
    }
    ["path", "file_path", "filePath", "file"].into_iter().find_map(|key| arguments.get(key)?.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed;
    use crate::templates::run_finished;
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
        let payload = run_finished(&summary, "proj");
        assert_eq!(payload.embeds[0].fields[1].value, "bash ×2");
        embed::validate_message(&payload).unwrap();
    }

    #[test]
    fn a_stopped_run_is_aborted_not_failed() {
        let mut aborted = assistant(json!([]), "aborted");
        aborted["errorMessage"] = json!("Interrupted by user");
        let summary = summarize_agent_end(&json!({ "messages": [aborted] }));
        assert!(!summary.failed());
        assert_eq!(run_finished(&summary, "proj").embeds[0].title.as_deref(), Some("Run aborted"));
    }

    #[test]
    fn failed_run_shows_the_error() {
        let mut failed = assistant(json!([]), "error");
        failed["errorMessage"] = json!("rate limited by provider");
        let summary = summarize_agent_end(&json!({ "messages": [failed] }));
        assert!(summary.failed());
        let payload = run_finished(&summary, "proj");
        assert_eq!(payload.embeds[0].title.as_deref(), Some("Run failed"));
        assert_eq!(payload.embeds[0].description.as_deref(), Some("rate limited by provider"));
    }

    #[test]
    fn summary_reads_files_cost_and_input_tokens() {
        let mut first = assistant(
            json!([{ "type": "toolCall", "name": "write", "id": "w", "arguments": { "path": "src/a.rs", "content": "x" } },
                   { "type": "toolCall", "name": "edit", "id": "e", "arguments": { "path": "src/b.rs", "edits": [] } },
                   { "type": "toolCall", "name": "edit", "id": "e2", "arguments": { "path": "src/a.rs" } },
                   { "type": "toolCall", "name": "read", "id": "r", "arguments": { "path": "src/c.rs" } }]),
            "toolUse",
        );
        first["usage"] = json!({ "input": 1000, "output": 5, "totalTokens": 1005, "cost": { "total": 0.5 } });
        let event = json!({ "messages": [
            first,
            { "role": "toolResult", "toolCallId": "e", "isError": true, "content": [] },
            assistant(json!([{ "type": "text", "text": "ok" }]), "stop"),
        ]});
        let summary = summarize_agent_end(&event);
        assert_eq!(summary.files_changed, ["src/a.rs"], "failed edits and reads change nothing");
        assert_eq!(summary.input_tokens, 1000);
        assert!((summary.cost - 0.5).abs() < f64::EPSILON);
    }

    #[test]
    fn merge_adds_up_a_continued_run() {
        let mut first = RunSummary {
            tool_calls: vec!["bash".into()],
            turns: 1,
            files_changed: vec!["a".into()],
            stop_reason: Some("error".into()),
            error: Some("overloaded".into()),
            ..Default::default()
        };
        first.merge(RunSummary {
            answer: Some("done".into()),
            stop_reason: Some("stop".into()),
            tool_calls: vec!["read".into()],
            turns: 2,
            files_changed: vec!["a".into(), "b".into()],
            ..Default::default()
        });
        assert_eq!(first.turns, 3);
        assert_eq!(first.tool_calls, ["bash", "read"]);
        assert_eq!(first.files_changed, ["a", "b"]);
        assert!(!first.failed(), "a retry that succeeded is not a failure");
    }

    #[test]
    fn unknown_shapes_never_fail() {
        for event in [json!(null), json!({ "messages": "x" }), json!({ "messages": [1, "a", {}] })] {
            let payload = run_finished(&summarize_agent_end(&event), "p");
            embed::validate_message(&payload).unwrap();
        }
    }
}
