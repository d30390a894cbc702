//! Application commands: global and guild, bulk overwrite, create, get, edit, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::{JsonBody, no_content, snowflake};
use crate::error::{ApiError, FormErrors};
use crate::state::{EmulatorState, World};

/// Maximum commands per scope (global, or one guild) for each command type.
const COMMANDS_MAX: usize = 100;
/// Maximum command name length.
const NAME_MAX: usize = 32;
/// Maximum command and option description length.
const DESCRIPTION_MAX: usize = 100;
/// Maximum options per command.
const OPTIONS_MAX: usize = 25;

fn check_application(world: &World, application_id: &str) -> Result<(), ApiError> {
    if snowflake(application_id) == Some(world.application_id) { Ok(()) } else { Err(ApiError::missing_access()) }
}

fn check_guild(world: &World, guild_id: &str) -> Result<u64, ApiError> {
    snowflake(guild_id).filter(|g| world.guilds.contains_key(g)).ok_or_else(ApiError::missing_access)
}

fn validate_command(errors: &mut FormErrors, at: &[&str], command: &Value) {
    let path = |key| crate::error::child(at, key);
    let kind = command["type"].as_u64().unwrap_or(1);
    match command["name"].as_str() {
        None => errors.required(&path("name")),
        Some(name) => {
            let count = name.chars().count();
            let valid =
                kind != 1 || name.chars().all(|c| c == '-' || c == '_' || c.is_alphanumeric() && !c.is_uppercase());
            if count == 0 || count > NAME_MAX {
                errors.add(
                    &path("name"),
                    "BASE_TYPE_BAD_LENGTH",
                    format!("Must be between 1 and {NAME_MAX} in length."),
                );
            } else if !valid {
                errors.add(&path("name"), "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid".to_owned());
            }
        }
    }
    if kind == 1 {
        match command["description"].as_str() {
            None => errors.required(&path("description")),
            Some(d) if d.chars().count() > DESCRIPTION_MAX => {
                errors.too_long(&path("description"), DESCRIPTION_MAX);
            }
            Some(_) => {}
        }
    }
    if command["options"].as_array().is_some_and(|o| o.len() > OPTIONS_MAX) {
        errors.too_long(&path("options"), OPTIONS_MAX);
    }
}

fn normalize(world: &World, id: u64, guild: Option<u64>, command: &Value) -> Value {
    let mut out = json!({
        "id": id.to_string(),
        "application_id": world.application_id.to_string(),
        "version": id.to_string(),
        "default_member_permissions": null,
        "type": 1,
        "name": "",
        "name_localizations": null,
        "description": "",
        "description_localizations": null,
        "dm_permission": true,
        "contexts": null,
        "integration_types": [0],
        "nsfw": false,
    });
    if let Some(object) = command.as_object() {
        for (key, value) in object {
            if !matches!(key.as_str(), "id" | "application_id" | "version" | "guild_id") {
                out[key] = value.clone();
            }
        }
    }
    if let Some(guild) = guild {
        out["guild_id"] = json!(guild.to_string());
        if let Some(object) = out.as_object_mut() {
            object.remove("dm_permission");
        }
    }
    out
}

fn list(world: &World, guild: Option<u64>) -> Value {
    json!(world.commands.values().filter(|(g, _)| *g == guild).map(|(_, c)| c.clone()).collect::<Vec<_>>())
}

fn overwrite(state: &EmulatorState, guild: Option<u64>, body: &Value) -> Result<Value, ApiError> {
    let Some(commands) = body.as_array() else {
        return Err(ApiError::invalid_form_body(
            json!({"_errors": [{"code": "BASE_TYPE_ARRAY", "message": "Must be an array."}]}),
        ));
    };
    let mut errors = FormErrors::default();
    if commands.len() > COMMANDS_MAX {
        errors.too_long(&[], COMMANDS_MAX);
    }
    for (i, command) in commands.iter().enumerate() {
        validate_command(&mut errors, &[&i.to_string()], command);
    }
    errors.into_result()?;
    let mut world = state.world();
    // Commands keep their ids when a command of the same name and type is overwritten.
    let existing: Vec<(u64, String, u64)> = world
        .commands
        .iter()
        .filter(|(_, (g, _))| *g == guild)
        .map(|(id, (_, c))| (*id, c["name"].as_str().unwrap_or("").to_owned(), c["type"].as_u64().unwrap_or(1)))
        .collect();
    for (id, _, _) in &existing {
        world.commands.remove(id);
    }
    for command in commands {
        let name = command["name"].as_str().unwrap_or("");
        let kind = command["type"].as_u64().unwrap_or(1);
        let id =
            existing.iter().find(|(_, n, k)| n == name && *k == kind).map_or_else(|| state.next_id(), |(id, _, _)| *id);
        let json = normalize(&world, id, guild, command);
        world.commands.insert(id, (guild, json));
    }
    Ok(list(&world, guild))
}

