//! Threads: start with or without a message, forum posts, archive through PATCH, members.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde_json::{Value, json};

use super::channels::{attachments, visible};
use super::{JsonBody, MessageBody, no_content, respond, snowflake};
use crate::config::permissions;
use crate::error::{ApiError, FormErrors};
use crate::model::{Author, Directory};
use crate::snowflake::now_ms;
use crate::state::{EmulatorState, Extras, NewThread, World, thread_member_json};
use crate::validate;

/// Auto-archive durations Discord accepts, in minutes.
const ARCHIVE_DURATIONS: [u64; 4] = [60, 1440, 4320, 10_080];

fn archive_duration(errors: &mut FormErrors, body: &Value) -> u64 {
    match body.get("auto_archive_duration").and_then(Value::as_u64) {
        None => 4320,
        Some(d) if ARCHIVE_DURATIONS.contains(&d) => d,
        Some(_) => {
            errors.add(
                &["auto_archive_duration"],
                "BASE_TYPE_CHOICES",
                "Value must be one of {60, 1440, 4320, 10080}.".to_owned(),
            );
            4320
        }
    }
}

pub(super) async fn start_without_message(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
    headers: HeaderMap,
    body: MessageBody,
) -> Result<Response, ApiError> {
    let channel_id = snowflake(&channel_id).ok_or_else(ApiError::unknown_channel)?;
    let json = &body.json;
    let mut world = state.world();
    let parent = world.visible_channel(channel_id)?.clone();
    let mut errors = FormErrors::default();
    validate::thread_name(&mut errors, &json["name"]);
    let duration = archive_duration(&mut errors, json);
    let bot = world.bot_id;
    if parent.kind == 15 {
        // A forum post: a public thread whose first message has the thread's id.
        let message = &json["message"];
        if !message.is_object() {
            errors.required(&["message"]);
        }
        errors.into_result()?;
        world.require(bot, channel_id, permissions::SEND_MESSAGES)?;
        validate::message(message, true, body.files.len()).map_err(|mut e| {
            // Errors of the first message sit under `message` in the form tree.
            if let Some(tree) = e.body.get_mut("errors") {
                *tree = json!({ "message": tree.take() });
            }
            e
        })?;
        // Up to 5 of the forum's own tags; a forum that requires one refuses a post without.
        let tags: Vec<u64> = json["applied_tags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|t| t.as_str().and_then(snowflake))
                    .filter(|t| parent.available_tags.iter().any(|known| known.id == *t))
                    .take(5)
                    .collect()
            })
            .unwrap_or_default();
        if parent.flags & crate::config::REQUIRE_TAG != 0 && tags.is_empty() {
            return Err(ApiError::tag_required());
        }
        let id = state.next_id();
        let name = json["name"].as_str().unwrap_or_default().to_owned();
        world.create_thread(
            &parent,
            NewThread {
                id,
                kind: 11,
                name,
                owner_id: bot,
                auto_archive_duration: duration,
                applied_tags: tags,
                invitable: false,
            },
        );
        let files = attachments(&state, &headers, id, message, &body.files);
        let extras = Extras { id: Some(id), ..Extras::default() };
        let first = world.create_message(&state, id, Author::User(bot), message, files, extras)?;
        let mut thread = world.channels[&id].to_json();
        thread["message"] = first;
        thread["member"] = thread_member_json(id, bot, now_ms());
        drop(world);
        state.touch();
        return Ok(created(respond(thread, body.recorded)));
    }
    if !matches!(parent.kind, 0 | 5) {
        return Err(ApiError::wrong_channel_type());
    }
    let kind = json["type"].as_u64().unwrap_or(12);
    if !matches!(kind, 10..=12) {
        errors.add(&["type"], "BASE_TYPE_CHOICES", "Value must be one of {10, 11, 12}.".to_owned());
    }
    errors.into_result()?;
    let kind = u8::try_from(kind).expect("checked to be 10..=12");
    let needed = if kind == 12 { permissions::CREATE_PRIVATE_THREADS } else { permissions::CREATE_PUBLIC_THREADS };
    world.require(bot, channel_id, needed)?;
    let id = state.next_id();
    let name = json["name"].as_str().unwrap_or_default().to_owned();
    let invitable = json["invitable"].as_bool().unwrap_or(true);
    let mut thread = world.create_thread(
        &parent,
        NewThread {
            id,
            kind,
            name,
            owner_id: bot,
            auto_archive_duration: duration,
            applied_tags: Vec::new(),
            invitable,
        },
    );
    if kind != 12 {
        // Public threads without a starter message leave a "thread created" system message.
        let system = json!({ "content": thread["name"].clone() });
        let extras = Extras {
            kind: Some(18),
            reference: Some(json!({"channel_id": id.to_string(), "guild_id": parent.guild_id.map(|g| g.to_string())})),
            ..Extras::default()
        };
        world.create_message(&state, channel_id, Author::User(bot), &system, Vec::new(), extras)?;
    }
    thread["member"] = thread_member_json(id, bot, now_ms());
    drop(world);
    state.touch();
    Ok(created(respond(thread, None)))
}

