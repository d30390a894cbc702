//! The wasm-bindgen surface over `omp-discord-core`, loaded by the OMP
//! extension shim. Each export decodes its input, calls core, and encodes the
//! result; no decision is made here. The shapes of inputs and results are
//! core's types, whose TypeScript declarations core generates into
//! `js-shim/generated/types.ts`.

use std::collections::BTreeMap;

use js_sys::{Array, JsString, Object, Reflect, Uint8Array};
use omp_discord_core::protocol::{self, ClientFrame, ServerFrame};
use omp_discord_core::redact::{self, RedactionReport};
use omp_discord_core::settings::ShimSettings;
use omp_discord_core::shim::{self, client, command};
use omp_discord_core::{schema, tool_result, tools};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_wasm_bindgen::Serializer;
use wasm_bindgen::prelude::*;

// The exports' TypeScript signatures name core's types (generated from Rust
// into js-shim/generated/types.ts); wasm-pack's declarations import them.
#[wasm_bindgen(typescript_custom_section)]
const TYPES: &str = r#"import type { ApprovalGate, ApprovalStep, ClientFailure, ClientFrame, CommandStep, EventStep, InboundStep, Notice, OmpSession,
  ServerFrame, SessionRef, ShimSettings, ToolCall, ToolDefinition, ToolText } from "../js-shim/generated/types";"#;

/// Maps (and `None`) must reach JS as plain objects (and `null`), which
/// `JSON.stringify` and the socket understand.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    Ok(value.serialize(&Serializer::json_compatible())?)
}

fn from_js<T: DeserializeOwned>(value: JsValue) -> Result<T, JsError> {
    Ok(serde_wasm_bindgen::from_value(value)?)
}

/// `undefined` and `null` both read as JSON `null`.
fn json_of(value: JsValue) -> Result<serde_json::Value, JsError> {
    if value.is_undefined() { Ok(serde_json::Value::Null) } else { from_js(value) }
}

/// `Date.now()` arrives as a float; negative or NaN clocks count as 0.
fn millis(now_ms: f64) -> u64 {
    if now_ms.is_finite() && now_ms > 0.0 {
        // Truncation is intended: milliseconds since 1970 fit u64 for ages.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let ms = now_ms as u64;
        ms
    } else {
        0
    }
}

/// The shim's settings from its environment (`process.env`) on the machine
/// `host`: `ShimSettings`.
///
/// # Errors
///
/// When `env` is not an object of strings.
#[wasm_bindgen(js_name = shimSettings, unchecked_return_type = "ShimSettings")]
pub fn shim_settings(
    #[wasm_bindgen(unchecked_param_type = "Record<string, string | undefined>")] env: JsValue,
    host: &str,
) -> Result<JsValue, JsError> {
    let env: BTreeMap<String, String> = from_js(env)?;
    to_js(&ShimSettings::from_env(&env, host))
}

/// Every tool the extension registers: `[{name, label, description, parameters}]`.
///
/// # Errors
///
/// Never in practice; serialization errors surface as `JsError`.
#[wasm_bindgen(js_name = toolDefinitions, unchecked_return_type = "ToolDefinition[]")]
pub fn tool_definitions() -> Result<JsValue, JsError> {
    to_js(&schema::all_tools())
}

/// What the model reads of the sidecar's answer: `(tool, ServerFrame) -> ToolText`.
///
/// # Errors
///
/// When `frame` is not a server frame.
#[wasm_bindgen(js_name = toolAnswer, unchecked_return_type = "ToolText")]
pub fn tool_answer(
    tool: &str,
    #[wasm_bindgen(unchecked_param_type = "ServerFrame")] frame: JsValue,
) -> Result<JsValue, JsError> {
    to_js(&tools::tool_answer(tool, &from_js(frame)?))
}

/// Encodes a client frame (`{type: "hello" | "notify" | ...}`) as one NDJSON line.
///
/// # Errors
///
/// When the object is not a valid client frame.
#[wasm_bindgen(js_name = encodeClientFrame)]
pub fn encode_client_frame(
    #[wasm_bindgen(unchecked_param_type = "ClientFrame")] frame: JsValue,
) -> Result<String, JsError> {
    let frame: ClientFrame = from_js(frame)?;
    Ok(protocol::encode_frame(&frame))
}

