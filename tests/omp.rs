//! The real `omp` (pinned in package.json) with the scripted model, the built
//! plugin, a real sidecar and the emulator.

use std::time::Duration;

use omp_discord_core::schema;
use omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID;
use serde_json::{Value, json};

use crate::util::{
    Client, Plugin, Sidecar, TestDir, emulator, message_posts, omp_path, process_alive, repo, run_omp, sidecar_env,
    thread_messages, thread_starts, wait_for,
};

fn notify_then_answer() -> Value {
    json!([
        { "tool": "discord_notify", "args": { "message": "tests are green", "title": "CI", "level": "success" } },
        { "text": "All done." }
    ])
}

/// Whether a message is a finished run's summary.
fn is_summary(message: &Value) -> bool {
    message["embeds"][0]["title"].as_str().is_some_and(|t| t.starts_with("Run finished"))
}

/// Waits until the only session thread shows a run summary.
async fn wait_for_summary(emulator: &omp_discord_emulator::Emulator) {
    wait_for("a run summary in the session's thread", Duration::from_secs(30), || {
        let thread = thread_starts(emulator).first()?["response"]["id"].as_str()?.parse().ok()?;
        thread_messages(emulator, thread).iter().any(is_summary).then_some(())
    })
    .await;
}

/// The schema OMP showed the model is core's schema (OMP adds its `i` intent parameter).
fn assert_schema_from_core(seen: &Value) {
    let tool = seen["tools"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "discord_notify")
        .unwrap_or_else(|| panic!("the model did not see discord_notify: {seen}"));
    let core = schema::discord_notify().parameters;
    for (name, property) in core["properties"].as_object().unwrap() {
        assert_eq!(&tool["parameters"]["properties"][name], property, "property {name}");
    }
    let required: Vec<&Value> = tool["parameters"]["required"].as_array().unwrap().iter().collect();
    assert!(required.contains(&&json!("message")), "{required:?}");
}

#[tokio::test]
async fn model_calls_discord_notify_and_agent_end_reports_the_run() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;

    let run = run_omp(&dir, &env, Plugin::Flag, &notify_then_answer(), "tell Discord").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    assert_schema_from_core(&run.seen[0]);
    let results = run.tool_results("discord_notify");
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["isError"], false, "{}", results[0]);
    let text = results[0]["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Posted to Discord"), "{text}");

    // The session got a thread, opened from its session card in the home channel at
    // session_start and renamed after the first prompt once that was known.
    let home = message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID);
    assert_eq!(home.len(), 1, "only the session's card in the home channel: {home:#?}");
    assert!(home[0]["body"]["embeds"][0]["title"].as_str().unwrap().starts_with("Session"), "{home:#?}");
    let starts = thread_starts(&emulator);
    assert_eq!(starts.len(), 1);
    let thread: u64 = starts[0]["response"]["id"].as_str().unwrap().parse().unwrap();
    wait_for("the thread to be named after the prompt", Duration::from_secs(30), || {
        let name = emulator.state().channel(thread)?["name"].as_str()?.to_owned();
        (name == "project · tell Discord").then_some(())
    })
    .await;

    // The run card, posted at agent_start, became the run's summary at agent_end;
    // the model's notification follows it.
    let messages = wait_for("the run summary", Duration::from_secs(30), || {
        let messages = thread_messages(&emulator, thread);
        messages.first().filter(|m| is_summary(m)).map(|_| messages.clone())
    })
    .await;
    assert_eq!(messages.len(), 2, "{messages:#?}");
    let finished = &messages[0]["embeds"][0];
    assert_eq!(finished["description"], "All done.");
    assert!(finished["fields"].to_string().contains("discord_notify ×1"), "{finished}");
    assert!(messages[0]["edited_timestamp"].is_string(), "the card was edited in place");
    let notify = &messages[1]["embeds"][0];
    assert_eq!(notify["title"], "CI");
    assert_eq!(notify["description"], "tests are green");
    assert!(text.contains(messages[1]["id"].as_str().unwrap()), "{text}");
    sidecar.terminate().await;
}

#[tokio::test]
async fn the_shim_starts_a_sidecar_when_none_answers() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    assert!(!dir.socket().exists());

    let run = run_omp(&dir, &env, Plugin::Flag, &notify_then_answer(), "tell Discord").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    assert_eq!(run.tool_results("discord_notify")[0]["isError"], false);
    wait_for_summary(&emulator).await;

    // The sidecar outlives omp (it serves every session) until asked to stop.
    let mut client = Client::greeted(&dir.socket()).await;
    let status = client.call(&omp_discord_core::protocol::ClientFrame::Status { id: "s".into() }).await;
    let omp_discord_core::protocol::ServerFrame::Status { status, .. } = status else { panic!("{status:?}") };
    let pid = u32::try_from(status["pid"].as_u64().unwrap()).unwrap();
    assert!(process_alive(pid));
    drop(client);
    let stop = std::process::Command::new(crate::util::sidecar_bin())
        .arg("stop")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    wait_for("the spawned sidecar to exit", Duration::from_secs(10), || (!process_alive(pid)).then_some(())).await;
}

