//! The shim's socket client in words: its own failures as error frames with
//! the client-made codes ([`ErrorCode::SidecarUnavailable`] and the like),
//! and the spool file it leaves for the next sidecar.

use serde::Deserialize;

use crate::protocol::{ClientFrame, ErrorCode, ServerFrame, decode_client_frame, encode_frame};

/// What went wrong between the shim and the sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ClientFailure {
    /// Too many requests were waiting for an answer.
    QueueFull,
    /// No environment variable places the socket.
    NoSocketPath,
    /// Nothing answered at `path` (and none could be started) in time.
    NoSidecar {
        /// The socket.
        path: String,
        /// The last connect error.
        cause: String,
    },
    /// The deadline passed while connecting, or while waiting for the answer.
    TimedOut {
        /// Whether it was still connecting.
        connecting: bool,
    },
    /// The connection closed while the request waited.
    ConnectionLost,
    /// Anything else (the sidecar refused the handshake, a frame could not be
    /// written), in the words of whoever failed.
    Failed {
        /// Whether it was still connecting.
        connecting: bool,
        /// What happened.
        cause: String,
    },
}

/// The error frame a request ends with after `failure`. While connecting,
/// nothing took the request (`sidecar_unavailable`); a request that was sent
/// may have been taken (`sidecar_timeout`).
#[must_use]
pub fn client_error(failure: &ClientFailure) -> ServerFrame {
    let (code, message) = match failure {
        ClientFailure::QueueFull => {
            (ErrorCode::QueueFull, "too many Discord requests are waiting; this one was dropped".to_owned())
        }
        ClientFailure::NoSocketPath => (
            ErrorCode::SidecarUnavailable,
            "cannot place the sidecar socket: set OMP_DISCORD_SOCKET or HOME".to_owned(),
        ),
        ClientFailure::NoSidecar { path, cause } => (
            ErrorCode::SidecarUnavailable,
            format!("no omp-discord sidecar answered at {path} ({cause}); start it with `omp-discord serve`"),
        ),
        ClientFailure::TimedOut { connecting: true } => {
            (ErrorCode::SidecarUnavailable, "timed out connecting to the omp-discord sidecar".to_owned())
        }
        ClientFailure::TimedOut { connecting: false } => {
            (ErrorCode::SidecarTimeout, "timed out waiting for the omp-discord sidecar".to_owned())
        }
        ClientFailure::ConnectionLost => {
            (ErrorCode::SidecarUnavailable, "the connection to the sidecar was lost".to_owned())
        }
        ClientFailure::Failed { connecting, cause } => {
            (if *connecting { ErrorCode::SidecarUnavailable } else { ErrorCode::SidecarTimeout }, cause.clone())
        }
    };
    ServerFrame::Error { id: None, code, message }
}

/// Whether a request that ended with `frame` never reached the sidecar, so
/// it is kept and sent again later.
#[must_use]
pub fn never_taken(frame: &ServerFrame) -> bool {
    matches!(frame, ServerFrame::Error { code, .. } if code.never_taken())
}

/// The spool file for `frames` (what no sidecar took), one line each, with
/// ids unique to this process (`pid`).
#[must_use]
pub fn spool_text(frames: Vec<ClientFrame>, pid: u32) -> String {
    frames
        .into_iter()
        .enumerate()
        .map(|(n, mut frame)| {
            frame.set_id(format!("spool-{pid}-{n}"));
            encode_frame(&frame)
        })
        .collect()
}

/// The notify frames of a spool file; torn or foreign lines are skipped.
#[must_use]
pub fn spooled_frames(text: &str) -> Vec<ClientFrame> {
    text.lines()
        .filter_map(|line| decode_client_frame(line.as_bytes()).ok())
        .filter(|frame| matches!(frame, ClientFrame::Notify(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{NotifyRequest, SessionRef};

    fn notify() -> ClientFrame {
        ClientFrame::Notify(NotifyRequest {
            id: String::new(),
            session: SessionRef { id: "s".into(), ..SessionRef::default() },
            message: crate::embed::MessagePayload { content: Some("hi".into()), ..Default::default() },
            channel_id: None,
            key: None,
            edit: false,
            idempotency_key: None,
        })
    }

    #[test]
    fn failures_say_whether_the_sidecar_took_the_request() {
        let code = |failure| match client_error(&failure) {
            ServerFrame::Error { code, .. } => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(ClientFailure::QueueFull), ErrorCode::QueueFull);
        assert_eq!(code(ClientFailure::TimedOut { connecting: true }), ErrorCode::SidecarUnavailable);
        assert_eq!(code(ClientFailure::TimedOut { connecting: false }), ErrorCode::SidecarTimeout);
        assert_eq!(code(ClientFailure::Failed { connecting: false, cause: "x".into() }), ErrorCode::SidecarTimeout);
        let missing = client_error(&ClientFailure::NoSidecar { path: "/s.sock".into(), cause: "ENOENT".into() });
        assert!(never_taken(&missing));
        let ServerFrame::Error { message, .. } = missing else { unreachable!() };
        assert!(message.contains("/s.sock (ENOENT)") && message.contains("omp-discord serve"), "{message}");
        let refused = ServerFrame::Error { id: None, code: ErrorCode::NotConfigured, message: "m".into() };
        assert!(!never_taken(&refused));
        assert!(!never_taken(&ServerFrame::Ok { id: "1".into() }));
    }

    #[test]
    fn the_spool_round_trips_notify_frames_only() {
        let text = spool_text(vec![notify(), notify()], 42);
        assert!(text.contains(r#""id":"spool-42-0""#) && text.contains(r#""id":"spool-42-1""#), "{text}");
        let torn = format!("{text}{{\"type\":\"notify\"\n{{\"type\":\"status\",\"id\":\"x\"}}\n");
        let frames = spooled_frames(&torn);
        assert_eq!(frames.len(), 2);
        assert!(frames.iter().all(|frame| matches!(frame, ClientFrame::Notify(n) if n.session.id == "s")));
    }
}
