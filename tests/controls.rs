//! The run card's buttons against the real omp (RPC mode, scripted model):
//! Stop aborts a running turn, Retry runs the last prompt again, Continue asks
//! for a follow-up in a modal; strangers and stale cards are refused.

use std::process::Stdio;
use std::time::{Duration, Instant};

use omp_discord_emulator::{DEFAULT_GUEST_USER_ID, DEFAULT_OWNER_USER_ID, Emulator};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use omp_discord_core::controls::{self, CardState};
use omp_discord_core::event::RunSummary;
use omp_discord_core::protocol::{ClientFrame, NotifyRequest, ServerFrame, SessionAction, SessionRef};
use omp_discord_core::templates::{RunCard, run_card, run_finished};

use crate::util::{
    Client, Plugin, Sidecar, TestDir, emulator, emulator_post, emulator_request, omp_command, sidecar_env,
    thread_messages, thread_starts, wait_for,
};

/// A run that naps (a 30 s bash call) when the prompt says "nap", else echoes it.
fn script() -> Value {
    json!([
        { "match": { "nap": { "tool": "bash", "args": { "command": "sleep 30", "i": "nap" } } }, "else": { "echo": "heard: " } },
        { "text": "woke up" }
    ])
}

fn thread_of(emulator: &Emulator) -> Option<u64> {
    thread_starts(emulator).first()?["response"]["id"].as_str()?.parse().ok()
}

/// The run cards in the thread (messages whose first embed's title starts with "Run"), oldest first.
fn cards(emulator: &Emulator, thread: u64) -> Vec<Value> {
    thread_messages(emulator, thread)
        .into_iter()
        .filter(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t.starts_with("Run")))
        .collect()
}

