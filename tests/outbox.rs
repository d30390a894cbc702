//! The outbox's promise: a notification the sidecar accepted reaches Discord
//! exactly once and in order per session, whatever happens to the sidecar —
//! through a bot, and through a webhook (which takes no nonce: see below).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use omp_discord_core::embed::{Notification, build_notification};
use omp_discord_core::protocol::{ClientFrame, NotifyRequest, ServerFrame, SessionRef, encode_frame};
use omp_discord_emulator::Emulator;

use crate::util::{Client, Sidecar, TestDir, emulator, sidecar_env, wait_for};
use crate::webhook::webhook_env;

fn text(session: usize, index: usize) -> String {
    format!("s{session} #{index:04}")
}

/// Each delivered message (by id) with its channel and embed descriptions, from
/// the emulator's record of successful creates (a nonce replay returns the
/// same message id, so duplicates would show up as a second id).
fn delivered(emulator: &Emulator) -> BTreeMap<u64, (String, Vec<String>)> {
    let mut messages = BTreeMap::new();
    for request in emulator.requests() {
        let request = serde_json::to_value(request).unwrap();
        let path = request["path"].as_str().unwrap();
        let is_create = request["method"] == "POST" && (path.ends_with("/messages") || path.contains("/webhooks/"));
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

/// What the burst left in Discord once every notification arrived.
struct Outcome {
    /// How many times each notification's text was posted.
    seen: HashMap<String, usize>,
    /// Each session's texts in the order Discord shows them, repeats dropped.
    per_session: Vec<Vec<String>>,
    /// Messages that carry notifications.
    messages: usize,
}

/// `sessions` sessions pour `per_session` notifications each into the sidecar
/// at once; it is killed with SIGKILL while delivering, and a new one takes
/// over the same journal. Returns once every text arrived.
async fn burst_through_kill_9(
    dir: &TestDir,
    emulator: &Emulator,
    env: &[(String, String)],
    sessions: usize,
    per_session: usize,
) -> Outcome {
    let sidecar = Sidecar::start(dir, env).await;
    let mut clients = Vec::new();
    for session in 0..sessions {
        let mut client = Client::greeted(&sidecar.socket).await;
        let mut burst = String::new();
        for index in 0..per_session {
            let message =
                build_notification(&Notification { message: text(session, index), ..Default::default() }, "p");
            burst.push_str(&encode_frame(&ClientFrame::Notify(NotifyRequest {
                id: format!("{session}-{index}"),
                session: SessionRef { id: format!("burst-{session}"), cwd: Some("/w/burst".into()), prompt: None },
                message,
                channel_id: None,
                key: None,
                edit: false,
                idempotency_key: None,
            })));
        }
        client.send_raw(burst.as_bytes()).await;
        clients.push(client);
    }
    // Every frame is acknowledged as journaled before anything else is relied on.
    for client in &mut clients {
        let mut accepted = 0;
        while accepted < per_session {
            match client.read().await.expect("the sidecar answers") {
                ServerFrame::Accepted { .. } => accepted += 1,
                ServerFrame::Delivered { .. } => {}
                other => panic!("unexpected answer during the burst: {other:?}"),
            }
        }
    }
    // Kill it hard while it is delivering, then start a new one on the same journal.
    wait_for("some deliveries", Duration::from_secs(60), || (delivered(emulator).len() >= 8).then_some(())).await;
    drop(clients);
    sidecar.kill_hard();
    let before_restart = delivered(emulator).len();
    let sidecar = Sidecar::start(dir, env).await;

    let texts = |messages: &BTreeMap<u64, (String, Vec<String>)>| {
        // Message ids grow with time, so this walks the messages in posting order.
        messages.values().flat_map(|(_, d)| d.iter().filter(|t| t.starts_with('s')).cloned()).collect::<Vec<_>>()
    };
    let total = sessions * per_session;
    wait_for("every notification to arrive", Duration::from_secs(180), || {
        let arrived: std::collections::HashSet<String> = texts(&delivered(emulator)).into_iter().collect();
        (arrived.len() >= total).then_some(())
    })
    .await;
    let messages = delivered(emulator);
    assert!(before_restart < messages.len(), "the restarted sidecar finished the work");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut per_session = vec![Vec::new(); sessions];
    for text in texts(&messages) {
        let count = seen.entry(text.clone()).or_default();
        *count += 1;
        if *count == 1 {
            let session: usize = text[1..text.find(' ').unwrap()].parse().unwrap();
            per_session[session].push(text);
        }
    }
    let mut client = Client::greeted(&sidecar.socket).await;
    let ServerFrame::Status { status, .. } = client.call(&ClientFrame::Status { id: "s".into() }).await else {
        panic!("no status")
    };
    assert_eq!(status["outbox"]["pending"], 0, "{status}");
    let carrying = messages.values().filter(|(_, d)| d.iter().any(|t| t.starts_with('s'))).count();
    Outcome { seen, per_session, messages: carrying }
}

fn assert_complete_and_in_order(outcome: &Outcome, sessions: usize, per_session: usize) {
    for session in 0..sessions {
        let expected: Vec<String> = (0..per_session).map(|index| text(session, index)).collect();
        assert_eq!(outcome.per_session[session], expected, "session {session}: every text, in order");
    }
    // Coalescing: far fewer messages than notifications.
    let total = sessions * per_session;
    assert!(outcome.messages * 4 <= total, "{} messages for {total} notifications", outcome.messages);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_survives_kill_9_exactly_once_and_in_order() {
    let (sessions, per_session) = (5, 400);
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let outcome = burst_through_kill_9(&dir, &emulator, &env, sessions, per_session).await;
    assert_complete_and_in_order(&outcome, sessions, per_session);
    let twice: Vec<_> = outcome.seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
}

/// A webhook takes no `nonce`: a message Discord posted just before the kill,
/// but which the sidecar had not recorded yet, is posted again. At most the
/// one message in flight at the kill can repeat; nothing may be lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_webhook_a_burst_survives_kill_9_with_nothing_lost_and_in_order() {
    let (sessions, per_session) = (2, 100);
    let dir = TestDir::new();
    let emulator = emulator().await;
    let (env, _) = webhook_env(&dir, &emulator).await;
    let outcome = burst_through_kill_9(&dir, &emulator, &env, sessions, per_session).await;
    assert_complete_and_in_order(&outcome, sessions, per_session);
    let twice = outcome.seen.values().filter(|n| **n > 1).count();
    assert!(twice <= 10, "more than the one message in flight was repeated: {twice} texts");
}
