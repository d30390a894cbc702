//! The test control API under `/_emulator/`: recorded requests, state, reset, injected
//! messages and interactions, and fault injection. Documented in the crate README.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::error::ApiError;
use crate::fault::{GatewayFault, HttpFault};
use crate::rest::JsonBody;
use crate::state::{EmulatorState, lock};

pub(crate) fn router() -> Router<EmulatorState> {
    Router::new()
        .route("/requests", get(requests).delete(clear_requests))
        .route("/state", get(state_json))
        .route("/reset", post(reset))
        .route("/messages", post(inject_message))
        .route("/guilds/{guild_id}/bot", post(invite_bot))
        .route("/channels/{channel_id}/messages", get(channel_messages))
        .route("/interactions", post(inject_interaction))
        .route("/interactions/{interaction_id}", get(interaction))
        .route("/faults", get(faults).post(set_faults).delete(clear_faults))
        .route("/changes", get(changes))
}

async fn requests(State(state): State<EmulatorState>) -> Json<Value> {
    Json(json!(state.requests()))
}

async fn clear_requests(State(state): State<EmulatorState>) -> StatusCode {
    lock(&state.inner.recorder).clear();
    StatusCode::NO_CONTENT
}

async fn state_json(State(state): State<EmulatorState>) -> Json<Value> {
    let mut snapshot = state.snapshot();
    let now = Instant::now();
    let limits = lock(&state.inner.limits);
    snapshot["rate_limits"] = json!({
        "invalid_requests": limits.invalid_count(now),
        "banned": limits.banned(now),
    });
    Json(snapshot)
}

