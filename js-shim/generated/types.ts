// Generated from the Rust types by crates/core/src/typescript.rs (ts-rs). Do not edit:
// OMP_DISCORD_WRITE_TYPES=1 cargo test -p omp-discord-core typescript

export type ClientFrame = { "type": "hello" } & Hello | { "type": "notify" } & NotifyRequest | { "type": "attach", 
/**
 * Request id, echoed in the answer.
 */
id: string, 
/**
 * The session.
 */
session: SessionRef, } | { "type": "inbound_ack", 
/**
 * Request id, echoed in the answer.
 */
id: string, 
/**
 * The Discord message id from [`ServerFrame::Inbound`].
 */
message_id: string, } | { "type": "approve", 
/**
 * Request id, echoed in the answer.
 */
id: string, 
/**
 * The session.
 */
session: SessionRef, 
/**
 * OMP's id of the tool call.
 */
tool_call_id: string, 
/**
 * The tool's name.
 */
tool: string, 
/**
 * The tool's arguments, shown (redacted) to the approver.
 */
input: JsonValue, } | { "type": "read", 
/**
 * Request id, echoed in the answer.
 */
id: string, 
/**
 * The channel or thread (a snowflake, as a string).
 */
channel_id?: string | null, 
/**
 * The session whose thread is meant when `channel_id` is absent.
 */
session?: SessionRef | null, 
/**
 * How many messages, newest first (1–100).
 */
limit: number, 
/**
 * Only messages older than this message id.
 */
before?: string | null, 
/**
 * Only messages newer than this message id (the oldest of them
 * first); not together with `before`.
 */
after?: string | null, } | { "type": "directory", 
/**
 * Request id, echoed in the answer.
 */
id: string, 
/**
 * Only this guild (a snowflake, as a string).
 */
guild_id?: string | null, } | { "type": "ask", 
/**
 * Request id, echoed in the answer.
 */
id: string, 
/**
 * The session.
 */
session: SessionRef, 
/**
 * The caller's id for this question (OMP's tool call id), unique per session.
 */
ask_id: string, 
/**
 * The question (Markdown).
 */
question: string, 
/**
 * Answers offered as buttons; empty means a free-text reply in the thread.
 */
options?: Array<string>, 
/**
 * Seconds to wait for an answer.
 */
timeout_secs: number, } | { "type": "status", 
/**
 * Request id, echoed in the answer.
 */
id: string, } | { "type": "shutdown", 
/**
 * Request id, echoed in the answer.
 */
id: string, };

export type Hello = { 
/**
 * The client's [`PROTOCOL_VERSION`].
 */
protocol: number, 
/**
 * Who is talking, e.g. `shim/0.1.0` or `cli/0.1.0`.
 */
client: string, 
/**
 * The client's process id, for status output. (Defaulted, so that a
 * hello from another version still decodes and gets `protocol_mismatch`.)
 */
pid: number, 
/**
 * Host name of the client's machine (several machines may share a sidecar).
 */
host: string, };

export type NotifyRequest = { 
/**
 * Request id, echoed in the answer.
 */
id: string, 
/**
 * The session the message belongs to.
 */
session: SessionRef, 
/**
 * The message, already built and redacted by core.
 */
message: unknown, 
/**
 * Post to this channel (a snowflake, as a string) instead of the session's
 * thread (`discord_send`, `omp-discord notify --channel`).
 */
channel_id?: string | null, 
/**
 * Remember the posted message under this key (e.g. the live run card),
 * so a later `edit` with the same key replaces it.
 */
key?: string | null, 
/**
 * Replace the message posted under `key` instead of posting (posted new
 * when there is none).
 */
edit?: boolean, 
/**
 * The client's name for this notification (at most
 * [`MAX_IDEMPOTENCY_KEY_BYTES`]), chosen once when the notification is
 * made and sent unchanged with every retry, reconnect and spool file: the
 * sidecar journals a key once, and answers a repeat with the first one's
 * `accepted` (same `seq`) and outcome. Keys are remembered as long as the
 * journal keeps the row (a day after delivery). Unique per client
 * instance, e.g. a random instance id and a counter.
 */
idempotency_key?: string | null, };

