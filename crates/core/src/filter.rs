//! What goes to Discord: a readable [`ReportConfig`] and a pure, stateful
//! [`SessionReporter`] that turns one session's OMP events into [`Report`]s
//! (posts and edits of keyed messages).
//!
//! The reporter owns no clock and no timer: the caller passes `now_ms` (any
//! monotonic milliseconds) with every event and calls [`SessionReporter::tick`]
//! about once a second, which sends what was held back to respect Discord's
//! rate limits (card edits, bursts of tool errors or calls).
//!
//! What a run looks like in Discord, at the default `normal` level:
//!
//! 1. `agent_start` posts a live **run card** (key `card:<session>:<n>`),
//!    once the run is older than `min_run_secs` (at once by default);
//! 2. while tools run, the card is edited (elapsed time, current tool, tools
//!    done with counts, tokens, cost), at most once per `card_interval_secs`:
//!    changes in between are merged and the latest state wins;
//! 3. `agent_end` edits the card one last time into the "Run finished" (or
//!    failed) summary, at once; an answer too long for it follows in parts.
//!
//! The card carries the run buttons of [`crate::controls`]: Stop while the run
//! goes, Retry and Continue once it ended; the next `agent_start` edits the
//! previous card without them.
//!
//! Tool errors are posted as they happen, except that errors within one
//! interval of the last error post wait and go out together as one message.
//!
//! ```
//! use omp_discord_core::filter::{Report, ReportConfig, SessionInfo, SessionReporter};
//! use serde_json::json;
//!
//! let session = SessionInfo { id: "s1".into(), cwd: "/src/app".into(), ..Default::default() };
//! let mut reporter = SessionReporter::new(ReportConfig::default(), session);
//! let posts = reporter.on_event(&json!({ "type": "agent_start" }), 0);
//! assert!(matches!(&posts[..], [Report::Post { key: Some(key), .. }] if key == "card:s1:1"));
//! let end = json!({ "type": "agent_end", "messages": [
//!     { "role": "assistant", "stopReason": "stop", "content": [{ "type": "text", "text": "Done." }] }
//! ]});
//! let edits = reporter.on_event(&end, 42_000);
//! assert!(matches!(&edits[..], [Report::Edit { key, .. }] if key == "card:s1:1"));
//! assert_eq!(edits[0].payload().embeds[0].title.as_deref(), Some("Run finished"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::controls::{self, CardState};
use crate::embed::{MessagePayload, truncate_chars};
use crate::event::{RunSummary, summarize_agent_end};
use crate::redact::redact_text;
use crate::report::{self, RunCard, SessionStart, ToolFailure, ToolUse};

/// How much of a session is reported.
///
/// | reported                                    | quiet | normal | verbose |
/// |---------------------------------------------|:-----:|:------:|:-------:|
/// | run finished (≥ `min_run_secs`) / failed    |   ✓   |   ✓    |    ✓    |
/// | session started                             |       |   ✓    |    ✓    |
/// | live run card (edited into the summary)     |       |   ✓    |    ✓    |
/// | tool errors                                 |       |   ✓    |    ✓    |
/// | every tool call                             |       |        |    ✓    |
///
/// Quiet posts the run summary once, when the run ends. Questions and
/// approvals ("needs you") are posted by their own tools at every level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Only finished/failed runs.
    Quiet,
    /// Also the session, a live run card and tool errors.
    #[default]
    Normal,
    /// Also every tool call.
    Verbose,
}

impl Level {
    /// The level's name as users type it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quiet => "quiet",
            Self::Normal => "normal",
            Self::Verbose => "verbose",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name that is not `quiet`, `normal` or `verbose`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {name:?}: use quiet, normal or verbose")]
pub struct ParseLevelError {
    /// What was given, cut to 32 characters.
    pub name: String,
}

impl FromStr for Level {
    type Err = ParseLevelError;

    /// Parses `quiet`, `normal` or `verbose`, ignoring case and surrounding
    /// space (as typed in `/discord level <l>`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "quiet" => Ok(Self::Quiet),
            "normal" => Ok(Self::Normal),
            "verbose" => Ok(Self::Verbose),
            _ => Err(ParseLevelError { name: s.chars().take(32).collect() }),
        }
    }
}

