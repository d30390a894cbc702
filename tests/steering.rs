//! While the agent works on a reply: the bot keeps typing in the thread,
//! a prefixed reply steers or stops the run, and one person cannot flood it.
//! Real omp (RPC mode, the scripted model), the sidecar and the emulator.

use std::process::Stdio;
use std::time::Duration;

use omp_discord_emulator::{DEFAULT_GUEST_USER_ID, DEFAULT_OWNER_USER_ID, Emulator};
use serde_json::{Value, json};
use tokio::process::Child;

use omp_discord_core::embed::{Notification, build_notification};
use omp_discord_core::protocol::{ClientFrame, NotifyRequest, ServerFrame, SessionRef};

use crate::util::{
    Client, Plugin, Sidecar, TestDir, emulator, omp_command, sidecar_env, thread_messages, thread_starts, wait_for,
};

/// Recorded typing requests in `thread`.
fn typing_posts(emulator: &Emulator, thread: u64) -> usize {
    let path = format!("/channels/{thread}/typing");
    emulator
        .requests()
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .filter(|r| r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with(&path)))
        .count()
}

/// The run summaries in `thread` (title, description), oldest first.
fn run_ends(emulator: &Emulator, thread: u64) -> Vec<(String, String)> {
    thread_messages(emulator, thread)
        .iter()
        .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| {
            let title = e["title"].as_str()?;
            (title.starts_with("Run ") && !title.starts_with("Running"))
                .then(|| (title.to_owned(), e["description"].as_str().unwrap_or_default().to_owned()))
        })
        .collect()
}

