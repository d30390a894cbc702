//! No secret leaks, anywhere: a run of the whole bridge — the real `omp` with
//! the plugin (once with no sidecar, so its reports are spooled, then with
//! one), the sidecar at debug level, the emulator — with a known fake bot
//! token and a tool that prints every secret kind of the redaction corpus.
//! Then everything is scanned: the sidecar's log, `omp-discord status` (text
//! and JSON), the error frames a client got, the SQLite files (db, -wal,
//! -shm), the spool files, and every request the emulator recorded (body and
//! headers; the recorder itself masks `Authorization`). None contains the
//! token or a secret.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use omp_discord_core::protocol::{ClientFrame, ServerFrame, encode_frame};
use omp_discord_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

use crate::hostile::notify;
use crate::util::{Client, Plugin, Sidecar, TestDir, repo, run_omp, sidecar_bin, sidecar_env, wait_for};

/// A bot token of Discord's shape, put together here so no scanner mistakes this file for a leak.
fn fake_bot_token() -> String {
    ["MTEwMDAwMDAwMDAwMDAwMDIwMQ", "GsEcRt", "fAkE0fAkE1fAkE2fAkE3fAkE4fAkE5fAkE6x"].join(".")
}

/// `(text, secrets in it)` for every case of the redaction corpus.
fn corpus() -> Vec<(String, Vec<String>)> {
    let cases = std::fs::read_to_string(repo().join("crates/core/tests/fixtures/redaction/cases.jsonl")).unwrap();
    cases
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|case| case["secrets"].as_array().is_some_and(|s| !s.is_empty()))
        .map(|case| {
            let secrets = case["secrets"].as_array().unwrap().iter().map(|s| s["value"].as_str().unwrap().to_owned());
            (case["text"].as_str().unwrap().to_owned(), secrets.collect())
        })
        .collect()
}

