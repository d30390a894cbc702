//! The OMP extension's decisions, so that the TypeScript shim only adapts
//! OMP's API to these calls and to the socket. One [`Shim`] per OMP process
//! holds what the process knows about its sessions: which is a subagent of
//! which, their first and last prompts, whether they ran, muting, the
//! reporters, and the Discord replies already handed to OMP.
//!
//! # Layout
//!
//! - this file: [`Shim`]: sessions, subagents, reports as ready notify
//!   frames, tool calls, replies from Discord, approvals.
//! - [`command`]: the `/discord` and `/discord-ping` commands: arguments,
//!   completions, replies and the status line.
//! - [`client`]: the socket client's failures as error frames, and its spool file.

pub mod client;
pub mod command;

use std::collections::{HashMap, HashSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::approval::ApprovalPolicy;
use crate::inbound::Delivery;
use crate::protocol::{ClientFrame, NotifyRequest, ServerFrame, SessionRef};
use crate::redact::redact_text;
use crate::reporter::{Report, ReportConfig, SessionInfo, SessionReporter};
use crate::settings::ShimSettings;
use crate::tools::{self, ANSWER_MARGIN_SECS};

/// The OMP events the reporter reads (the shim subscribes to these).
pub const REPORTED_EVENTS: [&str; 12] = [
    "session_start",
    "before_agent_start",
    "agent_start",
    "turn_end",
    "tool_execution_start",
    "tool_execution_end",
    "auto_compaction_start",
    "auto_compaction_end",
    "auto_retry_start",
    "auto_retry_end",
    "agent_end",
    "session_shutdown",
];

/// Discord replies remembered as handed to OMP; a reply is offered again only
/// until its acknowledgement lands, so the oldest can go.
const MAX_HANDED_ON: usize = 10_000;

/// What the shim reads of an OMP context (`ctx.sessionManager`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct OmpSession {
    /// The session id (`"unknown"` when OMP cannot tell).
    pub id: String,
    /// The working directory.
    pub cwd: String,
    /// The session file, when the session has one.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub file: Option<String>,
    /// The `parentSession` in the session file's header, when it names one.
    #[serde(default)]
    #[cfg_attr(test, ts(optional))]
    pub header_parent: Option<String>,
}

/// What to do after an OMP event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct EventStep {
    /// Notify frames (without `id`) to hand to the sidecar, in order.
    #[cfg_attr(test, ts(type = "Array<ClientFrame>"))]
    pub frames: Vec<ClientFrame>,
    /// Hold OMP until they are journaled: a run's last reports go before OMP
    /// goes on (a print-mode OMP exits right after).
    pub settle: bool,
    /// The session ended: once settled, spool what is kept and forget it.
    pub end: bool,
}

/// A tool call: the request to send and how long to wait for its answer, or,
/// when its arguments are unusable, the answer itself.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ToolCall {
    /// Send `frame` (without `id`) and wait up to `wait_ms`.
    Request {
        /// The request.
        #[cfg_attr(test, ts(type = "ClientFrame"))]
        frame: Box<ClientFrame>,
        /// The deadline, in milliseconds.
        wait_ms: u64,
    },
    /// Answer the model right away.
    Answer {
        /// What the model reads.
        text: String,
        /// Whether the call failed.
        #[serde(rename = "isError")]
        #[cfg_attr(test, ts(rename = "isError"))]
        is_error: bool,
    },
}

/// How a reply from Discord reaches OMP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum InboundStep {
    /// Handed on before: only acknowledge it.
    Again,
    /// As a plain message: starts a run when idle, steers the current run when busy.
    Now,
    /// Queued until the current run is done.
    FollowUp,
}

/// A tool call waiting for a person's approval: its deadline, and what went
/// wrong so far. The shim hands it back with each answer ([`approval_step`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ApprovalGate {
    /// When the call is blocked if no decision came (milliseconds since 1970).
    pub deadline_ms: u64,
    /// Since when no sidecar took the request, while that lasts.
    #[cfg_attr(test, ts(optional = nullable))]
    pub unreachable_since_ms: Option<u64>,
    /// The last failure, for the reason the call is blocked.
    #[cfg_attr(test, ts(optional = nullable))]
    pub why: Option<String>,
    /// How long a sidecar may stay unreachable (a restart takes seconds).
    pub reconnect_ms: u64,
    /// The pause before asking again.
    pub retry_ms: u64,
}