/// Decodes one line from the sidecar into a server frame object.
///
/// # Errors
///
/// When the line is too long or not a valid server frame.
#[wasm_bindgen(js_name = decodeServerFrame, unchecked_return_type = "ServerFrame")]
pub fn decode_server_frame(line: &str) -> Result<JsValue, JsError> {
    to_js(&protocol::decode_server_frame(line.as_bytes())?)
}

/// The error frame a request ends with after a `ClientFailure`.
///
/// # Errors
///
/// When `failure` is not a `ClientFailure`.
#[wasm_bindgen(js_name = clientError, unchecked_return_type = "ServerFrame & { type: \"error\" }")]
pub fn client_error(
    #[wasm_bindgen(unchecked_param_type = "ClientFailure")] failure: JsValue,
) -> Result<JsValue, JsError> {
    to_js(&client::client_error(&from_js(failure)?))
}

/// Whether a request that ended with `frame` never reached the sidecar (keep it, send it later).
#[wasm_bindgen(js_name = neverTaken)]
#[must_use]
pub fn never_taken(#[wasm_bindgen(unchecked_param_type = "ServerFrame")] frame: JsValue) -> bool {
    from_js::<ServerFrame>(frame).is_ok_and(|frame| client::never_taken(&frame))
}

/// The spool file for `frames` (notify frames), with ids unique to process `pid`.
///
/// # Errors
///
/// When `frames` are not client frames.
#[wasm_bindgen(js_name = spoolText)]
pub fn spool_text(
    #[wasm_bindgen(unchecked_param_type = "ClientFrame[]")] frames: JsValue,
    pid: u32,
) -> Result<String, JsError> {
    Ok(client::spool_text(from_js(frames)?, pid))
}

/// The notify frames of a spool file.
///
/// # Errors
///
/// Only on a serializer failure.
#[wasm_bindgen(js_name = spooledFrames, unchecked_return_type = "ClientFrame[]")]
pub fn spooled_frames(text: &str) -> Result<JsValue, JsError> {
    to_js(&client::spooled_frames(text))
}

/// The OMP events the reporter reads.
#[wasm_bindgen(js_name = reportedEvents)]
#[must_use]
pub fn reported_events() -> Vec<String> {
    shim::REPORTED_EVENTS.map(str::to_owned).to_vec()
}

/// The next step of an approval after the sidecar's answer at `now`: `ApprovalStep`.
///
/// # Errors
///
/// When `gate` or `frame` cannot be read.
#[wasm_bindgen(js_name = approvalStep, unchecked_return_type = "ApprovalStep")]
pub fn approval_step(
    #[wasm_bindgen(unchecked_param_type = "ApprovalGate")] gate: JsValue,
    #[wasm_bindgen(unchecked_param_type = "ServerFrame")] frame: JsValue,
    now_ms: f64,
) -> Result<JsValue, JsError> {
    to_js(&shim::approval_step(from_js(gate)?, &from_js(frame)?, millis(now_ms)))
}

/// Why a call that needed an approval is blocked when no decision came.
#[wasm_bindgen(js_name = approvalBlocked)]
#[must_use]
pub fn approval_blocked(why: Option<String>) -> String {
    shim::approval_blocked(why.as_deref())
}

/// `/discord`'s and `/discord-ping`'s descriptions: `[discord, ping]`.
#[wasm_bindgen(js_name = commandDescriptions)]
#[must_use]
pub fn command_descriptions() -> Vec<String> {
    vec![command::DISCORD_DESCRIPTION.to_owned(), command::PING_DESCRIPTION.to_owned()]
}

/// `/discord`'s argument completions for what was typed so far.
#[wasm_bindgen(js_name = discordCompletions)]
#[must_use]
pub fn discord_completions(prefix: &str) -> Vec<String> {
    command::completions(prefix).into_iter().map(str::to_owned).collect()
}

