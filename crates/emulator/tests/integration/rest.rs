//! REST routes through `app()` with `oneshot`.

use omp_discord_emulator::*;
use serde_json::{Value, json};

use crate::support::{call, call_as, state};

fn messages_path(channel: u64) -> String {
    format!("/api/v10/channels/{channel}/messages")
}

#[tokio::test]
async fn users_me_and_application_have_what_clients_read_at_login() {
    let state = state();
    let me = call(&state, "GET", "/api/v10/users/@me", None).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.headers["content-type"], "application/json");
    assert_eq!(me.body["id"], DEFAULT_BOT_USER_ID.to_string());
    for key in ["username", "discriminator", "avatar", "bot"] {
        assert!(me.body.get(key).is_some(), "users/@me lacks {key}");
    }
    let app = call(&state, "GET", "/api/v10/oauth2/applications/@me", None).await;
    for key in ["id", "name", "icon", "description", "bot_public", "bot_require_code_grant", "owner", "verify_key"] {
        assert!(app.body.get(key).is_some(), "application lacks {key}");
    }
    let gateway = call(&state, "GET", "/api/v10/gateway/bot", None).await;
    assert!(gateway.body["url"].as_str().unwrap().starts_with("ws://"));
    assert_eq!(gateway.body["session_start_limit"]["max_concurrency"], 1);
}

#[tokio::test]
async fn wrong_or_missing_token_is_401_and_recorded_masked() {
    let state = state();
    let wrong = call_as(&state, "GET", "/api/v10/users/@me", None, Some("Bot nope")).await;
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.body, json!({"message": "401: Unauthorized", "code": 0}));
    let missing = call_as(&state, "GET", "/api/v10/users/@me", None, None).await;
    assert_eq!(missing.status, 401);
    call(&state, "GET", "/api/v10/users/@me", None).await;
    let recorded = serde_json::to_string(&state.requests()).unwrap();
    assert!(!recorded.contains(DEFAULT_BOT_TOKEN));
    assert!(recorded.contains("Bot <redacted>"));
}

#[tokio::test]
async fn create_message_returns_discords_message_object() {
    let state = state();
    let reply = call(
        &state,
        "POST",
        &messages_path(DEFAULT_HOME_CHANNEL_ID),
        Some(json!({"content": "hello", "nonce": "n-1", "allowed_mentions": {"parse": []}})),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.headers["content-type"], "application/json");
    let message = reply.body;
    for key in [
        "id",
        "channel_id",
        "author",
        "content",
        "timestamp",
        "edited_timestamp",
        "tts",
        "mention_everyone",
        "mentions",
        "mention_roles",
        "attachments",
        "embeds",
        "components",
        "pinned",
        "type",
        "flags",
        "nonce",
    ] {
        assert!(message.get(key).is_some(), "message lacks {key}");
    }
    assert_eq!(message["channel_id"], DEFAULT_HOME_CHANNEL_ID.to_string());
    assert_eq!(message["author"]["id"], DEFAULT_BOT_USER_ID.to_string());
    assert_eq!(message["nonce"], "n-1");
    // A time-based snowflake (Discord epoch 2015) whose time matches the timestamp.
    let id: u64 = message["id"].as_str().unwrap().parse().unwrap();
    let ms = (id >> 22) + 1_420_070_400_000;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    assert!(now.abs_diff(ms) < 60_000);
    let stored = state.messages(DEFAULT_HOME_CHANNEL_ID);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["allowed_mentions"], json!({"parse": []}));
}

#[tokio::test]
async fn validation_errors_have_discords_shape() {
    let state = state();
    let path = messages_path(DEFAULT_HOME_CHANNEL_ID);
    let too_long = call(&state, "POST", &path, Some(json!({"embeds": [{"description": "d".repeat(4097)}]}))).await;
    assert_eq!(too_long.status, 400);
    assert_eq!(
        too_long.body,
        json!({"code":50035,"message":"Invalid Form Body","errors":{"embeds":{"0":{"description":{"_errors":[{"code":"BASE_TYPE_MAX_LENGTH","message":"Must be 4096 or fewer in length."}]}}}}})
    );
    let empty = call(&state, "POST", &path, Some(json!({"content": ""}))).await;
    assert_eq!(empty.body, json!({"message": "Cannot send an empty message", "code": 50006}));
    let content = call(&state, "POST", &path, Some(json!({"content": "ä".repeat(2000)}))).await;
    assert_eq!(content.status, 200, "2000 multibyte chars are fine");
    let content = call(&state, "POST", &path, Some(json!({"content": "a".repeat(2001)}))).await;
    assert_eq!(content.body["errors"]["content"]["_errors"][0]["message"], "Must be 2000 or fewer in length.");
    let unknown = call(&state, "POST", &messages_path(42), Some(json!({"content": "x"}))).await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body, json!({"message": "Unknown Channel", "code": 10003}));
    let hidden = call(&state, "POST", &messages_path(DEFAULT_HIDDEN_CHANNEL_ID), Some(json!({"content": "x"}))).await;
    assert_eq!((hidden.status.as_u16(), hidden.body["code"].clone()), (403, json!(50001)));
    let read_only =
        call(&state, "POST", &messages_path(DEFAULT_READ_ONLY_CHANNEL_ID), Some(json!({"content": "x"}))).await;
    assert_eq!((read_only.status.as_u16(), read_only.body["code"].clone()), (403, json!(50013)));
    let bad_json = call_raw_json(&state, &path, "{not json").await;
    assert_eq!(bad_json["code"], 50109);
}

