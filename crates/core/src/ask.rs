//! Questions the model asks the people in a session's thread (`discord_ask`):
//! the question message (with a button per offered answer), the button ids,
//! where a question stands ([`AskState`]), and the message once answered or
//! expired.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use twilight_model::channel::message::Component;
use twilight_model::channel::message::component::{ActionRow, Button, ButtonStyle};

use crate::embed::{Level, MessagePayload, clean, empty_embed, footer, limits, single_embed};

const PREFIX: &str = "omp:ask:";
/// Most answers offered as buttons: five rows of five, Discord's maximum.
pub const MAX_OPTIONS: usize = 25;
/// Longest button label Discord accepts, in characters.
pub const MAX_OPTION_CHARS: usize = 80;
/// Longest question, in characters (an embed description).
pub const MAX_QUESTION_CHARS: usize = limits::DESCRIPTION;

/// The button `custom_id` for answer `option` (an index) of question `ask_id`.
#[must_use]
pub fn custom_id(ask_id: i64, option: usize) -> String {
    format!("{PREFIX}{ask_id}:{option}")
}

/// Reads a button's `custom_id`: the question and the chosen answer's index,
/// or `None` for buttons that are not answers.
#[must_use]
pub fn parse_custom_id(custom_id: &str) -> Option<(i64, usize)> {
    let (ask, option) = custom_id.strip_prefix(PREFIX)?.split_once(':')?;
    Some((ask.parse().ok()?, option.parse().ok()?))
}

/// The question as posted: an embed, and the offered answers as buttons (or
/// an invitation to reply in the thread when there are none).
#[must_use]
pub fn question_message(ask_id: i64, question: &str, options: &[String], project: &str) -> MessagePayload {
    let mut embed = empty_embed(Level::Warning);
    embed.title = Some("❓ The agent asks".to_owned());
    let hint = if options.is_empty() { "\n\n*Reply in this thread to answer.*" } else { "" };
    embed.description = Some(clean(question, MAX_QUESTION_CHARS.saturating_sub(hint.chars().count())) + hint);
    embed.footer = Some(footer(project));
    let mut payload = single_embed(embed);
    let buttons: Vec<Component> = options
        .iter()
        .take(MAX_OPTIONS)
        .enumerate()
        .map(|(index, label)| {
            Component::Button(Button {
                custom_id: Some(custom_id(ask_id, index)),
                disabled: false,
                emoji: None,
                label: Some(option_label(label)),
                style: ButtonStyle::Primary,
                url: None,
                sku_id: None,
                id: None,
            })
        })
        .collect();
    payload.components =
        buttons.chunks(5).map(|row| Component::ActionRow(ActionRow { id: None, components: row.to_vec() })).collect();
    payload
}

/// A button label: cleaned, cut to Discord's 80 characters, never empty.
#[must_use]
pub fn option_label(label: &str) -> String {
    let label = clean(label.trim(), MAX_OPTION_CHARS);
    if label.is_empty() { "(empty)".to_owned() } else { label }
}

/// The question once settled: the same text, the outcome, no buttons.
#[must_use]
pub fn settled_message(question: &str, outcome: &str, answered: bool, project: &str) -> MessagePayload {
    let mut embed = empty_embed(if answered { Level::Success } else { Level::Error });
    embed.title = Some(clean(outcome, limits::TITLE));
    embed.description = Some(clean(question, MAX_QUESTION_CHARS));
    embed.footer = Some(footer(project));
    single_embed(embed)
}

/// Where a question stands. The first answer (or its deadline) ends
/// `Pending`; later answers change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AskState {
    /// Waiting for an answer.
    Pending,
    /// Someone answered.
    Answered,
    /// No one answered before its deadline.
    Expired,
}

impl AskState {
    /// The state's name, as stored and logged.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Answered => "answered",
            Self::Expired => "expired",
        }
    }
}

impl fmt::Display for AskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not an [`AskState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown question state {name:?}")]
pub struct ParseAskStateError {
    /// What was given, cut to 32 characters.
    pub name: String,
}

impl FromStr for AskState {
    type Err = ParseAskStateError;

    /// Parses a name [`AskState::as_str`] gives, exactly.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(Self::Pending),
            "answered" => Ok(Self::Answered),
            "expired" => Ok(Self::Expired),
            _ => Err(ParseAskStateError { name: s.chars().take(32).collect() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::validate_message;

    #[test]
    fn states_keep_their_stored_names() {
        for state in [AskState::Pending, AskState::Answered, AskState::Expired] {
            assert_eq!(state.as_str().parse::<AskState>(), Ok(state));
            assert_eq!(serde_json::to_value(state).unwrap(), serde_json::json!(state.as_str()));
            assert_eq!(state.to_string(), state.as_str());
        }
        assert_eq!(AskState::Answered.as_str(), "answered");
        assert_eq!("done".parse::<AskState>().unwrap_err().to_string(), "unknown question state \"done\"");
    }

    #[test]
    fn custom_ids_round_trip_and_fit() {
        let custom = custom_id(i64::MAX, MAX_OPTIONS - 1);
        assert!(custom.len() <= 100);
        assert_eq!(parse_custom_id(&custom), Some((i64::MAX, MAX_OPTIONS - 1)));
        assert_eq!(parse_custom_id("omp:approve:1"), None);
        assert_eq!(parse_custom_id("omp:ask:x:1"), None);
    }

    #[test]
    fn options_become_rows_of_at_most_five_buttons() {
        let options: Vec<String> = (0..30).map(|n| format!("option {n} {}", "x".repeat(100))).collect();
        let message = question_message(7, "Which one?", &options, "proj");
        validate_message(&message).unwrap();
        let json = serde_json::to_value(&message).unwrap();
        let rows = json["components"].as_array().unwrap();
        assert_eq!(rows.len(), 5);
        assert!(rows.iter().all(|r| r["components"].as_array().unwrap().len() == 5));
        assert!(rows[0]["components"][0]["label"].as_str().unwrap().chars().count() <= MAX_OPTION_CHARS);
        assert_eq!(rows[4]["components"][4]["custom_id"], "omp:ask:7:24");
    }

    #[test]
    fn a_free_text_question_invites_a_reply_and_is_redacted() {
        let message = question_message(1, "Deploy with ghp_abcdefghijklmnopqrstuvwxyz0123456789 @everyone?", &[], "p");
        let text = message.embeds[0].description.clone().unwrap();
        assert!(text.ends_with("*Reply in this thread to answer.*"));
        assert!(!text.contains("ghp_abcdefghijklmnopqrstuvwxyz0123456789") && !text.contains("@everyone"));
        assert!(message.components.is_empty());
        let settled = settled_message("Deploy?", "Answered by ana: yes", true, "p");
        validate_message(&settled).unwrap();
        assert!(settled.components.is_empty());
    }
}
