//! The `/omp` slash command: registered once per definition, allowed people
//! only, and `ask` / `abort` reach the session's connection.

use std::time::Duration;

use omp_discord_core::embed::{Notification, build_notification};
use omp_discord_core::protocol::{ClientFrame, NotifyRequest, ServerFrame, SessionAction, SessionRef};
use omp_discord_emulator::{DEFAULT_GUEST_USER_ID, DEFAULT_OWNER_USER_ID, Emulator};
use serde_json::{Value, json};

use crate::util::{Client, Sidecar, TestDir, emulator, emulator_post, sidecar_env, thread_starts, wait_for};

async fn command(emulator: &Emulator, channel: u64, user: u64, sub: &str, options: Value) -> Value {
    let body = json!({
        "type": "command", "name": "omp", "channel_id": channel.to_string(), "user_id": user.to_string(), "wait": true,
        "options": [{ "name": sub, "type": 1, "options": options }],
    });
    let answer = emulator_post(emulator, "/_emulator/interactions", &body).await;
    answer["state"]["callbacks"][0]["data"].clone()
}

fn command_puts(emulator: &Emulator) -> usize {
    emulator
        .requests()
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .filter(|r| r["method"] == "PUT" && r["path"].as_str().unwrap().ends_with("/commands"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omp_ask_and_abort_reach_the_session_and_strangers_are_refused() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    wait_for("/omp to be registered", Duration::from_secs(20), || (command_puts(&emulator) == 1).then_some(())).await;

    // A session with a thread, served by this connection.
    let session = SessionRef { id: "0199-slash".into(), cwd: Some("/w/shop".into()), prompt: None };
    let mut client = Client::greeted(&dir.socket()).await;
    let attach = ClientFrame::Attach { id: "a".into(), session: session.clone() };
    assert!(matches!(client.call(&attach).await, ServerFrame::Ok { .. }));
    let message = build_notification(&Notification { message: "hello".into(), ..Default::default() }, "shop");
    let notify = ClientFrame::Notify(NotifyRequest {
        id: "n".into(),
        session: session.clone(),
        message,
        channel_id: None,
        key: None,
        edit: false,
        idempotency_key: None,
    });
    assert!(matches!(client.notify(&notify).await.1, ServerFrame::Delivered { .. }));
    let thread: u64 = thread_starts(&emulator)[0]["response"]["id"].as_str().unwrap().parse().unwrap();

    let refused = command(
        &emulator,
        thread,
        DEFAULT_GUEST_USER_ID,
        "ask",
        json!([{ "name": "prompt", "type": 3, "value": "rm -rf /" }]),
    )
    .await;
    assert!(refused["content"].as_str().unwrap().contains("allowlist") && refused["flags"] == 64, "{refused}");

    let asked = command(
        &emulator,
        thread,
        DEFAULT_OWNER_USER_ID,
        "ask",
        json!([{ "name": "prompt", "type": 3, "value": "run the tests" }]),
    )
    .await;
    assert!(asked["content"].as_str().unwrap().contains("asked shop: run the tests"), "{asked}");
    match client.read().await {
        Some(ServerFrame::Inbound { session_id, text, .. }) => {
            assert_eq!(session_id, session.id);
            assert!(text.ends_with("run the tests") && !text.contains("rm -rf"), "{text}");
        }
        other => panic!("expected the prompt, got {other:?}"),
    }

    let status = command(&emulator, thread, DEFAULT_OWNER_USER_ID, "status", json!([])).await;
    let text = status["content"].as_str().unwrap();
    assert!(
        text.contains("gateway ready")
            && text.contains("🟢 live `0199-slash`")
            && text.contains(&format!("<#{thread}>")),
        "{text}"
    );

    // By id prefix from anywhere; the session's connection is told to stop.
    let home = omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID;
    let stopped = command(
        &emulator,
        home,
        DEFAULT_OWNER_USER_ID,
        "abort",
        json!([{ "name": "session", "type": 3, "value": "0199-sl" }]),
    )
    .await;
    assert!(stopped["content"].as_str().unwrap().contains("stopped the current run"), "{stopped}");
    let control = client.read().await;
    assert_eq!(control, Some(ServerFrame::Control { session_id: session.id.clone(), action: SessionAction::Abort }));
    let unknown = command(&emulator, home, DEFAULT_OWNER_USER_ID, "abort", json!([])).await;
    assert!(unknown["content"].as_str().unwrap().contains("Use this in a session's thread"), "{unknown}");

    // A restart with the same definition registers nothing again.
    drop(client);
    sidecar.terminate().await;
    let sidecar = Sidecar::start(&dir, &env).await;
    wait_for("the restarted sidecar to check /omp", Duration::from_secs(20), || {
        sidecar.log().contains("the /omp command is up to date").then_some(())
    })
    .await;
    assert_eq!(command_puts(&emulator), 1);
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_and_clicks_share_each_persons_rate_limit() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = sidecar_env(&dir, Some(&emulator));
    env.push(("OMP_DISCORD_INBOUND_RATE_LIMIT".into(), "2/60".into()));
    let _sidecar = Sidecar::start(&dir, &env).await;
    wait_for("/omp to be registered", Duration::from_secs(20), || (command_puts(&emulator) == 1).then_some(())).await;
    let home = omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID;

    for _ in 0..2 {
        let answer = command(&emulator, home, DEFAULT_OWNER_USER_ID, "status", json!([])).await;
        assert!(!answer.to_string().contains("Slow down"), "{answer}");
    }
    // The third within the minute does nothing and says why, privately.
    let refused = command(&emulator, home, DEFAULT_OWNER_USER_ID, "status", json!([])).await;
    assert!(
        refused["content"].as_str().is_some_and(|c| c.contains("Slow down") && c.contains("Nothing was done")),
        "{refused}"
    );
    assert_eq!(refused["flags"], 64, "{refused}");
    // Someone else has their own budget.
    let other = command(&emulator, home, DEFAULT_GUEST_USER_ID, "status", json!([])).await;
    assert!(!other.to_string().contains("Slow down"), "{other}");
}
