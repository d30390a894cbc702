//! Edits, deletes, threads, typing, reactions, webhooks, commands and rate limits.

use omp_discord_emulator::*;
use serde_json::{Value, json};

use crate::support::{call, call_as, state};

fn unlimited() -> EmulatorState {
    EmulatorState::new(EmulatorConfig { rate_limits: false, ..EmulatorConfig::default() })
}

async fn post(state: &EmulatorState, channel: u64, body: Value) -> Value {
    let reply = call(state, "POST", &format!("/api/v10/channels/{channel}/messages"), Some(body)).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

#[tokio::test]
async fn edit_and_delete_messages() {
    let state = unlimited();
    let message = post(&state, DEFAULT_HOME_CHANNEL_ID, json!({"content": "v1"})).await;
    let path = format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/messages/{}", message["id"].as_str().unwrap());
    let edited = call(&state, "PATCH", &path, Some(json!({"content": "v2", "embeds": [{"title": "t"}]}))).await;
    assert_eq!(edited.body["content"], "v2");
    assert_eq!(edited.body["embeds"][0]["type"], "rich");
    assert!(edited.body["edited_timestamp"].is_string());
    let too_long = call(&state, "PATCH", &path, Some(json!({"content": "x".repeat(2001)}))).await;
    assert_eq!(too_long.body["code"], 50035);
    // A person's message cannot be edited by the bot.
    let theirs =
        state.inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": "mine"})).unwrap();
    let theirs_path =
        format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/messages/{}", theirs["id"].as_str().unwrap());
    let denied = call(&state, "PATCH", &theirs_path, Some(json!({"content": "hijack"}))).await;
    assert_eq!(denied.body["code"], 50005);
    assert_eq!(call(&state, "DELETE", &path, None).await.status, 204);
    assert_eq!(call(&state, "GET", &path, None).await.body["code"], 10008);
    assert_eq!(call(&state, "DELETE", &path, None).await.body["code"], 10008);
}

#[tokio::test]
async fn threads_from_messages_without_messages_and_forum_posts() {
    let state = unlimited();
    let message = post(&state, DEFAULT_HOME_CHANNEL_ID, json!({"content": "session"})).await;
    let mid = message["id"].as_str().unwrap();
    let from_message = format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/messages/{mid}/threads");
    let thread = call(&state, "POST", &from_message, Some(json!({"name": "session 1"}))).await.body;
    assert_eq!(thread["id"], mid, "a thread started from a message has the message's id");
    assert_eq!(thread["type"], 11);
    assert_eq!(thread["parent_id"], DEFAULT_HOME_CHANNEL_ID.to_string());
    let again = call(&state, "POST", &from_message, Some(json!({"name": "again"}))).await;
    assert_eq!(again.body["code"], 160004);
    let long_name = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/threads"),
        Some(json!({"name": "n".repeat(101), "type": 11})),
    )
    .await;
    assert_eq!(long_name.body["errors"]["name"]["_errors"][0]["code"], "BASE_TYPE_MAX_LENGTH");
    let public = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/threads"),
        Some(json!({"name": "n".repeat(100), "type": 11})),
    )
    .await
    .body;
    assert_eq!(public["type"], 11);
    // Posting in the thread, then archiving it through PATCH.
    let thread_id: u64 = public["id"].as_str().unwrap().parse().unwrap();
    post(&state, thread_id, json!({"content": "in thread"})).await;
    let archived =
        call(&state, "PATCH", &format!("/api/v10/channels/{thread_id}"), Some(json!({"archived": true}))).await.body;
    assert_eq!(archived["thread_metadata"]["archived"], true);
    // Sending into an archived, unlocked thread unarchives it.
    post(&state, thread_id, json!({"content": "wake up"})).await;
    assert_eq!(state.channel(thread_id).unwrap()["thread_metadata"]["archived"], false);
    assert_eq!(state.channel(thread_id).unwrap()["message_count"], 2);
    // Forum post: the first message has the thread's id.
    let post_reply = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_FORUM_CHANNEL_ID}/threads"),
        Some(json!({"name": "forum post", "message": {"content": "first"}})),
    )
    .await
    .body;
    assert_eq!(post_reply["message"]["id"], post_reply["id"]);
    assert_eq!(post_reply["message"]["content"], "first");
    let empty_post = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_FORUM_CHANNEL_ID}/threads"),
        Some(json!({"name": "forum post"})),
    )
    .await;
    assert_eq!(empty_post.body["errors"]["message"]["_errors"][0]["code"], "BASE_TYPE_REQUIRED");
    // Members: the bot joined as creator; the owner joins.
    let members_path = format!("/api/v10/channels/{thread_id}/thread-members/{DEFAULT_OWNER_USER_ID}");
    assert_eq!(call(&state, "PUT", &members_path, None).await.status, 204);
    let members = call(&state, "GET", &format!("/api/v10/channels/{thread_id}/thread-members"), None).await.body;
    assert_eq!(members.as_array().unwrap().len(), 2);
    let active = call(&state, "GET", &format!("/api/v10/guilds/{DEFAULT_GUILD_ID}/threads/active"), None).await.body;
    assert_eq!(active["threads"].as_array().unwrap().len(), 3);
}

