//! Interactions: injected slash commands, button clicks, select choices and modal submits,
//! the bot's callbacks (types 1–12) with the 3 s acknowledgement deadline, and followups
//! through the 15-minute interaction token.

use serde_json::{Value, json};
use tokio::time::Instant;

use crate::config::permissions;
use crate::error::{ApiError, FormErrors};
use crate::model::{Author, Directory};
use crate::state::{EmulatorState, Extras, World};

/// Message flag: only the invoking user sees the message.
pub(crate) const EPHEMERAL: u64 = 1 << 6;
/// Message flag: the deferred "thinking…" placeholder.
const LOADING: u64 = 1 << 7;

/// One interaction and what the bot did with it.
#[derive(Clone, Debug)]
pub(crate) struct Interaction {
    pub(crate) id: u64,
    pub(crate) token: String,
    pub(crate) kind: u8,
    pub(crate) data: Value,
    pub(crate) channel_id: u64,
    pub(crate) guild_id: Option<u64>,
    pub(crate) user_id: u64,
    /// The message a component belongs to.
    pub(crate) message_id: Option<u64>,
    pub(crate) created: Instant,
    /// The callback type the bot answered with, once it did.
    pub(crate) response_type: Option<u8>,
    /// Every callback body the bot sent, accepted or not.
    pub(crate) callbacks: Vec<Value>,
    pub(crate) original_message_id: Option<u64>,
    pub(crate) followups: Vec<u64>,
    /// The modal this interaction opened (callback type 9) was submitted.
    pub(crate) modal_submitted: bool,
}

impl Interaction {
    /// The modal this interaction opened, while it is open.
    fn open_modal(&self) -> Option<&Value> {
        if self.response_type != Some(9) || self.modal_submitted {
            return None;
        }
        self.callbacks.iter().rev().find(|c| c["type"] == 9).map(|c| &c["data"])
    }

    pub(crate) fn to_state_json(&self) -> Value {
        json!({
            "id": self.id.to_string(),
            "type": self.kind,
            "data": self.data,
            "channel_id": self.channel_id.to_string(),
            "guild_id": self.guild_id.map(|g| g.to_string()),
            "user_id": self.user_id.to_string(),
            "message_id": self.message_id.map(|m| m.to_string()),
            "acknowledged": self.response_type.is_some(),
            "response_type": self.response_type,
            "callbacks": self.callbacks,
            "original_message_id": self.original_message_id.map(|m| m.to_string()),
            "followup_ids": self.followups.iter().map(u64::to_string).collect::<Vec<_>>(),
        })
    }
}

fn bad_request(path: &str, message: &str) -> ApiError {
    let mut errors = FormErrors::default();
    errors.add(&[path], "INVALID", message.to_owned());
    errors.into_result().expect_err("an error was added")
}

/// Finds a component by `custom_id` in a message's component tree.
fn find_component<'v>(components: &'v [Value], custom_id: &str) -> Option<&'v Value> {
    components.iter().find_map(|c| {
        if c["custom_id"].as_str() == Some(custom_id) {
            Some(c)
        } else {
            c["components"].as_array().and_then(|children| find_component(children, custom_id)).or_else(|| {
                c["accessory"]
                    .as_object()
                    .and_then(|_| (c["accessory"]["custom_id"].as_str() == Some(custom_id)).then_some(&c["accessory"]))
            })
        }
    })
}

