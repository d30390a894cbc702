//! [`SessionReporter`]: one session's OMP events in, [`Report`]s out. It
//! keeps the current run (its card, running tools, counts), the tool calls
//! seen, and a subagent's tally; see the [module docs](super).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::burst::Burst;
use super::{Level, Report, ReportConfig, SessionInfo};
use crate::controls::{self, CardState};
use crate::embed::{MessagePayload, truncate_chars};
use crate::event::{RunSummary, summarize_agent_end};
use crate::format::{project_name, strip_system_reminders, summarize_input};
use crate::redact::redact_text;
use crate::split::split_long_output;
use crate::templates::{self, RunCard, SessionStart, ToolFailure, ToolUse};

/// Card edits without any change still refresh the elapsed time this often.
const CARD_REFRESH_MS: u64 = 30_000;

/// Tool call ids remembered per run (to count each call once); beyond this a
/// runaway run's calls are no longer told apart.
const CALLS_CAP: usize = 100_000;

#[derive(Debug)]
struct RunState {
    key: String,
    /// `None` when the reporter saw the run's end but not its start.
    started_ms: Option<u64>,
    prompt: Option<String>,
    card_posted: bool,
    last_card_ms: u64,
    dirty: bool,
    /// Tools running now: (call id, name, summarised input).
    running: Vec<(String, String, String)>,
    activity: Option<String>,
    done: Vec<(String, usize)>,
    errors: usize,
    turns: usize,
    input_tokens: u64,
    output_tokens: u64,
    cost: f64,
    /// The summary so far, after an `agent_end` with `willContinue: true`.
    continued: Option<RunSummary>,
}

/// Turns one session's OMP events into Discord reports; see the module docs.
///
/// Pure: the same events at the same `now_ms` give the same reports.
#[derive(Debug)]
pub struct SessionReporter {
    config: ReportConfig,
    session: SessionInfo,
    project: String,
    /// The last run's card number: its start time in ms, or one more than the last.
    runs: u64,
    run: Option<RunState>,
    next_prompt: Option<String>,
    first_prompt: Option<String>,
    session_posted: bool,
    session_shows_prompt: bool,
    /// Tool call id → (tool name, redacted input summary) of calls still
    /// running, for their error messages. Summaries, not inputs: a `write`
    /// call's input holds a whole file.
    inputs: BTreeMap<String, (String, String)>,
    seen_calls: BTreeSet<String>,
    finished_calls: BTreeSet<String>,
    failed_calls: BTreeSet<String>,
    anonymous_calls: u64,
    errors: Burst<ToolFailure>,
    calls: Burst<ToolUse>,
    /// The last ended run's card (key, payload) while its Retry / Continue
    /// buttons are on it: the next run takes them off.
    ended_card: Option<(String, MessagePayload)>,
    /// How many messages the session had at the last `agent_end`: OMP hands
    /// extensions the whole conversation, and a run is what came after.
    messages_seen: Option<usize>,
    /// A subagent's runs so far, reported as one message edited after each
    /// run: OMP re-prompts a subagent that ended without its result, and each
    /// of those runs would otherwise post its own summary in the parent's thread.
    subagent_tally: Option<SubagentTally>,
}

/// What a subagent's reported runs added up to, and the message showing it.
#[derive(Debug)]
struct SubagentTally {
    key: String,
    started_ms: Option<u64>,
    summary: RunSummary,
}

/// Where this run's messages start in the whole conversation `messages`:
/// after what the last `agent_end` showed, or (for the first run seen, e.g.
/// of a resumed session, or after a compaction shortened the history) at
/// the last prompt.
fn run_start(messages: &[Value], seen: Option<usize>) -> usize {
    match seen {
        Some(seen) if seen <= messages.len() => seen,
        _ => messages.iter().rposition(|m| m["role"] == "user").unwrap_or(0),
    }
}

impl SessionReporter {
    /// A reporter for one session.
    #[must_use]
    pub fn new(config: ReportConfig, session: SessionInfo) -> Self {
        let project = project_name(&session.cwd);
        Self {
            config,
            session,
            project,
            runs: 0,
            run: None,
            next_prompt: None,
            first_prompt: None,
            session_posted: false,
            session_shows_prompt: false,
            inputs: BTreeMap::new(),
            seen_calls: BTreeSet::new(),
            finished_calls: BTreeSet::new(),
            failed_calls: BTreeSet::new(),
            anonymous_calls: 0,
            errors: Burst::default(),
            calls: Burst::default(),
            ended_card: None,
            messages_seen: None,
            subagent_tally: None,
        }
    }

