//! The wasm-bindgen surface over `omp-discord-core`, loaded by the OMP
//! extension shim. Each export decodes its input, calls core, and encodes the
//! result; no decision is made here.

use omp_discord_core::{approval, embed, paths, protocol, redact, reporter, schema, tool_result, tools};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_wasm_bindgen::Serializer;
use wasm_bindgen::prelude::*;

/// Maps (and `None`) must reach JS as plain objects (and `null`), which
/// `JSON.stringify` and the socket understand.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    Ok(value.serialize(&Serializer::json_compatible())?)
}

fn from_js<T: DeserializeOwned>(value: JsValue) -> Result<T, JsError> {
    Ok(serde_wasm_bindgen::from_value(value)?)
}

/// The socket protocol version this build speaks.
#[wasm_bindgen(js_name = protocolVersion)]
#[must_use]
pub fn protocol_version() -> u32 {
    protocol::PROTOCOL_VERSION
}

/// Every tool the extension registers: `[{name, label, description, parameters}]`.
///
/// # Errors
///
/// Never in practice; serialization errors surface as `JsError`.
#[wasm_bindgen(js_name = toolDefinitions)]
pub fn tool_definitions() -> Result<JsValue, JsError> {
    to_js(&schema::all_tools())
}

/// The sidecar request for one tool call: `(tool, params, session, callId,
/// project) -> ClientFrame` with an empty `id` for the connection to set.
///
/// # Errors
///
/// An unknown tool or unusable arguments, with a message for the model.
#[wasm_bindgen(js_name = toolRequest)]
pub fn tool_request(
    tool: &str,
    params: JsValue,
    session: JsValue,
    call_id: &str,
    project: &str,
) -> Result<JsValue, JsError> {
    let params: serde_json::Value = from_js(params)?;
    let session: protocol::SessionRef = from_js(session)?;
    let frame = tools::tool_request(tool, &params, &session, call_id, project).map_err(|e| JsError::new(&e.0))?;
    to_js(&frame)
}

/// What the model reads of the sidecar's answer: `(tool, ServerFrame) -> {text, isError}`.
///
/// # Errors
///
/// When `frame` is not a server frame.
#[wasm_bindgen(js_name = toolAnswer)]
pub fn tool_answer(tool: &str, frame: JsValue) -> Result<JsValue, JsError> {
    let frame: protocol::ServerFrame = from_js(frame)?;
    to_js(&tools::tool_answer(tool, &frame))
}

/// Where the extension leaves reports it could not hand to the sidecar:
/// `(OMP_DISCORD_STATE_DIR, XDG_STATE_HOME, HOME) -> "<state>/spool"`, or `undefined`.
#[wasm_bindgen(js_name = spoolDir)]
#[must_use]
pub fn spool_dir(explicit: Option<String>, state_home: Option<String>, home: Option<String>) -> Option<String> {
    paths::state_dir(explicit.as_deref(), state_home.as_deref(), home.as_deref())
        .map(|dir| format!("{dir}/{}", paths::SPOOL_DIR_NAME))
}

/// Builds the message for a `discord_notify` call: `(params, project) -> MessagePayload`.
///
/// # Errors
///
/// When `params` does not match the tool's schema.
#[wasm_bindgen(js_name = buildNotification)]
pub fn build_notification(params: JsValue, project: &str) -> Result<JsValue, JsError> {
    let note: embed::Notification = from_js(params)?;
    to_js(&embed::build_notification(&note, project))
}

/// Encodes a client frame (`{type: "hello" | "notify" | ...}`) as one NDJSON line.
///
/// # Errors
///
/// When the object is not a valid client frame.
#[wasm_bindgen(js_name = encodeClientFrame)]
pub fn encode_client_frame(frame: JsValue) -> Result<String, JsError> {
    let frame: protocol::ClientFrame = from_js(frame)?;
    Ok(protocol::encode_frame(&frame))
}

/// Decodes one line from the sidecar into a server frame object.
///
/// # Errors
///
/// When the line is too long or not a valid server frame.
#[wasm_bindgen(js_name = decodeServerFrame)]
pub fn decode_server_frame(line: &str) -> Result<JsValue, JsError> {
    to_js(&protocol::decode_server_frame(line.as_bytes())?)
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
    redact::redact_text(&text_of(utf8)).into_owned()
}

