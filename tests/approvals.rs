//! Risky tool calls wait for a person: Approve runs the tool, Deny blocks it
//! with the reason, and only allowed people's clicks count.

use std::time::Duration;

use omp_discord_emulator::{DEFAULT_GUEST_USER_ID, DEFAULT_OWNER_USER_ID, Emulator};
use serde_json::{Value, json};

use crate::util::{
    Plugin, Sidecar, TestDir, emulator, emulator_post, run_omp, sidecar_env, thread_messages, thread_starts, wait_for,
};

/// The approval message in the session's thread: (thread, message id, approve id, deny id, always id).
async fn approval_buttons(emulator: &Emulator) -> (u64, String, String, String, String) {
    wait_for("an approval request with buttons", Duration::from_secs(30), || {
        let thread: u64 = thread_starts(emulator).first()?["response"]["id"].as_str()?.parse().ok()?;
        let message = thread_messages(emulator, thread)
            .into_iter()
            // The run card has buttons too: the approval's are Approve / Deny.
            .find(|m| {
                m["components"][0]["components"][0]["custom_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("omp:approve:"))
            })?;
        let buttons = &message["components"][0]["components"];
        Some((
            thread,
            message["id"].as_str()?.to_owned(),
            buttons[0]["custom_id"].as_str()?.to_owned(),
            buttons[1]["custom_id"].as_str()?.to_owned(),
            buttons[2]["custom_id"].as_str()?.to_owned(),
        ))
    })
    .await
}

async fn click(emulator: &Emulator, thread: u64, message_id: &str, custom_id: &str, user: u64) -> Value {
    let body = json!({
        "type": "button", "custom_id": custom_id, "message_id": message_id,
        "channel_id": thread.to_string(), "user_id": user.to_string(), "wait": true
    });
    emulator_post(emulator, "/_emulator/interactions", &body).await
}

fn script() -> Value {
    json!([
        { "tool": "bash", "args": { "command": "echo ran-after-approval", "i": "print a marker" } },
        { "text": "done" }
    ])
}

fn approval_env(dir: &TestDir, emulator: &Emulator) -> Vec<(String, String)> {
    let mut env = sidecar_env(dir, Some(emulator));
    env.push(("OMP_DISCORD_APPROVE_TOOLS".into(), "bash".into()));
    env.push(("OMP_DISCORD_APPROVAL_TIMEOUT".into(), "20".into()));
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_runs_the_tool_and_strangers_cannot_click() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = approval_env(&dir, &emulator);
    let sidecar = Sidecar::start(&dir, &env).await;

    let person = async {
        let (thread, message, approve, _, _) = approval_buttons(&emulator).await;
        // A guest's click is refused privately and decides nothing.
        let refused = click(&emulator, thread, &message, &approve, DEFAULT_GUEST_USER_ID).await;
        assert_eq!(refused["state"]["response_type"], 4, "{refused}");
        assert!(refused.to_string().contains("allowlist"), "{refused}");
        let approved = click(&emulator, thread, &message, &approve, DEFAULT_OWNER_USER_ID).await;
        assert_eq!(approved["state"]["response_type"], 7, "{approved}");
        thread
    };
    let script = script();
    let (run, thread) = tokio::join!(run_omp(&dir, &env, Plugin::Flag, &script, "run it"), person);
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let bash = run.tool_results("bash")[0];
    assert_eq!(bash["isError"], false, "{bash}");
    assert!(bash.to_string().contains("ran-after-approval"), "{bash}");
    // The request now says who decided, and its buttons are gone.
    let decided = thread_messages(&emulator, thread)
        .into_iter()
        .find(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t.starts_with("Approved by")))
        .expect("the decided request");
    assert!(decided["components"].as_array().is_none_or(Vec::is_empty), "{decided}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_blocks_the_tool_with_the_reason() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = approval_env(&dir, &emulator);
    let sidecar = Sidecar::start(&dir, &env).await;

    let person = async {
        let (thread, message, _, deny, _) = approval_buttons(&emulator).await;
        click(&emulator, thread, &message, &deny, DEFAULT_OWNER_USER_ID).await
    };
    let script = script();
    let (run, denied) = tokio::join!(run_omp(&dir, &env, Plugin::Flag, &script, "run it"), person);
    assert_eq!(denied["state"]["response_type"], 7, "{denied}");
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let bash = run.tool_results("bash")[0];
    assert_eq!(bash["isError"], true, "{bash}");
    let text = bash.to_string();
    assert!(text.contains("Blocked: denied by") && text.contains("in Discord"), "{text}");
    assert!(!text.contains("ran-after-approval"), "the denied command ran: {text}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_approval_survives_a_sidecar_restart() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = approval_env(&dir, &emulator);
    env.retain(|(k, _)| k != "OMP_DISCORD_APPROVAL_TIMEOUT");
    env.push(("OMP_DISCORD_APPROVAL_TIMEOUT".into(), "90".into()));
    let sidecar = Sidecar::start(&dir, &env).await;

    let person = async {
        let (thread, message, approve, _, _) = approval_buttons(&emulator).await;
        // The sidecar stops while the call waits; the extension starts a new one and asks again.
        sidecar.terminate().await;
        // A click while no sidecar listens expires unanswered; click again until one answers.
        let started = std::time::Instant::now();
        loop {
            let answer = click(&emulator, thread, &message, &approve, DEFAULT_OWNER_USER_ID).await;
            if answer["state"]["response_type"] == 7 {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no sidecar answered the click: {answer}");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        thread
    };
    let script = script();
    let (run, thread) = tokio::join!(run_omp(&dir, &env, Plugin::Flag, &script, "run it"), person);
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let bash = run.tool_results("bash")[0];
    assert_eq!(bash["isError"], false, "{bash}");
    assert!(bash.to_string().contains("ran-after-approval"), "{bash}");
    // Asked twice, posted once: the restarted sidecar found the pending request.
    let requests = thread_messages(&emulator, thread)
        .into_iter()
        .filter(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t.contains("bash")))
        .count();
    assert_eq!(requests, 1, "{:#?}", thread_messages(&emulator, thread));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_allow_lets_later_calls_of_the_tool_in_the_session_run_without_asking() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = approval_env(&dir, &emulator);
    let sidecar = Sidecar::start(&dir, &env).await;
    let person = async {
        let (thread, message, _, _, always) = approval_buttons(&emulator).await;
        let answer = click(&emulator, thread, &message, &always, DEFAULT_OWNER_USER_ID).await;
        assert_eq!(answer["state"]["response_type"], 7, "{answer}");
        thread
    };
    let script = json!([
        { "tool": "bash", "args": { "command": "echo first-call", "i": "first" } },
        { "tool": "bash", "args": { "command": "echo second-call", "i": "second" } },
        { "text": "done" }
    ]);
    let (run, thread) = tokio::join!(run_omp(&dir, &env, Plugin::Flag, &script, "run twice"), person);
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let results = run.tool_results("bash");
    assert_eq!(results.len(), 2);
    assert!(results[0].to_string().contains("first-call") && results[1].to_string().contains("second-call"));
    // One request was posted; the second call did not ask again.
    let requests: Vec<String> = thread_messages(&emulator, thread)
        .iter()
        .filter_map(|m| m["embeds"][0]["title"].as_str().map(str::to_owned))
        .filter(|t| t.contains("bash"))
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert!(requests[0].starts_with("Always allowed in this session by"), "{requests:?}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_after_the_deadline_is_refused_and_the_request_says_it_expired() {
    use omp_discord_core::protocol::{ClientFrame, SessionRef};

    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = approval_env(&dir, &emulator);
    env.retain(|(k, _)| k != "OMP_DISCORD_APPROVAL_TIMEOUT");
    env.push(("OMP_DISCORD_APPROVAL_TIMEOUT".into(), "3".into()));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = crate::util::Client::greeted(&sidecar.socket).await;
    let approve = ClientFrame::Approve {
        id: "a1".into(),
        session: SessionRef { id: "s-expiry".into(), cwd: Some("/work/shop".into()), prompt: Some("deploy".into()) },
        tool_call_id: "call-1".into(),
        tool: "bash".into(),
        input: json!({ "command": "git push --force" }),
    };
    client.send_raw(omp_discord_core::protocol::encode_frame(&approve).as_bytes()).await;
    let (thread, message, approve_id, _, _) = approval_buttons(&emulator).await;
    // The sidecar dies while the call waits, and stays away past the deadline.
    sidecar.kill_hard();
    drop(client);
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    wait_for("the approval's deadline to pass", Duration::from_secs(10), || {
        (std::time::Instant::now() > deadline).then_some(())
    })
    .await;

    let _sidecar = Sidecar::start(&dir, &env).await;
    // A click before the new sidecar's gateway is up reaches no one; click until one answers.
    let started = std::time::Instant::now();
    let answer = loop {
        let answer = click(&emulator, thread, &message, &approve_id, DEFAULT_OWNER_USER_ID).await;
        if !answer["state"]["response_type"].is_null() {
            break answer;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "no sidecar answered the click: {answer}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(answer["state"]["response_type"], 4, "{answer}");
    assert!(answer.to_string().contains("expired before anyone decided"), "{answer}");
    // The request loses its buttons and says what happened; no one is said to have approved it.
    let request = wait_for("the request to show it expired", Duration::from_secs(30), || {
        let request = thread_messages(&emulator, thread).into_iter().find(|m| m["id"] == message.as_str())?;
        let expired =
            request["components"].as_array().is_none_or(Vec::is_empty) && request.to_string().contains("Expired");
        expired.then_some(request)
    })
    .await;
    assert!(!request.to_string().contains("Approved by"), "{request}");
}