    /// Changes the level (`/discord level <l>`). A card already posted still
    /// gets its final edit.
    pub fn set_level(&mut self, level: Level) {
        self.config.level = level;
    }

    /// The configuration, with the level last set.
    #[must_use]
    pub fn config(&self) -> &ReportConfig {
        &self.config
    }

    /// The level in effect: the configured one, or quiet for a subagent.
    #[must_use]
    pub fn level(&self) -> Level {
        if self.session.is_subagent() { Level::Quiet } else { self.config.level }
    }

    /// Reads one OMP event (any `{"type": …}` object; unknown types and
    /// shapes are ignored) and returns what to send now.
    pub fn on_event(&mut self, event: &Value, now_ms: u64) -> Vec<Report> {
        let mut out = Vec::new();
        match event.get("type").and_then(Value::as_str).unwrap_or_default() {
            "session_start" => self.on_session_start(&mut out),
            "before_agent_start" => self.on_prompt(event, &mut out),
            "agent_start" => self.on_agent_start(now_ms, &mut out),
            "tool_call" => self.on_tool_call(event, "input", false),
            "tool_execution_start" => self.on_tool_call(event, "args", true),
            "tool_execution_end" => self.on_tool_end(event, &event["result"]),
            "tool_result" => self.on_tool_end(event, &event["content"]),
            "turn_end" => self.on_turn_end(event),
            "auto_compaction_start" => self.set_activity(Some("Compacting the context…".to_owned())),
            "auto_retry_start" => {
                let attempt = event["attempt"].as_u64().unwrap_or(0);
                let max = event["maxAttempts"].as_u64().unwrap_or(0);
                let error = event["errorMessage"].as_str().unwrap_or("an error");
                self.set_activity(Some(format!("Retrying ({attempt}/{max}) after: {error}")));
            }
            "auto_compaction_end" | "auto_retry_end" => self.set_activity(None),
            "agent_end" => self.on_agent_end(event, now_ms, &mut out),
            "session_shutdown" => {
                self.flush_bursts(now_ms, true, &mut out);
                if let Some(run) = self.run.take() {
                    self.finish_run(run, None, now_ms, &mut out);
                }
                return out;
            }
            _ => {}
        }
        self.flush_due(now_ms, &mut out);
        out
    }