/// The submitted rows of `modal` filled with `fields` (text input custom_id → value), as
/// Discord sends them: every input of the modal in order, each with its numeric `id`.
/// Refuses unknown fields, and values a person could not have typed (a required input
/// left empty, a value outside its length bounds).
fn modal_submission(modal: &Value, fields: &serde_json::Map<String, Value>) -> Result<Vec<Value>, ApiError> {
    let mut errors = FormErrors::default();
    let mut rows = Vec::new();
    let mut known = Vec::new();
    let mut next_id = 1;
    for row in modal["components"].as_array().into_iter().flatten() {
        let row_id = next_id;
        next_id += 1;
        let mut inputs = Vec::new();
        for input in row["components"].as_array().into_iter().flatten() {
            let input_id = input["id"].as_u64().unwrap_or(next_id);
            next_id += 1;
            let custom_id = input["custom_id"].as_str().unwrap_or_default();
            known.push(custom_id.to_owned());
            let value = fields.get(custom_id).and_then(Value::as_str).unwrap_or_default();
            let length = value.chars().count() as u64;
            let required = input["required"].as_bool().unwrap_or(true);
            let min = input["min_length"].as_u64().unwrap_or(0);
            let max = input["max_length"].as_u64().unwrap_or(crate::validate::TEXT_INPUT_VALUE_MAX as u64);
            if (required && length == 0) || (length > 0 && (length < min || length > max)) {
                errors.add(
                    &["fields", custom_id],
                    "BASE_TYPE_BAD_LENGTH",
                    format!("Must be between {min} and {max} in length."),
                );
            }
            inputs.push(json!({"type": 4, "id": input_id, "custom_id": custom_id, "value": value}));
        }
        rows.push(json!({"type": 1, "id": row_id, "components": inputs}));
    }
    for field in fields.keys().filter(|f| !known.contains(f)) {
        errors.add(&["fields", field], "UNKNOWN_FIELD", "The modal has no such input".to_owned());
    }
    errors.into_result()?;
    Ok(rows)
}

