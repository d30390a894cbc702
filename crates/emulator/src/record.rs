//! Records every REST request and response for `GET /_emulator/requests`.

use std::collections::BTreeMap;

use axum::body::{Body, to_bytes};
use axum::extract::{OriginalUri, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use crate::error::ApiError;
use crate::fault::Unanswered;
use crate::state::{EmulatorState, lock};

/// The largest request body accepted (Discord's 25 MB upload limit plus form overhead).
pub(crate) const MAX_REQUEST_BODY: usize = 26 * 1024 * 1024;

/// One REST request as the emulator saw it, and its answer.
///
/// Serializes as `{method, path, query, headers, body, status, response, received_ms}`. The
/// `Authorization` header is recorded as `Bot <redacted>`: the token never appears.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Path without the query string, e.g. `/api/v10/channels/1/messages`.
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    /// Request headers by lowercase name (repeated headers joined with `, `).
    pub headers: BTreeMap<String, String>,
    /// The JSON body, or the text body as a string, or `null`. Multipart bodies are recorded
    /// as `{"payload_json": …, "files": [{"field", "filename", "content_type", "size"}]}`.
    pub body: Value,
    /// Response status.
    pub status: u16,
    /// The JSON response body (`null` for 204).
    pub response: Value,
    /// When the request arrived (Unix ms), before any fault or rate limit decided its answer.
    pub received_ms: u64,
}

/// A handler that parsed the body itself (multipart) leaves the recorded form here.
#[derive(Clone, Debug)]
pub(crate) struct RecordedBody(pub(crate) Value);

fn recorded_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = if name == "authorization" {
            let text = value.to_str().unwrap_or("");
            match text.split_once(' ') {
                Some((scheme, _)) => format!("{scheme} <redacted>"),
                None => "<redacted>".to_owned(),
            }
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert(value);
    }
    out
}

fn parse_body(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Middleware: buffers both bodies and appends a [`RecordedRequest`].
pub(crate) async fn record(State(state): State<EmulatorState>, request: Request, next: Next) -> Response {
    let received_ms = crate::snowflake::now_ms();
    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_REQUEST_BODY).await else {
        return ApiError::payload_too_large().into_response();
    };
    let multipart =
        parts.headers.get("content-type").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("multipart/"));
    // Inside `nest` the URI lost its prefix; the original one has the full path.
    let uri = parts.extensions.get::<OriginalUri>().map_or_else(|| parts.uri.clone(), |o| o.0.clone());
    let mut entry = RecordedRequest {
        method: parts.method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers: recorded_headers(&parts.headers),
        body: if multipart { Value::Null } else { parse_body(&bytes) },
        status: 0,
        response: Value::Null,
        received_ms,
    };
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (mut parts, body) = response.into_parts();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    if let Some(RecordedBody(body)) = parts.extensions.remove::<RecordedBody>() {
        entry.body = body;
    }
    let unanswered = parts.extensions.remove::<Unanswered>();
    entry.status = if unanswered.is_some() { 0 } else { parts.status.as_u16() };
    entry.response = if unanswered.is_some() { Value::Null } else { parse_body(&bytes) };
    {
        let mut recorder = lock(&state.inner.recorder);
        recorder.push_back(entry);
        while recorder.len() > state.config().max_recorded_requests {
            recorder.pop_front();
        }
    }
    if let Some(Unanswered { hang }) = unanswered {
        tokio::time::sleep(hang).await;
        // Ends this connection's task without a response: hyper closes the socket with
        // nothing written, as a server that died or a proxy that dropped it would.
        // `resume_unwind` skips the panic hook, so nothing is printed.
        std::panic::resume_unwind(Box::new("an injected dropped connection"));
    }
    Response::from_parts(parts, Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_is_masked() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bot emulator-token".parse().unwrap());
        headers.insert("x-audit-log-reason", "why".parse().unwrap());
        let recorded = recorded_headers(&headers);
        assert_eq!(recorded["authorization"], "Bot <redacted>");
        assert_eq!(recorded["x-audit-log-reason"], "why");
    }
}
