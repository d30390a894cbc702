//! The extension's richer Discord output: `discord_send` with embeds and
//! files, `discord_read` after a message with attachments listed, long tool
//! output arriving whole, and files surviving a sidecar restart.

use std::time::Duration;

use omp_discord_core::embed::{FileUpload, MessagePayload};
use omp_discord_core::protocol::{ClientFrame, NotifyRequest, ServerFrame, SessionRef};
use omp_discord_emulator::{DEFAULT_HOME_CHANNEL_ID, Emulator};
use serde_json::{Value, json};

use crate::util::{
    Client, OmpRun, Plugin, Sidecar, TestDir, emulator, message_posts, run_omp, sidecar_env, thread_messages,
    thread_starts, wait_for,
};

/// The text of a tool's result `index`, and whether it was an error.
fn result(run: &OmpRun, tool: &str, index: usize) -> (String, bool) {
    let results = run.tool_results(tool);
    let result = results.get(index).unwrap_or_else(|| panic!("no result {index} of {tool}: {}", run.stderr));
    let text = result["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned();
    (text, result["isError"] == true)
}

/// The uploaded bytes of an attachment object, as the emulator kept them.
fn attachment_text(emulator: &Emulator, attachment: &Value) -> String {
    let id: u64 = attachment["id"].as_str().unwrap().parse().unwrap();
    String::from_utf8(emulator.state().attachment(id).expect("the emulator kept the file")).unwrap()
}

/// A secret-shaped string built at run time, so no literal token sits in the repository.
fn fake_token() -> String {
    format!("ghp_{}", "FAKE9fake8FAKE7fake6FAKE5fake4FAKE3cd".chars().take(36).collect::<String>())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_sends_embeds_and_files_and_reads_them_back() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let home = DEFAULT_HOME_CHANNEL_ID.to_string();
    let secret = fake_token();
    let long: String = (0..700).map(|n| format!("word{n} ")).collect();
    let script = json!([
        { "tool": "discord_send", "args": {
            "channelId": home,
            "embeds": [{ "title": "Deploy", "description": format!("used {secret}"), "url": "https://ci.example/42",
                         "color": 0x00ff00, "fields": [{ "name": "env", "value": "staging", "inline": true }] }],
            "files": [{ "filename": "fix.diff", "content": format!("+token = {secret}\n-token = old\n") }] } },
        { "tool": "discord_send", "args": { "channelId": home, "message": long } },
        { "tool": "discord_send", "args": { "channelId": home,
            "embeds": [{ "description": "d".repeat(4000) }, { "description": "e".repeat(4000) }] } },
        { "tool": "discord_read", "args": { "channelId": home, "after": "1", "limit": 50 } },
        { "text": "done" }
    ]);
    let run = run_omp(&dir, &env, Plugin::Flag, &script, "report the deploy").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);

    let (sent, is_error) = result(&run, "discord_send", 0);
    assert!(!is_error && sent.starts_with("Posted to Discord"), "{sent}");
    let messages = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID);
    let deploy = messages.iter().find(|m| m["embeds"][0]["title"] == "Deploy").expect("the embed message");
    let embed = &deploy["embeds"][0];
    assert_eq!(embed["url"], "https://ci.example/42");
    assert_eq!(embed["color"], 0x00ff00);
    assert_eq!(embed["fields"][0]["value"], "staging");
    assert_eq!(deploy["attachments"][0]["filename"], "fix.diff");
    let diff = attachment_text(&emulator, &deploy["attachments"][0]);
    assert!(diff.contains("+token = [REDACTED:github-token]") && diff.contains("-token = old"), "{diff}");

    // Text longer than a message goes out whole as message.md.
    let (sent, is_error) = result(&run, "discord_send", 1);
    assert!(!is_error, "{sent}");
    let whole = messages
        .iter()
        .find(|m| m["attachments"][0]["filename"] == "message.md")
        .expect("the long message with its file");
    assert!(whole["content"].as_str().unwrap().starts_with("word0 word1"));
    assert_eq!(attachment_text(&emulator, &whole["attachments"][0]), long);

    // Too much embed text is refused with the limit, before anything is sent.
    let (refused, is_error) = result(&run, "discord_send", 2);
    assert!(is_error && refused.contains("the max is 6000"), "{refused}");

    // Reading after the first message lists the oldest first, with the files.
    let (read, is_error) = result(&run, "discord_read", 0);
    assert!(!is_error, "{read}");
    let diff_line = read.find("attached: fix.diff (").expect("the diff is listed");
    let md_line = read.find("attached: message.md (").expect("the long message's file is listed");
    assert!(diff_line < md_line, "oldest first: {read}");
    assert!(read.contains("/attachments/"), "with its URL: {read}");
    let recorded = serde_json::to_string(&emulator.requests()).unwrap();
    assert!(!recorded.contains(&secret) && !diff.contains(&secret), "a secret reached Discord");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_kb_tool_output_arrives_whole() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    // About 48 KB in 1000 lines: under OMP's own 50 KB / 3000-line cut of bash output.
    let command = "for i in $(seq 1 1000); do printf 'line %04d of the long build log, all of it matters\\n' $i; \
                   done; exit 3";
    let script = json!([
        { "tool": "bash", "args": { "command": command, "i": "build" } },
        { "text": "the build failed" }
    ]);
    let run = run_omp(&dir, &env, Plugin::Flag, &script, "build it").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    assert_eq!(run.tool_results("bash")[0]["isError"], true, "the command failed");
    let thread: u64 = wait_for("the session thread", Duration::from_secs(30), || {
        thread_starts(&emulator).first()?["response"]["id"].as_str()?.parse().ok()
    })
    .await;
    let error = wait_for("the tool error with its output", Duration::from_secs(30), || {
        thread_messages(&emulator, thread)
            .into_iter()
            .find(|m| m["embeds"][0]["title"] == "Tool error: bash" && m["attachments"][0].is_object())
    })
    .await;
    let attachment = &error["attachments"][0];
    assert_eq!(attachment["filename"], "bash-output.txt");
    let text = attachment_text(&emulator, attachment);
    assert!(text.len() > 45_000, "{} bytes", text.len());
    for i in 1..=1000 {
        let line = format!("line {i:04} of the long build log, all of it matters\n");
        assert!(text.contains(&line), "line {i} is missing");
    }
    // The message itself shows the beginning, visibly cut.
    let shown = error["embeds"][0]["description"].as_str().unwrap();
    assert!(shown.contains("line 0001") && shown.contains("[truncated]"), "{shown}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_file_survives_a_sidecar_crash() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    // Discord refuses the token for now: the message stays journaled.
    emulator.state().set_faults(&json!({ "revoke_token": true })).unwrap();
    let content: String = (0..2000).map(|n| format!("{n:05} journaled line\n")).collect();
    let message = MessagePayload {
        content: Some("the log".into()),
        files: vec![FileUpload { filename: "run.log".into(), content: content.clone() }],
        ..MessagePayload::default()
    };
    let mut client = Client::greeted(&sidecar.socket).await;
    let (seq, _) = client
        .notify(&ClientFrame::Notify(NotifyRequest {
            id: "f1".into(),
            session: SessionRef { id: "files".into(), ..SessionRef::default() },
            message,
            channel_id: Some(DEFAULT_HOME_CHANNEL_ID.to_string()),
            key: None,
            edit: false,
            idempotency_key: None,
        }))
        .await;
    assert!(seq.is_some(), "accepted");
    sidecar.kill_hard();
    emulator.state().set_faults(&json!({ "revoke_token": false })).unwrap();
    let sidecar = Sidecar::start(&dir, &env).await;
    let posted = wait_for("the file after the restart", Duration::from_secs(30), || {
        thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID).into_iter().find(|m| m["content"] == "the log")
    })
    .await;
    assert_eq!(posted["attachments"][0]["filename"], "run.log");
    assert_eq!(attachment_text(&emulator, &posted["attachments"][0]), content);
    // Sent as multipart: the JSON part names the file, the bytes travel beside it.
    let post = message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID)
        .into_iter()
        .find(|p| p["status"] == 200)
        .expect("the successful post");
    assert_eq!(post["body"]["payload_json"]["attachments"][0]["filename"], "run.log", "{post}");
    assert!(post["body"]["payload_json"].get("files").is_none(), "{post}");
    drop(client);
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_refuses_files_beyond_the_limit() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let bad_name = MessagePayload {
        files: vec![FileUpload { filename: "../etc/passwd".into(), content: "x".into() }],
        ..MessagePayload::default()
    };
    let answer = client
        .call(&ClientFrame::Notify(NotifyRequest {
            id: "f2".into(),
            session: SessionRef { id: "files".into(), ..SessionRef::default() },
            message: bad_name,
            channel_id: Some(DEFAULT_HOME_CHANNEL_ID.to_string()),
            key: None,
            edit: false,
            idempotency_key: None,
        }))
        .await;
    assert!(matches!(&answer, ServerFrame::Error { message, .. } if message.contains("not usable")), "{answer:?}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_attach_files_the_message_still_goes_out_and_says_so() {
    use omp_discord_emulator::{DEFAULT_BOT_USER_ID, EmulatorConfig, SeedOverwrite, permissions};
    let dir = TestDir::new();
    let mut config = EmulatorConfig::default();
    let home = config.seed.guilds[0].channels.iter_mut().find(|c| c.id == DEFAULT_HOME_CHANNEL_ID).unwrap();
    home.permission_overwrites.push(SeedOverwrite {
        id: DEFAULT_BOT_USER_ID,
        kind: 1,
        allow: 0,
        deny: permissions::ATTACH_FILES,
    });
    let emulator = Emulator::start(config).await.unwrap();
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let message = MessagePayload {
        content: Some("see the log".into()),
        files: vec![FileUpload { filename: "run.log".into(), content: "all good\n".into() }],
        ..MessagePayload::default()
    };
    let (_, answer) = client
        .notify(&ClientFrame::Notify(NotifyRequest {
            id: "f3".into(),
            session: SessionRef { id: "files".into(), ..SessionRef::default() },
            message,
            channel_id: Some(DEFAULT_HOME_CHANNEL_ID.to_string()),
            key: None,
            edit: false,
            idempotency_key: None,
        }))
        .await;
    assert!(matches!(answer, ServerFrame::Delivered { .. }), "{answer:?}");
    let posted = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID)
        .into_iter()
        .find(|m| m["content"].as_str().is_some_and(|c| c.starts_with("see the log")))
        .expect("the message");
    assert!(posted["attachments"].as_array().is_none_or(Vec::is_empty), "{posted}");
    assert!(posted["content"].as_str().unwrap().contains("run.log not attached: the bot lacks the Attach Files"));
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tool_fails_clearly_on_unknown_and_forbidden_channels() {
    use omp_discord_emulator::{DEFAULT_HIDDEN_CHANNEL_ID, DEFAULT_READ_ONLY_CHANNEL_ID};
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let unknown = "1100000000000009999";
    let script = json!([
        { "tool": "discord_send", "args": { "channelId": DEFAULT_READ_ONLY_CHANNEL_ID.to_string(), "message": "hi" } },
        { "tool": "discord_read", "args": { "channelId": DEFAULT_HIDDEN_CHANNEL_ID.to_string() } },
        { "tool": "discord_read", "args": { "channelId": unknown } },
        { "tool": "discord_channels", "args": { "guildId": unknown } },
        { "text": "done" }
    ]);
    let run = run_omp(&dir, &env, Plugin::Flag, &script, "try the channels").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let (text, is_error) = result(&run, "discord_send", 0);
    // Held, not dropped: it is posted once the bot may post there.
    assert!(is_error && text.contains("destination_held") && text.contains("Missing Permissions"), "{text}");
    let (text, is_error) = result(&run, "discord_read", 0);
    assert!(is_error && text.contains("unknown_channel") && text.contains("cannot see it"), "{text}");
    let (text, is_error) = result(&run, "discord_read", 1);
    assert!(is_error && text.contains("unknown_channel") && text.contains("discord_channels"), "{text}");
    let (text, is_error) = result(&run, "discord_channels", 0);
    assert!(is_error && text.contains(&format!("no server (guild) with id {unknown}")), "{text}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tool_says_when_discord_does_not_answer_in_time() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    emulator.state().set_faults(&json!({ "latency_ms": 60_000 })).unwrap();
    let home = DEFAULT_HOME_CHANNEL_ID.to_string();
    let script = json!([
        { "tool": "discord_read", "args": { "channelId": home } },
        { "tool": "discord_channels", "args": {} },
        { "tool": "discord_send", "args": { "channelId": home, "message": "slow" } },
        { "tool": "discord_notify", "args": { "message": "slow too" } },
        { "text": "done" }
    ]);
    let run = run_omp(&dir, &env, Plugin::Flag, &script, "while Discord hangs").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    for tool in ["discord_read", "discord_channels"] {
        let (text, is_error) = result(&run, tool, 0);
        assert!(is_error && text.contains("timed out waiting for the omp-discord sidecar"), "{tool}: {text}");
    }
    // A post is journaled before it is acknowledged: slow Discord means queued, not lost.
    for tool in ["discord_send", "discord_notify"] {
        let (text, is_error) = result(&run, tool, 0);
        assert!(!is_error && text.starts_with("Queued for Discord"), "{tool}: {text}");
    }
    emulator.state().set_faults(&json!({ "latency_ms": 0 })).unwrap();
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subagent_reports_in_its_parent_s_thread() {
    use std::process::Stdio;
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let script = json!([
        { "tool": "task", "args": { "agent": "task", "task": "SUBAGENT: check the build", "i": "delegate" } },
        // The subagent runs as a background job: wait for it, or print mode exits first.
        { "tool": "hub", "args": { "op": "wait", "i": "wait for the subagent" } },
        { "text": "parent done" }
    ]);
    let subagent = json!([
        { "tool": "discord_notify", "args": { "message": "note from the subagent" } },
        { "text": "the build is fine" }
    ]);
    // As `run_omp`, but with session files: OMP gives a subagent one only when its parent has one.
    let output = tokio::process::Command::new(crate::util::repo().join("node_modules/.bin/omp"))
        .kill_on_drop(true)
        .current_dir(dir.path().join("project"))
        .env_clear()
        .env("PATH", crate::util::omp_path())
        .env("HOME", dir.home())
        .env("TMPDIR", dir.tmp())
        .env("OMP_DISCORD_BIN", crate::util::sidecar_bin())
        .env("OMP_DISCORD_SCRIPT", script.to_string())
        .env("OMP_DISCORD_SUBAGENT_SCRIPT", subagent.to_string())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["-p", "--mode", "json", "-e"])
        .arg(crate::util::repo().join("tests/fixtures/scripted-model.ts"))
        .arg("-e")
        .arg(crate::util::repo())
        .args(["--model", "fake/scripted", "delegate the check"])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("omp runs");
    assert!(output.status.success(), "omp failed: {}", String::from_utf8_lossy(&output.stderr));
    let thread: u64 = wait_for("the parent's thread", Duration::from_secs(30), || {
        thread_starts(&emulator).first()?["response"]["id"].as_str()?.parse().ok()
    })
    .await;
    wait_for("the subagent's note in the parent's thread", Duration::from_secs(30), || {
        thread_messages(&emulator, thread)
            .iter()
            .any(|m| m["embeds"][0]["description"] == "note from the subagent")
            .then_some(())
    })
    .await;
    assert_eq!(thread_starts(&emulator).len(), 1, "the subagent has no thread of its own");
    // The subagent's runs are summarised there, marked; the parent's own summary too.
    wait_for("both summaries in the parent's thread", Duration::from_secs(30), || {
        let titles: Vec<String> = thread_messages(&emulator, thread)
            .iter()
            .filter_map(|m| m["embeds"][0]["title"].as_str().map(str::to_owned))
            .collect();
        (titles.iter().any(|t| t == "↳ subagent · Run finished") && titles.iter().any(|t| t == "Run finished"))
            .then_some(())
    })
    .await;
    assert_eq!(thread_starts(&emulator).len(), 1, "still one thread");
    // Reports keep their order in a thread, so the parent's summary came after
    // all of its subagent's: OMP may re-prompt a subagent (more runs), and
    // they update one summary instead of each posting its own.
    let subagent_summaries = thread_messages(&emulator, thread)
        .iter()
        .filter(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t.starts_with("↳ subagent · Run")))
        .count();
    assert_eq!(subagent_summaries, 1, "one summary message per subagent");
    sidecar.terminate().await;
}
