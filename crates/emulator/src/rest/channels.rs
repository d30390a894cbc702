//! Channels, messages, typing and reactions.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{MessageBody, Upload, host, no_content, respond, snowflake};
use crate::config::permissions;
use crate::error::{ApiError, FormErrors};
use crate::model::{Author, Directory, Reaction};
use crate::snowflake::now_ms;
use crate::state::{EmulatorState, Extras, World};

/// The channel id if the bot can see it.
pub(super) fn visible(world: &World, channel_id: &str) -> Result<u64, ApiError> {
    let id = snowflake(channel_id).ok_or_else(ApiError::unknown_channel)?;
    world.visible_channel(id)?;
    Ok(id)
}

pub(super) async fn channel(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let id = visible(&world, &channel_id)?;
    let mut json = world.channels[&id].to_json();
    if let Some(thread) = &world.channels[&id].thread
        && let Some(joined) = thread.members.get(&world.bot_id)
    {
        json["member"] = crate::state::thread_member_json(id, world.bot_id, *joined);
    }
    if world.channels[&id].kind == 1 {
        let recipients: Vec<Value> = world.channels[&id]
            .recipients
            .iter()
            .filter(|r| **r != world.bot_id)
            .map(|r| world.user_json(*r))
            .collect();
        json["recipients"] = json!(recipients);
    }
    Ok(Json(json))
}

/// Attachment objects for uploaded files, with URLs served by the emulator.
pub(super) fn attachments(
    state: &EmulatorState,
    headers: &HeaderMap,
    channel_id: u64,
    body: &Value,
    files: &[Upload],
) -> Vec<Value> {
    let host = host(state, headers);
    files
        .iter()
        .map(|file| {
            let id = state.next_id();
            let described = body["attachments"]
                .as_array()
                .and_then(|list| {
                    list.iter().find(|a| {
                        a["id"].as_u64() == Some(file.index as u64) || a["id"].as_str() == Some(&file.index.to_string())
                    })
                })
                .cloned()
                .unwrap_or(Value::Null);
            let url = format!("http://{host}/attachments/{channel_id}/{id}/{}", file.filename);
            state.keep_file(id, file.data.clone());
            json!({
                "id": id.to_string(),
                "filename": described["filename"].as_str().unwrap_or(&file.filename),
                "description": described["description"],
                "content_type": file.content_type,
                "size": file.size,
                "url": url,
                "proxy_url": url,
                "flags": 0,
            })
        })
        .collect()
}

pub(super) async fn create_message(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: MessageBody,
) -> Result<Response, ApiError> {
    let id = snowflake(&channel_id).ok_or_else(ApiError::unknown_channel)?;
    let files = attachments(&state, &headers, id, &body.json, &body.files);
    let mut world = state.world();
    if !body.files.is_empty() {
        world.require(world.bot_id, id, permissions::ATTACH_FILES)?;
    }
    let bot = world.bot_id;
    let json = world.create_message(&state, id, Author::User(bot), &body.json, files, Extras::default())?;
    Ok(respond(json, body.recorded))
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    limit: Option<i64>,
    before: Option<String>,
    after: Option<String>,
    around: Option<String>,
}

pub(super) async fn list_messages(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = query.limit.unwrap_or(50);
    if !(1..=100).contains(&limit) {
        let mut errors = FormErrors::default();
        let (code, message) = if limit < 1 {
            ("NUMBER_TYPE_MIN", "int value should be greater than or equal to 1.")
        } else {
            ("NUMBER_TYPE_MAX", "int value should be less than or equal to 100.")
        };
        errors.add(&["limit"], code, message.to_owned());
        return Err(errors.into_result().expect_err("an error was added"));
    }
    let limit = usize::try_from(limit).expect("checked to be 1..=100");
    let world = state.world();
    let id = visible(&world, &channel_id)?;
    if world.permissions(world.bot_id, id) & permissions::READ_MESSAGE_HISTORY == 0 {
        return Ok(Json(json!([])));
    }
    let Some(messages) = world.messages.get(&id) else {
        return Ok(Json(json!([])));
    };
    let parse = |v: &Option<String>| v.as_deref().and_then(snowflake);
    // Newest first, as Discord returns them.
    let selected: Vec<&crate::model::Message> = if let Some(around) = parse(&query.around) {
        let before = limit / 2;
        let mut older: Vec<_> = messages.range(..around).rev().take(before).map(|(_, m)| m).collect();
        let newer: Vec<_> = messages.range(around..).take(limit - before).map(|(_, m)| m).collect();
        let mut all: Vec<_> = newer.into_iter().rev().collect();
        all.append(&mut older);
        all
    } else if let Some(after) = parse(&query.after) {
        let mut list: Vec<_> = messages.range(after + 1..).take(limit).map(|(_, m)| m).collect();
        list.reverse();
        list
    } else {
        let before = parse(&query.before).unwrap_or(u64::MAX);
        messages.range(..before).rev().take(limit).map(|(_, m)| m).collect()
    };
    Ok(Json(json!(selected.iter().map(|m| world.message_json(m)).collect::<Vec<_>>())))
}