/// The next step of a tool call that waits for an approval, after one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ApprovalStep {
    /// Approved: the call runs.
    Run,
    /// Denied, expired, or no decision will come: the call is blocked.
    Block {
        /// What the model reads.
        reason: String,
    },
    /// No sidecar took it (a restart?): after `after_ms`, ask again for the
    /// same call (it waits on the same request in Discord) until `gate`'s deadline.
    Retry {
        /// The gate, updated.
        gate: ApprovalGate,
        /// The pause, in milliseconds.
        after_ms: u64,
    },
}

/// Where a session's reports go, and what it keeps while it lives.
#[derive(Debug, Default)]
struct Session {
    first_prompt: Option<String>,
    last_prompt: Option<String>,
    ran: bool,
    muted: bool,
    route: Option<SessionRef>,
}

/// Everything one OMP process knows about its sessions.
#[derive(Debug)]
pub struct Shim {
    host: String,
    fallback_approvals: ApprovalPolicy,
    approval_reconnect_ms: u64,
    approval_retry_ms: u64,
    redact_tool_results: bool,
    sessions: HashMap<String, Session>,
    /// Reporters in the order the sessions first reported.
    reporters: Vec<(String, SessionReporter)>,
    ids_by_file: HashMap<String, String>,
    parents: HashMap<String, String>,
    handed_on: HashSet<String>,
    handed_order: VecDeque<String>,
    /// This process's name in idempotency keys (random, chosen by the caller).
    instance: String,
    /// Notifications made so far: the other half of each idempotency key.
    made: u64,
}

impl Shim {
    /// A process's state under `settings`; `instance` is a random name for
    /// this process (e.g. 16 hex digits) that makes its notifications'
    /// idempotency keys unique among every client of the sidecar.
    #[must_use]
    pub fn new(settings: &ShimSettings, instance: &str) -> Self {
        Self {
            instance: instance.chars().take(40).collect(),
            made: 0,
            host: settings.host.clone(),
            fallback_approvals: settings.approvals.clone(),
            approval_reconnect_ms: settings.deadlines.approval_reconnect_ms,
            approval_retry_ms: settings.deadlines.approval_retry_ms,
            redact_tool_results: settings.redact_tool_results,
            sessions: HashMap::new(),
            reporters: Vec::new(),
            ids_by_file: HashMap::new(),
            parents: HashMap::new(),
            handed_on: HashSet::new(),
            handed_order: VecDeque::new(),
        }
    }

    /// The parent session when `ctx` is a subagent's. OMP's `task` tool runs
    /// a subagent in the same process with its session file in the parent's
    /// artifacts dir, `<parent>/<agent>.jsonl`, and the parent's file in its
    /// header (`parentSession`). A parent run without a session file
    /// (`--no-session`) gives its subagents none: they report as sessions of
    /// their own.
    pub fn parent_of(&mut self, ctx: &OmpSession) -> Option<String> {
        if let Some(known) = self.parents.get(&ctx.id) {
            return Some(known.clone());
        }
        let file = ctx.file.as_deref().filter(|file| !file.is_empty())?;
        self.ids_by_file.entry(file.to_owned()).or_insert_with(|| ctx.id.clone());
        let parent_file = format!("{}.jsonl", dirname(file));
        let parent = self.ids_by_file.get(&parent_file)?.clone();
        if parent == ctx.id || ctx.header_parent.as_ref().is_some_and(|named| *named != parent_file) {
            return None;
        }
        self.parents.insert(ctx.id.clone(), parent.clone());
        Some(parent)
    }

    /// Where a session's reports and tool posts go: its own thread, or its
    /// parent's for a subagent.
    pub fn session_of(&mut self, ctx: &OmpSession) -> SessionRef {
        let Some(parent) = self.parent_of(ctx) else { return self.own(ctx) };
        let session = self.sessions.get(&parent);
        session.and_then(|s| s.route.clone()).unwrap_or_else(|| SessionRef {
            prompt: session.and_then(|s| s.first_prompt.clone()),
            id: parent,
            cwd: Some(ctx.cwd.clone()),
        })
    }