fn run_cli(env: &[(String, String)], args: &[&str]) -> String {
    let out =
        Command::new(sidecar_bin()).args(args).env_clear().envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_secret_reaches_a_log_status_error_journal_spool_or_discord() {
    let token = fake_bot_token();
    let config = EmulatorConfig { token: token.clone(), ..EmulatorConfig::default() };
    let emulator = Emulator::start(config).await.unwrap();
    let dir = TestDir::new();
    let mut env = sidecar_env(&dir, Some(&emulator));
    env.retain(|(k, _)| k != "OMP_DISCORD_TOKEN");
    env.push(("OMP_DISCORD_TOKEN".into(), token.clone()));
    let state = dir.home().join(".local/state/omp-discord");

    let corpus = corpus();
    let secrets: Vec<String> = corpus.iter().flat_map(|(_, s)| s.clone()).collect();
    assert!(secrets.len() > 40, "the corpus has every kind");
    let all_text: String = corpus.iter().map(|(text, _)| format!("{text}\n")).collect();
    std::fs::write(dir.path().join("project/secrets.txt"), &all_text).unwrap();
    let (one, two) = (&corpus[0].1[0], &corpus[1].1[0]);
    let script = json!([
        { "tool": "bash", "args": { "command": "cat secrets.txt", "i": "print the secrets" } },
        { "tool": "bash", "args": { "command": "cat secrets.txt; exit 3", "i": "fail loudly" } },
        { "tool": "discord_send", "args": { "message": format!("keys: {one} and {two}") } },
        { "tool": "discord_notify", "args": { "message": format!("the key is {one}"), "title": format!("about {two}") } },
        { "text": format!("Done; the keys were {one} and {two}.") }
    ]);
    let prompt = format!("deploy with {one}");

    // 1. No sidecar can start: the plugin spools its reports at exit.
    let mut no_sidecar = env.clone();
    no_sidecar.push(("OMP_DISCORD_BIN".into(), "/bin/false".into()));
    let run = run_omp(&dir, &no_sidecar, Plugin::Flag, &script, &prompt).await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let spooled: Vec<(String, String)> = files_under(&state.join("spool"))
        .into_iter()
        .map(|p| (p.display().to_string(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    assert!(!spooled.is_empty(), "the reports were spooled");

    // 2. With the sidecar (which imports the spool), at debug level.
    let sidecar = Sidecar::start(&dir, &env).await;
    let run = run_omp(&dir, &env, Plugin::Flag, &script, &prompt).await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let sent = run.tool_results("discord_send");
    assert_eq!(sent[0]["isError"], false, "{sent:?}");

    // A client that gets errors with secrets in what it sent.
    let mut client = Client::greeted(&sidecar.socket).await;
    let mut frames = Vec::new();
    let ClientFrame::Notify(mut bad_channel) = notify("c1", "raw", &format!("to {one}")) else { unreachable!() };
    bad_channel.channel_id = Some(one.clone());
    frames.push(client.call(&ClientFrame::Notify(bad_channel)).await);
    client.send_raw(format!("{{\"type\":\"notify\",\"id\":\"{two}\",\"oops\":\"{one}\"}}\n").as_bytes()).await;
    frames.push(client.read().await.expect("an error frame"));
    client.send_raw(format!("not json {one}\n").as_bytes()).await;
    frames.push(client.read().await.expect("an error frame"));
    let head: String = all_text.chars().take(1500).collect();
    // A client that does not redact its session's prompt and directory: the sidecar does.
    let ClientFrame::Notify(mut raw) = notify("c2", "raw", &head) else { unreachable!() };
    raw.session.prompt = Some(format!("use {two}"));
    raw.session.cwd = Some(format!("/w/{one}"));
    let (_, delivered) = client.notify(&ClientFrame::Notify(raw)).await;
    frames.push(delivered);
    assert!(frames.iter().take(3).all(|f| matches!(f, ServerFrame::Error { .. })), "{frames:?}");
    // An approval and a question whose input and text carry secrets: stored (and shown) redacted.
    let session = omp_discord_core::protocol::SessionRef { id: "s-at-rest".into(), cwd: None, prompt: None };
    let approve = ClientFrame::Approve {
        id: "a1".into(),
        session: session.clone(),
        tool_call_id: "call-1".into(),
        tool: "bash".into(),
        input: json!({ "command": format!("deploy --key {one}"), "env": { "TOKEN": two } }),
    };
    let ask = ClientFrame::Ask {
        id: "q1".into(),
        session,
        ask_id: "ask-1".into(),
        question: format!("Is {two} the right key?"),
        options: vec![format!("yes, {one}"), "no".into()],
        timeout_secs: 600,
    };
    // Nobody answers: only what is stored and posted matters here.
    let mut waiting = Client::greeted(&sidecar.socket).await;
    waiting.send_raw(format!("{}{}", encode_frame(&approve), encode_frame(&ask)).as_bytes()).await;
    wait_for("the approval and the question in Discord", Duration::from_secs(30), || {
        let posted = serde_json::to_string(&emulator.requests()).unwrap();
        (posted.contains("Approval needed") && posted.contains("right key")).then_some(())
    })
    .await;
    let frames_text = frames.iter().map(encode_frame).collect::<String>();

    let status_json = wait_for("an empty outbox", Duration::from_secs(60), || {
        let text = run_cli(&env, &["status", "--json"]);
        let status: Value = serde_json::from_str(&text).ok()?;
        (status["outbox"]["pending"] == 0).then_some(text)
    })
    .await;
    let status_text = run_cli(&env, &["status"]);
    let log = sidecar.log();
    // The journal while the sidecar runs (db, -wal, -shm), and the db after it checkpointed and stopped.
    let read_state = |when: &str| {
        files_under(&state)
            .into_iter()
            .map(|file| {
                (
                    format!("{} ({when})", file.display()),
                    String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned(),
                )
            })
            .collect::<Vec<_>>()
    };
    let mut journal = read_state("running");
    sidecar.terminate().await;
    journal.extend(read_state("stopped"));

    let mut haystacks: Vec<(String, String)> = vec![
        ("the sidecar's log".into(), log.clone()),
        ("status --json".into(), status_json),
        ("status".into(), status_text),
        ("error frames".into(), frames_text),
        ("recorded requests".into(), serde_json::to_string(&emulator.requests()).unwrap()),
    ];
    haystacks.extend(spooled);
    let names: Vec<String> = journal.iter().map(|(name, _)| name.clone()).collect();
    assert!(names.iter().any(|n| n.contains("outbox.sqlite3-wal")), "the WAL was scanned: {names:?}");
    haystacks.extend(journal);
    assert!(log.contains("DEBUG"), "the log is at debug level");

    let mut leaks = Vec::new();
    for (name, text) in &haystacks {
        if text.contains(&token) {
            leaks.push(format!("{name}: the bot token"));
        }
        for secret in &secrets {
            if let Some(at) = text.find(secret.as_str()) {
                let context: String = text[at.saturating_sub(120)..].chars().take(200 + secret.len()).collect();
                leaks.push(format!("{name}: {secret}\n    in: {context:?}"));
            }
        }
    }
    assert!(leaks.is_empty(), "leaked:\n{}", leaks.join("\n"));
    // The scan looked at real traffic: the secrets went through, redacted.
    let requests = &haystacks[4].1;
    assert!(requests.matches("[REDACTED:").count() >= 10, "redacted secrets reached Discord");
    let authorization: Vec<String> = emulator
        .requests()
        .iter()
        .filter_map(|r| r.headers.get("authorization").cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(authorization, ["Bot <redacted>"], "every request carried the bot token (masked when recorded)");
}