#[tokio::test]
async fn omp_keeps_working_when_no_sidecar_can_start() {
    let dir = TestDir::new();
    let mut env = sidecar_env(&dir, None);
    env.push(("OMP_DISCORD_BIN".into(), "/nonexistent/omp-discord".into()));
    let run = run_omp(&dir, &env, Plugin::Flag, &notify_then_answer(), "tell Discord").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let result = run.tool_results("discord_notify")[0];
    assert_eq!(result["isError"], true);
    let text = result["result"]["content"][0]["text"].as_str().unwrap();
    assert!(
        text.contains("Discord is unavailable (sidecar_unavailable)") && text.contains("omp-discord serve"),
        "{text}"
    );
    // The model still got its turn after the failed tool call.
    assert_eq!(run.seen.len(), 2);
}

#[tokio::test]
async fn plugin_link_makes_every_omp_run_load_the_extension() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let omp = |args: &[&str]| {
        std::process::Command::new(repo().join("node_modules/.bin/omp"))
            .args(args)
            .current_dir(dir.home())
            .env_clear()
            .env("PATH", omp_path())
            .env("HOME", dir.home())
            .env("TMPDIR", dir.tmp())
            .output()
            .unwrap()
    };
    let link = omp(&["plugin", "link", repo().to_str().unwrap()]);
    assert!(link.status.success(), "{}", String::from_utf8_lossy(&link.stderr));
    let list = omp(&["plugin", "list", "--json"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(listed.contains("omp-discord"), "plugin list: {listed}");

    let sidecar = Sidecar::start(&dir, &env).await;
    let run = run_omp(&dir, &env, Plugin::Linked, &notify_then_answer(), "tell Discord").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    assert_schema_from_core(&run.seen[0]);
    wait_for_summary(&emulator).await;
    sidecar.terminate().await;
}

/// A secret-shaped string built at run time, so no literal token sits in the repository.
fn fake_github_token() -> String {
    format!("ghp_{}", "FAKE0fake1FAKE2fake3FAKE4fake5FAKE6ab".chars().take(36).collect::<String>())
}

#[tokio::test]
async fn secrets_in_tool_output_reach_neither_the_model_nor_discord() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let secret = fake_github_token();
    let script = json!([
        { "tool": "bash", "args": { "command": format!("echo deploy key {secret}"), "i": "print the key" } },
        { "tool": "discord_notify", "args": { "message": format!("the key is {secret}") } },
        { "text": format!("Done; the key was {secret}.") }
    ]);
    let run = run_omp(&dir, &env, Plugin::Flag, &script, "show the key").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    // The model's next request carried the bash result: redacted, with the audit count.
    let after_bash = run.seen[1]["last"].to_string();
    assert!(after_bash.contains("deploy key [REDACTED:github-token]"), "{after_bash}");
    assert!(!after_bash.contains(&secret), "the model saw the secret: {after_bash}");
    let bash = run.tool_results("bash")[0];
    assert_eq!(bash["result"]["details"]["ompDiscordRedactions"]["count"], 1, "{bash}");
    // Nothing that reached the emulator contains it either.
    let recorded = serde_json::to_string(&emulator.requests()).unwrap();
    assert!(!recorded.contains(&secret), "a secret reached Discord");
    assert!(recorded.contains("[REDACTED:github-token]"));
    sidecar.terminate().await;
}

/// Twenty OMP processes start at once with no sidecar running: they race to
/// start one, and exactly one wins; all of them report through it, over one
/// gateway connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_omp_processes_at_once_share_one_sidecar_and_one_gateway() {
    const PROCESSES: usize = 20;
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let script = json!([{ "text": "done here" }]);
    let prompts: Vec<String> = (0..PROCESSES).map(|n| format!("task {n}")).collect();
    let runs =
        futures_util::future::join_all(prompts.iter().map(|prompt| run_omp(&dir, &env, Plugin::Flag, &script, prompt)))
            .await;
    for run in &runs {
        assert!(run.status.success(), "omp failed: {}", run.stderr);
    }
    // Every session got its thread, all through one sidecar: one outbox knows all
    // twenty sessions, and there was one IDENTIFY (a second sidecar would make its own).
    // A ceiling, not a pace: twenty session cards and threads go out at Discord's 5 / 5 s and
    // 10 / 10 s, and a shim that could not connect in time spools its reports for the sidecar.
    wait_for("a thread per process", Duration::from_secs(180), || {
        (crate::util::thread_starts(&emulator).len() == PROCESSES).then_some(())
    })
    .await;
    let mut client = Client::greeted(&dir.socket()).await;
    let status = client.call(&omp_discord_core::protocol::ClientFrame::Status { id: "s".into() }).await;
    let omp_discord_core::protocol::ServerFrame::Status { status, .. } = status else { panic!("{status:?}") };
    assert_eq!(status["sessions"].as_array().map(Vec::len), Some(PROCESSES), "{status:#}");
    assert_eq!(emulator.state().identify_count(), 1, "one gateway connection for all twenty");
}
