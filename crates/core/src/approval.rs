//! Tool calls that wait for a person: which ones (the policy), the message
//! with Approve / Deny buttons, the button ids, where a request stands
//! ([`ApprovalState`]), and the decided message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use twilight_model::channel::message::Component;
use twilight_model::channel::message::component::{ActionRow, Button, ButtonStyle};

use crate::embed::{Level, MessagePayload, clean, limits};
use crate::templates::{self, ApprovalRequest};

/// Which tool calls need a person's approval.
///
/// | key | default | meaning |
/// |---|---|---|
/// | `tools` | `[]` | tool names (a trailing `*` matches a prefix, e.g. `mcp__*`) whose calls wait for Approve |
/// | `timeout_secs` | `300` | how long a call waits; then it is denied |
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(test, derive(ts_rs::TS))]
pub struct ApprovalPolicy {
    /// Tool name patterns that need approval.
    pub tools: Vec<String>,
    /// Seconds to wait for a decision before denying.
    pub timeout_secs: u64,
}

impl Default for ApprovalPolicy {
    fn default() -> Self {
        Self { tools: Vec::new(), timeout_secs: 300 }
    }
}

impl ApprovalPolicy {
    /// Whether a call of `tool` must wait for a person.
    #[must_use]
    pub fn needs_approval(&self, tool: &str) -> bool {
        self.tools.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => tool.starts_with(prefix),
            None => pattern == tool,
        })
    }
}

/// A person's answer to an approval request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Run the tool.
    Approve,
    /// Block it.
    Deny,
    /// Run it, and every later call of the same tool in the same session.
    AlwaysAllow,
}

impl Decision {
    /// Whether the tool may run.
    #[must_use]
    pub fn approves(self) -> bool {
        self != Self::Deny
    }

    /// The state an approval takes when this decision is recorded.
    #[must_use]
    pub fn state(self) -> ApprovalState {
        if self.approves() { ApprovalState::Approved } else { ApprovalState::Denied }
    }
}

/// Where an approval request stands. The first decision ends `Pending`;
/// later clicks change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalState {
    /// Waiting for a person.
    Pending,
    /// Someone approved it (or always allowed the tool).
    Approved,
    /// Someone denied it.
    Denied,
    /// No one decided before its deadline, so the call was denied.
    Expired,
}

impl ApprovalState {
    /// The state's name, as stored and logged.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for ApprovalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`ApprovalState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown approval state {name:?}")]
pub struct ParseApprovalStateError {
    /// What was given, cut to 32 characters.
    pub name: String,
}

impl FromStr for ApprovalState {
    type Err = ParseApprovalStateError;

    /// Parses a name [`ApprovalState::as_str`] gives, exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "approved" => Ok(Self::Approved),
            "denied" => Ok(Self::Denied),
            "expired" => Ok(Self::Expired),
            _ => Err(ParseApprovalStateError { name: s.chars().take(32).collect() }),
        }
    }
}

const APPROVE_PREFIX: &str = "omp:approve:";
const DENY_PREFIX: &str = "omp:deny:";
const ALWAYS_PREFIX: &str = "omp:always:";
/// Longest approval id that keeps a button's `custom_id` within Discord's 100 characters.
pub const MAX_APPROVAL_ID: usize = 100 - APPROVE_PREFIX.len();

/// The button `custom_id` for a decision on approval `id`.
#[must_use]
pub fn custom_id(decision: Decision, id: &str) -> String {
    let prefix = match decision {
        Decision::Approve => APPROVE_PREFIX,
        Decision::Deny => DENY_PREFIX,
        Decision::AlwaysAllow => ALWAYS_PREFIX,
    };
    format!("{prefix}{id}")
}

/// Reads a button's `custom_id`: the decision and the approval id, or `None`
/// for buttons that are not approvals.
#[must_use]
pub fn parse_custom_id(custom_id: &str) -> Option<(Decision, &str)> {
    if let Some(id) = custom_id.strip_prefix(APPROVE_PREFIX) {
        return Some((Decision::Approve, id));
    }
    if let Some(id) = custom_id.strip_prefix(ALWAYS_PREFIX) {
        return Some((Decision::AlwaysAllow, id));
    }
    custom_id.strip_prefix(DENY_PREFIX).map(|id| (Decision::Deny, id))
}

