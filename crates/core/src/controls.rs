//! Run controls on the live run card: a **Stop** button while a run goes,
//! **Retry** and **Continue** once it ended.
//!
//! The reporter ([`crate::reporter`]) puts the buttons on each card; the
//! sidecar is the authority on whether a click still counts. It keeps one
//! [`CardRecord`] per session (the latest card, what its buttons offer,
//! whether someone used them), updated from every card it journals
//! ([`CardRecord::observe`]), and checks each click against it
//! ([`CardRecord::check`]). A card older than the session's latest one is
//! stale: its buttons are taken off when the next run starts.
//!
//! Button ids are `omp:run:<action>:<card>:<session key>`; the session key is
//! the session id when it is short (OMP's are 36-character UUIDs), else a hash
//! of it ([`session_key`]), so every id fits Discord's 100 characters.
//!
//! ```
//! use omp_discord_core::controls::{Control, Click, custom_id, parse_custom_id, session_key};
//!
//! let key = session_key("0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
//! let id = custom_id(Control::Stop, 3, &key);
//! assert_eq!(parse_custom_id(&id), Some(Click::Button { control: Control::Stop, card: 3, key }));
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;
use twilight_model::channel::message::Component;
use twilight_model::channel::message::component::{ActionRow, Button, ButtonStyle, TextInput, TextInputStyle};
use twilight_model::http::interaction::{InteractionResponse, InteractionResponseData, InteractionResponseType};

use crate::embed::{MessagePayload, clean};
use crate::inbound::MAX_INBOUND_CHARS;

/// Discord's limits for components and modals (in characters).
pub mod limits {
    /// Action rows in one message.
    pub const ACTION_ROWS: usize = 5;
    /// Buttons in one action row.
    pub const ROW_BUTTONS: usize = 5;
    /// Characters in a component's `custom_id`.
    pub const CUSTOM_ID: usize = 100;
    /// Characters in a button label.
    pub const BUTTON_LABEL: usize = 80;
    /// Characters in a modal title.
    pub const MODAL_TITLE: usize = 45;
    /// Characters in a text input's label.
    pub const TEXT_INPUT_LABEL: usize = 45;
    /// Characters a text input may hold.
    pub const TEXT_INPUT_VALUE: usize = 4000;
    /// Characters in a text input's placeholder.
    pub const TEXT_INPUT_PLACEHOLDER: usize = 100;
}

const PREFIX: &str = "omp:run:";
/// The modal's one text input.
pub const PROMPT_FIELD: &str = "prompt";
/// Session ids up to this length go into button ids as they are.
pub const MAX_RAW_SESSION_KEY: usize = 48;

/// A run-control button.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Control {
    /// Abort the running run.
    Stop,
    /// Send the run's prompt again.
    Retry,
    /// Open a modal for a follow-up prompt.
    Continue,
}

impl Control {
    fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Retry => "retry",
            Self::Continue => "continue",
        }
    }

    /// What a card must offer for this button to count.
    #[must_use]
    pub fn needs(self) -> CardState {
        match self {
            Self::Stop => CardState::Running,
            Self::Retry | Self::Continue => CardState::Finished,
        }
    }
}

/// What a card's buttons offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardState {
    /// The run goes on: Stop.
    Running,
    /// The run ended: Retry and Continue.
    Finished,
}

/// A parsed button or modal id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Click {
    /// A button on card `card` of the session `key`.
    Button {
        /// Which button.
        control: Control,
        /// The run number of the card.
        card: u64,
        /// The session key ([`session_key`]).
        key: String,
    },
    /// The Continue modal was submitted.
    Prompt {
        /// The run number of the card.
        card: u64,
        /// The session key ([`session_key`]).
        key: String,
    },
}

