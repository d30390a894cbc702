//! Users, the application, and gateway discovery.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{JsonBody, host, snowflake};
use crate::error::{ApiError, FormErrors};
use crate::model::{Channel, Directory};
use crate::state::EmulatorState;

pub(super) async fn gateway(State(state): State<EmulatorState>, headers: HeaderMap) -> Json<Value> {
    Json(json!({ "url": format!("ws://{}", host(&state, &headers)) }))
}

pub(super) async fn gateway_bot(State(state): State<EmulatorState>, headers: HeaderMap) -> Json<Value> {
    let identify_interval = state.config().identify_interval.as_millis();
    let used = state.identify_count();
    Json(json!({
        "url": format!("ws://{}", host(&state, &headers)),
        "shards": 1,
        "session_start_limit": {
            "total": 1000,
            "remaining": 1000u64.saturating_sub(used),
            "reset_after": 86_400_000,
            "max_concurrency": 1,
        },
        "identify_interval_ms": identify_interval,
    }))
}

pub(super) async fn me(State(state): State<EmulatorState>) -> Json<Value> {
    Json(state.world().bot_json())
}

pub(super) async fn user(
    State(state): State<EmulatorState>,
    Path(user_id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let world = state.world();
    snowflake(&user_id)
        .and_then(|id| world.users.get(&id))
        .map(|u| Json(u.to_json()))
        .ok_or_else(ApiError::unknown_user)
}

pub(super) async fn my_guilds(State(state): State<EmulatorState>) -> Json<Value> {
    let world = state.world();
    let guilds: Vec<Value> = world
        .guilds
        .values()
        .filter(|g| g.members.contains_key(&world.bot_id))
        .map(|g| {
            json!({
                "id": g.id.to_string(),
                "name": g.name,
                "icon": null,
                "banner": null,
                "owner": false,
                "permissions": g.roles.iter().find(|r| r.id == g.id).map_or(0, |r| r.permissions).to_string(),
                "features": [],
            })
        })
        .collect();
    Json(json!(guilds))
}

/// The application flags Discord sets for the privileged intents a bot was
/// granted (the "limited" variants, as for a bot in fewer than 100 guilds).
fn intent_flags(privileged_intents: u64) -> u64 {
    const GUILD_PRESENCES: u64 = 1 << 8;
    const GUILD_MEMBERS: u64 = 1 << 1;
    const MESSAGE_CONTENT: u64 = 1 << 15;
    let mut flags = 0;
    if privileged_intents & GUILD_PRESENCES != 0 {
        flags |= 1 << 13; // GATEWAY_PRESENCE_LIMITED
    }
    if privileged_intents & GUILD_MEMBERS != 0 {
        flags |= 1 << 15; // GATEWAY_GUILD_MEMBERS_LIMITED
    }
    if privileged_intents & MESSAGE_CONTENT != 0 {
        flags |= 1 << 19; // GATEWAY_MESSAGE_CONTENT_LIMITED
    }
    flags
}

pub(super) async fn application(State(state): State<EmulatorState>) -> Json<Value> {
    let flags = intent_flags(state.config().privileged_intents);
    let world = state.world();
    Json(json!({
        "id": world.application_id.to_string(),
        "name": world.application_name,
        "icon": null,
        "description": "",
        "summary": "",
        "type": null,
        "bot_public": false,
        "bot_require_code_grant": false,
        "verify_key": "0".repeat(64),
        "owner": world.user_json(world.application_owner),
        "team": null,
        "flags": flags,
        "flags_new": flags.to_string(),
        "role_connections_verification_url": null,
        "approximate_user_install_count": 0,
        "approximate_user_authorization_count": 0,
        "explicit_content_filter": 0,
        "eligible_oauth2_scopes": [],
        "bot": world.bot_json(),
        "approximate_guild_count": world.guilds.len(),
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "tags": [],
    }))
}

pub(super) async fn create_dm(
    State(state): State<EmulatorState>,
    JsonBody(body): JsonBody,
) -> Result<Json<Value>, ApiError> {
    let Some(recipient) = body["recipient_id"].as_str().and_then(snowflake) else {
        let mut errors = FormErrors::default();
        errors.required(&["recipient_id"]);
        return Err(errors.into_result().expect_err("an error was added"));
    };
    let mut world = state.world();
    if !world.users.contains_key(&recipient) {
        return Err(ApiError::unknown_user());
    }
    let bot = world.bot_id;
    let existing = world.channels.values().find(|c| c.kind == 1 && c.recipients.contains(&recipient)).map(|c| c.id);
    let id = match existing {
        Some(id) => id,
        None => {
            let id = state.next_id();
            world.channels.insert(
                id,
                Channel {
                    id,
                    kind: 1,
                    guild_id: None,
                    name: String::new(),
                    parent_id: None,
                    topic: None,
                    position: 0,
                    overwrites: Vec::new(),
                    last_message_id: None,
                    rate_limit_per_user: 0,
                    thread: None,
                    recipients: vec![bot, recipient],
                    flags: 0,
                    available_tags: Vec::new(),
                },
            );
            id
        }
    };
    let mut json = world.channels[&id].to_json();
    json["recipients"] = json!([world.user_json(recipient)]);
    Ok(Json(json))
}

#[cfg(test)]
mod tests {
    use super::intent_flags;

    #[test]
    fn granted_intents_show_in_the_application_flags() {
        assert_eq!(intent_flags(1 << 15), 1 << 19);
        assert_eq!(intent_flags((1 << 1) | (1 << 8) | (1 << 15)), (1 << 13) | (1 << 15) | (1 << 19));
        assert_eq!(intent_flags(0), 0);
    }
}