/// As on Discord: a forum takes posts, not messages (50008); a post needs its first
/// message; a forum with `REQUIRE_TAG` refuses a post without one of its tags (40067),
/// and unknown tag ids are not applied.
#[tokio::test]
async fn forums_take_posts_not_messages_and_can_require_a_tag() {
    let mut seed = Seed::default();
    let forum = seed.guilds[0].channels.iter_mut().find(|c| c.id == DEFAULT_FORUM_CHANNEL_ID).unwrap();
    forum.flags = REQUIRE_TAG;
    forum.available_tags = vec![SeedTag { id: 77, name: "omp".into(), moderated: false }];
    let state = EmulatorState::new(EmulatorConfig { rate_limits: false, seed, ..EmulatorConfig::default() });
    let forum_path = format!("/api/v10/channels/{DEFAULT_FORUM_CHANNEL_ID}");
    let channel = call(&state, "GET", &forum_path, None).await.body;
    assert_eq!((channel["type"].as_u64(), channel["flags"].as_u64()), (Some(15), Some(16)));
    assert_eq!(channel["available_tags"][0]["id"], "77");

    let message = call(&state, "POST", &format!("{forum_path}/messages"), Some(json!({"content": "hi"}))).await;
    assert_eq!((message.status.as_u16(), message.body["code"].as_u64()), (400, Some(50008)), "{}", message.body);
    assert_eq!(message.body["message"], "Cannot send messages in a non-text channel");

    let threads = format!("{forum_path}/threads");
    let untagged = call(&state, "POST", &threads, Some(json!({"name": "p", "message": {"content": "x"}}))).await;
    assert_eq!((untagged.status.as_u16(), untagged.body["code"].as_u64()), (400, Some(40067)), "{}", untagged.body);
    let unknown = json!({"name": "p", "message": {"content": "x"}, "applied_tags": ["78"]});
    assert_eq!(call(&state, "POST", &threads, Some(unknown)).await.body["code"], 40067);
    let tagged = json!({"name": "p", "message": {"content": "x"}, "applied_tags": ["77"]});
    let post = call(&state, "POST", &threads, Some(tagged)).await;
    assert_eq!(post.status.as_u16(), 201, "{}", post.body);
    assert_eq!(post.body["applied_tags"], json!(["77"]));
    assert_eq!(post.body["message"]["id"], post.body["id"]);
    assert_eq!(post.body["parent_id"], DEFAULT_FORUM_CHANNEL_ID.to_string());
}