/// Creates or replaces a command by name: 201 when new, 200 when it existed.
fn create(state: &EmulatorState, guild: Option<u64>, body: &Value) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut errors = FormErrors::default();
    validate_command(&mut errors, &[], body);
    errors.into_result()?;
    let mut world = state.world();
    let name = body["name"].as_str().unwrap_or("");
    let existing = world.commands.iter().find(|(_, (g, c))| *g == guild && c["name"] == name).map(|(id, _)| *id);
    let id = existing.unwrap_or_else(|| state.next_id());
    let json = normalize(&world, id, guild, body);
    world.commands.insert(id, (guild, json.clone()));
    let status = if existing.is_some() { StatusCode::OK } else { StatusCode::CREATED };
    Ok((status, Json(json)))
}

fn find(world: &World, guild: Option<u64>, command_id: &str) -> Result<u64, ApiError> {
    snowflake(command_id)
        .filter(|id| world.commands.get(id).is_some_and(|(g, _)| *g == guild))
        .ok_or_else(ApiError::unknown_application_command)
}

fn edit(state: &EmulatorState, guild: Option<u64>, command_id: &str, body: &Value) -> Result<Value, ApiError> {
    let mut world = state.world();
    let id = find(&world, guild, command_id)?;
    let mut merged = world.commands[&id].1.clone();
    if let Some(object) = body.as_object() {
        for (key, value) in object {
            merged[key] = value.clone();
        }
    }
    let mut errors = FormErrors::default();
    validate_command(&mut errors, &[], &merged);
    errors.into_result()?;
    merged["version"] = json!(state.next_id().to_string());
    world.commands.insert(id, (guild, merged.clone()));
    Ok(merged)
}

pub(super) async fn list_global(
    State(state): State<EmulatorState>,
    Path(app): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    check_application(&world, &app)?;
    Ok(Json(list(&world, None)))
}

pub(super) async fn overwrite_global(
    State(state): State<EmulatorState>,
    Path(app): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    check_application(&state.world(), &app)?;
    overwrite(&state, None, &body).map(Json)
}

pub(super) async fn create_global(
    State(state): State<EmulatorState>,
    Path(app): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    check_application(&state.world(), &app)?;
    create(&state, None, &body)
}

pub(super) async fn get_global(
    State(state): State<EmulatorState>,
    Path((app, command)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    check_application(&world, &app)?;
    let id = find(&world, None, &command)?;
    Ok(Json(world.commands[&id].1.clone()))
}

pub(super) async fn edit_global(
    State(state): State<EmulatorState>,
    Path((app, command)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    check_application(&state.world(), &app)?;
    edit(&state, None, &command, &body).map(Json)
}

pub(super) async fn delete_global(
    State(state): State<EmulatorState>,
    Path((app, command)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    check_application(&world, &app)?;
    let id = find(&world, None, &command)?;
    world.commands.remove(&id);
    Ok(no_content())
}

pub(super) async fn list_guild(
    State(state): State<EmulatorState>,
    Path((app, guild)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    check_application(&world, &app)?;
    let guild = check_guild(&world, &guild)?;
    Ok(Json(list(&world, Some(guild))))
}

pub(super) async fn overwrite_guild(
    State(state): State<EmulatorState>,
    Path((app, guild)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let guild = {
        let world = state.world();
        check_application(&world, &app)?;
        check_guild(&world, &guild)?
    };
    overwrite(&state, Some(guild), &body).map(Json)
}

pub(super) async fn create_guild(
    State(state): State<EmulatorState>,
    Path((app, guild)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let guild = {
        let world = state.world();
        check_application(&world, &app)?;
        check_guild(&world, &guild)?
    };
    create(&state, Some(guild), &body)
}

pub(super) async fn get_guild(
    State(state): State<EmulatorState>,
    Path((app, guild, command)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    check_application(&world, &app)?;
    let guild = check_guild(&world, &guild)?;
    let id = find(&world, Some(guild), &command)?;
    Ok(Json(world.commands[&id].1.clone()))
}

pub(super) async fn edit_guild(
    State(state): State<EmulatorState>,
    Path((app, guild, command)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let guild = {
        let world = state.world();
        check_application(&world, &app)?;
        check_guild(&world, &guild)?
    };
    edit(&state, Some(guild), &command, &body).map(Json)
}

pub(super) async fn delete_guild(
    State(state): State<EmulatorState>,
    Path((app, guild, command)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let mut world = state.world();
    check_application(&world, &app)?;
    let guild = check_guild(&world, &guild)?;
    let id = find(&world, Some(guild), &command)?;
    world.commands.remove(&id);
    Ok(no_content())
}
