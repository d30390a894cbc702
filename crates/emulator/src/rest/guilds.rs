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