    fn own(&self, ctx: &OmpSession) -> SessionRef {
        let prompt = self.sessions.get(&ctx.id).and_then(|s| s.first_prompt.clone());
        SessionRef { id: ctx.id.clone(), cwd: Some(ctx.cwd.clone()), prompt }
    }

    /// The session `session_start` attaches: `None` for a subagent, whose
    /// replies and controls belong to its parent (attached already).
    pub fn attach(&mut self, ctx: &OmpSession) -> Option<SessionRef> {
        if self.parent_of(ctx).is_some() { None } else { Some(self.own(ctx)) }
    }

    /// Feeds one OMP event of `ctx`'s session (one of [`REPORTED_EVENTS`]):
    /// notes a first prompt (redacted: it names the thread and travels in
    /// every report) and the last one (for Retry), then returns the
    /// reporter's notify frames, none while the session is muted.
    ///
    /// # Errors
    ///
    /// When `config` (the sidecar's `[report]` table; `null` for the
    /// defaults) cannot be read, the first time the session reports.
    pub fn on_event(
        &mut self,
        ctx: &OmpSession,
        event: &Value,
        now_ms: u64,
        config: &Value,
    ) -> Result<EventStep, serde_json::Error> {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or_default();
        let session = self.sessions.entry(ctx.id.clone()).or_default();
        match (kind, event.get("prompt").and_then(Value::as_str)) {
            ("agent_start", _) => session.ran = true,
            ("before_agent_start", Some(prompt)) => {
                session.first_prompt.get_or_insert_with(|| redact_text(prompt).into_owned());
                session.last_prompt = Some(prompt.to_owned());
            }
            _ => {}
        }
        let route = self.route(ctx);
        let reports = self.reporter(ctx, config)?.on_event(event, now_ms);
        Ok(EventStep {
            frames: self.notify_frames(&route, reports),
            settle: matches!(kind, "agent_end" | "session_shutdown"),
            end: kind == "session_shutdown",
        })
    }

    /// Remembers where `ctx`'s reports go, for those sent from [`Self::tick`].
    fn route(&mut self, ctx: &OmpSession) -> SessionRef {
        let route = self.session_of(ctx);
        self.sessions.entry(ctx.id.clone()).or_default().route = Some(route.clone());
        route
    }

    fn reporter(&mut self, ctx: &OmpSession, config: &Value) -> Result<&mut SessionReporter, serde_json::Error> {
        let at = match self.reporters.iter().position(|(id, _)| *id == ctx.id) {
            Some(at) => at,
            None => {
                let config: ReportConfig =
                    if config.is_null() { ReportConfig::default() } else { serde_json::from_value(config.clone())? };
                let info = SessionInfo {
                    id: ctx.id.clone(),
                    cwd: ctx.cwd.clone(),
                    parent_id: self.parent_of(ctx),
                    host: self.host.clone(),
                    model: None,
                };
                self.reporters.push((ctx.id.clone(), SessionReporter::new(config, info)));
                self.reporters.len() - 1
            }
        };
        Ok(&mut self.reporters[at].1)
    }

    fn notify_frames(&mut self, route: &SessionRef, reports: Vec<Report>) -> Vec<ClientFrame> {
        if self.sessions.get(&route.id).is_some_and(|s| s.muted) {
            return Vec::new();
        }
        let frame = |key, message, edit| {
            ClientFrame::Notify(NotifyRequest {
                id: String::new(),
                session: route.clone(),
                message,
                channel_id: None,
                key,
                edit,
                idempotency_key: None,
            })
        };
        reports
            .into_iter()
            .map(|report| match report {
                Report::Post { key, payload } => frame(key, payload, false),
                Report::Edit { key, payload } => frame(Some(key), payload, true),
            })
            .map(|frame| self.keyed(frame))
            .collect()
    }

    /// Names a notify frame once, as it is made: the key travels with it
    /// through every retry, reconnect and spool file, so the sidecar
    /// journals it once however often it arrives.
    fn keyed(&mut self, mut frame: ClientFrame) -> ClientFrame {
        if let ClientFrame::Notify(request) = &mut frame
            && request.idempotency_key.is_none()
        {
            self.made += 1;
            request.idempotency_key = Some(format!("{}-{}", self.instance, self.made));
        }
        frame
    }