export type SessionRef = { 
/**
 * OMP's session id (`ctx.sessionManager.getSessionId()`).
 */
id: string, 
/**
 * The session's working directory.
 */
cwd?: string | null, 
/**
 * The session's first prompt, when known: it names the session's thread.
 */
prompt?: string | null, };

export type ServerFrame = { "type": "welcome", 
/**
 * The sidecar's [`PROTOCOL_VERSION`].
 */
protocol: number, 
/**
 * The sidecar's package version.
 */
version: string, 
/**
 * The `[report]` table of the sidecar's configuration: what the shim
 * reports (`null` for the defaults).
 */
report: JsonValue, 
/**
 * The approval policy (`{tools, timeout_secs}`): which tool calls wait for a person.
 */
approvals: JsonValue, 
/**
 * The machine the sidecar runs on.
 */
host?: string, 
/**
 * The spool directory the sidecar imports. A shim on another machine,
 * or with another spool directory (a forwarded socket), hands its own
 * spooled reports over itself.
 */
spool?: string, } | { "type": "accepted", 
/**
 * The request id.
 */
id: string, 
/**
 * Position in the outbox.
 */
seq: number, } | { "type": "delivered", 
/**
 * The request id.
 */
id: string, 
/**
 * Discord channel the message landed in (a snowflake, as a string).
 */
channel_id: string, 
/**
 * The Discord message id (a snowflake, as a string).
 */
message_id: string, } | { "type": "status", 
/**
 * The request id.
 */
id: string, 
/**
 * A JSON object describing the sidecar's state.
 */
status: JsonValue, } | { "type": "decision", 
/**
 * The request id.
 */
id: string, 
/**
 * Whether the tool may run.
 */
approved: boolean, 
/**
 * Who decided, or why it was denied (timeout, refusal), in words.
 */
reason: string, } | { "type": "ok", 
/**
 * The request id.
 */
id: string, } | { "type": "inbound", 
/**
 * The session it is for.
 */
session_id: string, 
/**
 * The Discord message id (a snowflake, as a string).
 */
message_id: string, 
/**
 * The author's Discord user id.
 */
author_id: string, 
/**
 * The text for OMP, already checked and attributed.
 */
text: string, 
/**
 * How it reaches a busy session (left out: a follow-up).
 */
deliver_as?: Delivery, } | { "type": "messages", 
/**
 * The request id.
 */
id: string, 
/**
 * The channel that was read.
 */
channel_id: string, 
/**
 * The messages.
 */
messages: Array<ChannelMessage>, } | { "type": "directory", 
/**
 * The request id.
 */
id: string, 
/**
 * The guilds, each with its channels.
 */
guilds: Array<GuildInfo>, } | { "type": "answer", 
/**
 * The request id.
 */
id: string, 
/**
 * Whether someone answered (else it expired or could not be asked).
 */
answered: boolean, 
/**
 * The answer, or why there is none, in words.
 */
text: string, 
/**
 * Who answered (their display name), when someone did.
 */
by?: string | null, } | { "type": "control", 
/**
 * The session it is for.
 */
session_id: string, 
/**
 * What to do.
 */
action: SessionAction, } | { "type": "notice", 
/**
 * The session it is for.
 */
session_id: string, 
/**
 * What happened and what to do.
 */
text: string, } | { "type": "shutting_down", 
/**
 * The request id.
 */
id: string, } | { "type": "error", 
/**
 * The request id, when the failing frame had a readable one.
 */
id?: string | null, 
/**
 * Stable machine-readable code.
 */
code: ErrorCode, 
/**
 * What happened and what to do, for a person.
 */
message: string, };

export type ErrorCode = "malformed_frame" | "frame_too_large" | "handshake_required" | "protocol_mismatch" | "invalid_message" | "not_configured" | "discord_rejected" | "discord_unavailable" | "unknown_channel" | "destination_held" | "forbidden" | "sidecar_unavailable" | "sidecar_timeout" | "queue_full";

export type SessionAction = "abort" | "retry";