/// `TextEncoder` output is always UTF-8; anything else is read lossily.
fn text_of(utf8: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(utf8)
}

/// The sidecar's socket path for the given environment values (empty strings
/// count as unset); `undefined` when none of them is set.
#[wasm_bindgen(js_name = socketPath)]
#[must_use]
pub fn socket_path(
    explicit: Option<String>,
    runtime_dir: Option<String>,
    state_home: Option<String>,
    home: Option<String>,
) -> Option<String> {
    paths::socket_path(paths::SocketEnv {
        explicit: explicit.as_deref(),
        runtime_dir: runtime_dir.as_deref(),
        state_home: state_home.as_deref(),
        home: home.as_deref(),
    })
}

/// Redacts one text block of a tool result, given as UTF-8 bytes (see
/// [`redact_text`]): `{text, report: {count, kinds}}`, or `undefined` when
/// it holds no secret. Only the text crosses into wasm (no serde of the
/// block array); `conservative` also redacts high-entropy runs: the
/// fallback when the normal pass cannot be trusted.
///
/// # Errors
///
/// Never in practice; serialization errors surface as `JsError`.
#[wasm_bindgen(js_name = redactToolTextUtf8)]
pub fn redact_tool_text(utf8: &[u8], conservative: bool) -> Result<JsValue, JsError> {
    let redactor = if conservative { redact::Redactor::conservative() } else { redact::Redactor::new() };
    match tool_result::redact_tool_text(&text_of(utf8), redactor) {
        Some(redacted) => to_js(&redacted),
        None => Ok(JsValue::UNDEFINED),
    }
}

/// One session's event filter and live run card (`core::reporter::SessionReporter`),
/// kept in wasm so its state lives across events.
#[wasm_bindgen]
pub struct Reporter {
    inner: reporter::SessionReporter,
}

#[wasm_bindgen]
impl Reporter {
    /// `config`: the `[report]` table (`{level, min_run_secs, …}`; `null` for
    /// the defaults); `session`: `{id, cwd, host, parent_id?, model?}`.
    ///
    /// # Errors
    ///
    /// When `config` or `session` does not have that shape.
    #[wasm_bindgen(constructor)]
    pub fn new(config: JsValue, session: JsValue) -> Result<Reporter, JsError> {
        let config: reporter::ReportConfig = if config.is_null() || config.is_undefined() {
            reporter::ReportConfig::default()
        } else {
            from_js(config)?
        };
        Ok(Self { inner: reporter::SessionReporter::new(config, from_js(session)?) })
    }

    /// Feeds one OMP event; returns the reports to send (`[{kind: "post"|"edit", key?, payload}]`).
    /// An event that cannot be read yields no reports, never an error.
    ///
    /// # Errors
    ///
    /// Only on a serializer failure.
    #[wasm_bindgen(js_name = onEvent)]
    pub fn on_event(&mut self, event: JsValue, now_ms: f64) -> Result<JsValue, JsError> {
        let event: serde_json::Value = from_js(event).unwrap_or(serde_json::Value::Null);
        to_js(&self.inner.on_event(&event, millis(now_ms)))
    }

    /// Reports that are due now (coalesced bursts, run-card edits).
    ///
    /// # Errors
    ///
    /// Only on a serializer failure.
    pub fn tick(&mut self, now_ms: f64) -> Result<JsValue, JsError> {
        to_js(&self.inner.tick(millis(now_ms)))
    }

    /// Changes the level (`quiet`, `normal`, `verbose`) for this session.
    ///
    /// # Errors
    ///
    /// When the level is not one of those.
    #[wasm_bindgen(js_name = setLevel)]
    pub fn set_level(&mut self, level: &str) -> Result<(), JsError> {
        self.inner.set_level(level.parse()?);
        Ok(())
    }
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

/// Whether a call of `tool` must wait for a person under `policy`
/// (`{tools, timeout_secs}`, as the sidecar's welcome carries it). An
/// unreadable policy asks for approval of nothing.
#[wasm_bindgen(js_name = needsApproval)]
#[must_use]
pub fn needs_approval(policy: JsValue, tool: &str) -> bool {
    from_js::<approval::ApprovalPolicy>(policy).is_ok_and(|policy| policy.needs_approval(tool))
}
