//! `/omp ask prompt: project:`: autocomplete lists the configured projects;
//! an idle live session of the project gets the prompt; otherwise a headless
//! omp (the real one, the scripted model) starts in the project and its
//! thread is linked from the deferred answer. Strangers and unknown projects
//! are refused.

use std::time::Duration;

use omp_discord_core::protocol::{ClientFrame, ServerFrame, SessionRef};
use omp_discord_emulator::{DEFAULT_GUEST_USER_ID, DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, Emulator};
use serde_json::{Value, json};

use crate::util::{
    Client, Sidecar, TestDir, emulator, emulator_post, omp_path, repo, sidecar_env, thread_messages, thread_starts,
    wait_for,
};

/// Injects `/omp ask` (or its autocomplete) and returns the interaction's state once answered.
async fn ask(emulator: &Emulator, kind: &str, user: u64, options: Value) -> Value {
    let body = json!({
        "type": kind, "name": "omp", "channel_id": DEFAULT_HOME_CHANNEL_ID.to_string(), "user_id": user.to_string(),
        "wait": true, "options": [{ "name": "ask", "type": 1, "options": options }],
    });
    emulator_post(emulator, "/_emulator/interactions", &body).await["state"].clone()
}

fn choices(state: &Value) -> Vec<String> {
    assert_eq!(state["response_type"], 8, "{state}");
    state["callbacks"][0]["data"]["choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["value"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omp_ask_in_a_project_routes_to_its_idle_session_or_starts_omp_there() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let (app, blog) = (dir.path().join("src/app"), dir.path().join("src/blog"));
    std::fs::create_dir_all(&app).unwrap();
    std::fs::create_dir_all(&blog).unwrap();
    std::fs::write(dir.path().join("src/not-a-dir"), "").unwrap();
    let root = repo();
    let config = format!(
        "ask_command = [{:?}, \"--no-session\", \"-e\", {:?}, \"-e\", {:?}, \"--model\", \"fake/scripted\"]\n\
         [[projects]]\npath = {:?}\n",
        root.join("node_modules/.bin/omp").display().to_string(),
        root.join("tests/fixtures/scripted-model.ts").display().to_string(),
        root.display().to_string(),
        format!("{}/src/*", dir.path().display()),
    );
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let mut env = sidecar_env(&dir, Some(&emulator));
    env.extend([
        ("OMP_DISCORD_CONFIG".to_owned(), dir.path().join("config.toml").display().to_string()),
        // What the started omp inherits: its tools, a private TMPDIR, and the scripted model's script.
        ("PATH".to_owned(), omp_path()),
        ("TMPDIR".to_owned(), dir.tmp().display().to_string()),
        ("OMP_DISCORD_SCRIPT".to_owned(), json!([{ "echo": "headless heard: " }]).to_string()),
    ]);
    let sidecar = Sidecar::start(&dir, &env).await;
    wait_for("/omp to be registered", Duration::from_secs(20), || {
        emulator
            .requests()
            .iter()
            .any(|r| {
                let r = serde_json::to_value(r).unwrap();
                r["method"] == "PUT" && r["path"].as_str().unwrap().ends_with("/commands")
            })
            .then_some(())
    })
    .await;
    let (app_path, blog_path) = (app.display().to_string(), blog.display().to_string());

    // Autocomplete: the project directories (the glob expanded to existing directories) matching
    // what was typed; a stranger sees none.
    let typing = |typed: &str| {
        json!([{ "name": "prompt", "type": 3, "value": "x" },
               { "name": "project", "type": 3, "value": typed, "focused": true }])
    };
    assert_eq!(
        choices(&ask(&emulator, "autocomplete", DEFAULT_OWNER_USER_ID, typing("")).await),
        [app_path.clone(), blog_path.clone()]
    );
    assert_eq!(
        choices(&ask(&emulator, "autocomplete", DEFAULT_OWNER_USER_ID, typing("BLO")).await),
        vec![blog_path.clone()]
    );
    assert!(choices(&ask(&emulator, "autocomplete", DEFAULT_GUEST_USER_ID, typing("")).await).is_empty());

    let asking = |prompt: &str, project: &str| json!([{ "name": "prompt", "type": 3, "value": prompt }, { "name": "project", "type": 3, "value": project }]);
    // Not a configured project, or not an allowed person: refused privately, nothing starts.
    let outside = ask(&emulator, "command", DEFAULT_OWNER_USER_ID, asking("ls", "/etc")).await;
    let text = outside["callbacks"][0]["data"]["content"].as_str().unwrap();
    assert!(
        text.contains("not one of this bot's projects") && outside["callbacks"][0]["data"]["flags"] == 64,
        "{text}"
    );
    let stranger = ask(&emulator, "command", DEFAULT_GUEST_USER_ID, asking("rm -rf /", "app")).await;
    assert!(stranger["callbacks"][0]["data"]["content"].as_str().unwrap().contains("allowlist"), "{stranger}");

    // An idle live session of the project gets the prompt.
    let session = SessionRef { id: "blog-live".into(), cwd: Some(blog_path.clone()), prompt: None };
    let mut client = Client::greeted(&dir.socket()).await;
    let attach = ClientFrame::Attach { id: "a".into(), session: session.clone() };
    assert!(matches!(client.call(&attach).await, ServerFrame::Ok { .. }));
    let routed = ask(&emulator, "command", DEFAULT_OWNER_USER_ID, asking("write a post", "blog")).await;
    assert_eq!(routed["response_type"], 4, "{routed}");
    assert!(routed["callbacks"][0]["data"]["content"].as_str().unwrap().contains("asked blog: write a post"));
    match client.read().await {
        Some(ServerFrame::Inbound { session_id, text, .. }) => {
            assert_eq!(session_id, session.id);
            assert!(text.ends_with("write a post"), "{text}");
        }
        other => panic!("expected the prompt, got {other:?}"),
    }

    // No session of app: a headless omp starts there; the deferred answer links its thread.
    let started = ask(&emulator, "command", DEFAULT_OWNER_USER_ID, asking("summarize the repo", &app_path)).await;
    assert_eq!(started["response_type"], 5, "acknowledged at once, before omp starts: {started}");
    let original: u64 = started["original_message_id"].as_str().unwrap().parse().unwrap();
    let answer = wait_for("the follow-up with the thread", Duration::from_secs(60), || {
        let message = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID)
            .into_iter()
            .find(|m| m["id"].as_str() == Some(&original.to_string()))?;
        let content = message["content"].as_str()?.to_owned();
        (!content.is_empty()).then_some(content)
    })
    .await;
    let thread: u64 = thread_starts(&emulator)
        .iter()
        .find_map(|t| t["response"]["id"].as_str()?.parse().ok())
        .expect("the started omp's thread");
    assert!(answer.contains("started omp in app") && answer.contains(&format!("<#{thread}>")), "{answer}");
    let summary = wait_for("the headless run's summary", Duration::from_secs(60), || {
        thread_messages(&emulator, thread).iter().find_map(|m| {
            let embed = &m["embeds"][0];
            (embed["title"] == "Run finished").then(|| embed["description"].as_str().unwrap_or_default().to_owned())
        })
    })
    .await;
    assert!(summary.starts_with("headless heard: ") && summary.ends_with("summarize the repo"), "{summary}");
    let log = sidecar.log();
    assert!(log.contains("/omp ask started omp") && log.contains("not a configured project"), "{log}");
    drop(client);
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_command_gets_the_socket_but_not_the_bot_token_and_a_failure_is_reported() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    std::fs::create_dir_all(dir.path().join("src/app")).unwrap();
    // Stands in for omp: shows its OMP_DISCORD_* environment on stderr and fails without reporting.
    let config = format!(
        "ask_command = [\"/bin/sh\", \"-c\", \"env | grep ^OMP_DISCORD_ | sort >&2; exit 3\", \"fake-omp\"]\n\
         [[projects]]\npath = {:?}\n",
        dir.path().join("src/app").display().to_string(),
    );
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    let mut env = sidecar_env(&dir, Some(&emulator));
    env.push(("OMP_DISCORD_CONFIG".to_owned(), dir.path().join("config.toml").display().to_string()));
    let sidecar = Sidecar::start(&dir, &env).await;
    wait_for("/omp to be registered", Duration::from_secs(20), || {
        emulator
            .requests()
            .iter()
            .any(|r| {
                let r = serde_json::to_value(r).unwrap();
                r["method"] == "PUT" && r["path"].as_str().unwrap().ends_with("/commands")
            })
            .then_some(())
    })
    .await;
    let options =
        json!([{ "name": "prompt", "type": 3, "value": "--help" }, { "name": "project", "type": 3, "value": "app" }]);
    let started = ask(&emulator, "command", DEFAULT_OWNER_USER_ID, options).await;
    assert_eq!(started["response_type"], 5, "{started}");
    let original = started["original_message_id"].as_str().unwrap().to_owned();
    let answer = wait_for("the follow-up", Duration::from_secs(30), || {
        let message = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID)
            .into_iter()
            .find(|m| m["id"].as_str() == Some(original.as_str()))?;
        let content = message["content"].as_str()?.to_owned();
        (!content.is_empty()).then_some(content)
    })
    .await;
    assert!(answer.contains("exited (exit status: 3) without reporting"), "{answer}");
    assert!(answer.contains(&format!("OMP_DISCORD_SOCKET={}", dir.socket().display())), "{answer}");
    assert!(!answer.contains("OMP_DISCORD_TOKEN"), "the bot token reached the started command: {answer}");
    sidecar.terminate().await;
}
