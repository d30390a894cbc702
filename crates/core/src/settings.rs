//! Settings read from the environment, shared by the sidecar's configuration
//! and the OMP extension: the on/off switch words, the approval timeout's
//! default, and everything the shim takes from its process environment
//! ([`ShimSettings`]), with the deadlines and bounds of its socket client.
//! Callers pass the environment in; nothing here reads it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::approval::ApprovalPolicy;
use crate::paths;
use crate::protocol::PROTOCOL_VERSION;
use crate::tools::ANSWER_WAIT_SECS;

/// How long a tool call waits for an approval unless configured, in seconds.
pub const DEFAULT_APPROVAL_TIMEOUT_SECS: u64 = 600;

/// Reads an on/off switch: `1`, `true`, `on`, `yes` or `0`, `false`, `off`,
/// `no` (any case, surrounding blanks ignored); `None` for anything else.
///
/// ```
/// use omp_discord_core::settings::parse_switch;
///
/// assert_eq!(parse_switch(" Off "), Some(false));
/// assert_eq!(parse_switch("YES"), Some(true));
/// assert_eq!(parse_switch("maybe"), None);
/// ```
#[must_use]
pub fn parse_switch(raw: &str) -> Option<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "on" | "yes" => Some(true),
        "0" | "false" | "off" | "no" => Some(false),
        _ => None,
    }
}

/// How long the shim waits for each thing, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct Deadlines {
    /// A notify, a status, an acknowledgement: [`ANSWER_WAIT_SECS`].
    pub notify_ms: u64,
    /// Attaching a session when it starts (OMP waits for it).
    pub attach_ms: u64,
    /// Connecting, starting the sidecar if needed, before giving up.
    pub connect_ms: u64,
    /// Each spooled report handed over at connect, until journaled.
    pub replay_ms: u64,
    /// How long a pending approval keeps asking a sidecar that went away (a
    /// restart) before it blocks the call.
    pub approval_reconnect_ms: u64,
    /// The pause between two such attempts.
    pub approval_retry_ms: u64,
    /// How often due run-card edits and coalesced bursts are collected.
    pub tick_ms: u64,
    /// How long a sidecar that accepted the connection may take to answer
    /// `hello`: one that does not (stopped with SIGSTOP, hung) is treated as
    /// absent, and a new one started replaces it.
    pub handshake_ms: u64,
    /// The pause before starting a sidecar again after the last start did
    /// not bring one, doubling (with jitter) up to `respawn_max_ms`; back to
    /// the start once a sidecar listens. A sidecar is started again however
    /// often it goes away.
    pub respawn_min_ms: u64,
    /// The longest pause between two starts.
    pub respawn_max_ms: u64,
}

/// Everything the shim takes from its environment, and the bounds of its
/// socket client: one call at load, so the shim holds no parsing of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ShimSettings {
    /// The sidecar's socket (see [`paths::socket_path`]); `None` when nothing places it.
    pub socket_path: Option<String>,
    /// Where reports no sidecar took are spooled (`<state>/spool`).
    pub spool_dir: Option<String>,
    /// `OMP_DISCORD_BIN`: the sidecar binary to start, when set.
    pub sidecar_bin: Option<String>,
    /// The arguments a started sidecar gets.
    pub sidecar_args: Vec<String>,
    /// `OMP_DISCORD_SPAWN`: whether to start a sidecar when none answers (a
    /// machine using another machine's forwarded socket must not).
    pub spawn_sidecar: bool,
    /// `OMP_DISCORD_REDACT_TOOL_RESULTS`: tool results reach the model redacted.
    pub redact_tool_results: bool,
    /// Until the sidecar's welcome says otherwise: the tools named in
    /// `OMP_DISCORD_APPROVE_TOOLS` wait for a person, for
    /// `OMP_DISCORD_APPROVAL_TIMEOUT` seconds, so an unreachable sidecar
    /// never lets a guarded call through.
    pub approvals: ApprovalPolicy,
    /// This machine's name, as the sidecar and the reports show it.
    pub host: String,
    /// The `client` of the shim's hello.
    pub client: String,
    /// The protocol version the shim speaks.
    pub protocol: u32,
    /// Requests waiting for an answer at most; more are refused (`queue_full`).
    pub max_pending: u32,
    /// Reports kept while no sidecar answers; the oldest go first when there are more.
    pub max_kept: u32,
    /// The deadlines.
    pub deadlines: Deadlines,
    /// What replaces a tool result that could not be checked for secrets.
    pub withheld_text: String,
}