    /// Due run-card edits and coalesced bursts of every session, as notify frames.
    pub fn tick(&mut self, now_ms: u64) -> Vec<ClientFrame> {
        let mut frames = Vec::new();
        for at in 0..self.reporters.len() {
            let (id, reporter) = &mut self.reporters[at];
            let reports = reporter.tick(now_ms);
            let Some(route) = self.sessions.get(id.as_str()).and_then(|s| s.route.clone()) else { continue };
            frames.extend(self.notify_frames(&route, reports));
        }
        frames
    }

    /// Forgets a session that ended: its reporter and its last prompt.
    pub fn end_session(&mut self, id: &str) {
        self.reporters.retain(|(session, _)| session != id);
        if let Some(session) = self.sessions.get_mut(id) {
            session.last_prompt = None;
        }
    }

    /// The prompt the run card's Retry sends again, as typed (it never leaves this process).
    #[must_use]
    pub fn retry_prompt(&self, id: &str) -> Option<String> {
        self.sessions.get(id)?.last_prompt.clone()
    }

    /// The request for one call of the model's `tool` in `ctx`'s session.
    pub fn tool_call(&mut self, tool: &str, params: &Value, ctx: &OmpSession, call_id: &str) -> ToolCall {
        let session = self.session_of(ctx);
        match tools::tool_request(tool, params, &session, call_id, project(&ctx.cwd)) {
            Ok(frame) => ToolCall::Request {
                wait_ms: tools::answer_wait_secs(&frame).saturating_mul(1000),
                frame: Box::new(self.keyed(frame)),
            },
            Err(err) => ToolCall::Answer { text: format!("{tool} failed: {}", err.0), is_error: true },
        }
    }

    /// How a reply from Discord for `session_id` reaches OMP, given whether
    /// the session is idle. A session that never ran cannot hold an explicit
    /// follow-up (OMP resumes an idle session for one only after an earlier
    /// answer), so there it starts a run.
    #[must_use]
    pub fn inbound(&self, session_id: &str, message_id: &str, deliver_as: Delivery, idle: bool) -> InboundStep {
        if self.handed_on.contains(message_id) {
            return InboundStep::Again;
        }
        let ran = self.sessions.get(session_id).is_some_and(|s| s.ran);
        if idle || !ran || deliver_as == Delivery::Steer { InboundStep::Now } else { InboundStep::FollowUp }
    }

    /// Notes that OMP has the reply `message_id`: offered again (its
    /// acknowledgement was lost), it is only acknowledged.
    pub fn handed_on(&mut self, message_id: &str) {
        if self.handed_on.insert(message_id.to_owned()) {
            self.handed_order.push_back(message_id.to_owned());
        }
        if self.handed_order.len() > MAX_HANDED_ON
            && let Some(oldest) = self.handed_order.pop_front()
        {
            self.handed_on.remove(&oldest);
        }
    }

    /// The gate for a call of `tool` at `now_ms` under `policy` (the
    /// sidecar's, from its welcome; `null` before any welcome, then the
    /// environment's): `None` when it needs no approval or the policy cannot
    /// be read. It waits the policy's timeout plus [`ANSWER_MARGIN_SECS`].
    #[must_use]
    pub fn approval_gate(&self, policy: &Value, tool: &str, now_ms: u64) -> Option<ApprovalGate> {
        let policy = if policy.is_null() {
            self.fallback_approvals.clone()
        } else {
            serde_json::from_value::<ApprovalPolicy>(policy.clone()).ok()?
        };
        policy.needs_approval(tool).then(|| ApprovalGate {
            deadline_ms: now_ms
                .saturating_add(policy.timeout_secs.saturating_add(ANSWER_MARGIN_SECS).saturating_mul(1000)),
            unreachable_since_ms: None,
            why: None,
            reconnect_ms: self.approval_reconnect_ms,
            retry_ms: self.approval_retry_ms,
        })
    }

    /// Whether tool results reach the model redacted (`/discord redact`).
    #[must_use]
    pub fn redacts_tool_results(&self) -> bool {
        self.redact_tool_results
    }
}

