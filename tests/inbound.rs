//! Discord drives OMP: replies in a session's thread reach the real omp
//! (RPC mode, a long-lived session) through the sidecar's gateway.

use std::process::Stdio;
use std::time::Duration;

use omp_discord_emulator::{DEFAULT_GUEST_USER_ID, DEFAULT_OWNER_USER_ID};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::util::{
    Plugin, Sidecar, TestDir, emulator, omp_command, sidecar_env, thread_messages, thread_starts, wait_for,
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

    drop(stdin);
    let _ = tokio::time::timeout(Duration::from_secs(10), omp.wait()).await;
    sidecar.terminate().await;
}
