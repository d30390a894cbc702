//! The socket protocol between the OMP extension shim and `omp-discord serve`.
//!
//! Frames are JSON objects, one per line (NDJSON), tagged by `"type"`. A client
//! opens with [`ClientFrame::Hello`]; the sidecar answers [`ServerFrame::Welcome`]
//! or an [`ErrorCode::ProtocolMismatch`] error and closes. Every request carries
//! an `id` chosen by the client, echoed in the answer, so a client can keep many
//! requests in flight on one connection.
//!
//! ```
//! use omp_discord_core::protocol::{decode_client_frame, ClientFrame, PROTOCOL_VERSION};
//!
//! let line = format!(r#"{{"type":"hello","protocol":{PROTOCOL_VERSION},"client":"shim/0.1.0","pid":42,"host":"dev"}}"#);
//! let frame = decode_client_frame(line.as_bytes())?;
//! assert!(matches!(frame, ClientFrame::Hello(hello) if hello.pid == 42));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - this file: the frames, their error codes, and how a line is decoded and encoded.
//! - `tests.rs`: round trips, and decoding errors that never echo input.

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::embed::MessagePayload;

/// Version of this protocol. Bumped on any change an older peer could misread.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest frame, in bytes, including its newline. Discord caps a message with
/// ten full embeds at well under this, so a bigger frame is a client bug.
pub const MAX_FRAME_BYTES: usize = 256 * 1024;

/// Longest request id, in bytes.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// Longest [`NotifyRequest::idempotency_key`], in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 64;

/// A frame sent by a client (the shim, the CLI) to the sidecar.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ClientFrame {
    /// First frame on every connection.
    Hello(Hello),
    /// Post a message built by core to the session's Discord destination.
    Notify(NotifyRequest),
    /// This connection serves `session`: replies written in its Discord thread
    /// come here as [`ServerFrame::Inbound`] (also those missed while detached).
    Attach {
        /// Request id, echoed in the answer.
        id: String,
        /// The session.
        session: SessionRef,
    },
    /// An inbound message was handed to OMP; it will not be sent again.
    InboundAck {
        /// Request id, echoed in the answer.
        id: String,
        /// The Discord message id from [`ServerFrame::Inbound`].
        message_id: String,
    },
    /// A tool call waits for a person's decision in the session's thread.
    /// Asking again for the same call (after a reconnect) waits for the same
    /// request instead of posting a second one.
    Approve {
        /// Request id, echoed in the answer.
        id: String,
        /// The session.
        session: SessionRef,
        /// OMP's id of the tool call.
        tool_call_id: String,
        /// The tool's name.
        tool: String,
        /// The tool's arguments, shown (redacted) to the approver.
        #[serde(default)]
        input: serde_json::Value,
    },
    /// Read recent messages of a channel, or of the session's thread when no
    /// channel is named (`discord_read`).
    Read {
        /// Request id, echoed in the answer.
        id: String,
        /// The channel or thread (a snowflake, as a string).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel_id: Option<String>,
        /// The session whose thread is meant when `channel_id` is absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session: Option<SessionRef>,
        /// How many messages, newest first (1–100).
        #[serde(default = "default_read_limit")]
        limit: u8,
        /// Only messages older than this message id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<String>,
        /// Only messages newer than this message id (the oldest of them
        /// first); not together with `before`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
    },
    /// List the guilds the bot is in, each with the channels it can see
    /// (`discord_channels`, `discord_guilds`).
    Directory {
        /// Request id, echoed in the answer.
        id: String,
        /// Only this guild (a snowflake, as a string).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        guild_id: Option<String>,
    },
    /// Ask the people in the session's thread a question and wait for the
    /// first allowed answer (`discord_ask`). Asking again for the same
    /// `ask_id` (after a reconnect) waits for the same question.
    Ask {
        /// Request id, echoed in the answer.
        id: String,
        /// The session.
        session: SessionRef,
        /// The caller's id for this question (OMP's tool call id), unique per session.
        ask_id: String,
        /// The question (Markdown).
        question: String,
        /// Answers offered as buttons; empty means a free-text reply in the thread.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        options: Vec<String>,
        /// Seconds to wait for an answer.
        timeout_secs: u64,
    },
    /// Ask for the sidecar's state.
    Status {
        /// Request id, echoed in the answer.
        id: String,
    },
    /// Ask the sidecar to finish in-flight work and exit.
    Shutdown {
        /// Request id, echoed in the answer.
        id: String,
    },
}