/// The next step of an approval after the sidecar's answer `frame` at
/// `now_ms`. It fails closed: only a decision lets the call run, and a
/// sidecar unreachable for longer than the gate allows blocks it.
#[must_use]
pub fn approval_step(mut gate: ApprovalGate, frame: &ServerFrame, now_ms: u64) -> ApprovalStep {
    match frame {
        ServerFrame::Decision { approved: true, .. } => ApprovalStep::Run,
        ServerFrame::Decision { reason, .. } => ApprovalStep::Block { reason: format!("Blocked: {reason}.") },
        ServerFrame::Error { message, .. } => {
            gate.why = Some(message.clone());
            let since = *gate.unreachable_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(since) > gate.reconnect_ms {
                return ApprovalStep::Block { reason: approval_blocked(gate.why.as_deref()) };
            }
            ApprovalStep::Retry { after_ms: gate.retry_ms, gate }
        }
        _ => ApprovalStep::Block { reason: approval_blocked(gate.why.as_deref()) },
    }
}

/// Why a call that needed an approval is blocked when no decision came:
/// `why` is the last failure, if any.
#[must_use]
pub fn approval_blocked(why: Option<&str>) -> String {
    format!("Blocked: this call needs approval in Discord, and {}.", why.unwrap_or("no decision arrived"))
}

/// The directory of `path`, as node's `path.dirname` gives it.
fn dirname(path: &str) -> &str {
    let path = path.trim_end_matches('/');
    match path.rfind('/') {
        Some(0) => "/",
        Some(at) => &path[..at],
        None => ".",
    }
}