    /// Sends what has become due: the run card once the run is `min_run_secs`
    /// old, a card edit if the state changed (or 30 s passed) and the last
    /// edit is `card_interval_secs` old, and held-back bursts. Call it about
    /// once a second.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Report> {
        let mut out = Vec::new();
        self.flush_due(now_ms, &mut out);
        out
    }

    fn shows_card(&self) -> bool {
        self.level() >= Level::Normal
    }

    fn on_session_start(&mut self, out: &mut Vec<Report>) {
        if self.session_posted || self.level() < Level::Normal {
            return;
        }
        self.session_posted = true;
        self.session_shows_prompt = self.first_prompt.is_some();
        out.push(Report::Post { key: Some(self.session_key()), payload: self.session_payload() });
    }

    fn on_prompt(&mut self, event: &Value, out: &mut Vec<Report>) {
        let Some(prompt) = event["prompt"].as_str().map(strip_system_reminders) else {
            return;
        };
        if prompt.is_empty() {
            return;
        }
        self.first_prompt.get_or_insert_with(|| prompt.clone());
        if self.session_posted && !self.session_shows_prompt {
            self.session_shows_prompt = true;
            out.push(Report::Edit { key: self.session_key(), payload: self.session_payload() });
        }
        match &mut self.run {
            Some(run) if run.prompt.is_none() => run.prompt = Some(prompt),
            _ => self.next_prompt = Some(prompt),
        }
    }

    fn on_agent_start(&mut self, now_ms: u64, out: &mut Vec<Report>) {
        if let Some(run) = &mut self.run
            && run.continued.is_some()
        {
            // The same run goes on after an automatic retry.
            run.activity = None;
            run.dirty = true;
            return;
        }
        if let Some(stale) = self.run.take() {
            // An agent_end went missing: close the old card instead of leaving it "running".
            self.finish_run(stale, None, now_ms, out);
        }
        // A new run makes the last card's Retry / Continue stale.
        if let Some((key, mut payload)) = self.ended_card.take() {
            match out.iter_mut().find(|report| report.key() == Some(key.as_str())) {
                // The run closed just now: its final card goes out without them.
                Some(Report::Edit { payload, .. } | Report::Post { payload, .. }) => controls::strip(payload),
                None => {
                    controls::strip(&mut payload);
                    out.push(Report::Edit { key, payload });
                }
            }
        }
        self.run = Some(self.new_run(Some(now_ms)));
    }

    fn new_run(&mut self, started_ms: Option<u64>) -> RunState {
        // Numbered by start time: a resumed session (`omp --continue`, another
        // process) must not reuse an earlier process's card numbers, or that
        // process's old buttons would act on the new run.
        self.runs = (self.runs + 1).max(started_ms.unwrap_or(0));
        RunState {
            key: format!("card:{}:{}", self.session.id, self.runs),
            started_ms,
            prompt: self.next_prompt.take(),
            card_posted: false,
            last_card_ms: 0,
            dirty: false,
            running: Vec::new(),
            activity: None,
            done: Vec::new(),
            errors: 0,
            turns: 0,
            input_tokens: 0,
            output_tokens: 0,
            cost: 0.0,
            continued: None,
        }
    }

    /// The call's id, or a made-up one when the event has none.
    fn call_id(&mut self, event: &Value) -> String {
        match event["toolCallId"].as_str() {
            Some(id) => id.to_owned(),
            None => {
                self.anonymous_calls += 1;
                format!("#anonymous-{}", self.anonymous_calls)
            }
        }
    }

    fn on_tool_call(&mut self, event: &Value, input_key: &str, executing: bool) {
        let id = self.call_id(event);
        let name = event["toolName"].as_str().unwrap_or("tool").to_owned();
        let input = summarize_input(&name, event.get(input_key).unwrap_or(&Value::Null));
        if executing
            && let Some(run) = &mut self.run
            && !run.running.iter().any(|(running, ..)| *running == id)
        {
            run.running.push((id.clone(), name.clone(), input.clone()));
            run.dirty = true;
        }
        if self.seen_calls.len() < CALLS_CAP && self.seen_calls.insert(id.clone()) {
            if self.level() >= Level::Verbose && self.config.tool_selected(&name) {
                let name_only = |u: ToolUse| ToolUse { tool: u.tool, input: Value::Null };
                self.calls.push(ToolUse { tool: name.clone(), input: Value::String(input.clone()) }, name_only);
            }
            if !self.finished_calls.contains(&id) {
                self.inputs.insert(id, (name, input));
            }
        }
    }

    fn on_tool_end(&mut self, event: &Value, result: &Value) {
        let id = self.call_id(event);
        let (name, input) = match self.inputs.remove(&id) {
            Some(known) => known,
            None => {
                let name = event["toolName"].as_str().unwrap_or("tool").to_owned();
                let input = event.get("input").or_else(|| event.get("args")).unwrap_or(&Value::Null);
                let input = summarize_input(&name, input);
                (name, input)
            }
        };
        let failed = event["isError"] == true;
        let first_end = self.finished_calls.len() < CALLS_CAP && self.finished_calls.insert(id.clone());
        let first_failure = failed && self.failed_calls.len() < CALLS_CAP && self.failed_calls.insert(id.clone());
        if let Some(run) = &mut self.run {
            run.running.retain(|(running, ..)| *running != id);
            if first_end {
                match run.done.iter_mut().find(|(tool, _)| *tool == name) {
                    Some((_, n)) => *n += 1,
                    None => run.done.push((name.clone(), 1)),
                }
            }
            if first_failure {
                run.errors += 1;
            }
            run.dirty = true;
        }
        if first_failure && self.level() >= Level::Normal && self.config.tool_selected(&name) {
            let name_only = |f: ToolFailure| ToolFailure { tool: f.tool, ..Default::default() };
            // Redact before cutting: half a secret would not be recognised.
            let error = truncate_chars(&redact_text(&content_text(result)), templates::OUTPUT_KEEP);
            self.errors.push(ToolFailure { tool: name, input: Value::String(input), error }, name_only);
        }
    }

    fn on_turn_end(&mut self, event: &Value) {
        let Some(run) = &mut self.run else { return };
        let message = &event["message"];
        if message.get("role").is_some_and(|role| role != "assistant") {
            return;
        }
        let usage = &message["usage"];
        run.turns += 1;
        run.input_tokens += usage["input"].as_u64().unwrap_or(0);
        run.output_tokens += usage["output"].as_u64().unwrap_or(0);
        run.cost += usage["cost"]["total"].as_f64().filter(|c| c.is_finite() && *c > 0.0).unwrap_or(0.0);
        run.dirty = true;
    }

    fn set_activity(&mut self, activity: Option<String>) {
        if let Some(run) = &mut self.run {
            run.activity = activity;
            run.dirty = true;
        }
    }

    fn on_agent_end(&mut self, event: &Value, now_ms: u64, out: &mut Vec<Report>) {
        let messages = event["messages"].as_array().map(Vec::as_slice).unwrap_or_default();
        let start = run_start(messages, self.messages_seen);
        self.messages_seen = Some(messages.len());
        let mut summary = summarize_agent_end(&serde_json::json!({ "messages": &messages[start..] }));
        let mut run = match self.run.take() {
            Some(run) => run,
            None => self.new_run(None),
        };
        if let Some(mut earlier) = run.continued.take() {
            earlier.merge(summary);
            summary = earlier;
        }
        if event["willContinue"] == true {
            run.continued = Some(summary);
            run.activity = Some("Continuing…".to_owned());
            run.dirty = true;
            self.run = Some(run);
            return;
        }
        self.flush_bursts(now_ms, true, out);
        self.finish_run(run, Some(summary), now_ms, out);
    }

    /// Ends a run: the final edit of its card, or a post when it has none and
    /// is worth reporting; an answer too long for the summary follows in parts.
    /// Without a summary (session ended, or a missing `agent_end`), the run
    /// is reported as interrupted from what the card knew.
    fn finish_run(&mut self, run: RunState, summary: Option<RunSummary>, now_ms: u64, out: &mut Vec<Report>) {
        let mut summary = summary.or(run.continued).unwrap_or_else(|| RunSummary {
            stop_reason: Some("interrupted".to_owned()),
            tool_calls: run.done.iter().flat_map(|(name, n)| std::iter::repeat_n(name.clone(), *n)).collect(),
            turns: run.turns,
            input_tokens: run.input_tokens,
            output_tokens: run.output_tokens,
            cost: run.cost,
            ..Default::default()
        });
        summary.duration_ms = run.started_ms.map(|started| now_ms.saturating_sub(started));
        let long_enough = summary.duration_ms.is_none_or(|ms| ms >= self.config.min_run_ms());
        let worth_reporting =
            summary.failed() || (long_enough && summary.stop_reason.as_deref() != Some("interrupted"));
        if let Some(tally) = &mut self.subagent_tally {
            tally.summary.merge(summary);
            tally.summary.duration_ms = tally.started_ms.map(|started| now_ms.saturating_sub(started));
            let mut payload = templates::run_finished(&tally.summary, &self.project);
            templates::mark_subagent(&mut payload);
            out.push(Report::Edit { key: tally.key.clone(), payload });
            return self.forget_calls();
        }
        if !(run.card_posted || worth_reporting) {
            return self.forget_calls();
        }
        if self.session.is_subagent() {
            self.subagent_tally =
                Some(SubagentTally { key: run.key.clone(), started_ms: run.started_ms, summary: summary.clone() });
        }
        let mut payload = templates::run_finished(&summary, &self.project);
        self.mark(&mut payload);
        if self.add_controls(&mut payload, &run.key, CardState::Finished) {
            self.ended_card = Some((run.key.clone(), payload.clone()));
        }
        if run.card_posted {
            out.push(Report::Edit { key: run.key, payload });
        } else {
            out.push(Report::Post { key: Some(run.key), payload });
        }
        if templates::answer_overflows(&summary) {
            let answer = summary.answer.as_deref().unwrap_or_default();
            for mut part in split_long_output("Full answer", answer, "md") {
                self.mark(&mut part);
                out.push(Report::Post { key: None, payload: part });
            }
        }
        self.forget_calls();
    }

    fn forget_calls(&mut self) {
        self.inputs.clear();
        self.seen_calls.clear();
        self.finished_calls.clear();
        self.failed_calls.clear();
    }

    fn flush_due(&mut self, now_ms: u64, out: &mut Vec<Report>) {
        self.flush_bursts(now_ms, false, out);
        let interval = self.config.interval_ms();
        let min_run = self.config.min_run_ms();
        let shows_card = self.shows_card();
        let Some(run) = &self.run else { return };
        let age = run.started_ms.map(|started| now_ms.saturating_sub(started));
        let since_edit = now_ms.saturating_sub(run.last_card_ms);
        let post = !run.card_posted && age.is_some_and(|age| age >= min_run);
        let edit = run.card_posted && since_edit >= interval && (run.dirty || since_edit >= CARD_REFRESH_MS);
        if !shows_card || !(post || edit) {
            return;
        }
        let mut payload = templates::run_card(&card_of(run, now_ms), &self.project);
        self.mark(&mut payload);
        self.add_controls(&mut payload, &run.key, CardState::Running);
        let Some(run) = &mut self.run else { return };
        run.card_posted = true;
        run.last_card_ms = now_ms;
        run.dirty = false;
        out.push(if post {
            Report::Post { key: Some(run.key.clone()), payload }
        } else {
            Report::Edit { key: run.key.clone(), payload }
        });
    }

    fn flush_bursts(&mut self, now_ms: u64, force: bool, out: &mut Vec<Report>) {
        let interval = self.config.interval_ms();
        if let Some(failures) = self.errors.take_due(now_ms, interval, force) {
            let mut payload = templates::tool_errors(&failures, &self.project);
            let rest = templates::attach_full_errors(&mut payload, &failures);
            self.mark(&mut payload);
            out.push(Report::Post { key: None, payload });
            for mut part in rest {
                self.mark(&mut part);
                out.push(Report::Post { key: None, payload: part });
            }
        }
        if let Some(calls) = self.calls.take_due(now_ms, interval, force) {
            let mut payload = templates::tool_calls(&calls, &self.project);
            self.mark(&mut payload);
            out.push(Report::Post { key: None, payload });
        }
    }

    fn mark(&self, payload: &mut MessagePayload) {
        if self.session.is_subagent() {
            templates::mark_subagent(payload);
        }
    }

    /// Puts the run-control buttons on the current run's card (not on a
    /// subagent's: people drive the main session). Returns whether it did.
    fn add_controls(&self, payload: &mut MessagePayload, key: &str, state: CardState) -> bool {
        let Some((_, card)) = controls::parse_card_key(key) else { return false };
        if self.session.is_subagent() {
            return false;
        }
        controls::add_buttons(payload, state, card, &self.session.id);
        true
    }

    fn session_key(&self) -> String {
        format!("session:{}", self.session.id)
    }

    fn session_payload(&self) -> MessagePayload {
        templates::session_started(&SessionStart {
            cwd: self.session.cwd.clone(),
            host: self.session.host.clone(),
            model: self.session.model.clone(),
            prompt: self.first_prompt.clone(),
        })
    }
}

fn card_of(run: &RunState, now_ms: u64) -> RunCard {
    RunCard {
        prompt: run.prompt.clone(),
        elapsed_ms: run.started_ms.map_or(0, |started| now_ms.saturating_sub(started)),
        running: run.running.iter().map(|(_, name, input)| (name.clone(), input.clone())).collect(),
        activity: run.activity.clone(),
        tools_done: run.done.clone(),
        tool_errors: run.errors,
        turns: run.turns,
        input_tokens: run.input_tokens,
        output_tokens: run.output_tokens,
        cost: run.cost,
    }
}

/// The text of a tool result: `content` blocks of type `text` joined, a plain
/// string, or the JSON itself for any other shape.
fn content_text(result: &Value) -> String {
    let blocks = result.get("content").unwrap_or(result);
    match blocks {
        Value::Array(items) => {
            let texts: Vec<&str> = items.iter().filter_map(|b| b.get("text").and_then(Value::as_str)).collect();
            if texts.is_empty() { blocks.to_string() } else { texts.join("\n") }
        }
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