/// A long-lived omp (RPC mode, no prompt yet) playing `script`, and its session's thread.
async fn session(dir: &TestDir, env: &[(String, String)], emulator: &Emulator, script: &Value) -> (Child, u64) {
    let omp = omp_command(dir, env, Plugin::Flag, script, &["--mode", "rpc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("omp starts");
    let thread = wait_for("the session's thread", Duration::from_secs(60), || {
        thread_starts(emulator).first().and_then(|t| t["response"]["id"].as_str()?.parse().ok())
    })
    .await;
    (omp, thread)
}

fn say(emulator: &Emulator, thread: u64, text: &str) -> Value {
    emulator.state().inject_message(thread, DEFAULT_OWNER_USER_ID, &json!({ "content": text })).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_keeps_typing_while_the_run_lasts_and_stops_at_its_end() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    // The reply's run takes ~18 s: Discord's ~10 s indicator must be renewed twice.
    let script = json!([
        { "tool": "bash", "args": { "command": "sleep 18", "i": "wait" } },
        { "text": "slept" },
    ]);
    let (_omp, thread) = session(&dir, &env, &emulator, &script).await;
    assert_eq!(typing_posts(&emulator, thread), 0, "nothing was asked yet");

    say(&emulator, thread, "take your time");
    wait_for("typing renewed during the run", Duration::from_secs(30), || {
        (typing_posts(&emulator, thread) >= 3).then_some(())
    })
    .await;
    let ends = wait_for("the run's summary", Duration::from_secs(30), || {
        let ends = run_ends(&emulator, thread);
        (!ends.is_empty()).then_some(ends)
    })
    .await;
    assert_eq!(ends[0].0, "Run finished", "{ends:?}");
    let at_end = typing_posts(&emulator, thread);
    assert!(at_end <= 4, "typing ran far past its 8 s period: {at_end} requests for an ~18 s run");
    // The run's end stopped the session's timer.
    let mut client = Client::greeted(&dir.socket()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let ServerFrame::Status { status, .. } = client.call(&ClientFrame::Status { id: "s".into() }).await else {
            panic!("expected a status")
        };
        if status["typing_sessions"] == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "typing still runs after the run ended: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sidecar.terminate().await;
}

/// Waits until the thread shows a live run card.
async fn run_card_shows(emulator: &Emulator, thread: u64) {
    wait_for("the run card", Duration::from_secs(60), || {
        thread_messages(emulator, thread)
            .iter()
            .any(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t.starts_with("Running")))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefixed_reply_steers_the_running_agent() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    // Each user message (a prompt or a steer) makes the model wait 5 s in bash, then echo it.
    let script = json!([
        { "tool": "bash", "args": { "command": "sleep 5", "i": "wait" } },
        { "echo": "heard: " },
    ]);
    let (_omp, thread) = session(&dir, &env, &emulator, &script).await;
    say(&emulator, thread, "start");
    run_card_shows(&emulator, thread).await;
    say(&emulator, thread, "! focus on the parser");

    let ends = wait_for("the run's summary", Duration::from_secs(40), || {
        let ends = run_ends(&emulator, thread);
        (!ends.is_empty()).then_some(ends)
    })
    .await;
    // Steered: the model took the new message within the same run, so it never
    // answered the first one; a follow-up would have been a second run after it.
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0].0, "Run finished", "{ends:?}");
    // (OMP wraps a steer in a notice that the user interjected.)
    assert!(ends[0].1.starts_with("heard: ") && ends[0].1.contains("[Discord message from"), "{ends:?}");
    assert!(!ends[0].1.contains("\nstart"), "the first message was answered as its own run: {ends:?}");
    assert!(ends[0].1.ends_with("focus on the parser"), "the prefix is not passed on: {ends:?}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_reply_aborts_the_run() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let script = json!([
        { "tool": "bash", "args": { "command": "sleep 60", "i": "wait long" } },
        { "text": "finished the long wait" },
    ]);
    let (_omp, thread) = session(&dir, &env, &emulator, &script).await;
    say(&emulator, thread, "wait a minute");
    run_card_shows(&emulator, thread).await;
    let stop = say(&emulator, thread, "!stop");
    let ends = wait_for("the aborted run", Duration::from_secs(20), || {
        let ends = run_ends(&emulator, thread);
        (!ends.is_empty()).then_some(ends)
    })
    .await;
    assert_eq!(ends[0].0, "Run aborted", "{ends:?}");
    let stop_id = stop["id"].as_str().unwrap().to_owned();
    wait_for("the stop's reaction", Duration::from_secs(10), || {
        emulator
            .requests()
            .iter()
            .any(|r| {
                let r = serde_json::to_value(r).unwrap();
                r["method"] == "PUT" && r["path"].as_str().unwrap().contains(&format!("/messages/{stop_id}/reactions/"))
            })
            .then_some(())
    })
    .await;
    // The stop command itself never reached the model as a message.
    let log = sidecar.log();
    assert!(log.contains("stop requested from a reply"), "{log}");
    assert_eq!(log.matches("reply accepted").count(), 1, "{log}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_author_is_held_to_their_rate_and_told_once() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = sidecar_env(&dir, Some(&emulator));
    env.push(("OMP_DISCORD_INBOUND_RATE_LIMIT".into(), "2/60".into()));
    env.push(("OMP_DISCORD_ALLOWED_USERS".into(), DEFAULT_GUEST_USER_ID.to_string()));
    let sidecar = Sidecar::start(&dir, &env).await;
    let session = SessionRef { id: "flood".into(), cwd: Some("/w/flood".into()), prompt: None };
    let mut client = Client::greeted(&dir.socket()).await;
    let attach = ClientFrame::Attach { id: "a".into(), session: session.clone() };
    assert!(matches!(client.call(&attach).await, ServerFrame::Ok { .. }));
    let notify = |id: &str| {
        let message = build_notification(&Notification { message: id.into(), ..Default::default() }, "flood");
        ClientFrame::Notify(NotifyRequest {
            id: id.into(),
            session: session.clone(),
            message,
            channel_id: None,
            key: None,
            edit: false,
            idempotency_key: None,
        })
    };
    assert!(matches!(client.notify(&notify("open")).await.1, ServerFrame::Delivered { .. }));
    let thread: u64 = thread_starts(&emulator)[0]["response"]["id"].as_str().unwrap().parse().unwrap();

    for n in 1..=5 {
        say(&emulator, thread, &format!("flood {n}"));
    }
    // Someone else is not held up by it.
    emulator.state().inject_message(thread, DEFAULT_GUEST_USER_ID, &json!({ "content": "from someone else" })).unwrap();
    let mut texts = Vec::new();
    while texts.len() < 3 {
        match client.read().await {
            Some(ServerFrame::Inbound { text, .. }) => texts.push(text),
            Some(_) => {}
            None => panic!("the sidecar closed the connection"),
        }
    }
    assert!(texts[0].ends_with("flood 1") && texts[1].ends_with("flood 2"), "{texts:?}");
    assert!(texts[2].ends_with("from someone else"), "flood 3 to 5 were passed on: {texts:?}");

    // Everything journaled for the thread before this report is in Discord once it is.
    assert!(matches!(client.notify(&notify("after")).await.1, ServerFrame::Delivered { .. }));
    let notes: Vec<String> = thread_messages(&emulator, thread)
        .iter()
        .filter_map(|m| m["content"].as_str().filter(|c| c.contains("Slow down")).map(str::to_owned))
        .collect();
    assert_eq!(notes.len(), 1, "told once, not per message: {notes:?}");
    assert!(notes[0].contains("2 messages per 60 s") && !notes[0].contains('@'), "{notes:?}");
    let log = sidecar.log();
    assert_eq!(log.matches("over the inbound rate limit").count(), 3, "{log}");
    sidecar.terminate().await;
}
