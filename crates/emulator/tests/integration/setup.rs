//! What a guided bot setup needs: a bot that is not in any guild until invited (then
//! GUILD_CREATE), creating a home channel with permission overwrites, an application
//! without the Message Content intent, and a webhook checked and executed with its token.

use omp_discord_emulator::*;
use serde_json::json;

use crate::gateway::{Client, fast_config};
use crate::support::call;

const GUILDS: u64 = 1;
const MANAGE_CHANNELS: u64 = 1 << 4;
const VIEW_CHANNEL: u64 = 1 << 10;
const SEND_MESSAGES: u64 = 1 << 11;
const MANAGE_ROLES: u64 = 1 << 28;

fn uninvited() -> EmulatorConfig {
    let mut config = fast_config();
    config.seed.guilds[0].bot_invited = false;
    config.seed.guilds[0].members.retain(|m| m.user_id != DEFAULT_BOT_USER_ID);
    // Discord makes the bot's managed role when the bot joins.
    config.seed.guilds[0].roles.retain(|r| !r.managed);
    config
}

#[tokio::test]
async fn an_uninvited_bot_sees_no_guild_until_it_joins_then_gets_guild_create() {
    let emulator = Emulator::start(uninvited()).await.unwrap();
    let state = emulator.state();
    assert_eq!(call(state, "GET", "/api/v10/users/@me/guilds", None).await.body, json!([]));
    let guild = format!("/api/v10/guilds/{DEFAULT_GUILD_ID}");
    assert_eq!(call(state, "GET", &guild, None).await.body["code"], 10004);

    let mut client = Client::connect(&emulator, "").await;
    let ready = client.identify(GUILDS).await;
    assert_eq!(ready["d"]["guilds"], json!([]), "READY lists only the guilds the bot is in");

    let bits = VIEW_CHANNEL | SEND_MESSAGES | MANAGE_CHANNELS;
    state.invite_bot(DEFAULT_GUILD_ID, bits).unwrap();
    let created = client.dispatch("GUILD_CREATE").await;
    assert_eq!(created["d"]["id"], DEFAULT_GUILD_ID.to_string());
    // The invite made a managed role named after the bot with exactly the invited bits.
    let role = created["d"]["roles"].as_array().unwrap().iter().find(|r| r["managed"] == true).cloned().unwrap();
    assert_eq!((role["name"].as_str(), role["permissions"].as_str()), (Some("omp"), Some(&*bits.to_string())));
    let listed = call(state, "GET", "/api/v10/users/@me/guilds", None).await.body;
    assert_eq!(listed[0]["id"], DEFAULT_GUILD_ID.to_string());
    // Joining again changes nothing.
    state.invite_bot(DEFAULT_GUILD_ID, bits).unwrap();
    let roles = call(state, "GET", &format!("{guild}/roles"), None).await.body;
    assert_eq!(roles.as_array().unwrap().iter().filter(|r| r["managed"] == true).count(), 1);
    assert_eq!(state.invite_bot(42, 0).unwrap_err()["code"], 10004);
}

#[tokio::test]
async fn the_control_api_invites_the_bot() {
    let emulator = Emulator::start(uninvited()).await.unwrap();
    let answer = call(
        emulator.state(),
        "POST",
        &format!("/_emulator/guilds/{DEFAULT_GUILD_ID}/bot"),
        Some(json!({"permissions": "3072"})),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["id"], DEFAULT_GUILD_ID.to_string());
    let listed = call(emulator.state(), "GET", "/api/v10/users/@me/guilds", None).await.body;
    assert_eq!(listed.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn creating_a_channel_needs_manage_channels_and_only_grants_what_the_bot_has() {
    let emulator = Emulator::start(uninvited()).await.unwrap();
    let state = emulator.state();
    let path = format!("/api/v10/guilds/{DEFAULT_GUILD_ID}/channels");
    let bot = DEFAULT_BOT_USER_ID.to_string();
    state.invite_bot(DEFAULT_GUILD_ID, VIEW_CHANNEL | SEND_MESSAGES).unwrap();
    let body = json!({"name": "omp-home", "type": 0});
    assert_eq!(call(state, "POST", &path, Some(body.clone())).await.body["code"], 50013, "no Manage Channels");

    let emulator = Emulator::start(uninvited()).await.unwrap();
    let state = emulator.state();
    state.invite_bot(DEFAULT_GUILD_ID, VIEW_CHANNEL | SEND_MESSAGES | MANAGE_CHANNELS).unwrap();
    let overwrites = json!([
        {"id": DEFAULT_GUILD_ID.to_string(), "type": 0, "allow": "0", "deny": SEND_MESSAGES.to_string()},
        {"id": bot, "type": 1, "allow": (VIEW_CHANNEL | SEND_MESSAGES).to_string(), "deny": "0"},
    ]);
    let made = call(
        state,
        "POST",
        &path,
        Some(json!({"name": "omp-home", "type": 15, "parent_id": DEFAULT_CATEGORY_ID.to_string(),
                    "permission_overwrites": overwrites})),
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_eq!((made.body["type"].as_u64(), made.body["name"].as_str()), (Some(15), Some("omp-home")));
    assert_eq!(made.body["permission_overwrites"].as_array().unwrap().len(), 2);
    let id = made.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        call(state, "GET", &format!("/api/v10/channels/{id}"), None).await.body["guild_id"],
        DEFAULT_GUILD_ID.to_string()
    );

    // Granting a bit the bot lacks in the guild is refused, as on Discord.
    let escalate = json!([{"id": bot, "type": 1, "allow": MANAGE_ROLES.to_string(), "deny": "0"}]);
    let refused = call(state, "POST", &path, Some(json!({"name": "x", "permission_overwrites": escalate}))).await;
    assert_eq!(refused.body["code"], 50013);
    // A bad type or a missing name is a form error.
    let bad = call(state, "POST", &path, Some(json!({"name": "x", "type": 11}))).await;
    assert_eq!(bad.body["code"], 50035);
    assert_eq!(bad.body["errors"]["type"]["_errors"][0]["code"], "BASE_TYPE_CHOICES");
    let nameless = call(state, "POST", &path, Some(json!({"type": 0}))).await;
    assert_eq!(nameless.body["errors"]["name"]["_errors"][0]["code"], "BASE_TYPE_REQUIRED");
}

#[tokio::test]
async fn an_application_without_the_intent_has_no_message_content_flag() {
    let state = EmulatorState::new(EmulatorConfig { privileged_intents: 0, ..EmulatorConfig::default() });
    let app = call(&state, "GET", "/api/v10/oauth2/applications/@me", None).await.body;
    assert_eq!(app["flags"].as_u64().unwrap() & ((1 << 18) | (1 << 19)), 0);
    let state = EmulatorState::new(EmulatorConfig::default());
    let app = call(&state, "GET", "/api/v10/oauth2/applications/@me", None).await.body;
    assert_ne!(app["flags"].as_u64().unwrap() & ((1 << 18) | (1 << 19)), 0);
}