/// The session's key in button ids: the id itself when it is short and plain,
/// else `~` and a 64-bit FNV-1a hash of it (stable across builds and the
/// wasm/native split).
#[must_use]
pub fn session_key(session_id: &str) -> String {
    let plain = session_id.chars().all(|c| c.is_ascii_graphic()) && !session_id.starts_with('~');
    if plain && !session_id.is_empty() && session_id.len() <= MAX_RAW_SESSION_KEY {
        return session_id.to_owned();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in session_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("~{hash:016x}")
}

/// The `custom_id` of a button on card `card` of session `key`.
#[must_use]
pub fn custom_id(control: Control, card: u64, key: &str) -> String {
    format!("{PREFIX}{}:{card}:{key}", control.as_str())
}

/// The `custom_id` of the Continue modal.
#[must_use]
pub fn modal_id(card: u64, key: &str) -> String {
    format!("{PREFIX}prompt:{card}:{key}")
}

/// Reads a run-control button or modal id; `None` for anything else.
#[must_use]
pub fn parse_custom_id(custom_id: &str) -> Option<Click> {
    let rest = custom_id.strip_prefix(PREFIX)?;
    let mut parts = rest.splitn(3, ':');
    let action = parts.next()?;
    let card = parts.next()?.parse().ok()?;
    let key = parts.next().filter(|k| !k.is_empty())?.to_owned();
    let control = match action {
        "stop" => Control::Stop,
        "retry" => Control::Retry,
        "continue" => Control::Continue,
        "prompt" => return Some(Click::Prompt { card, key }),
        _ => return None,
    };
    Some(Click::Button { control, card, key })
}

/// Reads a run card's outbox key `card:<session>:<n>`: the session and run number.
#[must_use]
pub fn parse_card_key(key: &str) -> Option<(&str, u64)> {
    let (session, n) = key.strip_prefix("card:")?.rsplit_once(':')?;
    Some((session, n.parse().ok()?))
}

fn button(control: Control, card: u64, key: &str, label: &str, style: ButtonStyle, disabled: bool) -> Component {
    Component::Button(Button {
        custom_id: Some(custom_id(control, card, key)),
        disabled,
        emoji: None,
        label: Some(clean(label, limits::BUTTON_LABEL)),
        style,
        url: None,
        sku_id: None,
        id: None,
    })
}

fn row(components: Vec<Component>) -> Component {
    Component::ActionRow(ActionRow { id: None, components })
}

/// The buttons of a card in `state`; `used`: disabled, with the note (e.g.
/// "Stopped by ana") on the button that was used.
#[must_use]
pub fn buttons(state: CardState, card: u64, key: &str, used: Option<(Control, &str)>) -> Component {
    let label = |control: Control, default: &str| match used {
        Some((used, note)) if used == control => note.to_owned(),
        _ => default.to_owned(),
    };
    let disabled = used.is_some();
    match state {
        CardState::Running => {
            row(vec![button(Control::Stop, card, key, &label(Control::Stop, "Stop"), ButtonStyle::Danger, disabled)])
        }
        CardState::Finished => row(vec![
            button(Control::Retry, card, key, &label(Control::Retry, "Retry"), ButtonStyle::Secondary, disabled),
            button(Control::Continue, card, key, &label(Control::Continue, "Continue"), ButtonStyle::Primary, disabled),
        ]),
    }
}

fn is_control_row(component: &Component) -> bool {
    match component {
        Component::ActionRow(row) => row.components.iter().any(|c| match c {
            Component::Button(b) => b.custom_id.as_deref().is_some_and(|id| parse_custom_id(id).is_some()),
            _ => false,
        }),
        _ => false,
    }
}

/// Puts the buttons of a card in `state` on `payload` (replacing any run-control row).
pub fn add_buttons(payload: &mut MessagePayload, state: CardState, card: u64, session_id: &str) {
    strip(payload);
    payload.components.push(buttons(state, card, &session_key(session_id), None));
}

/// Takes the run-control buttons off `payload` (other components stay).
pub fn strip(payload: &mut MessagePayload) {
    payload.components.retain(|c| !is_control_row(c));
}

/// What the run-control buttons on `payload` offer, if it has any.
#[must_use]
pub fn state_of(payload: &MessagePayload) -> Option<CardState> {
    payload.components.iter().filter(|c| is_control_row(c)).find_map(|c| match c {
        Component::ActionRow(row) => row.components.iter().find_map(|c| match c {
            Component::Button(b) => match parse_custom_id(b.custom_id.as_deref()?)? {
                Click::Button { control, .. } => Some(control.needs()),
                Click::Prompt { .. } => None,
            },
            _ => None,
        }),
        _ => None,
    })
}

/// The sidecar's record of a session's latest run card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardRecord {
    /// The session.
    pub session_id: String,
    /// Run number of the latest card.
    pub card: u64,
    /// What its buttons offer (`None`: no buttons).
    pub state: Option<CardState>,
    /// The button used on it, and its note (who used it), once someone did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<(Control, String)>,
}

