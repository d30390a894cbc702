//! The webhook-only mode: no bot token, a webhook URL. The real `omp` reports
//! through it, the run card is edited in place through the webhook, and what
//! needs a bot says so.

use std::time::Duration;

use omp_discord_emulator::{DEFAULT_BOT_TOKEN, DEFAULT_HOME_CHANNEL_ID, Emulator};
use serde_json::json;

use crate::util::{Plugin, Sidecar, TestDir, emulator, emulator_request, run_omp, thread_messages, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_alone_carries_reports_and_edits_and_refuses_what_needs_a_bot() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let (env, webhook_id) = webhook_env(&dir, &emulator).await;
    let sidecar = Sidecar::start(&dir, &env).await;
    let script = json!([
        { "tool": "discord_notify", "args": { "message": "through the webhook", "level": "success" } },
        { "tool": "discord_send", "args": { "channelId": "1100000000000000013", "message": "elsewhere" } },
        { "tool": "discord_ask", "args": { "question": "anyone?" } },
        { "text": "done" }
    ]);
    let run = run_omp(&dir, &env, Plugin::Flag, &script, "report via webhook").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);

    let notify = run.tool_results("discord_notify")[0].to_string();
    assert!(notify.contains(&format!("Posted to Discord (channel {DEFAULT_HOME_CHANNEL_ID}")), "{notify}");
    let send = run.tool_results("discord_send")[0].to_string();
    assert!(send.contains("needs a bot token"), "{send}");
    let ask = run.tool_results("discord_ask")[0].to_string();
    assert!(ask.contains("no one can answer"), "{ask}");

    // Everything lands in the webhook's channel, posted by the webhook, and the
    // run card ends as the finished summary (edited in place, not posted twice).
    wait_for("the run's summary in the channel", Duration::from_secs(30), || {
        let messages = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID);
        messages
            .iter()
            .any(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t.starts_with("Run finished")))
            .then_some(())
    })
    .await;
    let messages = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID);
    assert!(messages.iter().all(|m| m["webhook_id"] == webhook_id), "{messages:#?}");
    assert!(messages.iter().any(|m| m["embeds"].to_string().contains("through the webhook")), "{messages:#?}");
    // Nothing could hear a click without a bot: the run card comes without its buttons.
    assert!(messages.iter().all(|m| m["components"].as_array().is_none_or(Vec::is_empty)), "{messages:#?}");
    let requests: Vec<serde_json::Value> =
        emulator.requests().into_iter().map(|r| serde_json::to_value(r).unwrap()).collect();
    assert!(requests.iter().any(|r| r["method"] == "PATCH" && r["path"].as_str().unwrap().contains("/messages/")));
    // No bot request was made: no token was configured.
    assert!(requests.iter().all(|r| !r["path"].as_str().unwrap().starts_with("/users/@me")), "{requests:#?}");
    sidecar.terminate().await;
}

/// The sidecar's environment for the webhook-only mode: a webhook made in the
/// home channel (here with the bot's rights, as an admin would), no bot token.
/// Returns it with the webhook's id.
pub(crate) async fn webhook_env(dir: &TestDir, emulator: &Emulator) -> (Vec<(String, String)>, String) {
    let path = format!("/api/v10/channels/{DEFAULT_HOME_CHANNEL_ID}/webhooks");
    let auth = format!("Bot {DEFAULT_BOT_TOKEN}");
    let (status, webhook) =
        emulator_request(emulator, "POST", &path, Some(&auth), Some(&json!({ "name": "omp" }))).await;
    assert_eq!(status, 200, "{webhook}");
    let id = webhook["id"].as_str().unwrap().to_owned();
    let url = format!("{}/api/webhooks/{id}/{}", emulator.http_url(), webhook["token"].as_str().unwrap());
    let env = vec![
        ("OMP_DISCORD_SOCKET".into(), dir.socket().display().to_string()),
        ("HOME".into(), dir.home().display().to_string()),
        ("OMP_DISCORD_LOG".into(), "omp_discord=debug".into()),
        ("OMP_DISCORD_API_URL".into(), emulator.http_url()),
        ("OMP_DISCORD_WEBHOOK_URL".into(), url),
    ];
    (env, id)
}