/// A line for OMP's UI: `(text, warning) -> Notice`.
///
/// # Errors
///
/// Only on a serializer failure.
#[wasm_bindgen(unchecked_return_type = "Notice")]
pub fn notice(text: &str, warning: bool) -> Result<JsValue, JsError> {
    to_js(&if warning { command::Notice::warning(text) } else { command::Notice::info(text) })
}

/// Replaces secrets in `utf8` (text as UTF-8 bytes) with `[REDACTED:<kind>]`.
///
/// Text arrives as bytes: JS encodes it natively (`TextEncoder`), where
/// wasm-bindgen's string passing copies ASCII one character at a time in JS
/// (~0.15 ms per 100 KB, more before the JIT warms up). `js-shim/wasm.ts`
/// wraps it as `redactText(text)`.
#[wasm_bindgen(js_name = redactTextUtf8)]
#[must_use]
pub fn redact_text(utf8: &[u8]) -> String {
    redact::redact_text(&String::from_utf8_lossy(utf8)).into_owned()
}

#[wasm_bindgen]
extern "C" {
    /// The host's `TextEncoder`: text reaches wasm as natively written UTF-8
    /// (see [`redact_text`]).
    type TextEncoder;
    #[wasm_bindgen(constructor)]
    fn new() -> TextEncoder;
    #[wasm_bindgen(method)]
    fn encode(this: &TextEncoder, text: &JsString) -> Uint8Array;
}

thread_local! {
    static ENCODER: TextEncoder = TextEncoder::new();
}

/// Redacts a tool result (OMP's `tool_result` event): `content` is a
/// string or `[{type: "text", text}, …]`, whose text blocks are redacted
/// (`core::tool_result`) and other blocks pass as the same objects: only the
/// text crosses into wasm, never an image's data. Returns `{content,
/// details}` with the audit count in `details.ompDiscordRedactions` (when
/// `details` is a plain object or `undefined`), or `undefined` when nothing
/// was redacted. `conservative` also redacts high-entropy runs: the fallback
/// when the normal pass cannot be trusted.
///
/// # Errors
///
/// Only when the host's objects refuse a property (the host's own error).
#[wasm_bindgen(js_name = redactToolResult, unchecked_return_type = "{ content: unknown; details: unknown } | undefined")]
pub fn redact_tool_result(content: JsValue, details: JsValue, conservative: bool) -> Result<JsValue, JsValue> {
    let mut report = RedactionReport::default();
    let mut one = |text: &JsString| {
        let utf8 = ENCODER.with(|encoder| encoder.encode(text)).to_vec();
        let redactor = if conservative { redact::Redactor::conservative() } else { redact::Redactor::new() };
        let redacted = tool_result::redact_tool_text(&String::from_utf8_lossy(&utf8), redactor)?;
        report.count += redacted.report.count;
        for (kind, n) in redacted.report.kinds {
            *report.kinds.entry(kind).or_insert(0) += n;
        }
        Some(redacted.text)
    };
    let content = if let Some(text) = content.dyn_ref::<JsString>() {
        let Some(text) = one(text) else { return Ok(JsValue::UNDEFINED) };
        JsValue::from_str(&text)
    } else if Array::is_array(&content) {
        let (blocks, mut changed) = (Array::new(), false);
        for block in Array::from(&content).iter() {
            let text =
                if block.is_object() && Reflect::get(&block, &"type".into())?.as_string().as_deref() == Some("text") {
                    Reflect::get(&block, &"text".into())?.dyn_into::<JsString>().ok().and_then(|text| one(&text))
                } else {
                    None
                };
            match text {
                Some(text) => {
                    let copy = Object::assign(&Object::new(), block.unchecked_ref());
                    Reflect::set(&copy, &"text".into(), &text.into())?;
                    blocks.push(&copy);
                    changed = true;
                }
                None => _ = blocks.push(&block),
            }
        }
        if !changed {
            return Ok(JsValue::UNDEFINED);
        }
        blocks.into()
    } else {
        return Ok(JsValue::UNDEFINED);
    };
    let details = if details.is_undefined() || (details.is_object() && !Array::is_array(&details)) {
        let copy = Object::assign(&Object::new(), &Object::from(details));
        Reflect::set(&copy, &"ompDiscordRedactions".into(), &to_js(&report).map_err(JsValue::from)?)?;
        copy.into()
    } else {
        details
    };
    let result = Object::new();
    Reflect::set(&result, &"content".into(), &content)?;
    Reflect::set(&result, &"details".into(), &details)?;
    Ok(result.into())
}