#[tokio::test]
async fn typing_and_reactions() {
    let state = unlimited();
    let typing = call(&state, "POST", &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/typing"), None).await;
    assert_eq!(typing.status, 204);
    assert_eq!(state.snapshot()["typing"].as_array().unwrap().len(), 1);
    let message = post(&state, DEFAULT_HOME_CHANNEL_ID, json!({"content": "react"})).await;
    let base = format!(
        "/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/messages/{}/reactions/%E2%9C%85/@me",
        message["id"].as_str().unwrap()
    );
    assert_eq!(call(&state, "PUT", &base, None).await.status, 204);
    let stored = &state.messages(DEFAULT_HOME_CHANNEL_ID)[0];
    assert_eq!(stored["reactions"][0]["emoji"]["name"], "✅");
    assert_eq!(stored["reactions"][0]["me"], true);
    assert_eq!(call(&state, "DELETE", &base, None).await.status, 204);
    assert!(state.messages(DEFAULT_HOME_CHANNEL_ID)[0].get("reactions").is_none());
    let custom = base.replace("%E2%9C%85", "blob:123");
    assert_eq!(call(&state, "PUT", &custom, None).await.body["code"], 10014);
}

#[tokio::test]
async fn webhooks_execute_wait_thread_and_edit() {
    let state = unlimited();
    let hook = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/webhooks"),
        Some(json!({"name": "omp notify"})),
    )
    .await
    .body;
    let url = format!("/api/v10/webhooks/{}/{}", hook["id"].as_str().unwrap(), hook["token"].as_str().unwrap());
    // No bot token needed: the webhook token authenticates.
    let no_wait = call_as(&state, "POST", &url, Some(json!({"content": "fire and forget"})), None).await;
    assert_eq!(no_wait.status, 204);
    let waited =
        call_as(&state, "POST", &format!("{url}?wait=true"), Some(json!({"content": "kept", "username": "CI"})), None)
            .await;
    assert_eq!(waited.body["author"]["username"], "CI");
    assert_eq!(waited.body["webhook_id"], hook["id"]);
    let bad_token = call_as(
        &state,
        "POST",
        &format!("/api/v10/webhooks/{}/nope", hook["id"].as_str().unwrap()),
        Some(json!({"content": "x"})),
        None,
    )
    .await;
    assert_eq!(bad_token.body["code"], 50027);
    // Into a thread of the webhook's channel.
    let thread = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/threads"),
        Some(json!({"name": "t", "type": 11})),
    )
    .await
    .body;
    let thread_id = thread["id"].as_str().unwrap();
    let in_thread = call_as(
        &state,
        "POST",
        &format!("{url}?wait=true&thread_id={thread_id}"),
        Some(json!({"content": "in thread"})),
        None,
    )
    .await;
    assert_eq!(in_thread.body["channel_id"], thread_id);
    let wrong_thread =
        call_as(&state, "POST", &format!("{url}?thread_id=1"), Some(json!({"content": "x"})), None).await;
    assert_eq!(wrong_thread.body["code"], 10003);
    let edit = call_as(
        &state,
        "PATCH",
        &format!("{url}/messages/{}", waited.body["id"].as_str().unwrap()),
        Some(json!({"content": "edited"})),
        None,
    )
    .await;
    assert_eq!(edit.body["content"], "edited");
    let empty = call_as(&state, "POST", &url, Some(json!({"content": ""})), None).await;
    assert_eq!(empty.body["code"], 50006);
}

#[tokio::test]
async fn webhook_rate_limit_is_five_per_five_seconds() {
    let state = state();
    let hook = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/webhooks"),
        Some(json!({"name": "hook"})),
    )
    .await
    .body;
    let url = format!("/api/v10/webhooks/{}/{}", hook["id"].as_str().unwrap(), hook["token"].as_str().unwrap());
    for _ in 0..5 {
        assert_eq!(call_as(&state, "POST", &url, Some(json!({"content": "x"})), None).await.status, 204);
    }
    let limited = call_as(&state, "POST", &url, Some(json!({"content": "x"})), None).await;
    assert_eq!(limited.status, 429);
    assert!(limited.body["retry_after"].as_f64().unwrap() > 0.0);
    assert_eq!(limited.body["global"], false);
    assert!(limited.headers.contains_key("retry-after"));
    assert_eq!(limited.headers["via"], "1.1 google");
}

#[tokio::test]
async fn message_create_is_five_per_five_seconds_per_channel_with_headers() {
    let state = state();
    for remaining in (0..5).rev() {
        let reply = call(
            &state,
            "POST",
            &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/messages"),
            Some(json!({"content": "x"})),
        )
        .await;
        assert_eq!(reply.headers["x-ratelimit-limit"], "5");
        assert_eq!(reply.headers["x-ratelimit-remaining"], remaining.to_string());
        // With the scope: twilight-http paces only by buckets whose scope it reads.
        for header in ["x-ratelimit-reset", "x-ratelimit-reset-after", "x-ratelimit-bucket", "x-ratelimit-scope"] {
            assert!(reply.headers.contains_key(header), "missing {header}");
        }
    }
    let limited = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/messages"),
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["message"], "You are being rate limited.");
    assert_eq!(limited.headers["x-ratelimit-scope"], "user");
    // Another channel is another bucket.
    let other = call(
        &state,
        "POST",
        &format!("/api/v10/channels/{DEFAULT_GENERAL_CHANNEL_ID}/messages"),
        Some(json!({"content": "x"})),
    )
    .await;
    assert_eq!(other.status, 200);
    assert_eq!(state.messages(DEFAULT_HOME_CHANNEL_ID).len(), 5);
}

#[tokio::test]
async fn invalid_requests_lead_to_a_ban() {
    let state = EmulatorState::new(EmulatorConfig { invalid_request_limit: 20, ..EmulatorConfig::default() });
    for _ in 0..20 {
        assert_eq!(call_as(&state, "GET", "/api/v10/users/@me", None, Some("Bot wrong")).await.status, 401);
    }
    let banned = call(&state, "GET", "/api/v10/users/@me", None).await;
    assert_eq!(banned.status, 403);
    let control = call(&state, "GET", "/_emulator/state", None).await.body;
    assert_eq!(control["rate_limits"]["banned"], true);
    call(&state, "POST", "/_emulator/reset", None).await;
    assert_eq!(call(&state, "GET", "/api/v10/users/@me", None).await.status, 200);
}

