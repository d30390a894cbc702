//! What a session reports: the [`Level`], the rest of [`ReportConfig`]
//! (thresholds, tool selection, the card's pace), and the [`SessionInfo`] a
//! reporter works for.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How much of a session is reported.
///
/// | reported                                    | quiet | normal | verbose |
/// |---------------------------------------------|:-----:|:------:|:-------:|
/// | run finished (≥ `min_run_secs`) / failed    |   ✓   |   ✓    |    ✓    |
/// | session started                             |       |   ✓    |    ✓    |
/// | live run card (edited into the summary)     |       |   ✓    |    ✓    |
/// | tool errors                                 |       |   ✓    |    ✓    |
/// | every tool call                             |       |        |    ✓    |
///
/// Quiet posts the run summary once, when the run ends. Questions and
/// approvals ("needs you") are posted by their own tools at every level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Only finished/failed runs.
    Quiet,
    /// Also the session, a live run card and tool errors.
    #[default]
    Normal,
    /// Also every tool call.
    Verbose,
}

impl Level {
    /// The level's name as users type it.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quiet => "quiet",
            Self::Normal => "normal",
            Self::Verbose => "verbose",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name that is not `quiet`, `normal` or `verbose`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown level {name:?}: use quiet, normal or verbose")]
pub struct ParseLevelError {
    /// What was given, cut to 32 characters.
    pub name: String,
}

impl FromStr for Level {
    type Err = ParseLevelError;

    /// Parses `quiet`, `normal` or `verbose`, ignoring case and surrounding
    /// space (as typed in `/discord level <l>`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "quiet" => Ok(Self::Quiet),
            "normal" => Ok(Self::Normal),
            "verbose" => Ok(Self::Verbose),
            _ => Err(ParseLevelError { name: s.chars().take(32).collect() }),
        }
    }
}

/// What a session reports to Discord. Every key is optional; unknown keys are
/// ignored.
///
/// | key                  | default  | meaning |
/// |----------------------|----------|---------|
/// | `level`              | `normal` | `quiet`: finished/failed runs only · `normal`: + session start, live run card, tool errors · `verbose`: + every tool call |
/// | `min_run_secs`       | `0`      | report a finished run only if it took at least this many seconds; failed runs are always reported (the live card appears once a run is this old) |
/// | `include_tools`      | `[]`     | if not empty, only these tools get tool-error and tool-call messages (`name`, or a prefix ending in `*`, e.g. `mcp__*`) |
/// | `exclude_tools`      | `[]`     | tools that never get tool-error or tool-call messages (same patterns); wins over `include_tools` |
/// | `card_interval_secs` | `5`      | least time between two edits of the live run card, and between two messages of coalesced tool errors or calls (at least 1) |
///
/// Subagent sessions always report as `quiet`, under their parent.
///
/// ```
/// use omp_discord_core::reporter::{Level, ReportConfig};
///
/// let config: ReportConfig = serde_json::from_str(r#"{ "level": "quiet", "exclude_tools": ["read"] }"#)?;
/// assert_eq!(config.level, Level::Quiet);
/// assert_eq!(config.card_interval_secs, 5);
/// assert!(!config.tool_selected("read") && config.tool_selected("bash"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportConfig {
    /// How much is reported.
    pub level: Level,
    /// Finished runs shorter than this are not reported (failed ones are).
    pub min_run_secs: u64,
    /// When not empty, the only tools with per-tool messages.
    pub include_tools: Vec<String>,
    /// Tools without per-tool messages.
    pub exclude_tools: Vec<String>,
    /// Least seconds between card edits and between coalesced messages.
    pub card_interval_secs: u64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            level: Level::Normal,
            min_run_secs: 0,
            include_tools: Vec::new(),
            exclude_tools: Vec::new(),
            card_interval_secs: 5,
        }
    }
}

impl ReportConfig {
    /// Whether `tool` gets per-tool messages (errors, verbose calls) under
    /// `include_tools` and `exclude_tools`. The run card and summary count
    /// every tool regardless.
    #[must_use]
    pub fn tool_selected(&self, tool: &str) -> bool {
        let matches = |pattern: &String| match pattern.strip_suffix('*') {
            Some(prefix) => tool.starts_with(prefix),
            None => pattern == tool,
        };
        (self.include_tools.is_empty() || self.include_tools.iter().any(matches))
            && !self.exclude_tools.iter().any(matches)
    }

    pub(super) fn interval_ms(&self) -> u64 {
        self.card_interval_secs.max(1).saturating_mul(1000)
    }

    pub(super) fn min_run_ms(&self) -> u64 {
        self.min_run_secs.saturating_mul(1000)
    }
}

/// The session a reporter works for.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SessionInfo {
    /// OMP's session id; it scopes the message keys.
    pub id: String,
    /// The working directory; its last component names the project.
    #[serde(default)]
    pub cwd: String,
    /// The parent session, when this one is a subagent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    /// The machine's host name.
    #[serde(default)]
    pub host: String,
    /// The model, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

impl SessionInfo {
    /// Whether this is a subagent session (it has a parent).
    #[must_use]
    pub fn is_subagent(&self) -> bool {
        self.parent_id.as_deref().is_some_and(|p| !p.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn level_parses_from_commands() {
        assert_eq!(" Verbose ".parse::<Level>(), Ok(Level::Verbose));
        let err = "loud".parse::<Level>().unwrap_err();
        assert_eq!(err.to_string(), "unknown level \"loud\": use quiet, normal or verbose");
        assert_eq!(Level::Quiet.to_string(), "quiet");
        let config: ReportConfig = serde_json::from_value(json!({ "level": "verbose", "future_key": 1 })).unwrap();
        assert_eq!(config, ReportConfig { level: Level::Verbose, ..Default::default() });
    }
}