/// Checks a modal (callback type 9): title, custom_id, and 1–5 action rows of one text
/// input each, within Discord's lengths.
fn validate_modal(errors: &mut FormErrors, data: &Value) {
    use crate::validate::{CUSTOM_ID_MAX, MODAL_TITLE_MAX, TEXT_INPUT_LABEL_MAX, TEXT_INPUT_VALUE_MAX};
    if data["title"].as_str().is_none_or(|t| t.chars().count() > MODAL_TITLE_MAX) {
        errors.too_long(&["data", "title"], MODAL_TITLE_MAX);
    }
    match data["custom_id"].as_str() {
        None => errors.required(&["data", "custom_id"]),
        Some(id) if id.chars().count() > CUSTOM_ID_MAX => errors.too_long(&["data", "custom_id"], CUSTOM_ID_MAX),
        Some(_) => {}
    }
    let rows = data["components"].as_array().map(Vec::as_slice).unwrap_or_default();
    if rows.is_empty() || rows.len() > 5 {
        errors.add(&["data", "components"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.".to_owned());
    }
    for (r, row) in rows.iter().enumerate() {
        let r = r.to_string();
        let inputs = row["components"].as_array().map(Vec::as_slice).unwrap_or_default();
        if row["type"] != 1 || inputs.len() != 1 || inputs[0]["type"] != 4 {
            errors.add(
                &["data", "components", &r],
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "A modal row holds one text input".to_owned(),
            );
            continue;
        }
        let input = &inputs[0];
        let len = |key: &str| input[key].as_str().map(|v| v.chars().count());
        if input["custom_id"].as_str().is_none_or(|id| id.chars().count() > CUSTOM_ID_MAX) {
            errors.too_long(&["data", "components", &r, "components", "0", "custom_id"], CUSTOM_ID_MAX);
        }
        if len("label").is_none_or(|n| n > TEXT_INPUT_LABEL_MAX) {
            errors.too_long(&["data", "components", &r, "components", "0", "label"], TEXT_INPUT_LABEL_MAX);
        }
        for key in ["min_length", "max_length"] {
            if input[key].as_u64().is_some_and(|n| n > TEXT_INPUT_VALUE_MAX as u64) {
                errors.too_long(&["data", "components", &r, "components", "0", key], TEXT_INPUT_VALUE_MAX);
            }
        }
        if len("placeholder").is_some_and(|n| n > 100) {
            errors.too_long(&["data", "components", &r, "components", "0", "placeholder"], 100);
        }
    }
}

/// Builds and dispatches INTERACTION_CREATE for a control API request. Returns the
/// interaction payload.
///
/// `spec`: `{type: "command"|"autocomplete"|"button"|"select"|"modal", channel_id, user_id,
/// name, options, custom_id, message_id, values, fields}`. An autocomplete's `options` carry
/// the option being typed with `"focused": true`, as Discord sends them.
pub(crate) fn inject(state: &EmulatorState, spec: &Value) -> Result<Value, ApiError> {
    let mut world = state.world();
    let channel_id =
        spec["channel_id"].as_str().and_then(|c| c.parse::<u64>().ok()).ok_or_else(ApiError::unknown_channel)?;
    let channel = world.channels.get(&channel_id).ok_or_else(ApiError::unknown_channel)?.clone();
    let user_id = spec["user_id"]
        .as_str()
        .and_then(|u| u.parse::<u64>().ok())
        .filter(|u| world.users.contains_key(u))
        .ok_or_else(ApiError::unknown_user)?;
    if world.permissions(user_id, channel_id) & permissions::VIEW_CHANNEL == 0 {
        return Err(ApiError::missing_access());
    }
    let mut message_id = None;
    let (kind, data) = match spec["type"].as_str().unwrap_or("") {
        kind @ ("command" | "autocomplete") => {
            let name = spec["name"].as_str().unwrap_or("");
            let command = world
                .commands
                .iter()
                .find(|(_, (guild, c))| {
                    c["name"] == name
                        && c["type"].as_u64().unwrap_or(1) == 1
                        && guild.is_none_or(|g| Some(g) == channel.guild_id)
                })
                .map(|(id, (guild, _))| (*id, *guild))
                .ok_or_else(ApiError::unknown_application_command)?;
            let mut data = json!({
                "id": command.0.to_string(),
                "name": name,
                "type": 1,
                "options": spec.get("options").cloned().unwrap_or(json!([])),
            });
            if let Some(guild) = command.1 {
                data["guild_id"] = json!(guild.to_string());
            }
            if kind == "autocomplete" {
                if !has_focused(&data["options"]) {
                    return Err(bad_request("options", "An autocomplete needs exactly one option with focused: true"));
                }
                (4, data)
            } else {
                (2, data)
            }
        }
        kind @ ("button" | "select") => {
            let custom_id = spec["custom_id"].as_str().unwrap_or("");
            let id = spec["message_id"]
                .as_str()
                .and_then(|m| m.parse::<u64>().ok())
                .ok_or_else(ApiError::unknown_message)?;
            let message = world.message(channel_id, id)?;
            // A click can only reach a component the message shows right now.
            let component = find_component(&message.components, custom_id)
                .ok_or_else(|| bad_request("custom_id", "No such component on this message"))?;
            if component["disabled"].as_bool() == Some(true) {
                return Err(bad_request("custom_id", "The component is disabled"));
            }
            let component_type = component["type"].as_u64().unwrap_or(2);
            if (kind == "button") != (component_type == 2) {
                return Err(bad_request("type", "The component is of another type"));
            }
            message_id = Some(id);
            let mut data = json!({"custom_id": custom_id, "component_type": component_type});
            if kind == "select" {
                data["values"] = spec.get("values").cloned().unwrap_or(json!([]));
            }
            (3, data)
        }
        "modal" => {
            let custom_id = spec["custom_id"].as_str().unwrap_or("");
            let fields = spec["fields"].as_object().cloned().unwrap_or_default();
            // A modal can only be submitted by the person it was shown to, once.
            let opener = world
                .interactions
                .values()
                .filter(|i| i.user_id == user_id && i.open_modal().is_some_and(|m| m["custom_id"] == custom_id))
                .max_by_key(|i| i.id)
                .cloned()
                .ok_or_else(|| bad_request("custom_id", "No modal with this custom_id is open for this user"))?;
            let modal = opener.open_modal().expect("filtered on an open modal").clone();
            let rows = modal_submission(&modal, &fields)?;
            message_id = opener.message_id;
            if let Some(stored) = world.interactions.get_mut(&opener.id) {
                stored.modal_submitted = true;
            }
            (5, json!({"custom_id": custom_id, "components": rows}))
        }
        _ => return Err(bad_request("type", "Must be one of command, autocomplete, button, select, modal")),
    };
    let id = state.next_id();
    let token = format!("aW50ZXJhY3Rpb24{id}{:016x}", fastrand::u64(..));
    let mut payload = json!({
        "id": id.to_string(),
        "application_id": world.application_id.to_string(),
        "type": kind,
        "data": data,
        "channel_id": channel_id.to_string(),
        "channel": channel.to_json(),
        "token": token,
        "version": 1,
        "locale": "en-US",
        "app_permissions": world.permissions(world.bot_id, channel_id).to_string(),
        "entitlements": [],
        "attachment_size_limit": crate::rest::UPLOAD_MAX,
        "context": if channel.guild_id.is_some() { 0 } else { 1 },
    });
    if let Some(guild_id) = channel.guild_id {
        let member =
            world.guilds.get(&guild_id).and_then(|g| g.members.get(&user_id)).ok_or_else(ApiError::unknown_member)?;
        let mut member_json = member.to_json();
        member_json["user"] = world.user_json(user_id);
        member_json["permissions"] = json!(world.permissions(user_id, channel_id).to_string());
        payload["guild_id"] = json!(guild_id.to_string());
        payload["guild_locale"] = json!("en-US");
        payload["guild"] = json!({"id": guild_id.to_string(), "locale": "en-US", "features": []});
        payload["member"] = member_json;
        payload["authorizing_integration_owners"] = json!({"0": guild_id.to_string()});
    } else {
        payload["user"] = world.user_json(user_id);
        payload["authorizing_integration_owners"] = json!({"1": user_id.to_string()});
    }
    if let Some(message_id) = message_id {
        let message = world.message(channel_id, message_id)?;
        payload["message"] = world.message_json(message);
    }
    world.interactions.insert(
        id,
        Interaction {
            id,
            token,
            kind,
            data: payload["data"].clone(),
            channel_id,
            guild_id: channel.guild_id,
            user_id,
            message_id,
            created: Instant::now(),
            response_type: None,
            callbacks: Vec::new(),
            original_message_id: None,
            followups: Vec::new(),
            modal_submitted: false,
        },
    );
    world.dispatch("INTERACTION_CREATE", payload.clone());
    drop(world);
    state.touch();
    Ok(payload)
}

/// Whether exactly one option (at any depth) is marked `focused`.
fn has_focused(options: &Value) -> bool {
    fn count(options: &Value) -> usize {
        options
            .as_array()
            .map_or(0, |options| options.iter().map(|o| usize::from(o["focused"] == true) + count(&o["options"])).sum())
    }
    count(options) == 1
}

/// Discord's rules for an autocomplete answer (`type: 8`): at most 25 choices,
/// each with a 1–100 character name and a value (a string of at most 100).
fn check_choices(data: &Value) -> Result<(), ApiError> {
    let mut errors = FormErrors::default();
    let Some(choices) = data["choices"].as_array() else {
        errors.required(&["data", "choices"]);
        return errors.into_result();
    };
    if choices.len() > 25 {
        errors.add(&["data", "choices"], "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.".to_owned());
    }
    for (n, choice) in choices.iter().enumerate() {
        let index = n.to_string();
        match choice["name"].as_str() {
            Some(name) if (1..=100).contains(&name.chars().count()) => {}
            Some(_) => errors.too_long(&["data", "choices", &index, "name"], 100),
            None => errors.required(&["data", "choices", &index, "name"]),
        }
        match &choice["value"] {
            Value::String(value) if value.chars().count() > 100 => {
                errors.too_long(&["data", "choices", &index, "value"], 100);
            }
            Value::String(_) | Value::Number(_) => {}
            _ => errors.required(&["data", "choices", &index, "value"]),
        }
    }
    errors.into_result()
}

/// The interaction for a token, if it is still valid (15 minutes).
fn by_token<'w>(world: &'w World, state: &EmulatorState, token: &str) -> Result<&'w Interaction, ApiError> {
    let interaction = world.interactions.values().find(|i| i.token == token).ok_or_else(ApiError::unknown_webhook)?;
    if interaction.created.elapsed() > state.config().interaction_token_lifetime {
        return Err(ApiError::invalid_webhook_token());
    }
    Ok(interaction)
}