/// Thread creation answers 201 Created.
fn created(mut response: Response) -> Response {
    *response.status_mut() = axum::http::StatusCode::CREATED;
    response
}

pub(super) async fn start_from_message(
    State(state): State<EmulatorState>,
    Path((channel_id, message_id)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let channel_id = visible(&world, &channel_id)?;
    let parent = world.channels[&channel_id].clone();
    if !matches!(parent.kind, 0 | 5) {
        return Err(ApiError::wrong_channel_type());
    }
    let message_id = snowflake(&message_id).ok_or_else(ApiError::unknown_message)?;
    if world.message(channel_id, message_id)?.thread_id.is_some() {
        return Err(ApiError::thread_already_created());
    }
    let mut errors = FormErrors::default();
    validate::thread_name(&mut errors, &body["name"]);
    let duration = archive_duration(&mut errors, &body);
    errors.into_result()?;
    let bot = world.bot_id;
    world.require(bot, channel_id, permissions::CREATE_PUBLIC_THREADS)?;
    let kind = if parent.kind == 5 { 10 } else { 11 };
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let mut thread = world.create_thread(
        &parent,
        NewThread {
            id: message_id,
            kind,
            name,
            owner_id: bot,
            auto_archive_duration: duration,
            applied_tags: Vec::new(),
            invitable: false,
        },
    );
    world.message_mut(channel_id, message_id)?.thread_id = Some(message_id);
    let message = world.message(channel_id, message_id)?;
    let update = world.message_event_json(message);
    world.dispatch("MESSAGE_UPDATE", update);
    thread["member"] = thread_member_json(message_id, bot, now_ms());
    drop(world);
    state.touch();
    Ok(created(respond(thread, None)))
}

pub(super) async fn modify_channel(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let mut world = state.world();
    let id = visible(&world, &channel_id)?;
    let bot = world.bot_id;
    let perms = world.permissions(bot, id);
    let mut errors = FormErrors::default();
    if body.get("name").is_some() {
        validate::thread_name(&mut errors, &body["name"]);
    }
    let duration = body.get("auto_archive_duration").map(|_| archive_duration(&mut errors, &body));
    errors.into_result()?;
    let channel = world.channels.get_mut(&id).expect("visible channels exist");
    let is_thread = channel.is_thread();
    if let Some(thread) = channel.thread.as_mut() {
        let own = thread.owner_id == bot;
        let locking = body.get("locked").is_some() || body.get("invitable").is_some();
        if (locking || !own) && perms & permissions::MANAGE_THREADS == 0 {
            return Err(ApiError::missing_permissions());
        }
        if thread.locked && perms & permissions::MANAGE_THREADS == 0 {
            return Err(ApiError::thread_archived());
        }
        if let Some(archived) = body["archived"].as_bool() {
            if archived != thread.archived {
                thread.archive_ms = now_ms();
            }
            thread.archived = archived;
        }
        if let Some(locked) = body["locked"].as_bool() {
            thread.locked = locked;
        }
        if let Some(invitable) = body["invitable"].as_bool() {
            thread.invitable = invitable;
        }
        if let Some(duration) = duration {
            thread.auto_archive_duration = duration;
        }
    } else if perms & permissions::MANAGE_CHANNELS == 0 {
        return Err(ApiError::missing_permissions());
    } else if let Some(topic) = body.get("topic") {
        channel.topic = topic.as_str().map(str::to_owned);
    }
    if let Some(name) = body["name"].as_str() {
        channel.name = name.to_owned();
    }
    let json = channel.to_json();
    world.dispatch(if is_thread { "THREAD_UPDATE" } else { "CHANNEL_UPDATE" }, json.clone());
    drop(world);
    state.touch();
    Ok(Json(json))
}

fn thread_id(world: &World, channel_id: &str) -> Result<u64, ApiError> {
    let id = visible(world, channel_id)?;
    if world.channels[&id].thread.is_none() {
        return Err(ApiError::wrong_channel_type());
    }
    Ok(id)
}

fn set_member(world: &mut World, thread: u64, user: u64, join: bool) -> Result<(), ApiError> {
    if join && !world.users.contains_key(&user) {
        return Err(ApiError::unknown_user());
    }
    let channel = world.channels.get_mut(&thread).expect("checked thread");
    let guild_id = channel.guild_id;
    let meta = channel.thread.as_mut().expect("checked thread");
    if meta.archived && join {
        return Err(ApiError::thread_archived());
    }
    let joined_ms = now_ms();
    let changed =
        if join { meta.members.insert(user, joined_ms).is_none() } else { meta.members.remove(&user).is_some() };
    if !changed {
        return Ok(());
    }
    let count = meta.members.len();
    let mut event = json!({
        "id": thread.to_string(),
        "guild_id": guild_id.map(|g| g.to_string()),
        "member_count": count,
    });
    if join {
        event["added_members"] = json!([thread_member_json(thread, user, joined_ms)]);
    } else {
        event["removed_member_ids"] = json!([user.to_string()]);
    }
    world.dispatch("THREAD_MEMBERS_UPDATE", event);
    Ok(())
}

pub(super) async fn join(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let thread = thread_id(&world, &channel_id)?;
    let bot = world.bot_id;
    set_member(&mut world, thread, bot, true)?;
    Ok(no_content())
}

pub(super) async fn leave(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let thread = thread_id(&world, &channel_id)?;
    let bot = world.bot_id;
    set_member(&mut world, thread, bot, false)?;
    Ok(no_content())
}

pub(super) async fn add_member(
    State(state): State<EmulatorState>,
    Path((channel_id, user_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let thread = thread_id(&world, &channel_id)?;
    let user = snowflake(&user_id).ok_or_else(ApiError::unknown_user)?;
    set_member(&mut world, thread, user, true)?;
    Ok(no_content())
}

pub(super) async fn remove_member(
    State(state): State<EmulatorState>,
    Path((channel_id, user_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    let thread = thread_id(&world, &channel_id)?;
    world.require(world.bot_id, thread, permissions::MANAGE_THREADS)?;
    let user = snowflake(&user_id).ok_or_else(ApiError::unknown_user)?;
    set_member(&mut world, thread, user, false)?;
    Ok(no_content())
}

pub(super) async fn get_member(
    State(state): State<EmulatorState>,
    Path((channel_id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let thread = thread_id(&world, &channel_id)?;
    let user = snowflake(&user_id).ok_or_else(ApiError::unknown_member)?;
    let joined = world.channels[&thread]
        .thread
        .as_ref()
        .and_then(|t| t.members.get(&user))
        .ok_or_else(ApiError::unknown_member)?;
    Ok(Json(thread_member_json(thread, user, *joined)))
}

pub(super) async fn list_members(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let thread = thread_id(&world, &channel_id)?;
    let members: Vec<Value> = world.channels[&thread]
        .thread
        .as_ref()
        .map(|t| t.members.iter().map(|(user, joined)| thread_member_json(thread, *user, *joined)).collect())
        .unwrap_or_default();
    Ok(Json(json!(members)))
}

pub(super) async fn archived_public(
    State(state): State<EmulatorState>,
    Path(channel_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let parent = visible(&world, &channel_id)?;
    world.require(world.bot_id, parent, permissions::READ_MESSAGE_HISTORY)?;
    let threads: Vec<Value> = world
        .channels
        .values()
        .filter(|c| c.parent_id == Some(parent) && matches!(c.kind, 10 | 11))
        .filter(|c| c.thread.as_ref().is_some_and(|t| t.archived))
        .map(|c| c.to_json())
        .collect();
    let bot = world.bot_id;
    let members: Vec<Value> = world
        .channels
        .values()
        .filter(|c| c.parent_id == Some(parent))
        .filter_map(|c| {
            let joined = c.thread.as_ref()?.members.get(&bot)?;
            Some(thread_member_json(c.id, bot, *joined))
        })
        .collect();
    let _ = world.user_json(bot);
    Ok(Json(json!({"threads": threads, "members": members, "has_more": false})))
}
