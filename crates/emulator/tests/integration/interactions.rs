//! Interactions: injected commands and clicks, callbacks, deadlines, followups.

use std::time::Duration;

use omp_discord_emulator::*;
use serde_json::{Value, json};

use crate::support::{call, call_as};

fn config(deadline_ms: u64) -> EmulatorConfig {
    EmulatorConfig {
        rate_limits: false,
        interaction_ack_deadline: Duration::from_millis(deadline_ms),
        ..EmulatorConfig::default()
    }
}

async fn register(state: &EmulatorState) {
    let path = format!("/api/v10/applications/{DEFAULT_APPLICATION_ID}/commands");
    let reply = call(state, "PUT", &path, Some(json!([{"name": "omp", "description": "Ask OMP", "options": [
        {"type": 1, "name": "ask", "description": "Ask", "options": [{"type": 3, "name": "prompt", "description": "p", "required": true}]}
    ]}]))).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
}

async fn inject(state: &EmulatorState, spec: Value) -> Value {
    let reply = call(state, "POST", "/_emulator/interactions", Some(spec)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["interaction"].clone()
}

fn callback_path(interaction: &Value) -> String {
    format!(
        "/api/v10/interactions/{}/{}/callback",
        interaction["id"].as_str().unwrap(),
        interaction["token"].as_str().unwrap()
    )
}

fn webhook_path(interaction: &Value) -> String {
    format!("/api/v10/webhooks/{DEFAULT_APPLICATION_ID}/{}", interaction["token"].as_str().unwrap())
}

#[tokio::test]
async fn slash_command_reply_followup_and_edit_original() {
    let state = EmulatorState::new(config(3000));
    register(&state).await;
    let interaction = inject(
        &state,
        json!({"type": "command", "name": "omp", "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(),
               "user_id": DEFAULT_OWNER_USER_ID.to_string(),
               "options": [{"type": 1, "name": "ask", "options": [{"type": 3, "name": "prompt", "value": "hi"}]}]}),
    )
    .await;
    assert_eq!(interaction["type"], 2);
    assert_eq!(interaction["data"]["name"], "omp");
    assert_eq!(interaction["member"]["user"]["id"], DEFAULT_OWNER_USER_ID.to_string());
    // Callbacks and followups need no bot token.
    let deferred = call_as(&state, "POST", &callback_path(&interaction), Some(json!({"type": 5})), None).await;
    assert_eq!(deferred.status, 204);
    let again =
        call_as(&state, "POST", &callback_path(&interaction), Some(json!({"type": 4, "data": {"content": "x"}})), None)
            .await;
    assert_eq!(again.body["code"], 40060);
    let edited = call_as(
        &state,
        "PATCH",
        &format!("{}/messages/@original", webhook_path(&interaction)),
        Some(json!({"content": "answer"})),
        None,
    )
    .await;
    assert_eq!(edited.body["content"], "answer");
    assert_eq!(edited.body["type"], 20);
    assert_eq!(edited.body["interaction_metadata"]["user"]["id"], DEFAULT_OWNER_USER_ID.to_string());
    let followup = call_as(&state, "POST", &webhook_path(&interaction), Some(json!({"content": "more"})), None).await;
    assert_eq!(followup.body["content"], "more");
    let recorded =
        call(&state, "GET", &format!("/_emulator/interactions/{}", interaction["id"].as_str().unwrap()), None).await;
    assert_eq!(recorded.body["response_type"], 5);
    assert_eq!(recorded.body["followup_ids"].as_array().unwrap().len(), 1);
    let unknown = inject_status(&state, json!({"type": "command", "name": "nope", "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string()})).await;
    assert_eq!(unknown, 404);
}

async fn inject_status(state: &EmulatorState, spec: Value) -> u16 {
    call(state, "POST", "/_emulator/interactions", Some(spec)).await.status.as_u16()
}

#[tokio::test]
async fn late_acknowledgement_is_unknown_interaction() {
    let state = EmulatorState::new(config(50));
    register(&state).await;
    let interaction = inject(
        &state,
        json!({"type": "command", "name": "omp", "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string()}),
    )
    .await;
    // Wait (with a deadline) until the acknowledgement window has passed.
    let waited = call(&state, "GET", "/_emulator/changes?timeout_ms=100", None).await;
    assert!(waited.status.is_success());
    let late = call_as(
        &state,
        "POST",
        &callback_path(&interaction),
        Some(json!({"type": 4, "data": {"content": "late"}})),
        None,
    )
    .await;
    assert_eq!((late.status.as_u16(), late.body["code"].clone()), (404, json!(10062)));
}

#[tokio::test]
async fn button_click_updates_the_message_and_stale_clicks_are_refused() {
    let state = EmulatorState::new(config(3000));
    let message = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/messages"),
        Some(json!({"content": "Run `rm -rf build`?", "components": [{"type": 1, "components": [
            {"type": 2, "style": 3, "label": "Approve", "custom_id": "approve:1"},
            {"type": 2, "style": 4, "label": "Deny", "custom_id": "deny:1"}
        ]}]})),
    )
    .await
    .body;
    let mid = message["id"].as_str().unwrap();
    let click = json!({"type": "button", "custom_id": "approve:1", "message_id": mid,
                       "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string()});
    let interaction = inject(&state, click.clone()).await;
    assert_eq!(interaction["type"], 3);
    assert_eq!(interaction["data"], json!({"custom_id": "approve:1", "component_type": 2}));
    assert_eq!(interaction["message"]["id"], mid);
    let update = call_as(
        &state,
        "POST",
        &format!("{}?with_response=true", callback_path(&interaction)),
        Some(json!({"type": 7, "data": {"content": "Approved", "components": []}})),
        None,
    )
    .await;
    assert_eq!(update.body["resource"]["message"]["content"], "Approved");
    assert_eq!(state.messages(DEFAULT_HOME_CHANNEL_ID)[0]["components"], json!([]));
    // The buttons are gone: a second click cannot happen.
    assert_eq!(inject_status(&state, click).await, 400);
}

#[tokio::test]
async fn modal_round_trip() {
    let state = EmulatorState::new(config(3000));
    register(&state).await;
    let command = inject(
        &state,
        json!({"type": "command", "name": "omp", "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string()}),
    )
    .await;
    let modal = call_as(
        &state,
        "POST",
        &callback_path(&command),
        Some(json!({"type": 9, "data": {"custom_id": "ask", "title": "Ask OMP", "components": [
            {"type": 1, "components": [{"type": 4, "custom_id": "prompt", "style": 2, "label": "Prompt"}]}
        ]}})),
        None,
    )
    .await;
    assert_eq!(modal.status, 204);
    let submit = inject(
        &state,
        json!({"type": "modal", "custom_id": "ask", "fields": {"prompt": "build it"},
               "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string()}),
    )
    .await;
    assert_eq!(submit["type"], 5);
    assert_eq!(submit["data"]["components"][0]["components"][0]["value"], "build it");
    let ephemeral = call_as(
        &state,
        "POST",
        &callback_path(&submit),
        Some(json!({"type": 4, "data": {"content": "only you", "flags": 64}})),
        None,
    )
    .await;
    assert_eq!(ephemeral.status, 204);
    // Submitted once, the modal is closed: a second submit has nothing to answer.
    let again = json!({"type": "modal", "custom_id": "ask", "fields": {"prompt": "x"},
               "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string()});
    assert_eq!(inject_status(&state, again.clone()).await, 400);
    // A modal shown to one person cannot be submitted by another, nor with unknown or empty fields.
    let command = inject(
        &state,
        json!({"type": "command", "name": "omp", "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string()}),
    )
    .await;
    let reopen = json!({"type": 9, "data": {"custom_id": "ask", "title": "Ask OMP", "components": [
        {"type": 1, "components": [{"type": 4, "custom_id": "prompt", "style": 2, "label": "Prompt", "max_length": 5}]}
    ]}});
    assert_eq!(call_as(&state, "POST", &callback_path(&command), Some(reopen), None).await.status, 204);
    let mut stranger = again.clone();
    stranger["user_id"] = json!(DEFAULT_GUEST_USER_ID.to_string());
    assert_eq!(inject_status(&state, stranger).await, 400);
    for fields in [json!({"other": "x"}), json!({"prompt": ""}), json!({"prompt": "too long"})] {
        let mut bad = again.clone();
        bad["fields"] = fields;
        assert_eq!(inject_status(&state, bad).await, 400);
    }
    // Discord numbers every component of a submitted modal (clients rely on the ids).
    let submit2 = inject(&state, again).await;
    assert_eq!(submit2["data"]["components"][0]["id"], 1);
    assert_eq!(submit2["data"]["components"][0]["components"][0]["id"], 2);
    // A modal cannot answer a modal, and a modal needs rows of text inputs within the limits.
    let invalid = call_as(
        &state,
        "POST",
        &callback_path(&submit2),
        Some(json!({"type": 9, "data": {"custom_id": "a", "title": "t", "components": []}})),
        None,
    )
    .await;
    assert_eq!(invalid.status, 400);
    let command = inject(
        &state,
        json!({"type": "command", "name": "omp", "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string()}),
    )
    .await;
    let too_long_label = json!({"type": 9, "data": {"custom_id": "a", "title": "t", "components": [
        {"type": 1, "components": [{"type": 4, "custom_id": "p", "style": 1, "label": "l".repeat(46)}]}
    ]}});
    assert_eq!(call_as(&state, "POST", &callback_path(&command), Some(too_long_label), None).await.status, 400);
}

#[tokio::test]
async fn wait_returns_once_the_bot_answered() {
    let emulator = Emulator::start(config(3000)).await.unwrap();
    let state = emulator.state().clone();
    register(&state).await;
    // A "bot" task answering every interaction it sees in the state.
    let bot = tokio::spawn({
        let state = state.clone();
        async move {
            loop {
                let snapshot = state.snapshot();
                if let Some(pending) = snapshot["interactions"].as_array().and_then(|all| all.first()) {
                    let id = pending["id"].as_str().unwrap().to_owned();
                    let token = state.interaction_token(id.parse().unwrap()).unwrap();
                    let path = format!("/api/v10/interactions/{id}/{token}/callback");
                    call_as(&state, "POST", &path, Some(json!({"type": 4, "data": {"content": "pong"}})), None).await;
                    return;
                }
                tokio::task::yield_now().await;
            }
        }
    });
    let reply = call(
        &state,
        "POST",
        "/_emulator/interactions",
        Some(json!({"type": "command", "name": "omp", "wait": true,
                    "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string()})),
    )
    .await;
    assert_eq!(reply.body["state"]["acknowledged"], true);
    assert_eq!(reply.body["state"]["response_type"], 4);
    bot.await.unwrap();
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_change_made_between_two_polls_is_not_missed() {
    let state = EmulatorState::new(config(3000));
    let first = call(&state, "GET", "/_emulator/changes?timeout_ms=50", None).await;
    assert_eq!(first.status.as_u16(), 204, "nothing changed yet");
    let message = json!({
        "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string(), "content": "hi"
    });
    let posted = call(&state, "POST", "/_emulator/messages", Some(message)).await;
    assert!(posted.status.is_success(), "{:?}", posted.body);
    // The caller saw generation 0; the message came while it was not polling.
    let next = call(&state, "GET", "/_emulator/changes?timeout_ms=5000&since=0", None).await;
    assert_eq!(next.status.as_u16(), 200);
    let generation = next.body["generation"].as_u64().unwrap();
    assert!(generation > 0, "{:?}", next.body);
    // Up to date: it waits for the next change.
    let idle = call(&state, "GET", &format!("/_emulator/changes?timeout_ms=50&since={generation}"), None).await;
    assert_eq!(idle.status.as_u16(), 204);
}