/// Whether `token` belongs to an interaction of this application.
pub(crate) fn is_interaction_token(world: &World, webhook_id: u64, token: &str) -> bool {
    webhook_id == world.application_id && world.interactions.values().any(|i| i.token == token)
}

/// Handles `POST /interactions/{id}/{token}/callback`. Returns the `with_response` body.
pub(crate) fn callback(
    state: &EmulatorState,
    interaction_id: u64,
    token: &str,
    body: &Value,
    attachments: Vec<Value>,
) -> Result<Value, ApiError> {
    let mut world = state.world();
    let interaction = world
        .interactions
        .get_mut(&interaction_id)
        .filter(|i| i.token == token)
        .ok_or_else(ApiError::unknown_interaction)?;
    interaction.callbacks.push(body.clone());
    if interaction.response_type.is_some() {
        return Err(ApiError::already_acknowledged());
    }
    if interaction.created.elapsed() > state.config().interaction_ack_deadline {
        return Err(ApiError::unknown_interaction());
    }
    let interaction = interaction.clone();
    let kind = body["type"].as_u64().unwrap_or(0);
    let data = body.get("data").cloned().unwrap_or(json!({}));
    let allowed = match kind {
        1 => interaction.kind == 1,
        4 | 5 => matches!(interaction.kind, 2 | 3 | 5),
        6 | 7 => matches!(interaction.kind, 3 | 5) && interaction.message_id.is_some(),
        8 => interaction.kind == 4,
        9 => matches!(interaction.kind, 2 | 3),
        10 | 12 => matches!(interaction.kind, 2 | 3 | 5),
        _ => false,
    };
    if !allowed {
        return Err(bad_request("type", "Interaction response type is invalid for this interaction"));
    }
    let metadata = json!({
        "id": interaction.id.to_string(),
        "type": interaction.kind,
        "user": world.user_json(interaction.user_id),
        "authorizing_integration_owners": {"0": interaction.guild_id.unwrap_or(0).to_string()},
    });
    let bot = world.bot_id;
    let mut resource = json!({ "type": kind });
    let mut original = None;
    match kind {
        4 => {
            let message = world.create_message(
                state,
                interaction.channel_id,
                Author::User(bot),
                &data,
                attachments,
                Extras { interaction_metadata: Some(metadata), ..Extras::default() },
            )?;
            original = message["id"].as_str().and_then(|m| m.parse::<u64>().ok());
            resource["message"] = message;
        }
        5 => {
            let flags = (data["flags"].as_u64().unwrap_or(0) & EPHEMERAL) | LOADING;
            let message = world.create_message(
                state,
                interaction.channel_id,
                Author::User(bot),
                &json!({"flags": flags}),
                Vec::new(),
                Extras { interaction_metadata: Some(metadata), allow_empty: true, ..Extras::default() },
            )?;
            original = message["id"].as_str().and_then(|m| m.parse::<u64>().ok());
            resource["message"] = message;
        }
        7 => {
            let message_id = interaction.message_id.expect("checked: components have a message");
            let message = world.edit_message(interaction.channel_id, message_id, &data, None)?;
            original = Some(message_id);
            resource["message"] = message;
        }
        6 => original = interaction.message_id,
        8 => check_choices(&data)?,
        9 => {
            let mut errors = FormErrors::default();
            validate_modal(&mut errors, &data);
            errors.into_result()?;
        }
        _ => {}
    }
    let stored = world.interactions.get_mut(&interaction_id).expect("looked up above");
    stored.response_type = Some(u8::try_from(kind).expect("checked: a known type"));
    stored.original_message_id = original;
    let response = json!({
        "interaction": {
            "id": interaction.id.to_string(),
            "type": interaction.kind,
            "activity_instance_id": null,
            "response_message_id": original.map(|m| m.to_string()),
            "response_message_loading": kind == 5,
            "response_message_ephemeral": data["flags"].as_u64().unwrap_or(0) & EPHEMERAL != 0,
        },
        "resource": resource,
    });
    drop(world);
    state.touch();
    Ok(response)
}