/// The buttons on a message: (custom_id, label, disabled).
fn buttons(message: &Value) -> Vec<(String, String, bool)> {
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().cloned().unwrap_or_default())
        .map(|b| {
            (
                b["custom_id"].as_str().unwrap_or_default().to_owned(),
                b["label"].as_str().unwrap_or_default().to_owned(),
                b["disabled"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

fn button(message: &Value, action: &str) -> Option<String> {
    buttons(message).into_iter().find(|(id, _, _)| id.starts_with(&format!("omp:run:{action}:"))).map(|b| b.0)
}

/// Descriptions of the finished runs' summaries, oldest first.
fn summaries(emulator: &Emulator, thread: u64) -> Vec<String> {
    cards(emulator, thread)
        .iter()
        .filter(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t == "Run finished" || t == "Run aborted"))
        .map(|m| m["embeds"][0]["description"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn click(emulator: &Emulator, thread: u64, message: &Value, custom_id: &str, user: u64) -> Value {
    let body = json!({
        "type": "button", "custom_id": custom_id, "message_id": message["id"],
        "channel_id": thread.to_string(), "user_id": user.to_string(), "wait": true
    });
    emulator_post(emulator, "/_emulator/interactions", &body).await["state"].clone()
}

/// Starts omp in RPC mode with `prompt`; returns it with its stdin (closing stdin ends it).
async fn start_omp(
    dir: &TestDir,
    env: &[(String, String)],
    prompt: &str,
) -> (tokio::process::Child, tokio::process::ChildStdin) {
    let mut omp = omp_command(dir, env, Plugin::Flag, &script(), &["--mode", "rpc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("omp starts");
    let mut stdin = omp.stdin.take().unwrap();
    let line = json!({ "type": "prompt", "message": prompt }).to_string() + "\n";
    stdin.write_all(line.as_bytes()).await.unwrap();
    (omp, stdin)
}

async fn stop_omp(mut omp: tokio::process::Child, stdin: tokio::process::ChildStdin) {
    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(10), omp.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_aborts_the_running_turn_and_a_strangers_click_changes_nothing() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let started = Instant::now();
    let (omp, stdin) = start_omp(&dir, &env, "take a nap").await;

    // The live card shows the nap running, with a Stop button.
    let (thread, card) = wait_for("the running card with Stop", Duration::from_secs(30), || {
        let thread = thread_of(&emulator)?;
        let card = cards(&emulator, thread).into_iter().next()?;
        (button(&card, "stop").is_some() && card.to_string().contains("sleep 30")).then_some((thread, card))
    })
    .await;
    let stop = button(&card, "stop").unwrap();
    assert_eq!(buttons(&card).len(), 1, "only Stop while it runs: {card}");

    // A stranger is refused privately; the run and the card go on.
    let refused = click(&emulator, thread, &card, &stop, DEFAULT_GUEST_USER_ID).await;
    assert_eq!(refused["response_type"], 4, "{refused}");
    assert_eq!(refused["callbacks"][0]["data"]["flags"], 64, "{refused}");
    assert!(refused.to_string().contains("allowlist"), "{refused}");
    let still = cards(&emulator, thread).remove(0);
    assert_eq!(still["embeds"][0]["title"], card["embeds"][0]["title"], "{still}");
    assert!(buttons(&still).iter().all(|(_, _, disabled)| !disabled), "{still}");

    // The owner's Stop is answered at once (the button shows who stopped it) and aborts the run.
    let stopped = click(&emulator, thread, &card, &stop, DEFAULT_OWNER_USER_ID).await;
    assert_eq!(stopped["response_type"], 7, "{stopped}");
    let shown = &stopped["callbacks"][0]["data"]["components"][0]["components"][0];
    assert_eq!(shown["disabled"], true, "{stopped}");
    assert!(shown["label"].as_str().unwrap().starts_with("Stopped by"), "{stopped}");
    let ended = wait_for("the card to show the run stopped", Duration::from_secs(20), || {
        let card = cards(&emulator, thread).into_iter().next()?;
        (card["embeds"][0]["title"] == "Run aborted").then_some(card)
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(30), "the 30 s nap ran to its end");
    // Stop is gone; the ended run offers Retry and Continue.
    assert!(button(&ended, "stop").is_none(), "{ended}");
    assert!(button(&ended, "retry").is_some() && button(&ended, "continue").is_some(), "{ended}");

    stop_omp(omp, stdin).await;
    let log = sidecar.log();
    assert!(log.contains("run button refused") && log.contains("run button used"), "{log}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_and_continue_start_runs_and_stale_cards_are_refused() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let (omp, stdin) = start_omp(&dir, &env, "first task").await;

    let (thread, first) = wait_for("the first run's summary with Retry", Duration::from_secs(30), || {
        let thread = thread_of(&emulator)?;
        let card = cards(&emulator, thread).into_iter().next()?;
        button(&card, "retry").map(|_| (thread, card))
    })
    .await;
    let echoed = summaries(&emulator, thread);
    assert_eq!(echoed.len(), 1, "{echoed:?}");
    assert!(echoed[0].starts_with("heard: ") && echoed[0].contains("first task"), "{echoed:?}");

    // Retry: the same prompt runs again, and the first card's buttons go.
    let retried = click(&emulator, thread, &first, &button(&first, "retry").unwrap(), DEFAULT_OWNER_USER_ID).await;
    assert_eq!(retried["response_type"], 7, "{retried}");
    let second = wait_for("the retried run's summary", Duration::from_secs(30), || {
        let cards = cards(&emulator, thread);
        (cards.len() == 2 && button(&cards[1], "continue").is_some() && buttons(&cards[0]).is_empty())
            .then(|| cards[1].clone())
    })
    .await;
    // OMP wraps a session's very first prompt in a reminder; the prompt itself is the same.
    assert_eq!(summaries(&emulator, thread)[1], "heard: first task", "the same prompt again");

    // Continue opens a modal; its text starts the next run, like a reply in the thread.
    let continued =
        click(&emulator, thread, &second, &button(&second, "continue").unwrap(), DEFAULT_OWNER_USER_ID).await;
    assert_eq!(continued["response_type"], 9, "{continued}");
    let modal = &continued["callbacks"][0]["data"];
    let modal_id = modal["custom_id"].as_str().unwrap();
    let card = button(&second, "continue").unwrap().split(':').nth(3).unwrap().to_owned();
    assert!(modal_id.starts_with(&format!("omp:run:prompt:{card}:")), "the second card's: {modal}");
    assert!(!modal["title"].as_str().unwrap().is_empty(), "{modal}");
    let input = &modal["components"][0]["components"][0];
    assert_eq!(
        (input["type"].as_u64(), input["custom_id"].as_str(), input["required"].as_bool()),
        (Some(4), Some("prompt"), Some(true))
    );
    // Nothing was used by opening it: the card still offers its buttons.
    assert!(buttons(&cards(&emulator, thread)[1]).iter().all(|(_, _, disabled)| !disabled));
    let submit = json!({
        "type": "modal", "custom_id": modal_id, "fields": { "prompt": "now write the docs" },
        "channel_id": thread.to_string(), "user_id": DEFAULT_OWNER_USER_ID.to_string(), "wait": true
    });
    let submitted = emulator_post(&emulator, "/_emulator/interactions", &submit).await["state"].clone();
    assert_eq!(submitted["response_type"], 7, "{submitted}");
    let third = wait_for("the follow-up's summary", Duration::from_secs(30), || {
        let cards = cards(&emulator, thread);
        (cards.len() == 3 && button(&cards[2], "retry").is_some()).then(|| cards[2].clone())
    })
    .await;
    let texts = summaries(&emulator, thread);
    assert!(
        texts[2].starts_with("heard: [Discord message from") && texts[2].ends_with("now write the docs"),
        "{texts:?}"
    );
    assert!(
        thread_messages(&emulator, thread)
            .iter()
            .any(|m| m["content"].as_str().is_some_and(|c| c.contains("continued: now write the docs"))),
        "the prompt shows in the thread"
    );
    // A modal's prompt is no message: no ✅ goes to a message id that does not exist.
    let reactions: Vec<Value> = emulator
        .requests()
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .filter(|r| r["path"].as_str().unwrap().contains("/reactions/"))
        .collect();
    assert!(reactions.iter().all(|r| r["status"].as_u64().is_some_and(|s| s < 300)), "{reactions:#?}");

    // A card that is no longer the latest is refused, even while Discord still shows its
    // buttons (here: edits fail for a while, so the old card keeps them).
    let third_id = third["id"].as_str().unwrap().to_owned();
    let edits_of_third = || {
        emulator
            .requests()
            .iter()
            .filter(|r| {
                let r = serde_json::to_value(r).unwrap();
                r["method"] == "PATCH" && r["path"].as_str().unwrap().ends_with(&third_id)
            })
            .count()
    };
    let edited = edits_of_third();
    let state = emulator.state();
    state.set_faults(&json!({ "http": { "status": 500, "method": "PATCH", "path_prefix": "/channels/" } })).unwrap();
    state.inject_message(thread, DEFAULT_OWNER_USER_ID, &json!({ "content": "one more" })).unwrap();
    // The next run started: the sidecar tried to take the old card's buttons off.
    wait_for("the old card's edit to be attempted", Duration::from_secs(30), || {
        (edits_of_third() > edited).then_some(())
    })
    .await;
    let stale = click(&emulator, thread, &third, &button(&third, "retry").unwrap(), DEFAULT_OWNER_USER_ID).await;
    assert_eq!(stale["response_type"], 4, "{stale}");
    assert_eq!(stale["callbacks"][0]["data"]["flags"], 64, "{stale}");
    assert!(stale.to_string().contains("out of date"), "{stale}");
    let (status, _) = emulator_request(&emulator, "DELETE", "/_emulator/faults", None, None).await;
    assert!((200..300).contains(&status));
    let texts = wait_for("the reply's run", Duration::from_secs(30), || {
        let texts = summaries(&emulator, thread);
        (texts.len() == 4).then_some(texts)
    })
    .await;
    assert!(texts[3].ends_with("one more"), "the stale Retry ran nothing: {texts:?}");
    // Only the latest card has buttons.
    let all = cards(&emulator, thread);
    assert!(all[..3].iter().all(|c| buttons(c).is_empty()), "{all:?}");

    let log = sidecar.log();
    assert_eq!(log.matches("run button used").count(), 1, "only the first Retry counted: {log}");
    stop_omp(omp, stdin).await;
    sidecar.terminate().await;
}

/// A run card frame as the shim sends it: card `n` of `session`, running or ended.
fn card_frame(session: &SessionRef, n: u64, state: CardState, edit: bool) -> ClientFrame {
    let mut message = match state {
        CardState::Running => run_card(&RunCard { elapsed_ms: n * 1000, ..Default::default() }, "shop"),
        CardState::Finished => {
            run_finished(&RunSummary { stop_reason: Some("stop".into()), ..Default::default() }, "shop")
        }
    };
    controls::add_buttons(&mut message, state, n, &session.id);
    ClientFrame::Notify(NotifyRequest {
        id: format!("card-{n}-{edit}-{}", message.embeds[0].title.as_deref().unwrap_or_default()),
        session: session.clone(),
        message,
        channel_id: None,
        key: Some(format!("card:{}:{n}", session.id)),
        edit,
        idempotency_key: None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_sessions_cards_get_buttons_and_a_used_stop_stays_disabled() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let session = SessionRef { id: "0199-resumed".into(), cwd: Some("/w/shop".into()), prompt: None };

    // The first OMP process ended after its third run.
    let mut first = Client::greeted(&dir.socket()).await;
    assert!(matches!(
        first.notify(&card_frame(&session, 3, CardState::Finished, false)).await.1,
        ServerFrame::Delivered { .. }
    ));
    drop(first);

    // `omp --continue`: a new process, the same session, a new card.
    let mut client = Client::greeted(&dir.socket()).await;
    let attach = ClientFrame::Attach { id: "a".into(), session: session.clone() };
    assert!(matches!(client.call(&attach).await, ServerFrame::Ok { .. }));
    assert!(matches!(
        client.notify(&card_frame(&session, 1, CardState::Running, false)).await.1,
        ServerFrame::Delivered { .. }
    ));
    let thread = thread_of(&emulator).unwrap();
    let new = cards(&emulator, thread).remove(1);
    let stop = button(&new, "stop").expect("the resumed session's card has Stop");
    wait_for("the gateway", Duration::from_secs(10), || sidecar.log().contains("gateway ready").then_some(())).await;

    // The old process is gone and cannot take its card's Retry / Continue off: the sidecar does.
    let old = wait_for("the old card without buttons", Duration::from_secs(10), || {
        let old = cards(&emulator, thread).remove(0);
        buttons(&old).is_empty().then_some(old)
    })
    .await;
    assert_eq!(old["embeds"][0]["title"], "Run finished", "the old card keeps what it said");
    let new = &new;

    // Stop reaches the session; the shim's next edit of the card keeps it disabled.
    let stopped = click(&emulator, thread, new, &stop, DEFAULT_OWNER_USER_ID).await;
    assert_eq!(stopped["response_type"], 7, "{stopped}");
    let control = loop {
        match client.read_within(Duration::from_secs(10)).await {
            Some(ServerFrame::Control { session_id, action }) => break (session_id, action),
            Some(_) => {}
            None => panic!("no control frame"),
        }
    };
    assert_eq!(control, (session.id.clone(), SessionAction::Abort));
    assert!(matches!(
        client.notify(&card_frame(&session, 1, CardState::Running, true)).await.1,
        ServerFrame::Delivered { .. }
    ));
    let edited = cards(&emulator, thread).remove(1);
    assert_eq!(edited["embeds"][0]["title"], "Running · 1s");
    let shown = buttons(&edited);
    assert!(shown.len() == 1 && shown[0].1.starts_with("Stopped by") && shown[0].2, "{shown:?}");

    drop(client);
    sidecar.terminate().await;
}