/// What a session reports to Discord. Every key is optional; unknown keys are
/// ignored.
///
/// | key                  | default  | meaning |
/// |----------------------|----------|---------|
/// | `level`              | `normal` | `quiet`: finished/failed runs only · `normal`: + session start, live run card, tool errors · `verbose`: + every tool call |
/// | `min_run_secs`       | `0`      | report a finished run only if it took at least this many seconds; failed runs are always reported (the live card appears once a run is this old) |
/// | `include_tools`      | `[]`     | if not empty, only these tools get tool-error and tool-call messages (`name`, or a prefix ending in `*`, e.g. `mcp__*`) |
/// | `exclude_tools`      | `[]`     | tools that never get tool-error or tool-call messages (same patterns); wins over `include_tools` |
/// | `card_interval_secs` | `5`      | least time between two edits of the live run card, and between two messages of coalesced tool errors or calls (at least 1) |
///
/// Subagent sessions always report as `quiet`, under their parent.
///
/// ```
/// use omp_discord_core::filter::{Level, ReportConfig};
///
/// let config: ReportConfig = serde_json::from_str(r#"{ "level": "quiet", "exclude_tools": ["read"] }"#)?;
/// assert_eq!(config.level, Level::Quiet);
/// assert_eq!(config.card_interval_secs, 5);
/// assert!(!config.tool_selected("read") && config.tool_selected("bash"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportConfig {
    /// How much is reported.
    pub level: Level,
    /// Finished runs shorter than this are not reported (failed ones are).
    pub min_run_secs: u64,
    /// When not empty, the only tools with per-tool messages.
    pub include_tools: Vec<String>,
    /// Tools without per-tool messages.
    pub exclude_tools: Vec<String>,
    /// Least seconds between card edits and between coalesced messages.
    pub card_interval_secs: u64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            level: Level::Normal,
            min_run_secs: 0,
            include_tools: Vec::new(),
            exclude_tools: Vec::new(),
            card_interval_secs: 5,
        }
    }
}

impl ReportConfig {
    /// Whether `tool` gets per-tool messages (errors, verbose calls) under
    /// `include_tools` and `exclude_tools`. The run card and summary count
    /// every tool regardless.
    #[must_use]
    pub fn tool_selected(&self, tool: &str) -> bool {
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => tool.starts_with(prefix),
            None => pattern == tool,
        };
        (self.include_tools.is_empty() || self.include_tools.iter().any(matches))
            && !self.exclude_tools.iter().any(matches)
    }

    fn interval_ms(&self) -> u64 {
        self.card_interval_secs.max(1).saturating_mul(1000)
    }

    fn min_run_ms(&self) -> u64 {
        self.min_run_secs.saturating_mul(1000)
    }
}

/// The session a reporter works for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionInfo {
    /// OMP's session id; it scopes the message keys.
    pub id: String,
    /// The working directory; its last component names the project.
    #[serde(default)]
    pub cwd: String,
    /// The parent session, when this one is a subagent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The machine's host name.
    #[serde(default)]
    pub host: String,
    /// The model, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl SessionInfo {
    /// Whether this is a subagent session (it has a parent).
    #[must_use]
    pub fn is_subagent(&self) -> bool {
        self.parent_id.as_deref().is_some_and(|p| !p.is_empty())
    }
}

/// One thing to do in Discord, as the shim hands it to the sidecar.
///
/// A `key` names a message so later [`Report::Edit`]s can replace it; keys
/// include the session id, so they are unique across sessions (a subagent's
/// messages share the parent's thread). An edit whose key was never posted
/// (e.g. the post failed) should be sent as a new post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// Post a new message.
    Post {
        /// Remember the message under this key, when set.
        key: Option<String>,
        /// The message.
        payload: MessagePayload,
    },
    /// Replace the message posted under `key`.
    Edit {
        /// The key of an earlier [`Report::Post`].
        key: String,
        /// The new message.
        payload: MessagePayload,
    },
}

impl Report {
    /// The message to post or to edit into.
    #[must_use]
    pub fn payload(&self) -> &MessagePayload {
        match self {
            Self::Post { payload, .. } | Self::Edit { payload, .. } => payload,
        }
    }

    /// The message's key, if it has one.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Post { key, .. } => key.as_deref(),
            Self::Edit { key, .. } => Some(key),
        }
    }
}

/// Card edits without any change still refresh the elapsed time this often.
const CARD_REFRESH_MS: u64 = 30_000;

/// Items of one burst kept whole; the rest are kept by name only, and beyond
/// [`BURST_CAP`] only counted.
const BURST_KEEP: usize = 50;
/// Items of one burst remembered at all.
const BURST_CAP: usize = 10_000;
/// Tool call ids remembered per run (to count each call once); beyond this a
/// runaway run's calls are no longer told apart.
const CALLS_CAP: usize = 100_000;

/// Items waiting to go out together as one message.
#[derive(Debug)]
struct Burst<T> {
    pending: Vec<T>,
    last_post_ms: Option<u64>,
}

impl<T> Default for Burst<T> {
    fn default() -> Self {
        Self { pending: Vec::new(), last_post_ms: None }
    }
}