fn original_id(interaction: &Interaction, message_id: &str) -> Result<u64, ApiError> {
    if message_id == "@original" {
        interaction.original_message_id.ok_or_else(ApiError::unknown_message)
    } else {
        let id = message_id.parse::<u64>().map_err(|_| ApiError::unknown_message())?;
        if Some(id) == interaction.original_message_id || interaction.followups.contains(&id) {
            Ok(id)
        } else {
            Err(ApiError::unknown_message())
        }
    }
}

/// `POST /webhooks/{application_id}/{token}`: a followup message.
pub(crate) fn followup(
    state: &EmulatorState,
    token: &str,
    body: &Value,
    attachments: Vec<Value>,
) -> Result<Value, ApiError> {
    let mut world = state.world();
    let interaction = by_token(&world, state, token)?.clone();
    if interaction.response_type.is_none() {
        return Err(ApiError::unknown_webhook());
    }
    let metadata = json!({"id": interaction.id.to_string(), "type": interaction.kind, "user": world.user_json(interaction.user_id)});
    let bot = world.bot_id;
    let message = world.create_message(
        state,
        interaction.channel_id,
        Author::User(bot),
        body,
        attachments,
        Extras { interaction_metadata: Some(metadata), ..Extras::default() },
    )?;
    let id = message["id"].as_str().and_then(|m| m.parse::<u64>().ok()).expect("messages have ids");
    if let Some(stored) = world.interactions.get_mut(&interaction.id) {
        stored.followups.push(id);
    }
    drop(world);
    state.touch();
    Ok(message)
}