/// The project a working directory names: its last component.
fn project(cwd: &str) -> &str {
    let cwd = cwd.trim_end_matches('/');
    cwd.rsplit('/').next().unwrap_or(cwd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorCode, MAX_IDEMPOTENCY_KEY_BYTES};
    use serde_json::json;
    use std::collections::BTreeMap;

    const SECRET: &str = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token

    fn shim() -> Shim {
        Shim::new(&ShimSettings::from_env(&BTreeMap::new(), "box"), "inst")
    }

    fn ctx(id: &str, file: Option<&str>, header_parent: Option<&str>) -> OmpSession {
        OmpSession {
            id: id.into(),
            cwd: "/w/proj".into(),
            file: file.map(Into::into),
            header_parent: header_parent.map(Into::into),
        }
    }

    fn notify(frame: &ClientFrame) -> &NotifyRequest {
        match frame {
            ClientFrame::Notify(notify) => notify,
            other => panic!("not a notify: {other:?}"),
        }
    }

    #[test]
    fn a_subagents_session_folds_under_its_parent() {
        let mut shim = shim();
        let parent = ctx("P", Some("/s/2026_P.jsonl"), None);
        assert_eq!(shim.parent_of(&parent), None);
        let child = ctx("C", Some("/s/2026_P/task-1.jsonl"), Some("/s/2026_P.jsonl"));
        assert_eq!(shim.parent_of(&child).as_deref(), Some("P"));
        assert_eq!(shim.session_of(&child).id, "P");
        assert_eq!(shim.attach(&child), None);
        assert_eq!(shim.attach(&parent).map(|s| s.id).as_deref(), Some("P"));
        // A new or branched session names its predecessor too, but is not in its artifacts dir.
        assert_eq!(shim.parent_of(&ctx("N", Some("/s/2026_N.jsonl"), Some("/s/2026_P.jsonl"))), None);
        // Inside the artifacts dir, but its header names another parent.
        assert_eq!(shim.parent_of(&ctx("O", Some("/s/2026_P/x.jsonl"), Some("/s/other.jsonl"))), None);
        // Without session files (--no-session) nothing can be told: a session of its own.
        assert_eq!(shim.parent_of(&ctx("M", None, None)), None);
        assert_eq!(shim.parent_of(&ctx("E", Some(""), None)), None);
    }

    #[test]
    fn reports_become_notify_frames_for_the_route_and_stop_when_muted() {
        let mut shim = shim();
        let parent = ctx("P", Some("/s/P.jsonl"), None);
        let prompt = json!({ "type": "before_agent_start", "prompt": format!("fix {SECRET}") });
        shim.on_event(&parent, &prompt, 1_000, &Value::Null).unwrap();
        let step = shim.on_event(&parent, &json!({ "type": "agent_start" }), 1_000, &Value::Null).unwrap();
        assert!(!step.settle && !step.end);
        let card = notify(&step.frames[0]);
        assert_eq!(card.session.id, "P");
        let named = card.session.prompt.as_deref().unwrap();
        assert!(named.starts_with("fix ") && !named.contains(SECRET), "{named}");
        assert!(card.key.is_some() && !card.edit && card.id.is_empty());
        assert_eq!(shim.retry_prompt("P").unwrap(), format!("fix {SECRET}"));

        // A subagent reports into its parent's thread; muting the parent mutes it too.
        let child = ctx("C", Some("/s/P/task.jsonl"), None);
        let end = json!({ "type": "agent_end", "messages": [] });
        shim.on_event(&child, &json!({ "type": "agent_start" }), 2_000, &Value::Null).unwrap();
        let step = shim.on_event(&child, &end, 3_000, &Value::Null).unwrap();
        assert!(step.settle && !step.end);
        assert!(step.frames.iter().all(|f| notify(f).session.id == "P"));
        shim.command(&parent, "off", &Value::Null);
        let step = shim.on_event(&parent, &end, 9_000, &Value::Null).unwrap();
        assert!(step.frames.is_empty() && step.settle);
        assert!(shim.tick(60_000).is_empty());
        shim.command(&parent, "on", &Value::Null);

        let step = shim.on_event(&parent, &json!({ "type": "session_shutdown" }), 10_000, &Value::Null).unwrap();
        assert!(step.settle && step.end);
        shim.end_session("P");
        assert_eq!(shim.retry_prompt("P"), None);
        assert!(shim.reporters.iter().all(|(id, _)| id != "P"));
    }

    #[test]
    fn every_notification_gets_its_own_key_once_as_it_is_made() {
        let mut shim = shim();
        let session = ctx("K", None, None);
        let mut keys = Vec::new();
        for event in [json!({ "type": "agent_start" }), json!({ "type": "agent_end", "messages": [] })] {
            let step = shim.on_event(&session, &event, 1_000, &Value::Null).unwrap();
            keys.extend(step.frames.iter().map(|f| notify(f).idempotency_key.clone().unwrap()));
        }
        let ToolCall::Request { frame, .. } =
            shim.tool_call("discord_notify", &json!({ "message": "done" }), &session, "call-1")
        else {
            panic!("a request")
        };
        keys.push(notify(&frame).idempotency_key.clone().unwrap());
        assert!(keys.len() >= 3, "{keys:?}");
        assert!(keys.iter().all(|key| key.starts_with("inst-") && key.len() <= MAX_IDEMPOTENCY_KEY_BYTES));
        let unique: HashSet<_> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{keys:?}");
        // A long instance name is cut so that keys stay within the protocol's limit.
        let mut long = Shim::new(&ShimSettings::from_env(&BTreeMap::new(), "box"), &"f".repeat(200));
        let ToolCall::Request { frame, .. } =
            long.tool_call("discord_notify", &json!({ "message": "x" }), &session, "c")
        else {
            panic!("a request")
        };
        assert!(notify(&frame).idempotency_key.as_ref().unwrap().len() <= MAX_IDEMPOTENCY_KEY_BYTES);
    }

    #[test]
    fn an_unreadable_event_reports_nothing_and_a_bad_config_is_an_error() {
        let mut shim = shim();
        let step = shim.on_event(&ctx("s", None, None), &json!("garbage"), 1, &Value::Null).unwrap();
        assert!(step.frames.is_empty() && !step.settle);
        assert!(
            shim.on_event(&ctx("t", None, None), &json!({ "type": "agent_start" }), 1, &json!({ "level": 1 })).is_err()
        );
    }

    #[test]
    fn replies_start_a_run_steer_or_wait() {
        let mut shim = shim();
        let s = ctx("s", None, None);
        // Never ran: an explicit follow-up would never run, so it starts a run.
        assert_eq!(shim.inbound("s", "m1", Delivery::FollowUp, false), InboundStep::Now);
        shim.on_event(&s, &json!({ "type": "agent_start" }), 1, &Value::Null).unwrap();
        assert_eq!(shim.inbound("s", "m1", Delivery::FollowUp, false), InboundStep::FollowUp);
        assert_eq!(shim.inbound("s", "m1", Delivery::Steer, false), InboundStep::Now);
        assert_eq!(shim.inbound("s", "m1", Delivery::FollowUp, true), InboundStep::Now);
        shim.handed_on("m1");
        assert_eq!(shim.inbound("s", "m1", Delivery::Steer, true), InboundStep::Again);
    }

    #[test]
    fn handed_on_replies_are_bounded() {
        let mut shim = shim();
        for n in 0..=MAX_HANDED_ON {
            shim.handed_on(&n.to_string());
        }
        shim.handed_on("5");
        assert_eq!(shim.handed_on.len(), MAX_HANDED_ON);
        assert_eq!(shim.inbound("s", "0", Delivery::Steer, true), InboundStep::Now);
        assert_eq!(shim.inbound("s", "1", Delivery::Steer, true), InboundStep::Again);
    }

    #[test]
    fn approvals_fail_closed() {
        let shim = shim();
        let policy = json!({ "tools": ["bash"], "timeout_secs": 5 });
        let gate = shim.approval_gate(&policy, "bash", 1_000).unwrap();
        assert_eq!((gate.deadline_ms, gate.reconnect_ms, gate.retry_ms), (16_000, 30_000, 500));
        assert_eq!(shim.approval_gate(&policy, "read", 0), None);
        assert_eq!(shim.approval_gate(&json!("nonsense"), "bash", 0), None);
        assert_eq!(shim.approval_gate(&Value::Null, "bash", 0), None);
        let env = BTreeMap::from([("OMP_DISCORD_APPROVE_TOOLS".to_owned(), "bash".to_owned())]);
        let guarded = Shim::new(&ShimSettings::from_env(&env, "box"), "inst");
        assert_eq!(guarded.approval_gate(&Value::Null, "bash", 0).unwrap().deadline_ms, 610_000);

        let decision = |approved| ServerFrame::Decision { id: "1".into(), approved, reason: "ana said no".into() };
        assert_eq!(approval_step(gate.clone(), &decision(true), 2_000), ApprovalStep::Run);
        assert_eq!(
            approval_step(gate.clone(), &decision(false), 2_000),
            ApprovalStep::Block { reason: "Blocked: ana said no.".into() }
        );
        let lost = ServerFrame::Error { id: None, code: ErrorCode::SidecarUnavailable, message: "lost".into() };
        let ApprovalStep::Retry { gate: retried, after_ms: 500 } = approval_step(gate.clone(), &lost, 2_000) else {
            panic!("a lost connection is asked again")
        };
        assert_eq!((retried.unreachable_since_ms, retried.why.as_deref()), (Some(2_000), Some("lost")));
        assert!(matches!(approval_step(retried.clone(), &lost, 32_000), ApprovalStep::Retry { .. }));
        let blocked = "Blocked: this call needs approval in Discord, and lost.";
        assert_eq!(approval_step(retried.clone(), &lost, 32_001), ApprovalStep::Block { reason: blocked.into() });
        let queued = ServerFrame::Accepted { id: "1".into(), seq: 0 };
        assert_eq!(approval_step(retried, &queued, 3_000), ApprovalStep::Block { reason: blocked.into() });
        assert_eq!(approval_blocked(None), "Blocked: this call needs approval in Discord, and no decision arrived.");
    }

    #[test]
    fn a_tool_call_waits_as_long_as_its_request_needs() {
        let mut shim = shim();
        let s = ctx("s", None, None);
        let ToolCall::Request { frame, wait_ms } = shim.tool_call("discord_read", &json!({ "limit": 3 }), &s, "c")
        else {
            panic!("a request")
        };
        assert!(matches!(*frame, ClientFrame::Read { .. }));
        assert_eq!(wait_ms, 8_000);
        let ask = json!({ "question": "go?", "timeoutSeconds": 60 });
        let ToolCall::Request { wait_ms, .. } = shim.tool_call("discord_ask", &ask, &s, "c") else {
            panic!("a request")
        };
        assert_eq!(wait_ms, 70_000);
        let bad = shim.tool_call("discord_send", &json!({ "channelId": "#x", "message": "m" }), &s, "c");
        assert!(matches!(&bad, ToolCall::Answer { text, is_error: true } if text.starts_with("discord_send failed: ")));
    }

    #[test]
    fn paths_read_as_node_reads_them() {
        assert_eq!(dirname("/s/P/task.jsonl"), "/s/P");
        assert_eq!(dirname("/x.jsonl"), "/");
        assert_eq!(dirname("x.jsonl"), ".");
        assert_eq!(project("/w/proj/"), "proj");
        assert_eq!(project("proj"), "proj");
    }
}
