//! What goes to Discord: a readable [`ReportConfig`] and a pure, stateful
//! [`SessionReporter`] that turns one session's OMP events into [`Report`]s
//! (posts and edits of keyed messages).
//!
//! The reporter owns no clock and no timer: the caller passes `now_ms` (any
//! monotonic milliseconds) with every event and calls [`SessionReporter::tick`]
//! about once a second, which sends what was held back to respect Discord's
//! rate limits (card edits, bursts of tool errors or calls).
//!
//! What a run looks like in Discord, at the default `normal` level:
//!
//! 1. `agent_start` posts a live **run card** (key `card:<session>:<n>`),
//!    once the run is older than `min_run_secs` (at once by default);
//! 2. while tools run, the card is edited (elapsed time, current tool, tools
//!    done with counts, tokens, cost), at most once per `card_interval_secs`:
//!    changes in between are merged and the latest state wins;
//! 3. `agent_end` edits the card one last time into the "Run finished" (or
//!    failed) summary, at once; an answer too long for it follows in parts.
//!
//! The card carries the run buttons of [`crate::controls`]: Stop while the run
//! goes, Retry and Continue once it ended; the next `agent_start` edits the
//! previous card without them.
//!
//! Tool errors are posted as they happen, except that errors within one
//! interval of the last error post wait and go out together as one message.
//!
//! ```
//! use omp_discord_core::reporter::{Report, ReportConfig, SessionInfo, SessionReporter};
//! use serde_json::json;
//!
//! let session = SessionInfo { id: "s1".into(), cwd: "/src/app".into(), ..Default::default() };
//! let mut reporter = SessionReporter::new(ReportConfig::default(), session);
//! let posts = reporter.on_event(&json!({ "type": "agent_start" }), 0);
//! assert!(matches!(&posts[..], [Report::Post { key: Some(key), .. }] if key == "card:s1:1"));
//! let end = json!({ "type": "agent_end", "messages": [
//!     { "role": "assistant", "stopReason": "stop", "content": [{ "type": "text", "text": "Done." }] }
//! ]});
//! let edits = reporter.on_event(&end, 42_000);
//! assert!(matches!(&edits[..], [Report::Edit { key, .. }] if key == "card:s1:1"));
//! assert_eq!(edits[0].payload().embeds[0].title.as_deref(), Some("Run finished"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//!
//! - `config`: [`Level`] and [`ReportConfig`] (what a session reports) and
//!   [`SessionInfo`] (the session a reporter works for).
//! - `session`: [`SessionReporter`], which reads the events and keeps each
//!   run's card.
//! - `burst`: tool errors and calls held back to go out together.
//! - [`Report`] (here): a post or an edit of a keyed message, as the shim hands it on.

mod burst;
mod config;
mod session;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

use crate::embed::MessagePayload;

pub use config::{Level, ParseLevelError, ReportConfig, SessionInfo};
pub use session::SessionReporter;

/// One thing to do in Discord, as the shim hands it to the sidecar.
///
/// A `key` names a message so later [`Report::Edit`]s can replace it; keys
/// include the session id, so they are unique across sessions (a subagent's
/// messages share the parent's thread). An edit whose key was never posted
/// (e.g. the post failed) should be sent as a new post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Report {
    /// Post a new message.
    Post {
        /// Remember the message under this key, when set.
        key: Option<String>,
        /// The message.
        payload: MessagePayload,
    },
    /// Replace the message posted under `key`.
    Edit {
        /// The key of an earlier [`Report::Post`].
        key: String,
        /// The new message.
        payload: MessagePayload,
    },
}

impl Report {
    /// The message to post or to edit into.
    #[must_use]
    pub fn payload(&self) -> &MessagePayload {
        match self {
            Self::Post { payload, .. } | Self::Edit { payload, .. } => payload,
        }
    }

    /// The message's key, if it has one.
    #[must_use]
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Post { key, .. } => key.as_deref(),
            Self::Edit { key, .. } => Some(key),
        }
    }
}