impl<T> Burst<T> {
    fn push(&mut self, item: T, name_only: impl FnOnce(T) -> T) {
        match self.pending.len() {
            n if n < BURST_KEEP => self.pending.push(item),
            n if n < BURST_CAP => self.pending.push(name_only(item)),
            _ => {}
        }
    }

    /// Takes the pending items if the last post is an interval old (or `force`).
    fn take_due(&mut self, now_ms: u64, interval_ms: u64, force: bool) -> Option<Vec<T>> {
        let due = self.last_post_ms.is_none_or(|last| now_ms.saturating_sub(last) >= interval_ms);
        if self.pending.is_empty() || !(due || force) {
            return None;
        }
        self.last_post_ms = Some(now_ms);
        Some(std::mem::take(&mut self.pending))
    }
}

/// One agent run, from `agent_start` to the `agent_end` without `willContinue`.
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
        let project = report::project_name(&session.cwd);
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
        let Some(prompt) = event["prompt"].as_str().map(report::strip_system_reminders) else {
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
        let input = report::summarize_input(&name, event.get(input_key).unwrap_or(&Value::Null));
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
                let input = report::summarize_input(&name, input);
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
            let error = truncate_chars(&redact_text(&content_text(result)), report::OUTPUT_KEEP);
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
            let mut payload = report::run_finished(&tally.summary, &self.project);
            report::mark_subagent(&mut payload);
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
        let mut payload = report::run_finished(&summary, &self.project);
        self.mark(&mut payload);
        if self.add_controls(&mut payload, &run.key, CardState::Finished) {
            self.ended_card = Some((run.key.clone(), payload.clone()));
        }
        if run.card_posted {
            out.push(Report::Edit { key: run.key, payload });
        } else {
            out.push(Report::Post { key: Some(run.key), payload });
        }
        if report::answer_overflows(&summary) {
            let answer = summary.answer.as_deref().unwrap_or_default();
            for mut part in report::split_long_output("Full answer", answer, "md") {
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
        let mut payload = report::run_card(&card_of(run, now_ms), &self.project);
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
            let mut payload = report::tool_errors(&failures, &self.project);
            let rest = report::attach_full_errors(&mut payload, &failures);
            self.mark(&mut payload);
            out.push(Report::Post { key: None, payload });
            for mut part in rest {
                self.mark(&mut part);
                out.push(Report::Post { key: None, payload: part });
            }
        }
        if let Some(calls) = self.calls.take_due(now_ms, interval, force) {
            let mut payload = report::tool_calls(&calls, &self.project);
            self.mark(&mut payload);
            out.push(Report::Post { key: None, payload });
        }
    }

    fn mark(&self, payload: &mut MessagePayload) {
        if self.session.is_subagent() {
            report::mark_subagent(payload);
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
        report::session_started(&SessionStart {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::validate_message;
    use serde_json::json;

    const SEC: u64 = 1000;

    fn session() -> SessionInfo {
        SessionInfo { id: "s".into(), cwd: "/src/app".into(), host: "box".into(), ..Default::default() }
    }

    fn reporter(config: ReportConfig) -> SessionReporter {
        SessionReporter::new(config, session())
    }

    fn level(level: Level) -> ReportConfig {
        ReportConfig { level, ..Default::default() }
    }

    fn start(id: &str, tool: &str) -> Value {
        json!({ "type": "tool_execution_start", "toolCallId": id, "toolName": tool, "args": { "command": "ls" } })
    }

    fn end(id: &str, tool: &str, error: bool) -> Value {
        json!({ "type": "tool_execution_end", "toolCallId": id, "toolName": tool, "isError": error,
                "result": { "content": [{ "type": "text", "text": format!("{tool} said no") }] } })
    }

    fn agent_end(stop: &str) -> Value {
        let mut message =
            json!({ "role": "assistant", "stopReason": stop, "content": [{ "type": "text", "text": "ok" }] });
        if stop == "error" {
            message["errorMessage"] = json!("provider down");
        }
        json!({ "type": "agent_end", "messages": [message] })
    }

    fn titles(reports: &[Report]) -> Vec<String> {
        reports.iter().map(|r| r.payload().embeds[0].title.clone().unwrap_or_default()).collect()
    }

    fn kinds(reports: &[Report]) -> Vec<String> {
        reports
            .iter()
            .map(|r| match r {
                Report::Post { key, .. } => format!("post {}", key.as_deref().unwrap_or("-")),
                Report::Edit { key, .. } => format!("edit {key}"),
            })
            .collect()
    }

    /// Runs a whole session (start, one run with a failing and a working tool,
    /// end) and returns everything reported.
    fn session_at(config: ReportConfig) -> Vec<Report> {
        let mut r = reporter(config);
        let mut out = r.on_event(&json!({ "type": "session_start" }), 0);
        out.extend(r.on_event(&json!({ "type": "agent_start" }), 0));
        out.extend(r.on_event(&start("1", "bash"), SEC));
        out.extend(r.on_event(&end("1", "bash", true), 2 * SEC));
        out.extend(r.on_event(&start("2", "read"), 3 * SEC));
        out.extend(r.on_event(&end("2", "read", false), 4 * SEC));
        out.extend(r.tick(20 * SEC));
        out.extend(r.on_event(&agent_end("stop"), 30 * SEC));
        out.extend(r.on_event(&json!({ "type": "session_shutdown" }), 31 * SEC));
        out
    }

    #[test]
    fn level_table() {
        let quiet = session_at(level(Level::Quiet));
        assert_eq!(titles(&quiet), ["Run finished"]);
        assert_eq!(kinds(&quiet), ["post card:s:1"]);

        let normal = session_at(level(Level::Normal));
        assert_eq!(
            titles(&normal),
            ["Session started · app", "Running · 0 ms", "Tool error: bash", "Running · 20s", "Run finished"]
        );
        assert_eq!(kinds(&normal), ["post session:s", "post card:s:1", "post -", "edit card:s:1", "edit card:s:1"]);

        let verbose = session_at(level(Level::Verbose));
        let verbose_titles = titles(&verbose);
        // The first call goes out at once, the second (within the interval) at the next due tick.
        assert_eq!(verbose_titles.iter().filter(|t| *t == "Tool call").count(), 2, "{verbose_titles:?}");
        assert_eq!(verbose_titles.len(), normal.len() + 2, "{verbose_titles:?}");

        for report in quiet.iter().chain(&normal).chain(&verbose) {
            validate_message(report.payload()).unwrap();
        }
    }

    #[test]
    fn level_parses_from_commands() {
        assert_eq!(" Verbose ".parse::<Level>(), Ok(Level::Verbose));
        let err = "loud".parse::<Level>().unwrap_err();
        assert_eq!(err.to_string(), "unknown level \"loud\": use quiet, normal or verbose");
        assert_eq!(Level::Quiet.to_string(), "quiet");
        let config: ReportConfig = serde_json::from_value(json!({ "level": "verbose", "future_key": 1 })).unwrap();
        assert_eq!(config, ReportConfig { level: Level::Verbose, ..Default::default() });
    }

    #[test]
    fn short_runs_stay_quiet_but_failures_do_not() {
        let config = ReportConfig { min_run_secs: 10, ..Default::default() };
        let mut r = reporter(config.clone());
        let mut out = r.on_event(&json!({ "type": "agent_start" }), 0);
        out.extend(r.tick(9 * SEC));
        out.extend(r.on_event(&agent_end("stop"), 9_999));
        assert!(out.is_empty(), "{:?}", kinds(&out));

        let mut r = reporter(config.clone());
        r.on_event(&json!({ "type": "agent_start" }), 0);
        let out = r.on_event(&agent_end("error"), 2 * SEC);
        assert_eq!(titles(&out), ["Run failed"]);
        assert_eq!(kinds(&out), ["post card:s:1"]);

        // A long run gets its card once it is old enough, then the final edit.
        let mut r = reporter(config);
        r.on_event(&json!({ "type": "agent_start" }), 0);
        assert!(r.tick(9 * SEC).is_empty());
        assert_eq!(kinds(&r.tick(10 * SEC)), ["post card:s:1"]);
        let out = r.on_event(&agent_end("stop"), 12 * SEC);
        assert_eq!(kinds(&out), ["edit card:s:1"]);
        assert!(out[0].payload().embeds[0].fields.iter().any(|f| f.name == "Duration" && f.value == "12s"));
    }

    #[test]
    fn quiet_threshold_counts_the_whole_run() {
        let mut r = reporter(ReportConfig { level: Level::Quiet, min_run_secs: 5, ..Default::default() });
        r.on_event(&json!({ "type": "agent_start" }), 0);
        assert!(r.tick(60 * SEC).is_empty(), "quiet never posts a card");
        assert_eq!(titles(&r.on_event(&agent_end("stop"), 60 * SEC)), ["Run finished"]);
    }

    #[test]
    fn include_and_exclude_select_tool_messages() {
        let config = ReportConfig {
            level: Level::Verbose,
            include_tools: vec!["bash".into(), "mcp__*".into()],
            exclude_tools: vec!["mcp__noisy*".into()],
            ..Default::default()
        };
        assert!(config.tool_selected("bash"));
        assert!(config.tool_selected("mcp__github_search"));
        assert!(!config.tool_selected("mcp__noisy_log"));
        assert!(!config.tool_selected("read"));

        let mut r = reporter(config);
        r.on_event(&json!({ "type": "agent_start" }), 0);
        let mut out = Vec::new();
        for (i, tool) in ["read", "mcp__noisy_log", "bash"].into_iter().enumerate() {
            let id = i.to_string();
            out.extend(r.on_event(&start(&id, tool), 100 * SEC * i as u64 + SEC));
            out.extend(r.on_event(&end(&id, tool, true), 100 * SEC * i as u64 + 2 * SEC));
        }
        let titles = titles(&out);
        assert_eq!(titles.iter().filter(|t| t.starts_with("Tool error")).collect::<Vec<_>>(), ["Tool error: bash"]);
        assert_eq!(titles.iter().filter(|t| t.starts_with("Tool call")).count(), 1);
        // The card still counts every tool.
        let card = r.tick(400 * SEC);
        assert!(card[0].payload().embeds[0].fields.iter().any(|f| f.value.starts_with("3: ")), "{card:?}");
    }

    #[test]
    fn bursts_of_errors_coalesce_per_interval() {
        let mut r = reporter(ReportConfig::default());
        r.on_event(&json!({ "type": "agent_start" }), 0);
        let mut errors = Vec::new();
        for i in 0..6u64 {
            let id = i.to_string();
            r.on_event(&start(&id, "bash"), i * 500);
            let out = r.on_event(&end(&id, "bash", true), i * 500 + 100);
            errors.extend(out.into_iter().filter(|r| r.key().is_none()));
        }
        assert_eq!(titles(&errors), ["Tool error: bash"], "the first error goes out at once");
        assert!(r.tick(5 * SEC + 99).iter().all(|r| r.key().is_some()), "the rest wait for the interval");
        let later: Vec<Report> = r.tick(5 * SEC + 100).into_iter().filter(|r| r.key().is_none()).collect();
        assert_eq!(titles(&later), ["5 tool errors"]);
        assert!(r.tick(60 * SEC).iter().all(|r| r.key().is_some()));

        // tool_execution_end and tool_result for the same call count once.
        let failed =
            json!({ "type": "tool_result", "toolCallId": "0", "toolName": "bash", "isError": true, "content": [] });
        assert!(r.on_event(&failed, 70 * SEC).iter().all(|r| r.key().is_some()));
    }

    #[test]
    fn tool_errors_never_leak_a_cut_secret() {
        let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
        let mut r = reporter(ReportConfig::default());
        let command = format!("{} {secret}", "x".repeat(279));
        r.on_event(
            &json!({ "type": "tool_call", "toolCallId": "1", "toolName": "bash", "input": { "command": command } }),
            0,
        );
        let error = format!("{} {secret} tail", "e".repeat(report::OUTPUT_KEEP - 10));
        let event = json!({ "type": "tool_result", "toolCallId": "1", "toolName": "bash", "isError": true,
                            "content": [{ "type": "text", "text": error }] });
        let out = r.on_event(&event, 1);
        assert_eq!(titles(&out)[0], "Tool error: bash");
        assert!(titles(&out)[1..].iter().all(|t| t.starts_with("Full output of bash")), "{:?}", titles(&out));
        let json = serde_json::to_string(&out).unwrap();
        assert!(!json.contains("ghp_"), "{json}");
    }

    fn failure(id: &str, text: &str) -> Value {
        json!({ "type": "tool_result", "toolCallId": id, "toolName": "bash", "isError": true,
                "content": [{ "type": "text", "text": text }] })
    }

    #[test]
    fn a_long_tool_error_arrives_whole_as_a_file() {
        let mut r = reporter(ReportConfig::default());
        let output: String = (0..1200).map(|n| format!("line {n:05} of the build log\n")).collect();
        assert!(output.len() > 30_000);
        let out = r.on_event(&failure("1", &output), 1);
        assert_eq!(out.len(), 1, "{out:?}");
        let payload = out[0].payload();
        validate_message(payload).unwrap();
        assert_eq!(payload.files.len(), 1);
        assert_eq!(payload.files[0].filename, "bash-output.txt");
        assert_eq!(payload.files[0].content, output);
        // A short error stays in the message alone.
        let out = r.on_event(&failure("2", "exit 1"), 100 * SEC);
        assert!(out[0].payload().files.is_empty());
    }

    #[test]
    fn output_too_big_for_a_file_follows_in_parts() {
        let mut r = reporter(ReportConfig::default());
        let output: String = (0..3000).map(|n| format!("line {n:05} of a very long build log\n")).collect();
        assert!(output.len() > crate::embed::limits::FILES_BYTES && output.len() < report::OUTPUT_KEEP);
        let out = r.on_event(&failure("1", &output), 1);
        assert!(out.len() > 2, "{}", out.len());
        assert!(out[0].payload().files.is_empty());
        let mut joined = String::new();
        for report in &out[1..] {
            validate_message(report.payload()).unwrap();
            for embed in &report.payload().embeds {
                let block = embed.description.as_deref().unwrap();
                joined.push_str(block.trim_start_matches("```text\n").trim_end_matches("\n```"));
            }
        }
        assert!(joined == output, "joined {} of {} bytes", joined.len(), output.len());
    }

    #[test]
    fn pending_errors_go_out_before_the_summary() {
        let mut r = reporter(ReportConfig::default());
        r.on_event(&json!({ "type": "agent_start" }), 0);
        for id in ["a", "b", "c"] {
            r.on_event(&end(id, "bash", true), SEC);
        }
        let out = r.on_event(&agent_end("stop"), 2 * SEC);
        assert_eq!(titles(&out), ["2 tool errors", "Run finished"]);
    }

    #[test]
    fn card_edits_are_rate_limited_and_latest_state_wins() {
        let mut r = reporter(ReportConfig { card_interval_secs: 5, ..Default::default() });
        let out = r.on_event(&json!({ "type": "agent_start" }), 0);
        assert_eq!(kinds(&out), ["post card:s:1"]);
        let mut edits = Vec::new();
        for i in 0..40u64 {
            let id = format!("c{i}");
            let now = i * 250;
            edits.extend(r.on_event(&start(&id, "read"), now));
            edits.extend(r.on_event(&end(&id, "read", false), now + 100));
            edits.extend(r.tick(now + 200));
        }
        // 10 s of changes: edits at 5 s and 10 s at most.
        assert_eq!(kinds(&edits), ["edit card:s:1"], "one edit in the first 10 s");
        let late = r.tick(10 * SEC);
        assert_eq!(kinds(&late), ["edit card:s:1"]);
        let done = late[0].payload().embeds[0].fields.iter().find(|f| f.name == "Tools done").unwrap();
        assert_eq!(done.value, "40: read ×40", "the latest state is sent");
        assert!(r.tick(14 * SEC).is_empty(), "nothing new, nothing sent");
        assert!(r.tick(39 * SEC).is_empty());
        assert_eq!(kinds(&r.tick(40 * SEC)), ["edit card:s:1"], "elapsed time refreshes every 30 s");
        // The final edit is never held back.
        let out = r.on_event(&agent_end("stop"), 40 * SEC + 1);
        assert_eq!(kinds(&out), ["edit card:s:1"]);
    }

    #[test]
    fn card_shows_current_tool_tokens_and_activity() {
        let mut r = reporter(ReportConfig::default());
        r.on_event(&json!({ "type": "before_agent_start", "prompt": "fix the build" }), 0);
        r.on_event(&json!({ "type": "agent_start" }), 0);
        r.on_event(&start("1", "bash"), 10);
        r.on_event(
            &json!({ "type": "turn_end", "turnIndex": 0, "toolResults": [],
                     "message": { "role": "assistant", "usage": { "input": 2000, "output": 30, "cost": { "total": 0.01 } } } }),
            20,
        );
        r.on_event(
            &json!({ "type": "auto_retry_start", "attempt": 1, "maxAttempts": 3, "errorMessage": "overloaded" }),
            30,
        );
        let card = r.tick(6 * SEC);
        let embed = &card[0].payload().embeds[0];
        assert_eq!(embed.title.as_deref(), Some("Running · 6s"));
        assert_eq!(embed.description.as_deref(), Some("fix the build"));
        let fields: Vec<(&str, &str)> = embed.fields.iter().map(|f| (f.name.as_str(), f.value.as_str())).collect();
        assert_eq!(
            fields,
            [
                ("Now", "**bash** ls"),
                ("Status", "Retrying (1/3) after: overloaded"),
                ("Turns", "1"),
                ("Tokens", "2.0k in · 30 out"),
                ("Cost", "$0.0100")
            ]
        );
    }

    #[test]
    fn will_continue_keeps_one_run() {
        let mut r = reporter(ReportConfig::default());
        r.on_event(&json!({ "type": "agent_start" }), 0);
        let failed = json!({ "role": "assistant", "stopReason": "error", "errorMessage": "overloaded", "content": [] });
        let retry = json!({ "type": "agent_end", "willContinue": true, "messages": [failed] });
        let out = r.on_event(&retry, SEC);
        assert!(out.is_empty(), "{:?}", kinds(&out));
        assert!(r.on_event(&json!({ "type": "agent_start" }), 2 * SEC).is_empty());
        // OMP hands extensions the whole conversation: the failed turn, then the retried one.
        let mut end = agent_end("stop");
        end["messages"].as_array_mut().unwrap().insert(0, failed);
        let out = r.on_event(&end, 8 * SEC);
        assert_eq!(kinds(&out), ["edit card:s:1"]);
        let embed = &out[0].payload().embeds[0];
        assert_eq!(embed.title.as_deref(), Some("Run finished"));
        assert!(embed.fields.iter().any(|f| f.name == "Turns" && f.value == "2"));
        assert!(embed.fields.iter().any(|f| f.name == "Duration" && f.value == "8s"));
    }

    #[test]
    fn next_run_gets_a_new_card() {
        let mut r = reporter(ReportConfig::default());
        r.on_event(&json!({ "type": "agent_start" }), 0);
        r.on_event(&agent_end("stop"), SEC);
        let out = r.on_event(&json!({ "type": "agent_start" }), 2 * SEC);
        // The last card's Retry / Continue come off as the next run starts.
        assert_eq!(kinds(&out), ["edit card:s:1", "post card:s:2000"]);
        assert!(out[0].payload().components.is_empty(), "{out:?}");
        assert_eq!(controls::state_of(out[1].payload()), Some(CardState::Running));
        // A run whose agent_end went missing is closed when the next starts.
        let out = r.on_event(&json!({ "type": "agent_start" }), 3 * SEC);
        assert_eq!(kinds(&out), ["edit card:s:2000", "post card:s:3000"]);
        assert_eq!(titles(&out)[0], "Run interrupted");
        assert!(out[0].payload().components.is_empty(), "a closed stale run offers no buttons");
    }

    #[test]
    fn shutdown_flushes_and_closes_the_card() {
        let mut r = reporter(ReportConfig::default());
        r.on_event(&json!({ "type": "agent_start" }), 0);
        r.on_event(&end("a", "bash", true), 100);
        r.on_event(&end("b", "bash", true), 200);
        let out = r.on_event(&json!({ "type": "session_shutdown" }), 300);
        assert_eq!(titles(&out), ["Tool error: bash", "Run interrupted"]);
        assert_eq!(kinds(&out), ["post -", "edit card:s:1"]);
        assert!(r.tick(100 * SEC).is_empty());
    }

    // Messages of a conversation as OMP hands it over at `agent_end`.
    fn user(text: &str) -> Value {
        json!({ "role": "user", "content": text })
    }
    fn call(id: &str) -> Value {
        json!({ "role": "assistant", "stopReason": "toolUse",
                "content": [{ "type": "toolCall", "id": id, "name": "bash", "arguments": {} }] })
    }
    fn answer(text: &str) -> Value {
        json!({ "role": "assistant", "stopReason": "stop", "content": [{ "type": "text", "text": text }] })
    }
    fn result(id: &str) -> Value {
        json!({ "role": "toolResult", "toolCallId": id, "content": [] })
    }
    /// The last report's embed fields as `name=value;…`.
    fn fields(reports: &[Report]) -> String {
        let embed = &reports.last().unwrap().payload().embeds[0];
        embed.fields.iter().map(|f| format!("{}={}", f.name, f.value)).collect::<Vec<_>>().join(";")
    }

    #[test]
    fn a_run_summary_counts_only_that_runs_messages() {
        // A resumed session: its history holds an earlier run the reporter never saw.
        let mut history = vec![user("old"), call("a"), result("a"), answer("old done")];
        history.extend([user("deploy"), call("b"), result("b"), call("c"), result("c"), answer("deployed")]);
        let mut reporter = reporter(ReportConfig::default());
        reporter.on_event(&json!({ "type": "agent_start" }), 0);
        let first = reporter.on_event(&json!({ "type": "agent_end", "messages": history }), 1_000);
        assert!(fields(&first).contains("Turns=3") && fields(&first).contains("bash ×2"), "{}", fields(&first));
        // The next run: OMP hands over the whole conversation again.
        history.extend([user("test"), call("d"), result("d"), answer("tested")]);
        reporter.on_event(&json!({ "type": "agent_start" }), 2_000);
        let second = reporter.on_event(&json!({ "type": "agent_end", "messages": history }), 3_000);
        assert!(fields(&second).contains("Turns=2") && fields(&second).contains("bash ×1"), "{}", fields(&second));
    }

    #[test]
    fn subagents_fold_under_their_parent() {
        let info = SessionInfo { parent_id: Some("parent".into()), ..session() };
        let mut r = SessionReporter::new(level(Level::Verbose), info);
        assert_eq!(r.level(), Level::Quiet);
        let mut out = r.on_event(&json!({ "type": "session_start" }), 0);
        out.extend(r.on_event(&json!({ "type": "agent_start" }), 0));
        out.extend(r.on_event(&start("1", "bash"), 10));
        out.extend(r.on_event(&end("1", "bash", true), 20));
        out.extend(r.tick(60 * SEC));
        assert!(out.is_empty(), "{:?}", kinds(&out));
        let out = r.on_event(&agent_end("error"), 61 * SEC);
        assert_eq!(titles(&out), ["↳ subagent · Run failed"]);
        assert_eq!(kinds(&out), ["post card:s:1"]);
        assert!(out[0].payload().components.is_empty(), "people drive the main session, not its subagents");
    }

    #[test]
    fn a_subagents_later_runs_update_its_one_summary() {
        let info = SessionInfo { parent_id: Some("parent".into()), ..session() };
        let mut r = SessionReporter::new(ReportConfig::default(), info);
        let mut history = vec![user("check"), call("a"), result("a"), answer("forgot to submit")];
        r.on_event(&json!({ "type": "agent_start" }), 0);
        let first = r.on_event(&json!({ "type": "agent_end", "messages": history }), 2 * SEC);
        assert_eq!(kinds(&first), ["post card:s:1"]);
        // OMP reminds the subagent to submit its result: another run in the same session.
        history.extend([user("<system-reminder>submit</system-reminder>"), call("b"), result("b"), answer("done")]);
        r.on_event(&json!({ "type": "agent_start" }), 3 * SEC);
        let second = r.on_event(&json!({ "type": "agent_end", "messages": history }), 5 * SEC);
        assert_eq!(kinds(&second), ["edit card:s:1"], "one message per subagent, not one per run");
        assert_eq!(titles(&second), ["↳ subagent · Run finished"]);
        assert!(fields(&second).contains("Turns=4") && fields(&second).contains("bash ×2"), "{}", fields(&second));
        assert!(fields(&second).contains("5s"), "the time since its first run: {}", fields(&second));
    }

    #[test]
    fn session_card_gains_the_first_prompt() {
        let mut r = reporter(ReportConfig::default());
        let out = r.on_event(&json!({ "type": "session_start" }), 0);
        assert_eq!(out[0].payload().embeds[0].description.as_deref(), Some("*Waiting for the first prompt.*"));
        let prompt = json!({ "type": "before_agent_start", "prompt": "<system-reminder>x</system-reminder>hello" });
        let out = r.on_event(&prompt, 1);
        assert_eq!(kinds(&out), ["edit session:s"]);
        assert_eq!(out[0].payload().embeds[0].description.as_deref(), Some("hello"));
        assert!(r.on_event(&prompt, 2).is_empty(), "only the first prompt edits the session card");
        assert_eq!(
            r.on_event(&json!({ "type": "agent_start" }), 3)[0].payload().embeds[0].description.as_deref(),
            Some("hello")
        );
    }

    #[test]
    fn long_answers_follow_in_parts() {
        let mut r = reporter(level(Level::Quiet));
        r.on_event(&json!({ "type": "agent_start" }), 0);
        let answer = "word ".repeat(3000);
        let event = json!({ "type": "agent_end", "messages": [
            { "role": "assistant", "stopReason": "stop", "content": [{ "type": "text", "text": answer }] }] });
        let out = r.on_event(&event, SEC);
        assert_eq!(titles(&out), ["Run finished", "Full answer (1/3)", "Full answer (2/3)", "Full answer (3/3)"]);
        out.iter().for_each(|r| validate_message(r.payload()).unwrap());
    }

    #[test]
    fn odd_events_never_fail() {
        let mut r = reporter(level(Level::Verbose));
        for event in [
            json!(null),
            json!(1),
            json!({}),
            json!({ "type": 7 }),
            json!({ "type": "tool_execution_end", "result": "plain", "isError": true }),
            json!({ "type": "tool_execution_start", "toolName": 3, "args": [1, 2] }),
            json!({ "type": "tool_result", "content": { "weird": true }, "isError": true }),
            json!({ "type": "turn_end", "message": "x" }),
            json!({ "type": "agent_end", "messages": "x" }),
            json!({ "type": "auto_retry_start", "attempt": "one" }),
            json!({ "type": "before_agent_start", "prompt": 5 }),
        ] {
            for report in r.on_event(&event, 0).iter().chain(&r.tick(100 * SEC)) {
                validate_message(report.payload()).unwrap();
            }
        }
    }

    #[test]
    fn reports_serialize_for_the_shim() {
        let report = Report::Edit { key: "card:s:1".into(), payload: report::run_card(&RunCard::default(), "p") };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["kind"], "edit");
        assert_eq!(json["key"], "card:s:1");
        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
        let post = serde_json::to_value(Report::Post { key: None, payload: report.payload().clone() }).unwrap();
        assert_eq!(post["kind"], "post");
        assert!(post["key"].is_null());
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ParseLevelError>();
        assert_send_sync::<SessionReporter>();
    }
}
