//! The control API: injected messages, reset, and fault injection for REST and gateway.

use std::time::Duration;

use omp_discord_emulator::*;
use serde_json::json;

use crate::gateway::{Client, Received, fast_config};
use crate::support::{call, state};

#[tokio::test]
async fn injected_messages_are_stored_and_reset_restores_the_seed() {
    let state = state();
    let reply = call(
        &state,
        "POST",
        "/_emulator/messages",
        Some(json!({"channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": DEFAULT_GUEST_USER_ID.to_string(), "content": "hi bot"})),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["author"]["id"], DEFAULT_GUEST_USER_ID.to_string());
    let listed = call(&state, "GET", &format!("/_emulator/channels/{DEFAULT_HOME_CHANNEL_ID}/messages"), None).await;
    assert_eq!(listed.body[0]["content"], "hi bot");
    let unknown = call(&state, "POST", "/_emulator/messages", Some(json!({"channel_id": "1", "content": "x"}))).await;
    assert_eq!(unknown.status, 404);
    let snapshot = call(&state, "GET", "/_emulator/state", None).await.body;
    assert_eq!(snapshot["messages"][DEFAULT_HOME_CHANNEL_ID.to_string()].as_array().unwrap().len(), 1);
    assert_eq!(call(&state, "POST", "/_emulator/reset", None).await.status, 204);
    assert!(state.messages(DEFAULT_HOME_CHANNEL_ID).is_empty());
    assert!(state.requests().is_empty());
}

#[tokio::test]
async fn counted_server_errors_then_recovery() {
    let state = state();
    call(
        &state,
        "POST",
        "/_emulator/faults",
        Some(json!({"http": {"status": 503, "count": 2, "path_prefix": "/users"}})),
    )
    .await;
    assert_eq!(call(&state, "GET", "/api/v10/users/@me", None).await.status, 503);
    assert_eq!(call(&state, "GET", &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}"), None).await.status, 200);
    assert_eq!(call(&state, "GET", "/api/v10/users/@me", None).await.status, 503);
    assert_eq!(call(&state, "GET", "/api/v10/users/@me", None).await.status, 200);
}

#[tokio::test]
async fn injected_429_has_discords_body_and_headers() {
    let state = state();
    call(
        &state,
        "POST",
        "/_emulator/faults",
        Some(json!({"http": {"status": 429, "count": 1, "retry_after": 2.5, "global": true}})),
    )
    .await;
    let limited = call(&state, "GET", "/api/v10/users/@me", None).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body, json!({"message": "You are being rate limited.", "retry_after": 2.5, "global": true}));
    assert_eq!(limited.headers["retry-after"], "3");
    assert_eq!(limited.headers["x-ratelimit-global"], "true");
    assert_eq!(limited.headers["via"], "1.1 google");
}

#[tokio::test]
async fn fraction_one_fails_everything_and_delete_clears() {
    let state = state();
    call(&state, "POST", "/_emulator/faults", Some(json!({"http": {"status": 500, "fraction": 1.0}}))).await;
    for _ in 0..3 {
        assert_eq!(call(&state, "GET", "/api/v10/users/@me", None).await.status, 500);
    }
    assert_eq!(call(&state, "DELETE", "/_emulator/faults", None).await.status, 204);
    assert_eq!(call(&state, "GET", "/api/v10/users/@me", None).await.status, 200);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_rest_responses() {
    let state = state();
    call(&state, "POST", "/_emulator/faults", Some(json!({"latency_ms": 1500}))).await;
    let started = tokio::time::Instant::now();
    assert_eq!(call(&state, "GET", "/api/v10/users/@me", None).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn revoked_token_is_401_on_rest_and_4004_on_the_gateway() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let state = emulator.state();
    call(state, "POST", "/_emulator/faults", Some(json!({"revoke_token": true}))).await;
    let denied = call(state, "GET", "/api/v10/users/@me", None).await;
    assert_eq!(
        (denied.status.as_u16(), denied.body.clone()),
        (401, json!({"message": "401: Unauthorized", "code": 0}))
    );
    let mut client = Client::connect(&emulator, "").await;
    client.payload().await;
    client.send(json!({"op": 2, "d": {"token": DEFAULT_BOT_TOKEN, "intents": 1, "properties": {}}})).await;
    assert_eq!(client.close_code().await, Some(4004));
    call(state, "POST", "/_emulator/faults", Some(json!({"revoke_token": false}))).await;
    assert_eq!(call(state, "GET", "/api/v10/users/@me", None).await.status, 200);
    emulator.shutdown().await;
}

#[tokio::test]
async fn gateway_faults_reach_open_connections() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let state = emulator.state();
    let mut client = Client::connect(&emulator, "").await;
    client.identify(1).await;
    client.dispatch("GUILD_CREATE").await;
    let sent = call(state, "POST", "/_emulator/faults", Some(json!({"gateway": {"action": "reconnect"}}))).await;
    assert_eq!(sent.body["connections"], 1);
    assert_eq!(client.payload().await["op"], 7);
    call(
        state,
        "POST",
        "/_emulator/faults",
        Some(json!({"gateway": {"action": "invalid_session", "resumable": true}})),
    )
    .await;
    assert_eq!(client.payload().await, json!({"op": 9, "d": true, "s": null, "t": null}));
    call(state, "POST", "/_emulator/faults", Some(json!({"gateway": {"action": "close", "code": 4000}}))).await;
    assert_eq!(client.close_code().await, Some(4000));
    let mut dropped = Client::connect(&emulator, "").await;
    dropped.payload().await;
    call(state, "POST", "/_emulator/faults", Some(json!({"gateway": {"action": "drop"}}))).await;
    assert!(matches!(dropped.recv().await, Received::Closed(None)));
    emulator.shutdown().await;
}

#[tokio::test]
async fn stalled_gateway_withholds_acks_and_events_until_cleared() {
    let emulator = Emulator::start(fast_config()).await.unwrap();
    let state = emulator.state();
    let mut client = Client::connect(&emulator, "").await;
    client.identify(1 | (1 << 9) | (1 << 15)).await;
    client.dispatch("GUILD_CREATE").await;
    call(state, "POST", "/_emulator/faults", Some(json!({"stall_gateway": true}))).await;
    client.send(json!({"op": 1, "d": 2})).await;
    state.inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": "held"})).unwrap();
    // Nothing arrives while stalled; clearing the fault releases the queued event.
    let quiet = tokio::time::timeout(Duration::from_millis(300), client.recv()).await;
    assert!(quiet.is_err(), "a stalled gateway sent {quiet:?}");
    call(state, "POST", "/_emulator/faults", Some(json!({"stall_gateway": false}))).await;
    assert_eq!(client.dispatch("MESSAGE_CREATE").await["d"]["content"], "held");
    emulator.shutdown().await;
}

#[tokio::test]
async fn recorded_requests_are_capped_and_can_be_cleared() {
    let state = EmulatorState::new(EmulatorConfig { max_recorded_requests: 3, ..EmulatorConfig::default() });
    for _ in 0..5 {
        call(&state, "GET", "/api/v10/users/@me", None).await;
    }
    call(&state, "GET", "/api/v10/gateway/bot", None).await;
    let recorded = state.requests();
    assert_eq!(recorded.len(), 3);
    assert_eq!(recorded[2].path, "/api/v10/gateway/bot", "the newest are kept");
    assert_eq!(call(&state, "DELETE", "/_emulator/requests", None).await.status, 204);
    assert!(state.requests().is_empty());
}
