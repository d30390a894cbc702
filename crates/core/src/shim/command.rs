//! The commands the extension registers in OMP: `/discord` (status, muting,
//! the report level, tool-result redaction) and `/discord-ping`. Arguments
//! are parsed here; every reply is worded here.

use serde::Serialize;
use serde_json::Value;

use super::{OmpSession, Shim, ToolCall};

/// `/discord`'s description in OMP's command list.
pub const DISCORD_DESCRIPTION: &str = "omp-discord: status | on | off | level quiet|normal|verbose | redact on|off";
/// `/discord-ping`'s description.
pub const PING_DESCRIPTION: &str = "omp-discord: post a test message to this session's Discord thread";
/// What `/discord-ping` posts without an argument.
const PING_TEXT: &str = "ping from omp";

const COMPLETIONS: [&str; 8] =
    ["status", "on", "off", "level quiet", "level normal", "level verbose", "redact on", "redact off"];

/// A line for OMP's UI (`ctx.ui.notify`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Notice {
    /// The text, prefixed with `omp-discord: `.
    pub text: String,
    /// `info` or `warning`.
    #[cfg_attr(test, ts(type = r#""info" | "warning""#))]
    pub level: &'static str,
}

impl Notice {
    /// An information line.
    #[must_use]
    pub fn info(text: &str) -> Self {
        Self { text: format!("omp-discord: {text}"), level: "info" }
    }

    /// A warning line.
    #[must_use]
    pub fn warning(text: &str) -> Self {
        Self { text: format!("omp-discord: {text}"), level: "warning" }
    }
}

/// What `/discord` does next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum CommandStep {
    /// Ask the sidecar for its status, then show [`Shim::status_line`].
    Status,
    /// Show this line; the command is done.
    Say {
        /// The line.
        notice: Notice,
    },
}

/// `/discord`'s argument completions for what was typed so far.
#[must_use]
pub fn completions(prefix: &str) -> Vec<&'static str> {
    COMPLETIONS.into_iter().filter(|item| item.starts_with(prefix.trim())).collect()
}

impl Shim {
    /// Runs `/discord <args>` in `ctx`'s session. `config` is the sidecar's
    /// `[report]` table, for a session that has no reporter yet.
    pub fn command(&mut self, ctx: &OmpSession, args: &str, config: &Value) -> CommandStep {
        let mut words = args.split_whitespace();
        let (verb, value) = (words.next().unwrap_or("status"), words.next().unwrap_or_default());
        let say = |notice| CommandStep::Say { notice };
        match verb {
            "status" => CommandStep::Status,
            "on" | "off" => {
                self.sessions.entry(ctx.id.clone()).or_default().muted = verb == "off";
                say(Notice::info(&format!("reports for this session are {verb}")))
            }
            "level" => {
                self.route(ctx);
                let level = value.parse();
                match (self.reporter(ctx, config), level) {
                    (Ok(reporter), Ok(level)) => {
                        reporter.set_level(level);
                        say(Notice::info(&format!("report level is {value}")))
                    }
                    (Err(err), _) => say(Notice::warning(&err.to_string())),
                    (_, Err(err)) => say(Notice::warning(&err.to_string())),
                }
            }
            "redact" if matches!(value, "on" | "off") => {
                self.redact_tool_results = value == "on";
                let how = if self.redact_tool_results { "redacted" } else { "unredacted" };
                say(Notice::info(&format!("tool results reach the model {how}")))
            }
            "redact" => say(Notice::warning("use /discord redact on|off")),
            _ => say(Notice::warning("use /discord status | on | off | level quiet|normal|verbose | redact on|off")),
        }
    }

    /// `/discord status`'s line for `ctx`'s session from the sidecar's answer
    /// `frame` (a `status` frame, or an error), with the reports the shim
    /// dropped (`dropped`, the last reason `last_dropped`).
    #[must_use]
    pub fn status_line(&self, session_id: &str, frame: &Value, dropped: u32, last_dropped: &str) -> Notice {
        let field = |value: &Value, key: &str| match value.get(key) {
            Some(Value::String(text)) => text.clone(),
            Some(other) if !other.is_null() => other.to_string(),
            _ => "unknown".to_owned(),
        };
        let Some(status) = frame.get("status").filter(|_| frame.get("type") == Some(&Value::from("status"))) else {
            let why = if frame.get("type") == Some(&Value::from("error")) {
                field(frame, "message")
            } else {
                "no status".into()
            };
            return Notice::warning(&format!("the sidecar is unavailable ({why})"));
        };
        let queued =
            status.pointer("/queue/depth").filter(|depth| !depth.is_null()).map_or("0".into(), Value::to_string);
        let session = status.get("sessions").and_then(Value::as_array).and_then(|sessions| {
            sessions.iter().find(|s| s.get("session_id").and_then(Value::as_str) == Some(session_id))
        });
        let thread = match session.and_then(|s| s.get("thread_id")).filter(|id| !id.is_null() && *id != "") {
            Some(id) => format!("thread {}", id.as_str().map_or_else(|| id.to_string(), str::to_owned)),
            None => "no thread yet".to_owned(),
        };
        let mut line =
            format!("{} mode, gateway {}, {queued} queued, {thread}", field(status, "mode"), field(status, "gateway"));
        if self.sessions.get(session_id).is_some_and(|s| s.muted) {
            line.push_str(", reports off");
        }
        if !self.redact_tool_results {
            line.push_str(", tool results not redacted");
        }
        if dropped > 0 {
            line.push_str(&format!(", {dropped} reports dropped ({last_dropped})"));
        }
        Notice::info(&line)
    }