export type Delivery = "follow_up" | "steer";

export type ChannelMessage = { 
/**
 * The message id.
 */
id: string, 
/**
 * The author's id.
 */
author_id: string, 
/**
 * The author's display name.
 */
author: string, 
/**
 * Whether the author is a bot (this bridge's own posts included).
 */
bot: boolean, 
/**
 * The text; embeds are summarised as their titles and descriptions.
 */
content: string, 
/**
 * When it was posted (ISO 8601).
 */
timestamp: string, 
/**
 * Its attached files (their content is not fetched).
 */
attachments?: Array<AttachmentInfo>, };

export type AttachmentInfo = { 
/**
 * The file's name.
 */
filename: string, 
/**
 * Its size in bytes.
 */
size: number, 
/**
 * Where Discord serves it.
 */
url: string, };

export type GuildInfo = { 
/**
 * The guild id.
 */
id: string, 
/**
 * The guild's name.
 */
name: string, 
/**
 * Its text, forum and announcement channels and active threads.
 */
channels: Array<ChannelInfo>, };

export type ChannelInfo = { 
/**
 * The channel id.
 */
id: string, 
/**
 * The channel's name.
 */
name: string, 
/**
 * `text`, `forum`, `announcement`, `thread` or `voice`.
 */
kind: string, 
/**
 * The category (or, for a thread, the channel) it sits in.
 */
parent_id?: string | null, 
/**
 * Whether this is the bridge's home channel.
 */
home?: boolean, };

export type JsonValue = number | string | boolean | Array<JsonValue> | { [key in string]: JsonValue } | null;

export type ShimSettings = { 
/**
 * The sidecar's socket (see [`paths::socket_path`]); `None` when nothing places it.
 */
socket_path: string | null, 
/**
 * Where reports no sidecar took are spooled (`<state>/spool`).
 */
spool_dir: string | null, 
/**
 * `OMP_DISCORD_BIN`: the sidecar binary to start, when set.
 */
sidecar_bin: string | null, 
/**
 * The arguments a started sidecar gets.
 */
sidecar_args: Array<string>, 
/**
 * `OMP_DISCORD_SPAWN`: whether to start a sidecar when none answers (a
 * machine using another machine's forwarded socket must not).
 */
spawn_sidecar: boolean, 
/**
 * `OMP_DISCORD_REDACT_TOOL_RESULTS`: tool results reach the model redacted.
 */
redact_tool_results: boolean, 
/**
 * Until the sidecar's welcome says otherwise: the tools named in
 * `OMP_DISCORD_APPROVE_TOOLS` wait for a person, for
 * `OMP_DISCORD_APPROVAL_TIMEOUT` seconds, so an unreachable sidecar
 * never lets a guarded call through.
 */
approvals: ApprovalPolicy, 
/**
 * This machine's name, as the sidecar and the reports show it.
 */
host: string, 
/**
 * The `client` of the shim's hello.
 */
client: string, 
/**
 * The protocol version the shim speaks.
 */
protocol: number, 
/**
 * Requests waiting for an answer at most; more are refused (`queue_full`).
 */
max_pending: number, 
/**
 * Reports kept while no sidecar answers; the oldest go first when there are more.
 */
max_kept: number, 
/**
 * The deadlines.
 */
deadlines: Deadlines, 
/**
 * What replaces a tool result that could not be checked for secrets.
 */
withheld_text: string, };

export type Deadlines = { 
/**
 * A notify, a status, an acknowledgement: [`ANSWER_WAIT_SECS`].
 */
notify_ms: number, 
/**
 * Attaching a session when it starts (OMP waits for it).
 */
attach_ms: number, 
/**
 * Connecting, starting the sidecar if needed, before giving up.
 */
connect_ms: number, 
/**
 * Each spooled report handed over at connect, until journaled.
 */
replay_ms: number, 
/**
 * How long a pending approval keeps asking a sidecar that went away (a
 * restart) before it blocks the call.
 */
approval_reconnect_ms: number, 
/**
 * The pause between two such attempts.
 */
approval_retry_ms: number, 
/**
 * How often due run-card edits and coalesced bursts are collected.
 */
tick_ms: number, 
/**
 * How long a sidecar that accepted the connection may take to answer
 * `hello`: one that does not (stopped with SIGSTOP, hung) is treated as
 * absent, and a new one started replaces it.
 */
handshake_ms: number, 
/**
 * The pause before starting a sidecar again after the last start did
 * not bring one, doubling (with jitter) up to `respawn_max_ms`; back to
 * the start once a sidecar listens. A sidecar is started again however
 * often it goes away.
 */
respawn_min_ms: number, 
/**
 * The longest pause between two starts.
 */
respawn_max_ms: number, };