pub(super) async fn message(
    State(state): State<EmulatorState>,
    Path((channel_id, message_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let id = visible(&world, &channel_id)?;
    world.require(world.bot_id, id, permissions::READ_MESSAGE_HISTORY)?;
    let message_id = snowflake(&message_id).ok_or_else(ApiError::unknown_message)?;
    let message = world.message(id, message_id)?;
    Ok(Json(world.message_json(message)))
}

pub(super) async fn edit_message(
    State(state): State<EmulatorState>,
    Path((channel_id, message_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: MessageBody,
) -> Result<Response, ApiError> {
    let channel = snowflake(&channel_id).ok_or_else(ApiError::unknown_channel)?;
    let files = (!body.files.is_empty()).then(|| attachments(&state, &headers, channel, &body.json, &body.files));
    let mut world = state.world();
    visible(&world, &channel_id)?;
    let message_id = snowflake(&message_id).ok_or_else(ApiError::unknown_message)?;
    let message = world.message(channel, message_id)?;
    if message.author_id() != world.bot_id {
        // Others' messages: only flags (suppress embeds) with MANAGE_MESSAGES.
        return Err(ApiError::cannot_edit_other_user());
    }
    let json = world.edit_message(channel, message_id, &body.json, files)?;
    drop(world);
    state.touch();
    Ok(respond(json, body.recorded))
}

pub(super) async fn delete_message(
    State(state): State<EmulatorState>,
    Path((channel_id, message_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let channel = visible(&world, &channel_id)?;
    let message_id = snowflake(&message_id).ok_or_else(ApiError::unknown_message)?;
    if world.message(channel, message_id)?.author_id() != world.bot_id {
        world.require(world.bot_id, channel, permissions::MANAGE_MESSAGES)?;
    }
    world.delete_message(channel, message_id)?;
    drop(world);
    state.touch();
    Ok(no_content())
}

pub(super) async fn typing(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let channel = visible(&world, &channel_id)?;
    let send = if world.channels[&channel].is_thread() {
        permissions::SEND_MESSAGES_IN_THREADS
    } else {
        permissions::SEND_MESSAGES
    };
    world.require(world.bot_id, channel, send)?;
    let mut event = json!({
        "channel_id": channel.to_string(),
        "user_id": world.bot_id.to_string(),
        "timestamp": now_ms() / 1000,
    });
    if let Some(guild_id) = world.channels[&channel].guild_id {
        event["guild_id"] = json!(guild_id.to_string());
    }
    world.typing.push(event.clone());
    world.dispatch("TYPING_START", event);
    Ok(no_content())
}

/// Unicode emoji as sent, or `name:id` for custom ones. Custom emoji must exist: the
/// emulator has none, so any `name:id` is 10014.
fn emoji(text: &str) -> Result<String, ApiError> {
    if text.contains(':') || text.is_empty() {
        return Err(ApiError::unknown_emoji());
    }
    Ok(text.to_owned())
}

fn reaction_event(world: &World, channel: u64, message: u64, user: u64, emoji: &Reaction) -> Value {
    let mut event = json!({
        "user_id": user.to_string(),
        "channel_id": channel.to_string(),
        "message_id": message.to_string(),
        "emoji": emoji.emoji_json(),
        "burst": false,
        "type": 0,
    });
    if let Some(guild_id) = world.channels.get(&channel).and_then(|c| c.guild_id) {
        event["guild_id"] = json!(guild_id.to_string());
    }
    event
}

/// Adds or removes `user`'s reaction, dispatching the matching event.
pub(super) fn set_reaction(
    world: &mut World,
    channel: u64,
    message_id: u64,
    user: u64,
    emoji: String,
    on: bool,
) -> Result<(), ApiError> {
    let message = world.message_mut(channel, message_id)?;
    let index = message.reactions.iter().position(|r| r.emoji == emoji);
    let changed = match (on, index) {
        (true, Some(i)) => message.reactions[i].users.insert(user),
        (true, None) => {
            message.reactions.push(Reaction { emoji: emoji.clone(), users: [user].into() });
            true
        }
        (false, Some(i)) => {
            let removed = message.reactions[i].users.remove(&user);
            if message.reactions[i].users.is_empty() {
                message.reactions.remove(i);
            }
            removed
        }
        (false, None) => false,
    };
    if changed {
        let reaction = Reaction { emoji, users: Default::default() };
        let event = reaction_event(world, channel, message_id, user, &reaction);
        let name = if on { "MESSAGE_REACTION_ADD" } else { "MESSAGE_REACTION_REMOVE" };
        world.dispatch(name, event);
    }
    Ok(())
}

pub(super) async fn add_reaction(
    State(state): State<EmulatorState>,
    Path((channel_id, message_id, emoji_text)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let channel = visible(&world, &channel_id)?;
    world.require(world.bot_id, channel, permissions::READ_MESSAGE_HISTORY | permissions::ADD_REACTIONS)?;
    let message_id = snowflake(&message_id).ok_or_else(ApiError::unknown_message)?;
    let emoji = emoji(&emoji_text)?;
    let bot = world.bot_id;
    set_reaction(&mut world, channel, message_id, bot, emoji, true)?;
    drop(world);
    state.touch();
    Ok(no_content())
}

pub(super) async fn delete_own_reaction(
    State(state): State<EmulatorState>,
    Path((channel_id, message_id, emoji_text)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let channel = visible(&world, &channel_id)?;
    let message_id = snowflake(&message_id).ok_or_else(ApiError::unknown_message)?;
    let emoji = emoji(&emoji_text)?;
    let bot = world.bot_id;
    set_reaction(&mut world, channel, message_id, bot, emoji, false)?;
    drop(world);
    state.touch();
    Ok(no_content())
}

pub(super) async fn delete_user_reaction(
    State(state): State<EmulatorState>,
    Path((channel_id, message_id, emoji_text, user_id)): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let channel = visible(&world, &channel_id)?;
    world.require(world.bot_id, channel, permissions::MANAGE_MESSAGES)?;
    let message_id = snowflake(&message_id).ok_or_else(ApiError::unknown_message)?;
    let user = snowflake(&user_id).ok_or_else(ApiError::unknown_user)?;
    let emoji = emoji(&emoji_text)?;
    set_reaction(&mut world, channel, message_id, user, emoji, false)?;
    drop(world);
    state.touch();
    Ok(no_content())
}

pub(super) async fn delete_all_reactions_for(
    State(state): State<EmulatorState>,
    Path((channel_id, message_id, emoji_text)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let channel = visible(&world, &channel_id)?;
    world.require(world.bot_id, channel, permissions::MANAGE_MESSAGES)?;
    let message_id = snowflake(&message_id).ok_or_else(ApiError::unknown_message)?;
    let emoji = emoji(&emoji_text)?;
    world.message_mut(channel, message_id)?.reactions.retain(|r| r.emoji != emoji);
    drop(world);
    state.touch();
    Ok(no_content())
}

pub(super) async fn reaction_users(
    State(state): State<EmulatorState>,
    Path((channel_id, message_id, emoji_text)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let channel = visible(&world, &channel_id)?;
    let message_id = snowflake(&message_id).ok_or_else(ApiError::unknown_message)?;
    let emoji = emoji(&emoji_text)?;
    let message = world.message(channel, message_id)?;
    let users: Vec<Value> = message
        .reactions
        .iter()
        .find(|r| r.emoji == emoji)
        .map(|r| r.users.iter().map(|u| world.user_json(*u)).collect())
        .unwrap_or_default();
    Ok(Json(json!(users)))
}
