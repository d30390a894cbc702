//! Webhooks: create, list, get, delete, execute (`wait`, `thread_id`), and their messages.
//! Interaction followups share these routes, with the application id and the interaction
//! token in place of a webhook.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::channels::{attachments, visible};
use super::{JsonBody, MessageBody, no_content, respond, snowflake};
use crate::config::permissions;
use crate::error::{ApiError, FormErrors};
use crate::interaction;
use crate::model::{Author, Webhook};
use crate::state::{EmulatorState, Extras, NewThread, World};

/// Maximum webhook name length.
const NAME_MAX: usize = 80;

pub(super) async fn create(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let mut world = state.world();
    let channel = visible(&world, &channel_id)?;
    if world.channels[&channel].is_thread() || !matches!(world.channels[&channel].kind, 0 | 5 | 15) {
        return Err(ApiError::wrong_channel_type());
    }
    world.require(world.bot_id, channel, permissions::MANAGE_WEBHOOKS)?;
    let mut errors = FormErrors::default();
    match body["name"].as_str() {
        None => errors.required(&["name"]),
        Some(name) if name.chars().count() > NAME_MAX || name.is_empty() => {
            errors.add(&["name"], "BASE_TYPE_BAD_LENGTH", format!("Must be between 1 and {NAME_MAX} in length."))
        }
        Some(name) if name.to_lowercase().contains("discord") || name.to_lowercase().contains("clyde") => {
            errors.add(
                &["name"],
                "WEBHOOK_INVALID_USERNAME",
                format!(
                    "Username cannot contain \"{}\"",
                    if name.to_lowercase().contains("discord") { "discord" } else { "clyde" }
                ),
            );
        }
        Some(_) => {}
    }
    errors.into_result()?;
    let id = state.next_id();
    let webhook = Webhook {
        id,
        token: format!("emulator-webhook-{id}-{:016x}", fastrand::u64(..)),
        channel_id: channel,
        guild_id: world.channels[&channel].guild_id,
        name: body["name"].as_str().unwrap_or_default().to_owned(),
        creator_id: world.bot_id,
        application_id: world.application_id,
    };
    let json = webhook.to_json(&*world, true);
    world.webhooks.insert(id, webhook);
    let mut event = json!({"channel_id": channel.to_string()});
    if let Some(guild) = world.channels[&channel].guild_id {
        event["guild_id"] = json!(guild.to_string());
    }
    world.dispatch("WEBHOOKS_UPDATE", event);
    drop(world);
    state.touch();
    Ok(Json(json))
}

pub(super) async fn channel_webhooks(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let channel = visible(&world, &channel_id)?;
    world.require(world.bot_id, channel, permissions::MANAGE_WEBHOOKS)?;
    let hooks: Vec<Value> =
        world.webhooks.values().filter(|w| w.channel_id == channel).map(|w| w.to_json(&*world, true)).collect();
    Ok(Json(json!(hooks)))
}

fn webhook<'w>(world: &'w World, id: &str, token: Option<&str>) -> Result<&'w Webhook, ApiError> {
    let hook = snowflake(id).and_then(|id| world.webhooks.get(&id)).ok_or_else(ApiError::unknown_webhook)?;
    match token {
        Some(token) if token != hook.token => Err(ApiError::invalid_webhook_token()),
        _ => Ok(hook),
    }
}

pub(super) async fn get(State(state): State<EmulatorState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let hook = webhook(&world, &id, None)?;
    Ok(Json(hook.to_json(&*world, true)))
}

