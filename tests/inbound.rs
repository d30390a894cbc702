//! Discord drives OMP: replies in a session's thread reach the real omp
//! (RPC mode, a long-lived session) through the sidecar's gateway.

use std::process::Stdio;
use std::time::Duration;

use omp_discord_emulator::{DEFAULT_GUEST_USER_ID, DEFAULT_OWNER_USER_ID, Emulator};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use omp_discord_core::embed::{Notification, build_notification};
use omp_discord_core::protocol::{ClientFrame, NotifyRequest, ServerFrame, SessionRef, encode_frame};

use crate::util::{
    Client, Plugin, Sidecar, TestDir, emulator, omp_command, sidecar_env, thread_messages, thread_starts, wait_for,
};

/// Descriptions of the run summaries in `thread`, oldest first.
fn run_summaries(emulator: &omp_discord_emulator::Emulator, thread: u64) -> Vec<String> {
    thread_messages(emulator, thread)
        .iter()
        .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["title"].as_str().is_some_and(|t| t.starts_with("Run finished")))
        .map(|e| e["description"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_reply_in_the_thread_starts_a_run_and_others_are_ignored() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;

    let script = json!([{ "echo": "heard: " }]);
    let mut omp = omp_command(&dir, &env, Plugin::Flag, &script, &["--mode", "rpc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("omp starts");
    let mut stdin = omp.stdin.take().unwrap();
    stdin.write_all(b"{\"type\":\"prompt\",\"message\":\"start here\"}\n").await.unwrap();

    // The first run opens the session's thread and reports there.
    let thread: u64 = wait_for("the session's thread", Duration::from_secs(30), || {
        thread_starts(&emulator).first().and_then(|t| t["response"]["id"].as_str()?.parse().ok())
    })
    .await;
    wait_for("the first run summary", Duration::from_secs(30), || {
        (run_summaries(&emulator, thread).len() == 1).then_some(())
    })
    .await;

    // A guest's reply is ignored; the owner's starts a run whose answer lands in the thread.
    let state = emulator.state();
    state.inject_message(thread, DEFAULT_GUEST_USER_ID, &json!({ "content": "guest says rm -rf" })).unwrap();
    let owner_message =
        state.inject_message(thread, DEFAULT_OWNER_USER_ID, &json!({ "content": "run the tests" })).unwrap();
    let summaries = wait_for("the reply's run summary", Duration::from_secs(30), || {
        let summaries = run_summaries(&emulator, thread);
        (summaries.len() >= 2).then_some(summaries)
    })
    .await;
    assert!(summaries[1].starts_with("heard: [Discord message from"), "{summaries:?}");
    assert!(summaries[1].ends_with("run the tests"), "{summaries:?}");
    assert!(summaries.iter().all(|s| !s.contains("rm -rf")), "the guest drove the session: {summaries:?}");

    // The owner's message got the bot's ✅ once it reached OMP.
    let owner_id = owner_message["id"].as_str().unwrap().to_owned();
    wait_for("the receipt reaction", Duration::from_secs(10), || {
        emulator
            .requests()
            .iter()
            .any(|r| {
                let r = serde_json::to_value(r).unwrap();
                r["method"] == "PUT"
                    && r["path"].as_str().unwrap().contains(&format!("/messages/{owner_id}/reactions/"))
            })
            .then_some(())
    })
    .await;
    let _: Value = owner_message;
    // ... and the bot showed it was working on it.
    let typing = format!("/channels/{thread}/typing");
    wait_for("the typing indicator in the thread", Duration::from_secs(10), || {
        emulator
            .requests()
            .iter()
            .any(|r| serde_json::to_value(r).unwrap()["path"].as_str().is_some_and(|p| p.ends_with(&typing)))
            .then_some(())
    })
    .await;

    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(10), omp.wait()).await;
    sidecar.terminate().await;
}

/// Attaches `session` on a fresh connection and collects inbound texts until `count` arrived
/// (acknowledging each, as the shim does, until the sidecar confirmed the acknowledgements).
async fn collect_inbound(socket: &std::path::Path, session: &SessionRef, count: usize) -> Vec<String> {
    let mut client = Client::greeted(socket).await;
    let attach = ClientFrame::Attach { id: "a".into(), session: session.clone() };
    client.send_raw(encode_frame(&attach).as_bytes()).await;
    let mut texts = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut acked = 0;
    while acked < count {
        let frame = tokio::time::timeout_at(deadline, client.read()).await.expect("the replies within 30 s");
        match frame {
            Some(ServerFrame::Inbound { message_id, text, .. }) => {
                texts.push(text);
                let ack = ClientFrame::InboundAck { id: format!("ack-{message_id}"), message_id };
                client.send_raw(encode_frame(&ack).as_bytes()).await;
            }
            Some(ServerFrame::Ok { id }) if id.starts_with("ack-") => acked += 1,
            _ => {}
        }
    }
    assert_eq!(texts.len(), count, "{texts:?}");
    texts
}

/// Opens `session`'s thread with a first notification; returns the thread's id.
async fn open_thread(client: &mut Client, emulator: &Emulator, session: &SessionRef, text: &str) -> u64 {
    let payload = build_notification(&Notification { message: text.into(), ..Default::default() }, "p");
    let notify = ClientFrame::Notify(NotifyRequest {
        id: "n1".into(),
        session: session.clone(),
        message: payload,
        channel_id: None,
        key: None,
        edit: false,
        idempotency_key: None,
    });
    let (_, delivered) = client.notify(&notify).await;
    assert!(matches!(delivered, ServerFrame::Delivered { .. }), "{delivered:?}");
    thread_starts(emulator)[0]["response"]["id"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_missed_by_the_gateway_are_caught_up_once_and_in_order() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let session = SessionRef { id: "catch-up".into(), cwd: Some("/w/catch-up".into()), prompt: None };
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&dir.socket()).await;
    let thread = open_thread(&mut client, &emulator, &session, "open the thread").await;
    let state = emulator.state();
    let say = |text: &str| state.inject_message(thread, DEFAULT_OWNER_USER_ID, &json!({ "content": text })).unwrap();
    say("live one");
    assert_eq!(collect_inbound(&dir.socket(), &session, 1).await.len(), 1);

    // A gap the gateway cannot resume: the session is invalidated, and what is said
    // before the bot identifies again is never dispatched to it.
    state.set_faults(&json!({ "gateway": { "action": "invalid_session", "resumable": false } })).unwrap();
    wait_for("the gateway session to be gone", Duration::from_secs(10), || {
        (state.snapshot()["gateway"]["sessions"].as_u64() == Some(0)).then_some(())
    })
    .await;
    for n in 1..=3 {
        say(&format!("during the gap {n}"));
    }
    let texts = collect_inbound(&dir.socket(), &session, 3).await;
    assert!(texts.iter().zip(1..).all(|(t, n)| t.ends_with(&format!("during the gap {n}"))), "{texts:?}");

    // The sidecar is down while people write; a new one catches up on start.
    drop(client);
    sidecar.terminate().await;
    for n in 1..=3 {
        say(&format!("while down {n}"));
    }
    let sidecar = Sidecar::start(&dir, &env).await;
    let texts = collect_inbound(&dir.socket(), &session, 3).await;
    assert!(texts.iter().zip(1..).all(|(t, n)| t.ends_with(&format!("while down {n}"))), "{texts:?}");

    // Every reply was journaled once, whatever path it came by.
    let log = sidecar.log();
    assert_eq!(log.matches("reply accepted").count(), 3, "{log}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_to_a_session_that_is_away_waits_and_the_thread_is_told_once() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let config = dir.home().join(".config/omp-discord/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(&config, "[[projects]]\npath = \"/w/*\"\n").unwrap();
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let session = SessionRef { id: "away".into(), cwd: Some("/w/shop".into()), prompt: Some("deploy".into()) };
    let mut client = Client::greeted(&dir.socket()).await;
    let thread = open_thread(&mut client, &emulator, &session, "deployed").await;
    // Past the grace after start in which shims reconnect (10 s), which `status` shows as uptime.
    loop {
        let ServerFrame::Status { status, .. } = client.call(&ClientFrame::Status { id: "s".into() }).await else {
            panic!("no status")
        };
        if status["uptime_secs"].as_u64().is_some_and(|s| s > 10) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Nobody attached the session: the first reply gets the note, the second does not.
    let state = emulator.state();
    let say = |text: &str| state.inject_message(thread, DEFAULT_OWNER_USER_ID, &json!({ "content": text })).unwrap();
    say("are you there?");
    let notes = |emulator: &omp_discord_emulator::Emulator| -> Vec<String> {
        thread_messages(emulator, thread)
            .iter()
            .filter_map(|m| m["content"].as_str().filter(|c| c.contains("not connected right now")).map(str::to_owned))
            .collect()
    };
    let note = wait_for("the note that the session is away", Duration::from_secs(20), || notes(&emulator).pop()).await;
    assert!(note.contains("shop on ") && note.contains("`omp --continue` in shop"), "{note}");
    assert!(note.contains("`/omp ask` with project shop"), "a configured project offers /omp ask: {note}");
    say("still there?");

    // Both replies waited, and reach the session once it attaches.
    let texts = collect_inbound(&dir.socket(), &session, 2).await;
    assert!(texts[0].ends_with("are you there?") && texts[1].ends_with("still there?"), "{texts:?}");
    assert_eq!(notes(&emulator).len(), 1, "one note per absence");
    sidecar.terminate().await;
}