async fn call_raw_json(state: &EmulatorState, path: &str, body: &str) -> Value {
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;
    let request = axum::http::Request::post(path)
        .header("authorization", format!("Bot {DEFAULT_BOT_TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    serde_json::from_slice(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap()
}

#[tokio::test]
async fn enforce_nonce_returns_the_first_message() {
    let state = state();
    let path = messages_path(DEFAULT_HOME_CHANNEL_ID);
    let body = json!({"content": "once", "nonce": "abc", "enforce_nonce": true});
    let first = call(&state, "POST", &path, Some(body.clone())).await;
    let second = call(&state, "POST", &path, Some(body)).await;
    assert_eq!(first.body["id"], second.body["id"]);
    assert_eq!(state.messages(DEFAULT_HOME_CHANNEL_ID).len(), 1);
    // Without enforce_nonce the same nonce posts again.
    call(&state, "POST", &path, Some(json!({"content": "twice", "nonce": "abc"}))).await;
    assert_eq!(state.messages(DEFAULT_HOME_CHANNEL_ID).len(), 2);
}

#[tokio::test]
async fn list_and_get_messages_with_before_after_around() {
    let state = EmulatorState::new(EmulatorConfig { rate_limits: false, ..EmulatorConfig::default() });
    let path = messages_path(DEFAULT_GENERAL_CHANNEL_ID);
    let mut ids = Vec::new();
    for i in 0..7 {
        let reply = call(&state, "POST", &path, Some(json!({"content": format!("m{i}")}))).await;
        ids.push(reply.body["id"].as_str().unwrap().to_owned());
    }
    let contents =
        |v: &Value| v.as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    let all = call(&state, "GET", &path, None).await;
    assert_eq!(contents(&all.body), ["m6", "m5", "m4", "m3", "m2", "m1", "m0"]);
    let limited = call(&state, "GET", &format!("{path}?limit=2"), None).await;
    assert_eq!(contents(&limited.body), ["m6", "m5"]);
    let before = call(&state, "GET", &format!("{path}?before={}&limit=2", ids[3]), None).await;
    assert_eq!(contents(&before.body), ["m2", "m1"]);
    let after = call(&state, "GET", &format!("{path}?after={}&limit=2", ids[3]), None).await;
    assert_eq!(contents(&after.body), ["m5", "m4"]);
    let around = call(&state, "GET", &format!("{path}?around={}&limit=3", ids[3]), None).await;
    assert_eq!(contents(&around.body), ["m4", "m3", "m2"]);
    let too_many = call(&state, "GET", &format!("{path}?limit=101"), None).await;
    assert_eq!(too_many.body["code"], 50035);
    let one = call(&state, "GET", &format!("{path}/{}", ids[0]), None).await;
    assert_eq!(one.body["content"], "m0");
    let missing = call(&state, "GET", &format!("{path}/1"), None).await;
    assert_eq!(missing.body, json!({"message": "Unknown Message", "code": 10008}));
}

#[tokio::test]
async fn get_channel() {
    let state = state();
    let channel = call(&state, "GET", &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}"), None).await;
    assert_eq!(channel.body["name"], "omp-sessions");
    assert_eq!(channel.body["type"], 0);
    assert_eq!(channel.body["guild_id"], DEFAULT_GUILD_ID.to_string());
}

#[tokio::test]
async fn requests_endpoint_keeps_its_shape() {
    let state = state();
    call(&state, "POST", &format!("{}?x=1", messages_path(DEFAULT_HOME_CHANNEL_ID)), Some(json!({"content": "hi"})))
        .await;
    let recorded = call(&state, "GET", "/_emulator/requests", None).await.body;
    let entry = &recorded[0];
    let keys: Vec<&str> = entry.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 8);
    for key in ["method", "path", "query", "headers", "body", "status", "response", "received_ms"] {
        assert!(entry.get(key).is_some(), "recorded request lacks {key}");
    }
    assert_eq!(entry["method"], "POST");
    assert_eq!(entry["path"], messages_path(DEFAULT_HOME_CHANNEL_ID));
    assert_eq!(entry["query"], "x=1");
    assert_eq!(entry["headers"]["authorization"], "Bot <redacted>");
    assert_eq!(entry["body"]["content"], "hi");
    assert_eq!(entry["status"], 200);
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let received = entry["received_ms"].as_u64().unwrap();
    assert!(received <= now_ms && now_ms - received < 60_000, "{received} is when it arrived");
    assert_eq!(entry["response"]["content"], "hi");
}

#[tokio::test]
async fn root_serves_the_web_view_without_an_upgrade() {
    let state = state();
    let page = call_as(&state, "GET", "/", None, None).await;
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.body.as_str().unwrap().contains("/_emulator/state"));
}
