//! The model's Discord tools end to end: the real `omp` with the scripted model
//! calls `discord_channels`, `discord_send`, `discord_read` and `discord_ask`
//! through the built plugin, the real sidecar, and the emulator.

use std::time::Duration;

use omp_discord_emulator::{DEFAULT_GUEST_USER_ID, DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, Emulator};
use serde_json::{Value, json};

use crate::util::{
    OmpRun, Plugin, Sidecar, TestDir, emulator, emulator_post, message_posts, question, run_omp, sidecar_env,
    thread_messages, thread_starts, wait_for,
};

/// The text of a tool's only result, and whether it was an error.
fn result(run: &OmpRun, tool: &str, index: usize) -> (String, bool) {
    let results = run.tool_results(tool);
    let result = results.get(index).unwrap_or_else(|| panic!("no result {index} of {tool}: {}", run.stderr));
    let text = result["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned();
    (text, result["isError"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_lists_channels_sends_redacted_text_and_reads_it_back() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let home = DEFAULT_HOME_CHANNEL_ID.to_string();
    // A fake token of a shape the redactor knows.
    let secret = "ghp_FAKEabcdefghijklmnopqrstuvwxyz012345";
    let script = json!([
        { "tool": "discord_channels", "args": {} },
        { "tool": "discord_send", "args": { "channelId": home, "message": format!("deploy key {secret} @everyone") } },
        { "tool": "discord_read", "args": { "channelId": home, "limit": 5 } },
        { "tool": "discord_send", "args": { "channelId": "1100000000000009999", "message": "lost?" } },
        { "tool": "discord_send", "args": { "message": "to my own thread" } },
        { "tool": "discord_read", "args": {} },
        { "text": "done" }
    ]);
    let run = run_omp(&dir, &env, Plugin::Flag, &script, "use discord").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    for tool in ["discord_send", "discord_read", "discord_channels", "discord_ask"] {
        assert!(
            run.seen[0]["tools"].as_array().unwrap().iter().any(|t| t["name"] == tool),
            "the model did not see {tool}"
        );
    }

    let (channels, is_error) = result(&run, "discord_channels", 0);
    assert!(!is_error, "{channels}");
    assert!(channels.contains(&format!("({home}, text, home channel of this bridge)")), "{channels}");

    let (sent, is_error) = result(&run, "discord_send", 0);
    assert!(!is_error && sent.starts_with("Posted to Discord"), "{sent}");
    let posted = message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID)
        .into_iter()
        .find(|p| p["body"]["content"].as_str().is_some_and(|c| c.starts_with("deploy key")))
        .expect("the sent message");
    let content = posted["body"]["content"].as_str().unwrap();
    assert!(!content.contains(secret) && !content.contains("@everyone"), "{content}");
    assert_eq!(posted["body"]["allowed_mentions"], json!({ "parse": [] }));

    let (read, is_error) = result(&run, "discord_read", 0);
    assert!(!is_error, "{read}");
    assert!(read.contains("deploy key") && !read.contains(secret), "{read}");

    let (lost, is_error) = result(&run, "discord_send", 1);
    assert!(is_error && lost.contains("unknown_channel") && lost.contains("discord_channels"), "{lost}");

    // Without a channel, the message goes to (and is read from) the session's thread.
    let (own, is_error) = result(&run, "discord_send", 2);
    assert!(!is_error, "{own}");
    let thread: u64 = thread_starts(&emulator)[0]["response"]["id"].as_str().unwrap().parse().unwrap();
    assert!(thread_messages(&emulator, thread).iter().any(|m| m["content"] == "to my own thread"));
    let (read, _) = result(&run, "discord_read", 1);
    assert!(read.contains("to my own thread"), "{read}");
    sidecar.terminate().await;
}

async fn click(emulator: &Emulator, thread: u64, message: &Value, custom_id: &str, user: u64) -> Value {
    let body = json!({
        "type": "button", "custom_id": custom_id, "message_id": message["id"],
        "channel_id": thread.to_string(), "user_id": user.to_string(), "wait": true
    });
    emulator_post(emulator, "/_emulator/interactions", &body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_with_options_is_answered_by_an_allowed_click() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let script = json!([
        { "tool": "discord_ask", "args": { "question": "Where to deploy?", "options": ["staging", "production"], "timeoutSeconds": 60 } },
        { "text": "done" }
    ]);
    let person = async {
        let (thread, message) = question(&emulator).await;
        let buttons = &message["components"][0]["components"];
        assert_eq!(buttons[1]["label"], "production", "{message}");
        let refused =
            click(&emulator, thread, &message, buttons[1]["custom_id"].as_str().unwrap(), DEFAULT_GUEST_USER_ID).await;
        assert!(refused.to_string().contains("allowlist"), "{refused}");
        let answered =
            click(&emulator, thread, &message, buttons[0]["custom_id"].as_str().unwrap(), DEFAULT_OWNER_USER_ID).await;
        assert_eq!(answered["state"]["response_type"], 7, "{answered}");
        thread
    };
    let (run, thread) = tokio::join!(run_omp(&dir, &env, Plugin::Flag, &script, "ask them"), person);
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let (answer, is_error) = result(&run, "discord_ask", 0);
    assert!(!is_error && answer.ends_with("answered in Discord: staging"), "{answer}");
    let settled = thread_messages(&emulator, thread)
        .into_iter()
        .find(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t.starts_with("Answered by")))
        .expect("the settled question");
    assert!(settled["components"].as_array().is_none_or(Vec::is_empty), "{settled}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_text_question_takes_the_next_allowed_reply_not_a_stranger_s() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let script = json!([
        { "tool": "discord_ask", "args": { "question": "Which branch?", "timeoutSeconds": 60 } },
        { "text": "done" }
    ]);
    let person = async {
        let (thread, _) = question(&emulator).await;
        for (user, content) in [(DEFAULT_GUEST_USER_ID, "main, says a stranger"), (DEFAULT_OWNER_USER_ID, "release-2")]
        {
            let body = json!({ "channel_id": thread.to_string(), "user_id": user.to_string(), "content": content });
            emulator_post(&emulator, "/_emulator/messages", &body).await;
        }
    };
    let (run, ()) = tokio::join!(run_omp(&dir, &env, Plugin::Flag, &script, "ask them"), person);
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let (answer, is_error) = result(&run, "discord_ask", 0);
    assert!(!is_error && answer.ends_with("answered in Discord: release-2"), "{answer}");
    // The answer was not also handed to OMP as a new prompt.
    assert!(!run.seen.iter().any(|s| s["last"].to_string().contains("[Discord message")), "{:?}", run.seen);
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_question_expires_and_says_so() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let script = json!([
        { "tool": "discord_ask", "args": { "question": "Anyone?", "options": ["yes"], "timeoutSeconds": 10 } },
        { "text": "done" }
    ]);
    let run = run_omp(&dir, &env, Plugin::Flag, &script, "ask them").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let (answer, is_error) = result(&run, "discord_ask", 0);
    assert!(is_error && answer.contains("no one answered within 10 s"), "{answer}");
    let thread: u64 = thread_starts(&emulator)[0]["response"]["id"].as_str().unwrap().parse().unwrap();
    wait_for("the question to show it expired", Duration::from_secs(10), || {
        thread_messages(&emulator, thread)
            .iter()
            .any(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t.starts_with("Unanswered")))
            .then_some(())
    })
    .await;
    sidecar.terminate().await;
}