/// `GET /webhooks/{application_id}/{token}/messages/{id|@original}`.
pub(crate) fn get_message(state: &EmulatorState, token: &str, message_id: &str) -> Result<Value, ApiError> {
    let world = state.world();
    let interaction = by_token(&world, state, token)?;
    let id = original_id(interaction, message_id)?;
    let message = world.message(interaction.channel_id, id)?;
    Ok(world.message_json(message))
}

/// `PATCH /webhooks/{application_id}/{token}/messages/{id|@original}`.
pub(crate) fn edit_message(
    state: &EmulatorState,
    token: &str,
    message_id: &str,
    body: &Value,
    attachments: Option<Vec<Value>>,
) -> Result<Value, ApiError> {
    let mut world = state.world();
    let interaction = by_token(&world, state, token)?.clone();
    let id = original_id(&interaction, message_id)?;
    // Editing the deferred placeholder ends its loading state.
    if let Ok(message) = world.message_mut(interaction.channel_id, id) {
        message.flags &= !LOADING;
    }
    let json = world.edit_message(interaction.channel_id, id, body, attachments)?;
    drop(world);
    state.touch();
    Ok(json)
}

/// `DELETE /webhooks/{application_id}/{token}/messages/{id|@original}`.
pub(crate) fn delete_message(state: &EmulatorState, token: &str, message_id: &str) -> Result<(), ApiError> {
    let mut world = state.world();
    let interaction = by_token(&world, state, token)?.clone();
    let id = original_id(&interaction, message_id)?;
    world.delete_message(interaction.channel_id, id)?;
    drop(world);
    state.touch();
    Ok(())
}

/// The interaction's state for the control API.
pub(crate) fn state_json(state: &EmulatorState, id: u64) -> Option<Value> {
    state.world().interactions.get(&id).map(Interaction::to_state_json)
}