/// Why a click does not count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A newer card replaced this one, or the run moved on.
    Stale,
    /// Someone already used a button of this card.
    Used,
}

impl Refusal {
    /// For the person who clicked.
    #[must_use]
    pub fn message(self) -> &'static str {
        match self {
            Self::Stale => "This run card is out of date: use the buttons on the session's latest run card.",
            Self::Used => "Someone already used these buttons.",
        }
    }
}

impl CardRecord {
    /// The card `card` of `session_id` is being journaled with `payload`,
    /// as a new message (`posted`) or an edit: returns the record to keep, and
    /// adjusts `payload` so Discord shows what the record says (no buttons on
    /// an older card, used buttons stay disabled).
    ///
    /// A posted card is always the latest, whatever its number: a resumed
    /// session (a new OMP process) numbers its runs from 1 again.
    #[must_use]
    pub fn observe(
        previous: Option<Self>,
        session_id: &str,
        card: u64,
        posted: bool,
        payload: &mut MessagePayload,
    ) -> Self {
        let state = state_of(payload);
        match previous {
            Some(previous) if !posted && previous.card != card => {
                strip(payload);
                previous
            }
            Some(previous) if !posted && previous.state == state && previous.used.is_some() => {
                if let (Some(state), Some((control, note))) = (state, &previous.used) {
                    strip(payload);
                    payload.components.push(buttons(state, card, &session_key(session_id), Some((*control, note))));
                }
                previous
            }
            _ => Self { session_id: session_id.to_owned(), card, state, used: None },
        }
    }

    /// Whether a click of `control` on card `card` counts now.
    ///
    /// # Errors
    ///
    /// [`Refusal`] when the card is not the latest, offers other buttons, or was used.
    pub fn check(&self, control: Control, card: u64) -> Result<(), Refusal> {
        if card != self.card || self.state != Some(control.needs()) {
            return Err(Refusal::Stale);
        }
        if self.used.is_some() {
            return Err(Refusal::Used);
        }
        Ok(())
    }

    /// The buttons once `control` was used, with `note` on it.
    #[must_use]
    pub fn used_buttons(&self, control: Control, note: &str) -> Component {
        buttons(control.needs(), self.card, &session_key(&self.session_id), Some((control, note)))
    }
}

/// The note on a used button: "Stopping… (ana)", "Retried by ana", within the label limit.
#[must_use]
pub fn used_note(control: Control, who: &str) -> String {
    let note = match control {
        Control::Stop => format!("Stopped by {who}"),
        Control::Retry => format!("Retried by {who}"),
        Control::Continue => format!("Continued by {who}"),
    };
    clean(&note, limits::BUTTON_LABEL)
}

/// The interaction response (type 9) that opens the Continue modal.
#[must_use]
pub fn continue_modal(card: u64, key: &str, project: &str) -> InteractionResponse {
    let title = if project.is_empty() { "Continue".to_owned() } else { format!("Continue in {project}") };
    let max_length = limits::TEXT_INPUT_VALUE.min(MAX_INBOUND_CHARS);
    // The classic shape (a text input with its own label, in an action row):
    // Discord still accepts it, and every client renders it.
    #[allow(deprecated)]
    let input = TextInput {
        custom_id: PROMPT_FIELD.to_owned(),
        id: None,
        label: Some("Follow-up prompt".to_owned()),
        max_length: Some(u16::try_from(max_length).unwrap_or(u16::MAX)),
        min_length: Some(1),
        placeholder: Some("What should the agent do next?".to_owned()),
        required: Some(true),
        style: TextInputStyle::Paragraph,
        value: None,
    };
    let row = Component::ActionRow(ActionRow { id: None, components: vec![Component::TextInput(input)] });
    let data = InteractionResponseData {
        custom_id: Some(modal_id(card, key)),
        title: Some(clean(&title, limits::MODAL_TITLE)),
        components: Some(vec![row]),
        ..Default::default()
    };
    InteractionResponse { kind: InteractionResponseType::Modal, data: Some(data) }
}