/// What one OMP process knows about its sessions (`core::shim::Shim`), kept
/// in wasm: subagents, prompts, muting, reporters, replies handed on.
#[wasm_bindgen]
pub struct Shim {
    inner: shim::Shim,
}

#[wasm_bindgen]
impl Shim {
    /// The process's state under `settings` (from `shimSettings`);
    /// `instance` is a random name for this process, in its notifications'
    /// idempotency keys.
    ///
    /// # Errors
    ///
    /// When `settings` is not `ShimSettings`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "ShimSettings")] settings: JsValue,
        instance: &str,
    ) -> Result<Shim, JsError> {
        Ok(Self { inner: shim::Shim::new(&from_js(settings)?, instance) })
    }

    /// Where a session's reports and tool posts go: `(OmpSession) -> SessionRef`.
    ///
    /// # Errors
    ///
    /// When `ctx` is not an `OmpSession`.
    #[wasm_bindgen(js_name = sessionOf, unchecked_return_type = "SessionRef")]
    pub fn session_of(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "OmpSession")] ctx: JsValue,
    ) -> Result<JsValue, JsError> {
        to_js(&self.inner.session_of(&from_js(ctx)?))
    }

    /// The session `session_start` attaches (`SessionRef`), or `null` for a subagent.
    ///
    /// # Errors
    ///
    /// When `ctx` is not an `OmpSession`.
    #[wasm_bindgen(unchecked_return_type = "SessionRef | null")]
    pub fn attach(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "OmpSession")] ctx: JsValue,
    ) -> Result<JsValue, JsError> {
        to_js(&self.inner.attach(&from_js(ctx)?))
    }

    /// Feeds one OMP event: `(OmpSession, event, now, report config) -> EventStep`.
    /// An event that cannot be read yields no frames, never an error.
    ///
    /// # Errors
    ///
    /// When the sidecar's `[report]` configuration cannot be read.
    #[wasm_bindgen(js_name = onEvent, unchecked_return_type = "EventStep")]
    pub fn on_event(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "OmpSession")] ctx: JsValue,
        #[wasm_bindgen(unchecked_param_type = "unknown")] event: JsValue,
        now_ms: f64,
        #[wasm_bindgen(unchecked_param_type = "unknown")] config: JsValue,
    ) -> Result<JsValue, JsError> {
        let event = from_js(event).unwrap_or(serde_json::Value::Null);
        to_js(&self.inner.on_event(&from_js(ctx)?, &event, millis(now_ms), &json_of(config)?)?)
    }

    /// Due run-card edits and coalesced bursts: `ClientFrame[]`.
    ///
    /// # Errors
    ///
    /// Only on a serializer failure.
    #[wasm_bindgen(unchecked_return_type = "ClientFrame[]")]
    pub fn tick(&mut self, now_ms: f64) -> Result<JsValue, JsError> {
        to_js(&self.inner.tick(millis(now_ms)))
    }

    /// Forgets a session that ended.
    #[wasm_bindgen(js_name = endSession)]
    pub fn end_session(&mut self, id: &str) {
        self.inner.end_session(id);
    }

    /// The prompt the run card's Retry sends again.
    #[wasm_bindgen(js_name = retryPrompt)]
    #[must_use]
    pub fn retry_prompt(&self, id: &str) -> Option<String> {
        self.inner.retry_prompt(id)
    }

    /// One call of the model's `tool`: `(tool, params, OmpSession, callId) -> ToolCall`.
    ///
    /// # Errors
    ///
    /// When `params` or `ctx` cannot be read.
    #[wasm_bindgen(js_name = toolCall, unchecked_return_type = "ToolCall")]
    pub fn tool_call(
        &mut self,
        tool: &str,
        #[wasm_bindgen(unchecked_param_type = "unknown")] params: JsValue,
        #[wasm_bindgen(unchecked_param_type = "OmpSession")] ctx: JsValue,
        call_id: &str,
    ) -> Result<JsValue, JsError> {
        to_js(&self.inner.tool_call(tool, &json_of(params)?, &from_js(ctx)?, call_id))
    }

    /// How an `inbound` frame reaches OMP, given whether its session is idle: `InboundStep`.
    ///
    /// # Errors
    ///
    /// When `frame` is not an `inbound` frame.
    #[wasm_bindgen(unchecked_return_type = "InboundStep")]
    pub fn inbound(
        &self,
        #[wasm_bindgen(unchecked_param_type = "ServerFrame & { type: \"inbound\" }")] frame: JsValue,
        idle: bool,
    ) -> Result<JsValue, JsError> {
        let ServerFrame::Inbound { session_id, message_id, deliver_as, .. } = from_js(frame)? else {
            return Err(JsError::new("not an inbound frame"));
        };
        to_js(&self.inner.inbound(&session_id, &message_id, deliver_as, idle))
    }

    /// Notes that OMP has the reply `message_id`.
    #[wasm_bindgen(js_name = handedOn)]
    pub fn handed_on(&mut self, message_id: &str) {
        self.inner.handed_on(message_id);
    }

    /// The gate for a call of `tool` at `now` under `policy` (the welcome's,
    /// or `null`): `ApprovalGate`, or `undefined` when it needs no approval.
    ///
    /// # Errors
    ///
    /// When `policy` is not JSON.
    #[wasm_bindgen(js_name = approvalGate, unchecked_return_type = "ApprovalGate | undefined")]
    pub fn approval_gate(
        &self,
        #[wasm_bindgen(unchecked_param_type = "unknown")] policy: JsValue,
        tool: &str,
        now_ms: f64,
    ) -> Result<JsValue, JsError> {
        match self.inner.approval_gate(&json_of(policy)?, tool, millis(now_ms)) {
            Some(gate) => to_js(&gate),
            None => Ok(JsValue::UNDEFINED),
        }
    }

    /// Whether tool results reach the model redacted.
    #[wasm_bindgen(js_name = redactsToolResults)]
    #[must_use]
    pub fn redacts_tool_results(&self) -> bool {
        self.inner.redacts_tool_results()
    }

    /// Runs `/discord <args>`: `(OmpSession, args, report config) -> CommandStep`.
    ///
    /// # Errors
    ///
    /// When `ctx` is not an `OmpSession`.
    #[wasm_bindgen(unchecked_return_type = "CommandStep")]
    pub fn command(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "OmpSession")] ctx: JsValue,
        args: &str,
        #[wasm_bindgen(unchecked_param_type = "unknown")] config: JsValue,
    ) -> Result<JsValue, JsError> {
        to_js(&self.inner.command(&from_js(ctx)?, args, &json_of(config)?))
    }

    /// `/discord status`'s line from the sidecar's answer: `Notice`.
    ///
    /// # Errors
    ///
    /// When `frame` is not JSON.
    #[wasm_bindgen(js_name = statusLine, unchecked_return_type = "Notice")]
    pub fn status_line(
        &self,
        session_id: &str,
        #[wasm_bindgen(unchecked_param_type = "ServerFrame")] frame: JsValue,
        dropped: u32,
        last_dropped: &str,
    ) -> Result<JsValue, JsError> {
        to_js(&self.inner.status_line(session_id, &json_of(frame)?, dropped, last_dropped))
    }

    /// `/discord-ping <args>`: `ToolCall`.
    ///
    /// # Errors
    ///
    /// When `ctx` is not an `OmpSession`.
    #[wasm_bindgen(unchecked_return_type = "ToolCall")]
    pub fn ping(
        &mut self,
        #[wasm_bindgen(unchecked_param_type = "OmpSession")] ctx: JsValue,
        args: &str,
        now_ms: f64,
    ) -> Result<JsValue, JsError> {
        to_js(&self.inner.ping(&from_js(ctx)?, args, millis(now_ms)))
    }
}