impl ClientFrame {
    /// Sets the request id a transport chose (every frame but `hello` has one).
    pub fn set_id(&mut self, new_id: String) {
        match self {
            Self::Hello(_) => {}
            Self::Notify(NotifyRequest { id, .. })
            | Self::Attach { id, .. }
            | Self::InboundAck { id, .. }
            | Self::Approve { id, .. }
            | Self::Read { id, .. }
            | Self::Directory { id, .. }
            | Self::Ask { id, .. }
            | Self::Status { id }
            | Self::Shutdown { id } => *id = new_id,
        }
    }
}

/// The opening frame of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Hello {
    /// The client's [`PROTOCOL_VERSION`].
    pub protocol: u32,
    /// Who is talking, e.g. `shim/0.1.0` or `cli/0.1.0`.
    #[serde(default)]
    pub client: String,
    /// The client's process id, for status output. (Defaulted, so that a
    /// hello from another version still decodes and gets `protocol_mismatch`.)
    #[serde(default)]
    pub pid: u32,
    /// Host name of the client's machine (several machines may share a sidecar).
    #[serde(default)]
    pub host: String,
}

/// The OMP session a request belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct SessionRef {
    /// OMP's session id (`ctx.sessionManager.getSessionId()`).
    pub id: String,
    /// The session's working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// The session's first prompt, when known: it names the session's thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
}

/// A request to post one message.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct NotifyRequest {
    /// Request id, echoed in the answer.
    pub id: String,
    /// The session the message belongs to.
    pub session: SessionRef,
    /// The message, already built and redacted by core.
    #[cfg_attr(test, ts(type = "unknown"))]
    pub message: MessagePayload,
    /// Post to this channel (a snowflake, as a string) instead of the session's
    /// thread (`discord_send`, `omp-discord notify --channel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_id: Option<String>,
    /// Remember the posted message under this key (e.g. the live run card),
    /// so a later `edit` with the same key replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Replace the message posted under `key` instead of posting (posted new
    /// when there is none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub edit: bool,
    /// The client's name for this notification (at most
    /// [`MAX_IDEMPOTENCY_KEY_BYTES`]), chosen once when the notification is
    /// made and sent unchanged with every retry, reconnect and spool file: the
    /// sidecar journals a key once, and answers a repeat with the first one's
    /// `accepted` (same `seq`) and outcome. Keys are remembered as long as the
    /// journal keeps the row (a day after delivery). Unique per client
    /// instance, e.g. a random instance id and a counter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// A frame sent by the sidecar to a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ServerFrame {
    /// Answer to [`ClientFrame::Hello`].
    Welcome {
        /// The sidecar's [`PROTOCOL_VERSION`].
        protocol: u32,
        /// The sidecar's package version.
        version: String,
        /// The `[report]` table of the sidecar's configuration: what the shim
        /// reports (`null` for the defaults).
        #[serde(default)]
        report: serde_json::Value,
        /// The approval policy (`{tools, timeout_secs}`): which tool calls wait for a person.
        #[serde(default)]
        approvals: serde_json::Value,
        /// The machine the sidecar runs on.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        host: String,
        /// The spool directory the sidecar imports. A shim on another machine,
        /// or with another spool directory (a forwarded socket), hands its own
        /// spooled reports over itself.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        spool: String,
    },
    /// The message is journaled in the sidecar's outbox: it will be delivered
    /// even if the client, the sidecar or Discord goes away now. `delivered`
    /// (or an error) follows on the same connection.
    Accepted {
        /// The request id.
        id: String,
        /// Position in the outbox.
        seq: i64,
    },
    /// The message was posted.
    Delivered {
        /// The request id.
        id: String,
        /// Discord channel the message landed in (a snowflake, as a string).
        channel_id: String,
        /// The Discord message id (a snowflake, as a string).
        message_id: String,
    },
    /// Answer to [`ClientFrame::Status`].
    Status {
        /// The request id.
        id: String,
        /// A JSON object describing the sidecar's state.
        status: serde_json::Value,
    },
    /// Answer to [`ClientFrame::Approve`].
    Decision {
        /// The request id.
        id: String,
        /// Whether the tool may run.
        approved: bool,
        /// Who decided, or why it was denied (timeout, refusal), in words.
        reason: String,
    },
    /// A request was done (answer to `attach` and `inbound_ack`).
    Ok {
        /// The request id.
        id: String,
    },
    /// Someone allowed to drive the session wrote in its thread. Sent until
    /// acknowledged with [`ClientFrame::InboundAck`], in Discord's order.
    Inbound {
        /// The session it is for.
        session_id: String,
        /// The Discord message id (a snowflake, as a string).
        message_id: String,
        /// The author's Discord user id.
        author_id: String,
        /// The text for OMP, already checked and attributed.
        text: String,
        /// How it reaches a busy session (left out: a follow-up).
        #[serde(default, skip_serializing_if = "crate::inbound::Delivery::is_follow_up")]
        deliver_as: crate::inbound::Delivery,
    },
    /// Answer to [`ClientFrame::Read`]: newest first (also when read `after`).
    Messages {
        /// The request id.
        id: String,
        /// The channel that was read.
        channel_id: String,
        /// The messages.
        messages: Vec<ChannelMessage>,
    },
    /// Answer to [`ClientFrame::Directory`].
    Directory {
        /// The request id.
        id: String,
        /// The guilds, each with its channels.
        guilds: Vec<GuildInfo>,
    },
    /// Answer to [`ClientFrame::Ask`].
    Answer {
        /// The request id.
        id: String,
        /// Whether someone answered (else it expired or could not be asked).
        answered: bool,
        /// The answer, or why there is none, in words.
        text: String,
        /// Who answered (their display name), when someone did.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// Someone allowed asked that a session stop its current run (`/omp abort`,
    /// the run card's Stop) or run its last prompt again (Retry). A client
    /// ignores actions it does not know, so new actions need no version bump.
    Control {
        /// The session it is for.
        session_id: String,
        /// What to do.
        action: SessionAction,
    },
    /// Something the people at an attached session's terminal should hear
    /// once, pushed unasked (e.g. replies from Discord stopped for good).
    Notice {
        /// The session it is for.
        session_id: String,
        /// What happened and what to do.
        text: String,
    },
    /// Answer to [`ClientFrame::Shutdown`]: the sidecar is stopping.
    ShuttingDown {
        /// The request id.
        id: String,
    },
    /// A request failed, or a frame could not be read.
    Error {
        /// The request id, when the failing frame had a readable one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        /// Stable machine-readable code.
        code: ErrorCode,
        /// What happened and what to do, for a person.
        message: String,
    },
}