impl ShimSettings {
    /// The settings for `env` (the process environment; empty values count
    /// as unset) on the machine `host`.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use omp_discord_core::settings::ShimSettings;
    ///
    /// let env = BTreeMap::from([("HOME".to_owned(), "/home/ana".to_owned())]);
    /// let settings = ShimSettings::from_env(&env, "box");
    /// assert_eq!(settings.socket_path.as_deref(), Some("/home/ana/.local/state/omp-discord/sidecar.sock"));
    /// assert_eq!(settings.approvals.timeout_secs, 600);
    /// assert!(settings.redact_tool_results && settings.spawn_sidecar);
    /// ```
    #[must_use]
    pub fn from_env(env: &BTreeMap<String, String>, host: &str) -> Self {
        let var = |name: &str| env.get(name).map(String::as_str).filter(|v| !v.is_empty());
        let on_unless_off = |name: &str| var(name).and_then(parse_switch) != Some(false);
        let tools = var("OMP_DISCORD_APPROVE_TOOLS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect();
        let timeout_secs = var("OMP_DISCORD_APPROVAL_TIMEOUT")
            .and_then(|raw| raw.trim().parse::<f64>().ok())
            .filter(|secs| secs.is_finite() && *secs > 0.0)
            // A fraction of a second more is still that second: the deadline only grows.
            .map_or(DEFAULT_APPROVAL_TIMEOUT_SECS, |secs| {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let whole = secs.ceil() as u64;
                whole
            });
        let (state_home, home) = (var("XDG_STATE_HOME"), var("HOME"));
        Self {
            socket_path: paths::socket_path(paths::SocketEnv {
                explicit: var("OMP_DISCORD_SOCKET"),
                runtime_dir: var("XDG_RUNTIME_DIR"),
                state_home,
                home,
            }),
            spool_dir: paths::state_dir(var("OMP_DISCORD_STATE_DIR"), state_home, home)
                .map(|dir| format!("{dir}/{}", paths::SPOOL_DIR_NAME)),
            sidecar_bin: var("OMP_DISCORD_BIN").map(str::to_owned),
            sidecar_args: ["serve", "--exit-when-idle", "600"].map(str::to_owned).to_vec(),
            spawn_sidecar: on_unless_off("OMP_DISCORD_SPAWN"),
            redact_tool_results: on_unless_off("OMP_DISCORD_REDACT_TOOL_RESULTS"),
            approvals: ApprovalPolicy { tools, timeout_secs },
            host: host.to_owned(),
            client: "shim/0.1.0".to_owned(),
            protocol: PROTOCOL_VERSION,
            max_pending: 256,
            max_kept: 1000,
            deadlines: Deadlines {
                notify_ms: ANSWER_WAIT_SECS * 1000,
                attach_ms: 3000,
                connect_ms: 4000,
                replay_ms: ANSWER_WAIT_SECS * 1000,
                approval_reconnect_ms: 30_000,
                approval_retry_ms: 500,
                tick_ms: 1000,
                handshake_ms: 2000,
                respawn_min_ms: 1000,
                respawn_max_ms: 30_000,
            },
            withheld_text: "[omp-discord withheld this output: it could not be checked for secrets]".to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> BTreeMap<String, String> {
        vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn switches_read_the_same_words_everywhere() {
        for on in ["1", "true", "ON", " yes "] {
            assert_eq!(parse_switch(on), Some(true), "{on}");
        }
        for off in ["0", "False", "off", "no\n"] {
            assert_eq!(parse_switch(off), Some(false), "{off}");
        }
        assert_eq!(parse_switch("maybe"), None);
        assert_eq!(parse_switch(""), None);
    }

    #[test]
    fn only_an_off_word_turns_redaction_and_spawning_off() {
        let settings = ShimSettings::from_env(
            &env(&[("OMP_DISCORD_REDACT_TOOL_RESULTS", " Off "), ("OMP_DISCORD_SPAWN", "no")]),
            "h",
        );
        assert!(!settings.redact_tool_results && !settings.spawn_sidecar);
        let settings = ShimSettings::from_env(
            &env(&[("OMP_DISCORD_REDACT_TOOL_RESULTS", "maybe"), ("OMP_DISCORD_SPAWN", "")]),
            "h",
        );
        assert!(settings.redact_tool_results && settings.spawn_sidecar);
    }

    #[test]
    fn the_approval_fallback_comes_from_the_environment() {
        let settings = ShimSettings::from_env(
            &env(&[("OMP_DISCORD_APPROVE_TOOLS", " bash, ,mcp__* "), ("OMP_DISCORD_APPROVAL_TIMEOUT", "60")]),
            "h",
        );
        assert_eq!(
            settings.approvals,
            ApprovalPolicy { tools: vec!["bash".into(), "mcp__*".into()], timeout_secs: 60 }
        );
        for unusable in ["", "abc", "0", "-5", "NaN"] {
            let settings = ShimSettings::from_env(&env(&[("OMP_DISCORD_APPROVAL_TIMEOUT", unusable)]), "h");
            assert_eq!(settings.approvals.timeout_secs, DEFAULT_APPROVAL_TIMEOUT_SECS, "{unusable:?}");
            assert!(settings.approvals.tools.is_empty());
        }
    }

    #[test]
    fn paths_follow_the_sidecars_rules() {
        let settings = ShimSettings::from_env(
            &env(&[("XDG_RUNTIME_DIR", "/run/user/7"), ("HOME", "/home/x"), ("OMP_DISCORD_BIN", "/opt/od")]),
            "h",
        );
        assert_eq!(settings.socket_path.as_deref(), Some("/run/user/7/omp-discord/sidecar.sock"));
        assert_eq!(settings.spool_dir.as_deref(), Some("/home/x/.local/state/omp-discord/spool"));
        assert_eq!(settings.sidecar_bin.as_deref(), Some("/opt/od"));
        let settings = ShimSettings::from_env(&env(&[("OMP_DISCORD_STATE_DIR", "/s"), ("HOME", "")]), "h");
        assert_eq!(settings.socket_path, None);
        assert_eq!(settings.spool_dir.as_deref(), Some("/s/spool"));
    }

    #[test]
    fn deadlines_agree_with_the_tools() {
        let settings = ShimSettings::from_env(&BTreeMap::new(), "h");
        assert_eq!(settings.deadlines.notify_ms, ANSWER_WAIT_SECS * 1000);
        assert_eq!(settings.protocol, PROTOCOL_VERSION);
        assert_eq!(settings.host, "h");
    }
}