/// The approval message: the request embed and its two buttons.
#[must_use]
pub fn approval_message(id: &str, request: &ApprovalRequest, project: &str) -> MessagePayload {
    let mut payload = templates::approval_request(request, project);
    let button = |decision, label: &str, style| {
        Component::Button(Button {
            custom_id: Some(custom_id(decision, id)),
            disabled: false,
            emoji: None,
            label: Some(label.to_owned()),
            style,
            url: None,
            sku_id: None,
            id: None,
        })
    };
    payload.components = vec![Component::ActionRow(ActionRow {
        id: None,
        components: vec![
            button(Decision::Approve, "Approve", ButtonStyle::Success),
            button(Decision::Deny, "Deny", ButtonStyle::Danger),
            button(Decision::AlwaysAllow, &always_label(&request.tool), ButtonStyle::Secondary),
        ],
    })];
    payload
}

/// The third button: always allow this tool in this session (within Discord's 80 characters).
fn always_label(tool: &str) -> String {
    clean(&format!("Always allow {tool} here"), 80)
}

/// The approval message once decided (or expired): the same request, a
/// verdict, and no buttons, so nobody can click it again.
#[must_use]
pub fn decided_message(request: &ApprovalRequest, project: &str, verdict: &str, approved: bool) -> MessagePayload {
    let mut payload = templates::approval_request(request, project);
    if let Some(embed) = payload.embeds.first_mut() {
        embed.color = Some(if approved { Level::Success } else { Level::Error }.color());
        embed.title = Some(clean(&format!("{verdict}: {}", request.tool), limits::TITLE));
    }
    payload.components = Vec::new();
    payload
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::validate_message;
    use serde_json::json;

    #[test]
    fn states_keep_their_stored_names() {
        use ApprovalState::{Approved, Denied, Expired, Pending};
        for state in [Pending, Approved, Denied, Expired] {
            assert_eq!(state.as_str().parse::<ApprovalState>(), Ok(state));
            assert_eq!(serde_json::to_value(state).unwrap(), json!(state.as_str()));
            assert_eq!(state.to_string(), state.as_str());
        }
        assert_eq!(Pending.as_str(), "pending");
        assert_eq!("Approved".parse::<ApprovalState>().unwrap_err().to_string(), "unknown approval state \"Approved\"");
        assert_eq!(
            (Decision::Approve.state(), Decision::AlwaysAllow.state(), Decision::Deny.state()),
            (Approved, Approved, Denied)
        );
    }

    #[test]
    fn policy_matches_names_and_prefixes() {
        let policy = ApprovalPolicy { tools: vec!["bash".into(), "mcp__*".into()], ..Default::default() };
        assert!(policy.needs_approval("bash"));
        assert!(policy.needs_approval("mcp__github"));
        assert!(!policy.needs_approval("read"));
        assert!(!ApprovalPolicy::default().needs_approval("bash"));
    }

    #[test]
    fn custom_ids_round_trip_and_fit() {
        let id = "s".repeat(MAX_APPROVAL_ID);
        for decision in [Decision::Approve, Decision::Deny, Decision::AlwaysAllow] {
            let custom = custom_id(decision, &id);
            assert!(custom.len() <= 100);
            assert_eq!(parse_custom_id(&custom), Some((decision, id.as_str())));
        }
        assert_eq!(parse_custom_id("other:button"), None);
    }

    #[test]
    fn messages_are_valid_and_decided_ones_have_no_buttons() {
        let request =
            ApprovalRequest { tool: "bash".into(), input: json!({ "command": "rm -rf build" }), reason: None };
        let pending = approval_message("a1", &request, "proj");
        validate_message(&pending).unwrap();
        assert_eq!(
            serde_json::to_value(&pending).unwrap()["components"][0]["components"][1]["custom_id"],
            "omp:deny:a1"
        );
        let decided = decided_message(&request, "proj", "Approved by ana", true);
        validate_message(&decided).unwrap();
        assert!(decided.components.is_empty());
        assert!(decided.embeds[0].title.as_deref().unwrap().starts_with("Approved by ana"));
    }
}