async fn reset(State(state): State<EmulatorState>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

fn id_field(body: &Value, key: &str) -> Option<u64> {
    match &body[key] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// `{channel_id, user_id?, content?, embeds?, message_reference?, …}`; `user_id` defaults
/// to the first person in the seed.
async fn inject_message(State(state): State<EmulatorState>, JsonBody(body): JsonBody) -> Response {
    let Some(channel_id) = id_field(&body, "channel_id") else {
        return ApiError::unknown_channel().into_response();
    };
    let user_id = id_field(&body, "user_id")
        .unwrap_or_else(|| state.config().seed.users.iter().find(|u| !u.bot).map_or(0, |u| u.id));
    let mut message = body.clone();
    if let Some(object) = message.as_object_mut() {
        object.remove("channel_id");
        object.remove("user_id");
    }
    match state.inject_message(channel_id, user_id, &message) {
        Ok(json) => Json(json).into_response(),
        Err(error) => {
            let status = match error["code"].as_u64() {
                Some(10003 | 10008 | 10013) => StatusCode::NOT_FOUND,
                Some(50001 | 50013) => StatusCode::FORBIDDEN,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, Json(error)).into_response()
        }
    }
}

/// `{permissions?}`: the bot accepts its invite to this guild (see `EmulatorState::invite_bot`).
async fn invite_bot(
    State(state): State<EmulatorState>,
    Path(guild_id): Path<u64>,
    JsonBody(body): JsonBody,
) -> Response {
    let permissions = match &body["permissions"] {
        Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    };
    match state.invite_bot(guild_id, permissions) {
        Ok(json) => Json(json).into_response(),
        Err(error) => (StatusCode::NOT_FOUND, Json(error)).into_response(),
    }
}

async fn channel_messages(State(state): State<EmulatorState>, Path(channel_id): Path<u64>) -> Json<Value> {
    Json(json!(state.messages(channel_id)))
}

/// Injects an interaction. With `"wait": true`, answers once the bot has responded (or the
/// acknowledgement deadline passed) with `{interaction, state}`.
async fn inject_interaction(State(state): State<EmulatorState>, JsonBody(body): JsonBody) -> Response {
    let mut changed = state.inner.changed.subscribe();
    let payload = match crate::interaction::inject(&state, &body) {
        Ok(payload) => payload,
        Err(error) => return error.into_response(),
    };
    let id: u64 = payload["id"].as_str().and_then(|i| i.parse().ok()).expect("interactions have ids");
    if body["wait"].as_bool() == Some(true) {
        let deadline = Instant::now() + state.config().interaction_ack_deadline + Duration::from_millis(100);
        loop {
            let acknowledged =
                crate::interaction::state_json(&state, id).is_some_and(|s| s["acknowledged"] == json!(true));
            if acknowledged {
                break;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                _ => break,
            }
        }
    }
    Json(json!({
        "interaction": payload,
        "state": crate::interaction::state_json(&state, id),
    }))
    .into_response()
}

async fn interaction(State(state): State<EmulatorState>, Path(id): Path<u64>) -> Response {
    match crate::interaction::state_json(&state, id) {
        Some(json) => Json(json).into_response(),
        None => ApiError::unknown_interaction().into_response(),
    }
}

/// The fault request: every field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultRequest {
    /// REST failures to add (one rule or a list).
    #[serde(default)]
    http: Option<OneOrMany<HttpFault>>,
    /// Added latency for every REST request.
    #[serde(default)]
    latency_ms: Option<u64>,
    /// Revoke (true) or restore (false) the bot token: REST 401, gateway 4004.
    #[serde(default)]
    revoke_token: Option<bool>,
    /// Stop (true) or resume (false) heartbeat ACKs and dispatches on the gateway.
    #[serde(default)]
    stall_gateway: Option<bool>,
    /// A command for every open gateway connection.
    #[serde(default)]
    gateway: Option<GatewayFault>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

async fn set_faults(State(state): State<EmulatorState>, JsonBody(body): JsonBody) -> Response {
    match state.set_faults(&body) {
        Ok(json) => Json(json).into_response(),
        Err(message) => (StatusCode::BAD_REQUEST, Json(json!({"message": message, "code": 50035}))).into_response(),
    }
}

/// Applies a fault request (the body of `POST /_emulator/faults`).
pub(crate) fn apply_faults(state: &EmulatorState, body: &Value) -> Result<Value, String> {
    let request: FaultRequest = serde_json::from_value(body.clone()).map_err(|e| e.to_string())?;
    let mut wake = false;
    {
        let mut faults = lock(&state.inner.faults);
        match request.http {
            Some(OneOrMany::One(rule)) => faults.http.push(rule),
            Some(OneOrMany::Many(rules)) => faults.http.extend(rules),
            None => {}
        }
        if let Some(ms) = request.latency_ms {
            faults.latency = Duration::from_millis(ms);
        }
        if let Some(revoked) = request.revoke_token {
            faults.token_revoked = revoked;
        }
        if let Some(stalled) = request.stall_gateway {
            wake = faults.gateway_stalled && !stalled;
            faults.gateway_stalled = stalled;
        }
    }
    let receivers = request.gateway.map_or(0, |fault| state.inner.gateway_faults.send(fault).unwrap_or(0));
    if wake {
        let _ = state.inner.gateway_faults.send(GatewayFault::Wake);
    }
    Ok(json!({ "connections": receivers }))
}

async fn faults(State(state): State<EmulatorState>) -> Json<Value> {
    let faults = lock(&state.inner.faults);
    Json(json!({
        "http": faults.http.iter().map(|f| json!({
            "mode": f.mode, "status": f.status, "count": f.count, "fraction": f.fraction,
            "path_prefix": f.path_prefix, "method": f.method,
        })).collect::<Vec<_>>(),
        "latency_ms": faults.latency.as_millis(),
        "revoke_token": faults.token_revoked,
        "stall_gateway": faults.gateway_stalled,
    }))
}

async fn clear_faults(State(state): State<EmulatorState>) -> StatusCode {
    let stalled = {
        let mut faults = lock(&state.inner.faults);
        let stalled = faults.gateway_stalled;
        *faults = Default::default();
        stalled
    };
    if stalled {
        let _ = state.inner.gateway_faults.send(GatewayFault::Wake);
    }
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct ChangesQuery {
    timeout_ms: Option<u64>,
    /// The generation the caller has seen (absent: the current one).
    since: Option<u64>,
}

/// Long poll for the web view: answers `{"generation"}` as soon as the state
/// is newer than `since` (at once if it already is, so a change made between
/// two polls is never missed), or 204 after `timeout_ms`. Without `since`,
/// it waits for the next change.
async fn changes(State(state): State<EmulatorState>, Query(query): Query<ChangesQuery>) -> Response {
    let mut changed = state.inner.changed.subscribe();
    let since = query.since.unwrap_or_else(|| *changed.borrow());
    let timeout = Duration::from_millis(query.timeout_ms.unwrap_or(25_000).min(60_000));
    match tokio::time::timeout(timeout, changed.wait_for(|generation| *generation > since)).await {
        Ok(Ok(generation)) => Json(json!({ "generation": *generation })).into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}