    /// `/discord-ping <text>`: a `discord_notify` call that posts `text`
    /// (or a greeting) to the session's thread.
    pub fn ping(&mut self, ctx: &OmpSession, args: &str, now_ms: u64) -> ToolCall {
        let text = match args.trim() {
            "" => PING_TEXT,
            text => text,
        };
        let params = serde_json::json!({ "message": text });
        self.tool_call("discord_notify", &params, ctx, &format!("ping-{now_ms}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ShimSettings;
    use std::collections::BTreeMap;

    fn shim() -> Shim {
        Shim::new(&ShimSettings::from_env(&BTreeMap::new(), "box"), "inst")
    }

    fn ctx(id: &str) -> OmpSession {
        OmpSession { id: id.into(), cwd: "/w/proj".into(), ..OmpSession::default() }
    }

    fn said(step: CommandStep) -> Notice {
        match step {
            CommandStep::Say { notice } => notice,
            CommandStep::Status => panic!("expected a reply"),
        }
    }

    #[test]
    fn arguments_are_read_like_words() {
        let mut shim = shim();
        assert_eq!(shim.command(&ctx("s"), "", &Value::Null), CommandStep::Status);
        assert_eq!(shim.command(&ctx("s"), "  status  ", &Value::Null), CommandStep::Status);
        assert_eq!(
            said(shim.command(&ctx("s"), "off", &Value::Null)),
            Notice::info("reports for this session are off")
        );
        assert!(shim.sessions["s"].muted);
        assert_eq!(
            said(shim.command(&ctx("s"), " on ", &Value::Null)).text,
            "omp-discord: reports for this session are on"
        );
        assert!(!shim.sessions["s"].muted);
        assert_eq!(said(shim.command(&ctx("s"), "dance", &Value::Null)).level, "warning");
    }

    #[test]
    fn level_and_redact_check_their_value() {
        let mut shim = shim();
        assert_eq!(said(shim.command(&ctx("s"), "level quiet", &Value::Null)), Notice::info("report level is quiet"));
        let loud = said(shim.command(&ctx("s"), "level loud", &Value::Null));
        assert_eq!(loud.level, "warning");
        assert!(loud.text.contains("loud"), "{}", loud.text);
        let bad_config = said(shim.command(&ctx("t"), "level quiet", &serde_json::json!({ "level": 3 })));
        assert_eq!(bad_config.level, "warning");
        assert_eq!(
            said(shim.command(&ctx("s"), "redact maybe", &Value::Null)),
            Notice::warning("use /discord redact on|off")
        );
        assert!(shim.redacts_tool_results());
        assert_eq!(
            said(shim.command(&ctx("s"), "redact off", &Value::Null)),
            Notice::info("tool results reach the model unredacted")
        );
        assert!(!shim.redacts_tool_results());
    }

    #[test]
    fn the_status_line_shows_the_session_and_the_shims_state() {
        let mut shim = shim();
        let frame = serde_json::json!({ "type": "status", "id": "1", "status": {
            "mode": "bot", "gateway": "connected", "queue": { "depth": 2 },
            "sessions": [{ "session_id": "s", "thread_id": "42" }],
        }});
        assert_eq!(
            shim.status_line("s", &frame, 0, ""),
            Notice::info("bot mode, gateway connected, 2 queued, thread 42")
        );
        shim.command(&ctx("t"), "off", &Value::Null);
        shim.command(&ctx("t"), "redact off", &Value::Null);
        assert_eq!(
            shim.status_line("t", &frame, 3, "too big").text,
            "omp-discord: bot mode, gateway connected, 2 queued, no thread yet, reports off, tool results not \
             redacted, 3 reports dropped (too big)"
        );
        let error = serde_json::json!({ "type": "error", "code": "sidecar_timeout", "message": "timed out" });
        assert_eq!(shim.status_line("s", &error, 0, ""), Notice::warning("the sidecar is unavailable (timed out)"));
        let other = serde_json::json!({ "type": "ok", "id": "1" });
        assert_eq!(shim.status_line("s", &other, 0, ""), Notice::warning("the sidecar is unavailable (no status)"));
    }

    #[test]
    fn every_completion_is_a_command() {
        for completion in COMPLETIONS {
            let step = shim().command(&ctx("s"), completion, &Value::Null);
            assert!(
                !matches!(&step, CommandStep::Say { notice } if notice.level == "warning"),
                "{completion}: {step:?}"
            );
        }
    }

    #[test]
    fn completions_follow_the_typed_prefix() {
        assert_eq!(completions(" le"), ["level quiet", "level normal", "level verbose"]);
        assert_eq!(completions("").len(), COMPLETIONS.len());
        assert!(completions("x").is_empty());
    }

    #[test]
    fn a_ping_is_a_notify_call_with_a_default_text() {
        let mut shim = shim();
        let ToolCall::Request { frame, wait_ms } = shim.ping(&ctx("s"), "  ", 7) else { panic!("a request") };
        let json = serde_json::to_string(&frame).unwrap();
        assert!(json.contains("ping from omp") && json.contains(r#""type":"notify""#), "{json}");
        assert_eq!(wait_ms, crate::tools::ANSWER_WAIT_SECS * 1000);
    }
}
