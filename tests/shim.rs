//! The extension around the tools: with no sidecar the run goes on and its
//! reports wait in the spool for the next sidecar; the `/discord-ping` command.

use std::time::Duration;

use omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID;
use serde_json::json;

use crate::util::{
    Plugin, Sidecar, TestDir, emulator, message_posts, run_omp, sidecar_env, thread_messages, thread_starts, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_sidecar_omp_finishes_and_the_next_sidecar_posts_the_spooled_reports() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = sidecar_env(&dir, Some(&emulator));
    // No sidecar can start: the binary the extension would start exits at once.
    let mut no_sidecar = env.clone();
    no_sidecar.push(("OMP_DISCORD_BIN".into(), "/bin/false".into()));
    let script = json!([
        { "tool": "discord_notify", "args": { "message": "is anyone there?" } },
        { "text": "finished without Discord" }
    ]);
    let run = run_omp(&dir, &no_sidecar, Plugin::Flag, &script, "work offline").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    // The model learned Discord was unavailable; the run itself went on.
    let notify = run.tool_results("discord_notify")[0].to_string();
    assert!(notify.contains("Discord is unavailable"), "{notify}");
    assert!(message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID).is_empty());
    let spool = dir.home().join(".local/state/omp-discord/spool");
    let files: Vec<_> = std::fs::read_dir(&spool).expect("a spool directory").collect();
    assert_eq!(files.len(), 1, "one spool file");

    // The next sidecar journals them and posts them where they belong.
    env.retain(|(k, _)| k != "OMP_DISCORD_BIN");
    let sidecar = Sidecar::start(&dir, &env).await;
    let thread = wait_for("the session's thread", Duration::from_secs(30), || {
        thread_starts(&emulator).first()?["response"]["id"].as_str()?.parse::<u64>().ok()
    })
    .await;
    wait_for("the run's summary, spooled while no sidecar ran", Duration::from_secs(30), || {
        thread_messages(&emulator, thread)
            .iter()
            .any(|m| m["embeds"].to_string().contains("finished without Discord"))
            .then_some(())
    })
    .await;
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 0, "the spool file was removed once journaled");
    assert!(sidecar.log().contains("journaled reports spooled while no sidecar ran"), "{}", sidecar.log());
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discord_ping_posts_to_the_session_thread_without_a_model_run() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let run =
        run_omp(&dir, &env, Plugin::Flag, &json!([{ "text": "done" }]), "/discord-ping hello from the command").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let thread = wait_for("the ping in the session's thread", Duration::from_secs(30), || {
        let thread = thread_starts(&emulator).first()?["response"]["id"].as_str()?.parse::<u64>().ok()?;
        thread_messages(&emulator, thread)
            .iter()
            .any(|m| m["embeds"].to_string().contains("hello from the command"))
            .then_some(thread)
    })
    .await;
    assert!(thread > 0);
    // No model run happened for a command.
    assert!(run.seen.is_empty(), "{:?}", run.seen);
    sidecar.terminate().await;
}
