//! The outbox's promise: a notification the sidecar accepted reaches Discord
//! exactly once and in order per session, whatever happens to the sidecar.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use omp_discord_core::embed::{Notification, build_notification};
use omp_discord_core::protocol::{ClientFrame, NotifyRequest, ServerFrame, SessionRef, encode_frame};
use serde_json::Value;

use crate::util::{Client, Sidecar, TestDir, emulator, sidecar_env, wait_for};

const SESSIONS: usize = 5;
const PER_SESSION: usize = 60;

fn text(session: usize, index: usize) -> String {
    format!("s{session} #{index:03}")
}

/// Each delivered message (by id) with its thread and embed descriptions, from
/// the emulator's record of successful creates (a nonce replay returns the
/// same message id, so duplicates would show up as a second id).
fn delivered(emulator: &omp_discord_emulator::Emulator) -> BTreeMap<u64, (String, Vec<String>)> {
    let mut messages = BTreeMap::new();
    for request in emulator.requests() {
        let request = serde_json::to_value(request).unwrap();
        let is_create = request["method"] == "POST" && request["path"].as_str().unwrap().ends_with("/messages");
        if !is_create || request["status"] != 200 {
            continue;
        }
        let response = &request["response"];
        let id = response["id"].as_str().unwrap().parse().unwrap();
        let descriptions = response["embeds"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["description"].as_str().map(str::to_owned))
            .collect();
        messages.insert(id, (response["channel_id"].as_str().unwrap().to_owned(), descriptions));
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_survives_kill_9_exactly_once_and_in_order() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;

    // Five sessions pour notifications in at once, without waiting for delivery.
    let mut clients = Vec::new();
    for session in 0..SESSIONS {
        let mut client = Client::greeted(&sidecar.socket).await;
        let mut burst = String::new();
        for index in 0..PER_SESSION {
            let message =
                build_notification(&Notification { message: text(session, index), ..Default::default() }, "p");
            burst.push_str(&encode_frame(&ClientFrame::Notify(NotifyRequest {
                id: format!("{session}-{index}"),
                session: SessionRef { id: format!("burst-{session}"), cwd: Some("/w/burst".into()), prompt: None },
                message,
                channel_id: None,
                key: None,
                edit: false,
            })));
        }
        client.send_raw(burst.as_bytes()).await;
        clients.push(client);
    }
    // Every frame is acknowledged as journaled before anything else is relied on.
    for client in &mut clients {
        let mut accepted = 0;
        while accepted < PER_SESSION {
            match client.read().await.expect("the sidecar answers") {
                ServerFrame::Accepted { .. } => accepted += 1,
                ServerFrame::Delivered { .. } => {}
                other => panic!("unexpected answer during the burst: {other:?}"),
            }
        }
    }
    // Kill it hard while it is delivering, then start a new one on the same journal.
    wait_for("some deliveries", Duration::from_secs(30), || (delivered(&emulator).len() >= 8).then_some(())).await;
    drop(clients);
    sidecar.kill_hard();
    let before_restart = delivered(&emulator).len();
    let sidecar = Sidecar::start(&dir, &env).await;

    let total = SESSIONS * PER_SESSION;
    wait_for("every notification to arrive", Duration::from_secs(120), || {
        let count: usize = delivered(&emulator).values().map(|(_, d)| d.len()).sum();
        (count >= total + SESSIONS).then_some(())
    })
    .await;
    let messages = delivered(&emulator);
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_thread: HashMap<String, Vec<String>> = HashMap::new();
    // Message ids grow with time, so this walks each thread in posting order.
    for (channel, descriptions) in messages.values() {
        for description in descriptions {
            *seen.entry(description.clone()).or_default() += 1;
            per_thread.entry(channel.clone()).or_default().push(description.clone());
        }
    }
    for session in 0..SESSIONS {
        for index in 0..PER_SESSION {
            assert_eq!(seen.get(&text(session, index)), Some(&1), "{} delivered exactly once", text(session, index));
        }
    }
    for texts in per_thread.values().filter(|t| t[0].starts_with('s')) {
        let mut sorted = texts.clone();
        sorted.sort();
        assert_eq!(texts, &sorted, "in order within the thread");
    }
    // Coalescing: far fewer messages than notifications.
    let notification_messages = messages.len() - SESSIONS;
    assert!(notification_messages * 4 <= total, "{notification_messages} messages for {total} notifications");
    assert!(before_restart < messages.len(), "the restarted sidecar finished the work");
    let mut client = Client::greeted(&sidecar.socket).await;
    let ServerFrame::Status { status, .. } = client.call(&ClientFrame::Status { id: "s".into() }).await else {
        panic!("no status")
    };
    assert_eq!(status["outbox"]["pending"], 0, "{status}");
    let _: Value = status;
}
