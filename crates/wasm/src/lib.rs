//! The wasm-bindgen surface over `omp-discord-core`, loaded by the OMP
//! extension shim. Each export decodes its input, calls core, and encodes the
//! result; no decision is made here.

use omp_discord_core::{embed, event, paths, protocol, redact, schema, tool_result};
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

/// Builds the "run finished/failed" message from an `agent_end` event.
///
/// # Errors
///
/// Never for odd payloads (they yield an empty summary); only on a serializer failure.
#[wasm_bindgen(js_name = buildRunFinished)]
pub fn build_run_finished(event: JsValue, project: &str) -> Result<JsValue, JsError> {
    let event: serde_json::Value = from_js(event).unwrap_or(serde_json::Value::Null);
    to_js(&event::build_run_finished(&event::summarize_agent_end(&event), project))
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

/// Replaces secrets in `text` with `[REDACTED:<kind>]`.
#[wasm_bindgen(js_name = redactText)]
#[must_use]
pub fn redact_text(text: &str) -> String {
    redact::redact_text(text).into_owned()
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

/// Redacts a tool result's content for the model: `{content?, report: {count, kinds}}`
/// (`content` only when something changed). `conservative` also redacts
/// high-entropy runs: the fallback when the normal pass cannot be trusted.
///
/// # Errors
///
/// Never in practice; serialization errors surface as `JsError`.
#[wasm_bindgen(js_name = redactToolContent)]
pub fn redact_tool_content(content: JsValue, conservative: bool) -> Result<JsValue, JsError> {
    let content: serde_json::Value = from_js(content).unwrap_or(serde_json::Value::Null);
    let redactor = if conservative { redact::Redactor::conservative() } else { redact::Redactor::new() };
    to_js(&tool_result::redact_tool_content(&content, redactor))
}
