//! Helpers shared by the integration tests.

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use omp_discord_emulator::{DEFAULT_BOT_TOKEN, EmulatorConfig, EmulatorState, app};
use serde_json::Value;
use tower::ServiceExt;

/// A response: status, headers and parsed JSON body (`Null` when empty).
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: axum::http::HeaderMap,
    pub(crate) body: Value,
}

/// An emulator state with rate limits as configured.
pub(crate) fn state() -> EmulatorState {
    EmulatorState::new(EmulatorConfig::default())
}

/// Sends one request through `app(state)` with the bot token.
pub(crate) async fn call(state: &EmulatorState, method: &str, path: &str, body: Option<Value>) -> Reply {
    call_as(state, method, path, body, Some(&format!("Bot {DEFAULT_BOT_TOKEN}"))).await
}

/// Sends one request with the given `Authorization` header (or none).
pub(crate) async fn call_as(
    state: &EmulatorState,
    method: &str,
    path: &str,
    body: Option<Value>,
    authorization: Option<&str>,
) -> Reply {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(auth) = authorization {
        request = request.header("authorization", auth);
    }
    let request = match body {
        Some(body) => request.header("content-type", "application/json").body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Reply { status, headers, body }
}