pub(super) async fn get_with_token(
    State(state): State<EmulatorState>,
    Path((id, token)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let hook = webhook(&world, &id, Some(&token))?;
    let mut json = hook.to_json(&*world, true);
    // Fetched with its token, a webhook has no `user`.
    if let Some(object) = json.as_object_mut() {
        object.remove("user");
    }
    Ok(Json(json))
}

pub(super) async fn delete(State(state): State<EmulatorState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let mut world = state.world();
    let hook_id = webhook(&world, &id, None)?.id;
    world.webhooks.remove(&hook_id);
    Ok(no_content())
}

#[derive(Deserialize)]
pub(super) struct ExecuteQuery {
    wait: Option<bool>,
    thread_id: Option<String>,
}

fn is_followup(state: &EmulatorState, id: &str, token: &str) -> bool {
    snowflake(id).is_some_and(|id| interaction::is_interaction_token(&state.world(), id, token))
}

pub(super) async fn execute(
    State(state): State<EmulatorState>,
    Path((id, token)): Path<(String, String)>,
    Query(query): Query<ExecuteQuery>,
    headers: HeaderMap,
    body: MessageBody,
) -> Result<Response, ApiError> {
    if is_followup(&state, &id, &token) {
        let channel = state.world().interactions.values().find(|i| i.token == token).map(|i| i.channel_id).unwrap_or(0);
        let files = attachments(&state, &headers, channel, &body.json, &body.files);
        let json = interaction::followup(&state, &token, &body.json, files)?;
        return Ok(respond(json, body.recorded));
    }
    let (hook, target) = {
        let world = state.world();
        let hook = webhook(&world, &id, Some(&token))?.clone();
        let target = match query.thread_id.as_deref() {
            None => hook.channel_id,
            Some(thread) => snowflake(thread)
                .filter(|t| {
                    world.channels.get(t).is_some_and(|c| c.is_thread() && c.parent_id == Some(hook.channel_id))
                })
                .ok_or_else(ApiError::unknown_channel)?,
        };
        (hook, target)
    };
    let files = attachments(&state, &headers, target, &body.json, &body.files);
    let name = body.json["username"].as_str().unwrap_or(&hook.name).to_owned();
    let author = Author::Webhook { id: hook.id, name };
    let mut world = state.world();
    let forum = world.channels.get(&hook.channel_id).is_some_and(|c| c.kind == 15);
    let json = if forum && query.thread_id.is_none() {
        // Executing a forum webhook without thread_id starts a post named `thread_name`.
        let mut errors = FormErrors::default();
        crate::validate::thread_name(&mut errors, &body.json["thread_name"]);
        errors.into_result()?;
        crate::validate::message(&body.json, true, files.len())?;
        let parent = world.channels[&hook.channel_id].clone();
        let thread = state.next_id();
        let name = body.json["thread_name"].as_str().unwrap_or_default().to_owned();
        world.create_thread(
            &parent,
            NewThread {
                id: thread,
                kind: 11,
                name,
                owner_id: hook.id,
                auto_archive_duration: 4320,
                applied_tags: Vec::new(),
                invitable: false,
            },
        );
        let extras = Extras { id: Some(thread), ..Extras::default() };
        world.create_message(&state, thread, author, &body.json, files, extras)?
    } else {
        world.create_message(&state, target, author, &body.json, files, Extras::default())?
    };
    drop(world);
    if query.wait == Some(true) {
        Ok(respond(json, body.recorded))
    } else {
        let mut response = no_content();
        if let Some(recorded) = body.recorded {
            response.extensions_mut().insert(recorded);
        }
        Ok(response)
    }
}

#[derive(Deserialize)]
pub(super) struct ThreadQuery {
    thread_id: Option<String>,
}

/// The channel and id of a message this webhook sent.
fn own_message(world: &World, hook: &Webhook, thread: Option<&str>, message_id: &str) -> Result<(u64, u64), ApiError> {
    let channel = match thread {
        Some(t) => snowflake(t).ok_or_else(ApiError::unknown_channel)?,
        None => hook.channel_id,
    };
    let id = snowflake(message_id).ok_or_else(ApiError::unknown_message)?;
    let message = world.message(channel, id)?;
    match message.author {
        Author::Webhook { id: author, .. } if author == hook.id => Ok((channel, id)),
        _ => Err(ApiError::unknown_message()),
    }
}

pub(super) async fn get_message(
    State(state): State<EmulatorState>,
    Path((id, token, message_id)): Path<(String, String, String)>,
    Query(query): Query<ThreadQuery>,
) -> Result<Json<Value>, ApiError> {
    if is_followup(&state, &id, &token) {
        return interaction::get_message(&state, &token, &message_id).map(Json);
    }
    let world = state.world();
    let hook = webhook(&world, &id, Some(&token))?;
    let (channel, message) = own_message(&world, hook, query.thread_id.as_deref(), &message_id)?;
    Ok(Json(world.message_json(world.message(channel, message)?)))
}

pub(super) async fn edit_message(
    State(state): State<EmulatorState>,
    Path((id, token, message_id)): Path<(String, String, String)>,
    Query(query): Query<ThreadQuery>,
    headers: HeaderMap,
    body: MessageBody,
) -> Result<Response, ApiError> {
    if is_followup(&state, &id, &token) {
        let channel = state.world().interactions.values().find(|i| i.token == token).map(|i| i.channel_id).unwrap_or(0);
        let files = (!body.files.is_empty()).then(|| attachments(&state, &headers, channel, &body.json, &body.files));
        let json = interaction::edit_message(&state, &token, &message_id, &body.json, files)?;
        return Ok(respond(json, body.recorded));
    }
    let mut world = state.world();
    let hook = webhook(&world, &id, Some(&token))?.clone();
    let (channel, message) = own_message(&world, &hook, query.thread_id.as_deref(), &message_id)?;
    let files = (!body.files.is_empty()).then(|| attachments(&state, &headers, channel, &body.json, &body.files));
    let json = world.edit_message(channel, message, &body.json, files)?;
    drop(world);
    state.touch();
    Ok(respond(json, body.recorded))
}

pub(super) async fn delete_message(
    State(state): State<EmulatorState>,
    Path((id, token, message_id)): Path<(String, String, String)>,
    Query(query): Query<ThreadQuery>,
) -> Result<Response, ApiError> {
    if is_followup(&state, &id, &token) {
        interaction::delete_message(&state, &token, &message_id)?;
        return Ok(no_content());
    }
    let mut world = state.world();
    let hook = webhook(&world, &id, Some(&token))?.clone();
    let (channel, message) = own_message(&world, &hook, query.thread_id.as_deref(), &message_id)?;
    world.delete_message(channel, message)?;
    drop(world);
    state.touch();
    Ok(no_content())
}
