//! Guilds, their channels, roles, members and active threads.

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use super::snowflake;
use crate::config::permissions;
use crate::error::ApiError;
use crate::model::{Channel, Directory, Guild};
use crate::state::{EmulatorState, World};

fn find_guild<'w>(world: &'w World, guild_id: &str) -> Result<&'w Guild, ApiError> {
    snowflake(guild_id)
        .and_then(|id| world.guilds.get(&id))
        .filter(|g| g.members.contains_key(&world.bot_id))
        .ok_or_else(ApiError::unknown_guild)
}

pub(super) async fn guild(
    State(state): State<EmulatorState>,
    Path(guild_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    Ok(Json(find_guild(&world, &guild_id)?.to_json(world.bot_id)))
}

pub(super) async fn channels(
    State(state): State<EmulatorState>,
    Path(guild_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let id = find_guild(&world, &guild_id)?.id;
    let channels: Vec<Value> = world
        .channels
        .values()
        .filter(|c| c.guild_id == Some(id) && !c.is_thread())
        .filter(|c| world.permissions(world.bot_id, c.id) & permissions::VIEW_CHANNEL != 0)
        .map(Channel::to_json)
        .collect();
    Ok(Json(json!(channels)))
}

pub(super) async fn roles(
    State(state): State<EmulatorState>,
    Path(guild_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let guild = find_guild(&world, &guild_id)?;
    Ok(Json(json!(guild.roles.iter().map(|r| r.to_json(world.bot_id)).collect::<Vec<_>>())))
}

#[derive(Deserialize)]
pub(super) struct MembersQuery {
    limit: Option<usize>,
    after: Option<String>,
}

pub(super) async fn members(
    State(state): State<EmulatorState>,
    Path(guild_id): Path<String>,
    Query(query): Query<MembersQuery>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let guild = find_guild(&world, &guild_id)?;
    let after = query.after.as_deref().and_then(snowflake).unwrap_or(0);
    let members: Vec<Value> = guild
        .members
        .range(after + 1..)
        .take(query.limit.unwrap_or(1).clamp(1, 1000))
        .map(|(id, m)| {
            let mut json = m.to_json();
            json["user"] = world.user_json(*id);
            json
        })
        .collect();
    Ok(Json(json!(members)))
}

pub(super) async fn member(
    State(state): State<EmulatorState>,
    Path((guild_id, user_id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let guild = find_guild(&world, &guild_id)?;
    let id = snowflake(&user_id).ok_or_else(ApiError::unknown_member)?;
    let member = guild.members.get(&id).ok_or_else(ApiError::unknown_member)?;
    let mut json = member.to_json();
    json["user"] = world.user_json(id);
    Ok(Json(json))
}

pub(super) async fn active_threads(
    State(state): State<EmulatorState>,
    Path(guild_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    let id = find_guild(&world, &guild_id)?.id;
    let threads: Vec<&Channel> = world
        .channels
        .values()
        .filter(|c| c.guild_id == Some(id))
        .filter(|c| c.thread.as_ref().is_some_and(|t| !t.archived))
        .collect();
    let members: Vec<Value> = threads
        .iter()
        .filter_map(|t| {
            let joined = t.thread.as_ref()?.members.get(&world.bot_id)?;
            Some(crate::state::thread_member_json(t.id, world.bot_id, *joined))
        })
        .collect();
    Ok(Json(json!({
        "threads": threads.iter().map(|t| t.to_json()).collect::<Vec<_>>(),
        "members": members,
    })))
}

/// Channel types a bot may create here: text, category, announcement, forum.
const CREATABLE: [u8; 4] = [0, 4, 5, 15];

/// `POST /guilds/{id}/channels`: needs Manage Channels; overwrites may only allow or
/// deny what the bot itself has in the guild (as on Discord), else 50013.
pub(super) async fn create_channel(
    State(state): State<EmulatorState>,
    Path(guild_id): Path<String>,
    crate::rest::JsonBody(body): crate::rest::JsonBody,
) -> Result<Json<Value>, ApiError> {
    use crate::error::FormErrors;
    use crate::model::Overwrite;
    let mut world = state.world();
    let guild = find_guild(&world, &guild_id)?.id;
    let has = world.guild_permissions(world.bot_id, guild);
    if has & permissions::MANAGE_CHANNELS == 0 {
        return Err(ApiError::missing_permissions());
    }
    let mut errors = FormErrors::default();
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    match body["name"].as_str().map(|n| n.chars().count()) {
        None => errors.required(&["name"]),
        Some(0) | Some(101..) => {
            errors.add(&["name"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.".to_owned())
        }
        Some(_) => {}
    }
    let kind = match &body["type"] {
        Value::Null => 0,
        value => match value.as_u64().and_then(|k| u8::try_from(k).ok()).filter(|k| CREATABLE.contains(k)) {
            Some(kind) => kind,
            None => {
                errors.add(&["type"], "BASE_TYPE_CHOICES", format!("Value must be one of {CREATABLE:?}."));
                0
            }
        },
    };
    let parent_id = match &body["parent_id"] {
        Value::Null => None,
        value => {
            let parent = value.as_str().and_then(snowflake);
            let is_category =
                parent.and_then(|p| world.channels.get(&p)).is_some_and(|c| c.kind == 4 && c.guild_id == Some(guild));
            if !is_category || kind == 4 {
                errors.add(&["parent_id"], "CHANNEL_PARENT_INVALID", "Category does not exist".to_owned());
            }
            parent
        }
    };
    let mut overwrites = Vec::new();
    for (i, raw) in body["permission_overwrites"].as_array().map(Vec::as_slice).unwrap_or_default().iter().enumerate() {
        let index = i.to_string();
        let bits = |key: &str| match &raw[key] {
            Value::Null => Some(0),
            Value::String(s) => s.parse::<u64>().ok(),
            Value::Number(n) => n.as_u64(),
            _ => None,
        };
        let id = raw["id"].as_str().and_then(snowflake);
        let kind = raw["type"].as_u64().filter(|k| *k <= 1);
        match (id, kind, bits("allow"), bits("deny")) {
            (Some(id), Some(kind), Some(allow), Some(deny)) => {
                overwrites.push(Overwrite { id, kind: kind as u8, allow, deny });
            }
            _ => errors.add(
                &["permission_overwrites", &index],
                "BASE_TYPE_INVALID",
                "Overwrites need id, type (0 role, 1 member), allow and deny.".to_owned(),
            ),
        }
    }
    errors.into_result()?;
    if overwrites.iter().any(|o| (o.allow | o.deny) & !has != 0) {
        return Err(ApiError::missing_permissions());
    }
    let id = state.next_id();
    let position = world.channels.values().filter(|c| c.guild_id == Some(guild)).count() as i64;
    let channel = Channel {
        id,
        kind,
        guild_id: Some(guild),
        name,
        parent_id,
        topic: body["topic"].as_str().map(str::to_owned),
        position,
        overwrites,
        last_message_id: None,
        rate_limit_per_user: body["rate_limit_per_user"].as_u64().unwrap_or(0),
        thread: None,
        recipients: Vec::new(),
        flags: 0,
        available_tags: Vec::new(),
    };
    let json = channel.to_json();
    world.channels.insert(id, channel);
    world.dispatch("CHANNEL_CREATE", json.clone());
    drop(world);
    state.touch();
    Ok(Json(json))
}