export type ApprovalPolicy = { 
/**
 * Tool name patterns that need approval.
 */
tools: Array<string>, 
/**
 * Seconds to wait for a decision before denying.
 */
timeout_secs: number, };

export type OmpSession = { 
/**
 * The session id (`"unknown"` when OMP cannot tell).
 */
id: string, 
/**
 * The working directory.
 */
cwd: string, 
/**
 * The session file, when the session has one.
 */
file?: string, 
/**
 * The `parentSession` in the session file's header, when it names one.
 */
header_parent?: string, };

export type EventStep = { 
/**
 * Notify frames (without `id`) to hand to the sidecar, in order.
 */
frames: Array<ClientFrame>, 
/**
 * Hold OMP until they are journaled: a run's last reports go before OMP
 * goes on (a print-mode OMP exits right after).
 */
settle: boolean, 
/**
 * The session ended: once settled, spool what is kept and forget it.
 */
end: boolean, };

export type ToolCall = { "type": "request", 
/**
 * The request.
 */
frame: ClientFrame, 
/**
 * The deadline, in milliseconds.
 */
wait_ms: number, } | { "type": "answer", 
/**
 * What the model reads.
 */
text: string, 
/**
 * Whether the call failed.
 */
isError: boolean, };

export type ToolText = { 
/**
 * The text.
 */
text: string, 
/**
 * Whether the call failed.
 */
isError: boolean, };

export type ToolDefinition = { 
/**
 * Tool name the model calls.
 */
name: string, 
/**
 * Short human label shown in OMP's UI.
 */
label: string, 
/**
 * What the tool does, for the model.
 */
description: string, 
/**
 * JSON Schema of the arguments.
 */
parameters: JsonValue, };

export type InboundStep = "again" | "now" | "follow_up";

export type ApprovalStep = { "type": "run" } | { "type": "block", 
/**
 * What the model reads.
 */
reason: string, } | { "type": "retry", 
/**
 * The gate, updated.
 */
gate: ApprovalGate, 
/**
 * The pause, in milliseconds.
 */
after_ms: number, };

export type ApprovalGate = { 
/**
 * When the call is blocked if no decision came (milliseconds since 1970).
 */
deadline_ms: number, 
/**
 * Since when no sidecar took the request, while that lasts.
 */
unreachable_since_ms?: number | null, 
/**
 * The last failure, for the reason the call is blocked.
 */
why?: string | null, 
/**
 * How long a sidecar may stay unreachable (a restart takes seconds).
 */
reconnect_ms: number, 
/**
 * The pause before asking again.
 */
retry_ms: number, };

export type CommandStep = { "type": "status" } | { "type": "say", 
/**
 * The line.
 */
notice: Notice, };

export type Notice = { 
/**
 * The text, prefixed with `omp-discord: `.
 */
text: string, 
/**
 * `info` or `warning`.
 */
level: "info" | "warning", };

export type ClientFailure = { "kind": "queue_full" } | { "kind": "no_socket_path" } | { "kind": "no_sidecar", 
/**
 * The socket.
 */
path: string, 
/**
 * The last connect error.
 */
cause: string, } | { "kind": "timed_out", 
/**
 * Whether it was still connecting.
 */
connecting: boolean, } | { "kind": "connection_lost" } | { "kind": "failed", 
/**
 * Whether it was still connecting.
 */
connecting: boolean, 
/**
 * What happened.
 */
cause: string, };
