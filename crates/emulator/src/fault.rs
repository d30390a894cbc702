//! Fault injection: errors, broken answers, dropped and stalled connections, latency and a
//! revoked token for REST; drops, reconnects and stalls for the gateway. Driven by
//! `POST /_emulator/faults`.

use std::time::Duration;

use axum::http::StatusCode;
use serde::Deserialize;

use crate::error::ApiError;

/// One injected REST failure rule.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpFault {
    /// How the request fails (default: answered with `status`).
    #[serde(default)]
    pub(crate) mode: FaultMode,
    /// The status to answer with in the `error` mode: 5xx, or 429 (with Discord's rate limit
    /// body). Unused by the other modes.
    #[serde(default = "default_status")]
    pub(crate) status: u16,
    /// For `stall`: how long the request hangs before its connection is closed.
    #[serde(default = "default_stall_ms")]
    pub(crate) stall_ms: u64,
    /// Fail this many matching requests, then stop.
    #[serde(default)]
    pub(crate) count: Option<u64>,
    /// Fail this fraction (0–1) of matching requests.
    #[serde(default)]
    pub(crate) fraction: Option<f64>,
    /// Only requests whose path (after `/api/v10`) starts with this.
    #[serde(default)]
    pub(crate) path_prefix: Option<String>,
    /// Only requests with this method.
    #[serde(default)]
    pub(crate) method: Option<String>,
    /// For 429: seconds in `retry_after`.
    #[serde(default = "default_retry_after")]
    pub(crate) retry_after: f64,
    /// For 429: whether it is a global limit.
    #[serde(default)]
    pub(crate) global: bool,
    /// For a non-global 429: `user` (a route's bucket ran out; the default), `shared` (a
    /// shared resource's limit), or `none`: no rate limit headers at all, as when something in
    /// front of Discord (Cloudflare) refuses the request.
    #[serde(default)]
    pub(crate) scope: Option<String>,
}

fn default_retry_after() -> f64 {
    1.0
}

fn default_status() -> u16 {
    500
}

fn default_stall_ms() -> u64 {
    60_000
}

/// How an injected REST fault looks on the wire.
#[derive(Clone, Copy, Debug, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub(crate) enum FaultMode {
    /// An error status with Discord's error body (the request has no effect).
    #[default]
    Error,
    /// The request takes effect, but its answer's body is cut off: invalid JSON under its
    /// usual status and headers, as when a proxy truncates it.
    Malformed,
    /// The request takes effect, then the connection closes without an answer: the client
    /// cannot know whether it happened.
    Drop,
    /// No answer and no effect: the request hangs for `stall_ms`, then the connection closes.
    Stall,
}

/// What an injected fault does to one request.
#[derive(Debug)]
pub(crate) enum Injected {
    /// Answer with this error instead of handling the request.
    Error(ApiError),
    /// Handle the request, then cut its answer's body.
    Malformed,
    /// Handle the request, then close the connection unanswered.
    Drop,
    /// Hang this long, then close the connection unanswered.
    Stall(Duration),
}

/// Marks a response the recorder must not send: it records the request as unanswered
/// (status 0), waits `hang`, then closes the connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unanswered {
    pub(crate) hang: Duration,
}
/// A command to every open gateway connection.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum GatewayFault {
    /// Close the TCP connection without a close frame.
    Drop,
    /// Send op 7 RECONNECT, then close with 4000 like Discord.
    Reconnect,
    /// Send op 9 INVALID_SESSION.
    InvalidSession {
        /// Whether the client may RESUME.
        resumable: bool,
    },
    /// Close with this close code.
    Close {
        /// The close code (4000–4014, or 1000/1001).
        code: u16,
    },
    /// Internal: re-check for queued dispatches (after a stall ends).
    #[serde(skip)]
    Wake,
}

/// The fault state.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pub(crate) http: Vec<HttpFault>,
    pub(crate) latency: Duration,
    pub(crate) token_revoked: bool,
    /// The gateway neither ACKs heartbeats nor sends dispatches while set.
    pub(crate) gateway_stalled: bool,
}

impl Faults {
    /// The injected fault for this request, if a rule matches; consumes one count.
    pub(crate) fn take(&mut self, method: &str, api_path: &str) -> Option<Injected> {
        let index = self.http.iter().position(|f| {
            f.path_prefix.as_deref().is_none_or(|p| api_path.starts_with(p))
                && f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
                && f.fraction.is_none_or(|p| fastrand::f64() < p)
        })?;
        let fault = self.http[index].clone();
        if let Some(count) = &mut self.http[index].count {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.http.remove(index);
            }
        }
        match fault.mode {
            FaultMode::Error => {}
            FaultMode::Malformed => return Some(Injected::Malformed),
            FaultMode::Drop => return Some(Injected::Drop),
            FaultMode::Stall => return Some(Injected::Stall(Duration::from_millis(fault.stall_ms))),
        }
        let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Some(Injected::Error(if status == StatusCode::TOO_MANY_REQUESTS {
            crate::ratelimit::injected_429(fault.retry_after, fault.global, fault.scope.as_deref().unwrap_or("user"))
        } else {
            ApiError::server_error(status)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out_and_prefixes_filter() {
        let mut faults = Faults::default();
        faults.http.push(HttpFault {
            mode: FaultMode::Error,
            status: 503,
            stall_ms: 0,
            count: Some(2),
            fraction: None,
            path_prefix: Some("/channels".to_owned()),
            method: Some("POST".to_owned()),
            retry_after: 1.0,
            global: false,
            scope: None,
        });
        assert!(faults.take("GET", "/channels/1/messages").is_none());
        assert!(faults.take("POST", "/users/@me").is_none());
        assert!(matches!(faults.take("POST", "/channels/1/messages"), Some(Injected::Error(e)) if e.status == 503));
        assert!(faults.take("POST", "/channels/1/messages").is_some());
        assert!(faults.take("POST", "/channels/1/messages").is_none());
    }
}