#[tokio::test]
async fn commands_bulk_overwrite_keeps_ids_and_validates() {
    let state = unlimited();
    let global = format!("/api/v10/applications/{DEFAULT_APPLICATION_ID}/commands");
    let first = call(&state, "PUT", &global, Some(json!([{"name": "omp", "description": "Talk to OMP"}]))).await.body;
    assert_eq!(first[0]["name"], "omp");
    let second = call(
        &state,
        "PUT",
        &global,
        Some(json!([{"name": "omp", "description": "changed"}, {"name": "status", "description": "s"}])),
    )
    .await
    .body;
    assert_eq!(second[0]["id"], first[0]["id"], "same name keeps its id");
    assert_eq!(call(&state, "GET", &global, None).await.body.as_array().unwrap().len(), 2);
    let bad = call(&state, "PUT", &global, Some(json!([{"name": "Bad Name", "description": "x"}]))).await;
    assert_eq!(bad.body["code"], 50035);
    let created = call(&state, "POST", &global, Some(json!({"name": "new", "description": "x"}))).await;
    assert_eq!(created.status, 201);
    let replaced = call(&state, "POST", &global, Some(json!({"name": "new", "description": "y"}))).await;
    assert_eq!((replaced.status.as_u16(), replaced.body["id"].clone()), (200, created.body["id"].clone()));
    call(&state, "DELETE", &format!("{global}/{}", created.body["id"].as_str().unwrap()), None).await;
    let guild = format!("/api/v10/applications/{DEFAULT_APPLICATION_ID}/guilds/{DEFAULT_GUILD_ID}/commands");
    let guild_cmds = call(&state, "PUT", &guild, Some(json!([{"name": "local", "description": "x"}]))).await.body;
    assert_eq!(guild_cmds[0]["guild_id"], DEFAULT_GUILD_ID.to_string());
    assert_eq!(call(&state, "GET", &global, None).await.body.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn guild_routes() {
    let state = unlimited();
    let guild = call(&state, "GET", &format!("/api/v10/guilds/{DEFAULT_GUILD_ID}"), None).await.body;
    assert_eq!(guild["id"], DEFAULT_GUILD_ID.to_string());
    let channels = call(&state, "GET", &format!("/api/v10/guilds/{DEFAULT_GUILD_ID}/channels"), None).await.body;
    let names: Vec<&str> = channels.as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"omp-sessions") && !names.contains(&"private"), "{names:?}");
    let member =
        call(&state, "GET", &format!("/api/v10/guilds/{DEFAULT_GUILD_ID}/members/{DEFAULT_OWNER_USER_ID}"), None)
            .await
            .body;
    assert_eq!(member["user"]["username"], "owner");
    assert_eq!(call(&state, "GET", "/api/v10/guilds/1", None).await.body["code"], 10004);
    assert_eq!(call(&state, "GET", "/api/v10/nope", None).await.status, 404);
}

#[tokio::test]
async fn multipart_uploads_become_attachments_and_are_recorded() {
    use axum::body::{Body, to_bytes};
    use tower::ServiceExt;
    let state = unlimited();
    let boundary = "XyZ";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"payload_json\"\r\nContent-Type: application/json\r\n\r\n{}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"files[0]\"; filename=\"log.txt\"\r\nContent-Type: text/plain\r\n\r\nhello file\r\n\
         --{boundary}--\r\n",
        json!({"content": "see attached", "attachments": [{"id": 0, "description": "the log"}]})
    );
    let request = axum::http::Request::post(format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/messages"))
        .header("authorization", format!("Bot {DEFAULT_BOT_TOKEN}"))
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(Body::from(body))
        .unwrap();
    let response = app(state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let message: Value = serde_json::from_slice(&to_bytes(response.into_body(), usize::MAX).await.unwrap()).unwrap();
    assert_eq!(message["content"], "see attached");
    let attachment = &message["attachments"][0];
    assert_eq!(attachment["filename"], "log.txt");
    assert_eq!(attachment["size"], 10);
    assert_eq!(attachment["description"], "the log");
    let recorded = &state.requests()[0];
    assert_eq!(recorded.body["payload_json"]["content"], "see attached");
    assert_eq!(recorded.body["files"][0]["filename"], "log.txt");
}