impl ServerFrame {
    /// The request this frame answers; `None` for frames pushed unasked
    /// (`welcome`, `inbound`, `control`) and errors about unreadable frames.
    #[must_use]
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::Accepted { id, .. }
            | Self::Delivered { id, .. }
            | Self::Status { id, .. }
            | Self::Decision { id, .. }
            | Self::Ok { id }
            | Self::Messages { id, .. }
            | Self::Directory { id, .. }
            | Self::Answer { id, .. }
            | Self::ShuttingDown { id } => Some(id),
            Self::Error { id, .. } => id.as_deref(),
            Self::Welcome { .. } | Self::Inbound { .. } | Self::Control { .. } | Self::Notice { .. } => None,
        }
    }

    /// Makes this frame the answer to request `new_id` (an outcome shared by
    /// every client that sent the same notification).
    pub fn set_request_id(&mut self, new_id: &str) {
        match self {
            Self::Accepted { id, .. }
            | Self::Delivered { id, .. }
            | Self::Status { id, .. }
            | Self::Decision { id, .. }
            | Self::Ok { id }
            | Self::Messages { id, .. }
            | Self::Directory { id, .. }
            | Self::Answer { id, .. }
            | Self::ShuttingDown { id } => new_id.clone_into(id),
            Self::Error { id, .. } => *id = Some(new_id.to_owned()),
            Self::Welcome { .. } | Self::Inbound { .. } | Self::Control { .. } | Self::Notice { .. } => {}
        }
    }
}