/// The text typed in the Continue modal, from a modal submit's `data`.
#[must_use]
pub fn submitted_prompt(data: &Value) -> Option<String> {
    data["components"].as_array()?.iter().find_map(|row| {
        let inputs = row["components"].as_array()?;
        inputs.iter().find(|i| i["custom_id"] == PROMPT_FIELD)?["value"].as_str().map(str::to_owned)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::validate_message;
    use serde_json::json;

    fn check_components(components: &[Component]) {
        assert!(components.len() <= limits::ACTION_ROWS);
        for component in components {
            let Component::ActionRow(row) = component else { panic!("top level must be rows: {component:?}") };
            assert!(row.components.len() <= limits::ROW_BUTTONS);
            for child in &row.components {
                let Component::Button(button) = child else { panic!("buttons only") };
                assert!(button.label.as_deref().unwrap().chars().count() <= limits::BUTTON_LABEL);
                assert!(button.custom_id.as_deref().unwrap().chars().count() <= limits::CUSTOM_ID);
            }
        }
    }

    #[test]
    fn ids_round_trip_and_fit_for_any_session_id() {
        let long = "x".repeat(500);
        for session in ["0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b", "s", long.as_str(), "with space", "a:b:c", "~fake"] {
            let key = session_key(session);
            assert!(key.len() <= MAX_RAW_SESSION_KEY, "{key}");
            for control in [Control::Stop, Control::Retry, Control::Continue] {
                let id = custom_id(control, u64::MAX, &key);
                assert!(id.chars().count() <= limits::CUSTOM_ID, "{id}");
                assert_eq!(parse_custom_id(&id), Some(Click::Button { control, card: u64::MAX, key: key.clone() }));
            }
            let modal = modal_id(u64::MAX, &key);
            assert!(modal.chars().count() <= limits::CUSTOM_ID);
            assert_eq!(parse_custom_id(&modal), Some(Click::Prompt { card: u64::MAX, key: key.clone() }));
        }
        assert_eq!(session_key("0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"), "0199a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
        assert_ne!(session_key(&long), session_key(&"y".repeat(500)));
        assert_eq!(session_key(&long), session_key(&long), "stable");
        for other in ["omp:approve:1", "omp:run:jump:1:s", "omp:run:stop:x:s", "omp:run:stop:1:", "omp:run:stop"] {
            assert_eq!(parse_custom_id(other), None, "{other}");
        }
    }

    #[test]
    fn card_keys_name_the_session_and_run() {
        assert_eq!(parse_card_key("card:s1:3"), Some(("s1", 3)));
        assert_eq!(parse_card_key("card:a:b:12"), Some(("a:b", 12)));
        assert_eq!(parse_card_key("session:s1"), None);
        assert_eq!(parse_card_key("card:s1:x"), None);
    }

    #[test]
    fn buttons_fit_discord_and_state_is_read_back() {
        let mut payload = crate::templates::run_card(&crate::templates::RunCard::default(), "p");
        assert_eq!(state_of(&payload), None);
        add_buttons(&mut payload, CardState::Running, 2, "s1");
        validate_message(&payload).unwrap();
        check_components(&payload.components);
        assert_eq!(state_of(&payload), Some(CardState::Running));
        add_buttons(&mut payload, CardState::Finished, 2, "s1");
        assert_eq!(payload.components.len(), 1, "replaced, not added");
        assert_eq!(state_of(&payload), Some(CardState::Finished));
        let record = CardRecord { session_id: "s1".into(), card: 2, state: Some(CardState::Finished), used: None };
        let long_name = "n".repeat(200);
        let used = record.used_buttons(Control::Retry, &used_note(Control::Retry, &long_name));
        check_components(std::slice::from_ref(&used));
        strip(&mut payload);
        assert!(payload.components.is_empty());
    }

    #[test]
    fn other_components_survive_strip() {
        let mut payload = crate::approval::approval_message(
            "7",
            &crate::templates::ApprovalRequest { tool: "bash".into(), input: Value::Null, reason: None },
            "p",
        );
        add_buttons(&mut payload, CardState::Running, 1, "s");
        assert_eq!(payload.components.len(), 2);
        strip(&mut payload);
        assert_eq!(payload.components.len(), 1);
        assert_eq!(state_of(&payload), None);
    }

    #[test]
    fn the_record_follows_the_latest_card_and_refuses_stale_or_used_clicks() {
        let card = |state: Option<CardState>, n: u64| {
            let mut payload = crate::templates::run_card(&crate::templates::RunCard::default(), "p");
            if let Some(state) = state {
                add_buttons(&mut payload, state, n, "s");
            }
            payload
        };
        let mut running = card(Some(CardState::Running), 1);
        let record = CardRecord::observe(None, "s", 1, true, &mut running);
        assert_eq!(record.check(Control::Stop, 1), Ok(()));
        assert_eq!(record.check(Control::Retry, 1), Err(Refusal::Stale), "the run goes on");

        // Stop used: the shim's next edit of the running card keeps it disabled.
        let used = CardRecord { used: Some((Control::Stop, "Stopped by ana".into())), ..record };
        assert_eq!(used.check(Control::Stop, 1), Err(Refusal::Used));
        let mut edit = card(Some(CardState::Running), 1);
        let kept = CardRecord::observe(Some(used), "s", 1, false, &mut edit);
        let shown = serde_json::to_value(&edit.components).unwrap();
        assert_eq!(shown[0]["components"][0]["disabled"], true);
        assert_eq!(shown[0]["components"][0]["label"], "Stopped by ana");

        // The run ends: Retry and Continue count, once.
        let mut finished = card(Some(CardState::Finished), 1);
        let record = CardRecord::observe(Some(kept), "s", 1, false, &mut finished);
        assert_eq!(record.used, None);
        assert_eq!(record.check(Control::Continue, 1), Ok(()));
        assert_eq!(record.check(Control::Stop, 1), Err(Refusal::Stale));

        // A new run: card 1 is stale, and a late edit of it loses its buttons.
        let mut next = card(Some(CardState::Running), 2);
        let record = CardRecord::observe(Some(record), "s", 2, true, &mut next);
        assert_eq!(record.check(Control::Retry, 1), Err(Refusal::Stale));
        let mut late = card(Some(CardState::Finished), 1);
        let record = CardRecord::observe(Some(record), "s", 1, false, &mut late);
        assert!(late.components.is_empty());
        assert_eq!(record.card, 2);

        // The session resumed in a new OMP process: its runs count from 1 again,
        // and its first card is the latest one.
        let mut resumed = card(Some(CardState::Running), 1);
        let record = CardRecord::observe(Some(record), "s", 1, true, &mut resumed);
        assert_eq!(state_of(&resumed), Some(CardState::Running));
        assert_eq!(record.check(Control::Stop, 1), Ok(()));
        assert_eq!(record.check(Control::Retry, 2), Err(Refusal::Stale), "the old process's card");
    }

    #[test]
    fn the_modal_fits_discord_and_its_text_is_read_back() {
        let modal = serde_json::to_value(continue_modal(9, &session_key("s"), &"p".repeat(100))).unwrap();
        assert_eq!(modal["type"], 9);
        let data = &modal["data"];
        assert!(data["title"].as_str().unwrap().chars().count() <= limits::MODAL_TITLE);
        assert!(data["custom_id"].as_str().unwrap().len() <= limits::CUSTOM_ID);
        let input = &data["components"][0]["components"][0];
        assert!(input["label"].as_str().unwrap().chars().count() <= limits::TEXT_INPUT_LABEL);
        assert!(input["placeholder"].as_str().unwrap().chars().count() <= limits::TEXT_INPUT_PLACEHOLDER);
        assert!(input["max_length"].as_u64().unwrap() as usize <= limits::TEXT_INPUT_VALUE);
        assert_eq!(
            parse_custom_id(data["custom_id"].as_str().unwrap()),
            Some(Click::Prompt { card: 9, key: "s".into() })
        );
        let submit = json!({ "custom_id": data["custom_id"], "components": [
            { "type": 1, "components": [{ "type": 4, "custom_id": PROMPT_FIELD, "value": "now the docs" }] }
        ]});
        assert_eq!(submitted_prompt(&submit).as_deref(), Some("now the docs"));
        assert_eq!(submitted_prompt(&json!({})), None);
    }
}
