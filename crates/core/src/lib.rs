//! Pure logic shared by the omp-discord extension (compiled to wasm) and the
//! native sidecar: the socket protocol, Discord limits and embed building,
//! secret redaction, and the JSON schemas of the model's Discord tools.
//!
//! Nothing in this crate performs I/O or reads a clock: callers pass time and
//! configuration in. That keeps every rule testable in milliseconds and lets
//! the wasm build and the sidecar agree byte for byte.
//!
//! # Layout
//!
//! - [`ask`]: questions to the people in a session's thread, with answer buttons.
//! - [`commands`]: the `/omp` slash command: definition, parsing, replies.
//! - [`tools`]: the model's Discord tools: arguments to requests, answers to text.
//! - [`controls`]: Stop / Retry / Continue buttons on the run card: ids, buttons, the modal, staleness.
//! - [`approval`]: which tool calls wait for a person, and the messages with their buttons.
//! - [`protocol`]: NDJSON frames between the shim and the sidecar, versioned.
//! - [`embed`]: Discord's limits as constants, embed builders, payload validation.
//! - [`redact`]: secret detection and replacement for everything bound for Discord.
//! - [`schema`]: JSON Schemas of the tools the model sees.
//! - [`thread`]: a session's thread: its name and starter message.
//! - [`tool_result`]: redaction of tool results before the model sees them.
//! - [`paths`]: where the sidecar's socket lives.
//! - [`settings`]: settings from the environment: on/off switches, the shim's settings and deadlines.
//! - [`shim`]: the OMP extension's decisions: sessions and subagents, reports as notify frames, replies, approvals, `/discord`.
//! - [`projects`]: project directories (globs) and the channel each reports to.
//! - [`invite`]: the permissions each feature needs and the bot's invite URL.
//! - [`inbound`]: checking and shaping replies from Discord before OMP sees them.
//! - [`event`]: the OMP event payloads the extension turns into notifications.
//! - [`gateway`]: gateway close codes that end the connection, and what to do about each.
//! - [`reporter`]: what a session reports (levels, thresholds, tools) and its live run card.
//! - [`templates`]: the messages posted for a session, a run, tool errors and calls, an approval.
//! - [`markdown`]: safe Markdown: escaping, code blocks nothing breaks out of.
//! - [`format`](mod@format): how values read for people: durations, tokens, costs, tool inputs.
//! - [`split`]: output too long for one message, in numbered parts.

pub mod approval;
pub mod ask;
pub mod commands;
pub mod controls;
pub mod embed;
pub mod event;
pub mod format;
pub mod gateway;
pub mod inbound;
pub mod invite;
pub mod markdown;
pub mod paths;
pub mod projects;
pub mod protocol;
pub mod redact;
pub mod reporter;
pub mod schema;
pub mod settings;
pub mod shim;
pub mod split;
pub mod templates;
pub mod thread;
pub mod tool_result;
pub mod tools;

#[cfg(test)]
mod typescript;