/// What [`ServerFrame::Control`] asks of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum SessionAction {
    /// Stop the current run (OMP's `ctx.abort()`).
    Abort,
    /// Send the session's last prompt again (the run card's Retry).
    Retry,
}

fn default_read_limit() -> u8 {
    20
}

/// One Discord message, as `discord_read` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ChannelMessage {
    /// The message id.
    pub id: String,
    /// The author's id.
    pub author_id: String,
    /// The author's display name.
    pub author: String,
    /// Whether the author is a bot (this bridge's own posts included).
    pub bot: bool,
    /// The text; embeds are summarised as their titles and descriptions.
    pub content: String,
    /// When it was posted (ISO 8601).
    pub timestamp: String,
    /// Its attached files (their content is not fetched).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<AttachmentInfo>,
}

/// A file attached to a Discord message, as `discord_read` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct AttachmentInfo {
    /// The file's name.
    pub filename: String,
    /// Its size in bytes.
    pub size: u64,
    /// Where Discord serves it.
    pub url: String,
}

/// A guild and the channels the bot can see in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct GuildInfo {
    /// The guild id.
    pub id: String,
    /// The guild's name.
    pub name: String,
    /// Its text, forum and announcement channels and active threads.
    #[serde(default)]
    pub channels: Vec<ChannelInfo>,
}

/// A channel as `discord_channels` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ChannelInfo {
    /// The channel id.
    pub id: String,
    /// The channel's name.
    pub name: String,
    /// `text`, `forum`, `announcement`, `thread` or `voice`.
    pub kind: String,
    /// The category (or, for a thread, the channel) it sits in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// Whether this is the bridge's home channel.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub home: bool,
}

/// Stable error codes carried by [`ServerFrame::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
#[cfg_attr(test, derive(ts_rs::TS))]
pub enum ErrorCode {
    /// The line was not a valid frame.
    MalformedFrame,
    /// The line exceeded [`MAX_FRAME_BYTES`].
    FrameTooLarge,
    /// The first frame was not `hello`.
    HandshakeRequired,
    /// Client and sidecar speak different protocol versions.
    ProtocolMismatch,
    /// The message breaks a Discord limit.
    InvalidMessage,
    /// The sidecar has no Discord destination configured.
    NotConfigured,
    /// Discord refused the request (4xx); the message says why.
    DiscordRejected,
    /// Discord could not be reached or kept failing.
    DiscordUnavailable,
    /// The channel does not exist or the bot cannot see it.
    UnknownChannel,
    /// Discord refused the destination for missing access or permissions; the
    /// message stays queued and is sent once the bot may post there (after a
    /// `accepted`, like `discord_unavailable`, it is not a failure for good).
    DestinationHeld,
    /// The peer runs as another user than the sidecar; the connection is closed.
    Forbidden,
    /// No sidecar answered (none running, none could be started, or the
    /// connection was lost). Made by the client, never sent by the sidecar.
    SidecarUnavailable,
    /// The sidecar did not answer before the request's deadline. Made by the client.
    SidecarTimeout,
    /// Too many requests were waiting; this one was dropped. Made by the client.
    QueueFull,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedFrame => "malformed_frame",
            Self::FrameTooLarge => "frame_too_large",
            Self::HandshakeRequired => "handshake_required",
            Self::ProtocolMismatch => "protocol_mismatch",
            Self::InvalidMessage => "invalid_message",
            Self::NotConfigured => "not_configured",
            Self::DiscordRejected => "discord_rejected",
            Self::DiscordUnavailable => "discord_unavailable",
            Self::UnknownChannel => "unknown_channel",
            Self::DestinationHeld => "destination_held",
            Self::Forbidden => "forbidden",
            Self::SidecarUnavailable => "sidecar_unavailable",
            Self::SidecarTimeout => "sidecar_timeout",
            Self::QueueFull => "queue_full",
        }
    }

    /// Whether the sidecar never took the request (a client-made code): it
    /// can be sent again later, and the model reads that Discord is unavailable.
    #[must_use]
    pub fn never_taken(self) -> bool {
        matches!(self, Self::SidecarUnavailable | Self::SidecarTimeout | Self::QueueFull)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A frame that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame is longer than [`MAX_FRAME_BYTES`].
    #[error("the frame is {bytes} bytes long, but the max is {max}")]
    TooLarge {
        /// Length of the frame.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The frame is not valid JSON or does not match any frame type.
    #[error("the frame is not a valid protocol frame: {detail}")]
    Malformed {
        /// The decoder's explanation (position and expected shape, never content).
        detail: String,
        /// The request id, if one could be read, so the error can be matched.
        id: Option<String>,
    },
}

impl FrameError {
    /// The wire code for this error.
    #[must_use]
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge { .. } => ErrorCode::FrameTooLarge,
            Self::Malformed { .. } => ErrorCode::MalformedFrame,
        }
    }

    /// The request id of the bad frame, if it had one.
    #[must_use]
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Self::TooLarge { .. } => None,
            Self::Malformed { id, .. } => id.as_deref(),
        }
    }
}

/// Decodes one client frame from a line (without or with its trailing newline).
///
/// # Errors
///
/// [`FrameError::TooLarge`] past [`MAX_FRAME_BYTES`], [`FrameError::Malformed`]
/// when the line is not JSON, has an unknown `type`, misses a field, or carries
/// a request id longer than [`MAX_REQUEST_ID_BYTES`].
pub fn decode_client_frame(line: &[u8]) -> Result<ClientFrame, FrameError> {
    decode(line)
}

/// Decodes one server frame from a line.
///
/// # Errors
///
/// As [`decode_client_frame`].
pub fn decode_server_frame(line: &[u8]) -> Result<ServerFrame, FrameError> {
    decode(line)
}

fn decode<T: serde::de::DeserializeOwned>(line: &[u8]) -> Result<T, FrameError> {
    if line.len() > MAX_FRAME_BYTES {
        return Err(FrameError::TooLarge { bytes: line.len(), max: MAX_FRAME_BYTES });
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|err| FrameError::Malformed { detail: describe_json_error(&err), id: None })?;
    let id = value.get("id").and_then(|id| id.as_str()).map(str::to_owned);
    if let Some(id) = id.as_ref().filter(|id| id.len() > MAX_REQUEST_ID_BYTES) {
        return Err(FrameError::Malformed {
            detail: format!("the request id is {} bytes long, but the max is {MAX_REQUEST_ID_BYTES}", id.len()),
            id: None,
        });
    }
    let key_bytes = value.get("idempotency_key").and_then(|key| key.as_str()).map_or(0, str::len);
    if key_bytes > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(FrameError::Malformed {
            detail: format!(
                "the idempotency_key is {key_bytes} bytes long, but the max is {MAX_IDEMPOTENCY_KEY_BYTES}"
            ),
            id,
        });
    }
    serde_json::from_value(value).map_err(|err| FrameError::Malformed { detail: describe_json_error(&err), id })
}

/// serde_json's messages name the position and the expected shape; keep them,
/// but never echo input text (it could hold a secret).
fn describe_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof => {
            format!("invalid JSON at line {} column {}", err.line(), err.column())
        }
        Category::Data | Category::Io => {
            let text = err.to_string();
            let text = text.split(" at line ").next().unwrap_or(&text);
            // serde quotes what it read: `invalid type: string "…"` and ``unknown variant `…` ``
            // can carry a value from the frame, which may be a secret. Keep the shape only.
            without_quoted_values(text)
        }
    }
}

/// serde's message with each quoted value (`"…"`) dropped and each named
/// identifier (`` `…` ``) kept only when it looks like a field or tag name.
fn without_quoted_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest.as_bytes()[start] as char;
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 1..].find(quote) else {
            rest = &rest[start..];
            break;
        };
        let inner = &rest[start + 1..start + 1 + len];
        let name_like = inner.len() <= 32 && inner.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
        match quote {
            '`' if name_like => out.push_str(&format!("`{inner}`")),
            '`' => out.push_str("`…`"),
            _ => out.push_str("\"…\""),
        }
        rest = &rest[start + 2 + len..];
    }
    out.push_str(rest);
    out
}

/// Encodes a frame as one NDJSON line, newline included.
///
/// # Panics
///
/// Never: frames contain only strings, numbers and maps with string keys.
#[must_use]
pub fn encode_frame<T: Serialize>(frame: &T) -> String {
    let mut line = serde_json::to_string(frame).expect("frames always serialize to JSON");
    line.push('\n');
    line
}

#[cfg(test)]
mod tests;
