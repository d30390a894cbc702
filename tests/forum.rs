//! A forum as the home channel (or a project's channel): each session is a
//! forum post whose first message is the session card; the run's reports land
//! in the post, `omp --continue` returns to it, a forum that requires a tag
//! gets one, and a crash while a post is being opened never opens a second.

use std::time::Duration;

use omp_discord_core::protocol::{ServerFrame, encode_frame};
use omp_discord_emulator::{
    DEFAULT_BOT_TOKEN, DEFAULT_CATEGORY_ID, DEFAULT_FORUM_CHANNEL_ID, DEFAULT_GUILD_ID, DEFAULT_HOME_CHANNEL_ID,
    Emulator, EmulatorConfig, REQUIRE_TAG, SeedChannel, SeedOverwrite, SeedTag,
};
use serde_json::{Value, json};

use crate::hostile::notify;
use crate::util::{
    Client, Sidecar, TestDir, emulator, emulator_request, run_omp_keeping_session, sidecar_bin, sidecar_env,
    thread_messages, wait_for,
};

/// A forum that requires a tag, with a moderated tag first.
const TAGGED_FORUM: u64 = 1_100_000_000_000_000_050;
/// A forum that requires a tag and has none.
const BARE_FORUM: u64 = 1_100_000_000_000_000_051;
/// A forum where the bot may open posts but not write in them.
const CLOSED_FORUM: u64 = 1_100_000_000_000_000_052;

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

/// The sidecar's environment with the emulator's forum `omp-forum` as the home channel.
fn forum_env(dir: &TestDir, emulator: &Emulator) -> Vec<(String, String)> {
    let mut env = sidecar_env(dir, Some(emulator));
    set(&mut env, "OMP_DISCORD_CHANNEL_ID", &DEFAULT_FORUM_CHANNEL_ID.to_string());
    env
}

/// The default seed plus the two forums that require a tag.
fn with_tagged_forums() -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    let forum = |id, name: &str, available_tags| SeedChannel {
        id,
        kind: 15,
        name: name.to_owned(),
        parent_id: Some(DEFAULT_CATEGORY_ID),
        topic: None,
        position: 9,
        permission_overwrites: Vec::new(),
        flags: REQUIRE_TAG,
        available_tags,
    };
    let tags = vec![
        SeedTag { id: 60, name: "staff".into(), moderated: true },
        SeedTag { id: 61, name: "omp".into(), moderated: false },
    ];
    config.seed.guilds[0].channels.push(forum(TAGGED_FORUM, "shop-posts", tags));
    config.seed.guilds[0].channels.push(forum(BARE_FORUM, "bare-posts", Vec::new()));
    config
}

fn requests(emulator: &Emulator) -> Vec<Value> {
    emulator.requests().into_iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

/// Recorded `POST /channels/{forum}/threads` (opening a post), in order.
fn posts_in(emulator: &Emulator, forum: u64) -> Vec<Value> {
    let path = format!("/channels/{forum}/threads");
    requests(emulator)
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with(&path))
        .collect()
}

fn id_of(value: &Value) -> u64 {
    value.as_str().and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("not an id: {value}"))
}

fn title(message: &Value) -> &str {
    message["embeds"][0]["title"].as_str().unwrap_or_default()
}

fn descriptions(emulator: &Emulator, thread: u64) -> Vec<String> {
    thread_messages(emulator, thread)
        .iter()
        .filter_map(|m| m["embeds"][0]["description"].as_str().map(str::to_owned))
        .collect()
}

fn notify_then_answer(text: &str) -> Value {
    json!([
        { "tool": "discord_notify", "args": { "message": text, "title": "CI", "level": "success" } },
        { "text": "All done." }
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_a_forum_is_a_post_and_omp_continue_returns_to_it() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = forum_env(&dir, &emulator);
    let sidecar = Sidecar::start(&dir, &env).await;

    let first = run_omp_keeping_session(&dir, &env, &notify_then_answer("first report"), &[], "tell Discord").await;
    assert!(first.status.success(), "omp failed: {}", first.stderr);
    let post = wait_for("the forum post", Duration::from_secs(30), || {
        posts_in(&emulator, DEFAULT_FORUM_CHANNEL_ID).first().cloned()
    })
    .await;
    // Opened in one request: a name, and the session card as the first message (which has the post's id).
    assert_eq!(post["status"], 201, "{post:#}");
    assert!(post["body"]["name"].as_str().is_some_and(|n| n.starts_with("project")), "{post:#}");
    assert!(title(&post["body"]["message"]).starts_with("Session started"), "{post:#}");
    assert_eq!(post["body"]["message"]["allowed_mentions"], json!({"parse": []}), "{post:#}");
    assert_eq!(post["body"]["applied_tags"], json!([]), "the forum requires no tag: {post:#}");
    let thread = id_of(&post["response"]["id"]);
    assert_eq!(post["response"]["message"]["id"], post["response"]["id"]);
    assert_eq!(emulator.state().channel(thread).unwrap()["parent_id"], DEFAULT_FORUM_CHANNEL_ID.to_string());

    // The run's reports land in the post, after the session card.
    let is_summary = |m: &Value| title(m).starts_with("Run finished");
    wait_for("the first run's summary in the post", Duration::from_secs(30), || {
        thread_messages(&emulator, thread).iter().any(is_summary).then_some(())
    })
    .await;
    let messages = thread_messages(&emulator, thread);
    assert_eq!(id_of(&messages[0]["id"]), thread, "the session card opens the post");
    assert!(title(&messages[0]).starts_with("Session started"), "{messages:#?}");
    assert!(descriptions(&emulator, thread).contains(&"first report".to_owned()), "{messages:#?}");
    wait_for("the post to be named after the prompt", Duration::from_secs(30), || {
        (emulator.state().channel(thread)?["name"].as_str()? == "project · tell Discord").then_some(())
    })
    .await;

    // `omp --continue`: a new process, the same session, the same post.
    let second =
        run_omp_keeping_session(&dir, &env, &notify_then_answer("second report"), &["--continue"], "and again").await;
    assert!(second.status.success(), "omp --continue failed: {}", second.stderr);
    wait_for("the second run's summary in the same post", Duration::from_secs(30), || {
        let texts = descriptions(&emulator, thread);
        (texts.contains(&"second report".to_owned())
            && thread_messages(&emulator, thread).iter().filter(|m| is_summary(m)).count() == 2)
            .then_some(())
    })
    .await;
    assert_eq!(posts_in(&emulator, DEFAULT_FORUM_CHANNEL_ID).len(), 1, "no second post");

    // Nothing went to the forum itself (Discord refuses messages there), nothing was refused,
    // and every edit of the session card went to the post, where its first message lives.
    let all = requests(&emulator);
    let forum_messages = format!("/channels/{DEFAULT_FORUM_CHANNEL_ID}/messages");
    assert!(all.iter().all(|r| !r["path"].as_str().unwrap().contains(&forum_messages)), "posted into the forum");
    let refused: Vec<&Value> = all.iter().filter(|r| r["status"].as_u64().is_some_and(|s| s >= 400)).collect();
    assert!(refused.is_empty(), "{refused:#?}");
    let card_edits = all
        .iter()
        .filter(|r| r["method"] == "PATCH" && r["path"].as_str().unwrap().ends_with(&format!("/messages/{thread}")))
        .count();
    assert!(card_edits >= 1, "the session card was updated in place");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_forum_that_requires_a_tag_gets_one_and_one_without_tags_says_what_to_do() {
    let dir = TestDir::new();
    let emulator = Emulator::start(with_tagged_forums()).await.unwrap();
    let config = dir.home().join(".config/omp-discord/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let project = |name: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path.display().to_string()
    };
    let (shop, bare, blog) = (project("shop"), project("bare"), project("blog"));
    std::fs::write(
        &config,
        format!(
            "[[projects]]\npath = \"{shop}\"\nchannel_id = \"{TAGGED_FORUM}\"\n\n\
             [[projects]]\npath = \"{bare}\"\nchannel_id = \"{BARE_FORUM}\"\n"
        ),
    )
    .unwrap();
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let frame = |session: &str, cwd: &str, text: &str| {
        let mut frame = serde_json::to_value(notify(session, session, text)).unwrap();
        frame["session"]["cwd"] = json!(cwd);
        omp_discord_core::protocol::decode_client_frame(frame.to_string().as_bytes()).unwrap()
    };

    let (_, delivered) = client.notify(&frame("shop", &shop, "shop deployed")).await;
    let ServerFrame::Delivered { channel_id, .. } = delivered else { panic!("{delivered:?}") };
    let posts = posts_in(&emulator, TAGGED_FORUM);
    assert_eq!(posts.len(), 1, "{posts:#?}");
    assert_eq!(posts[0]["body"]["applied_tags"], json!(["61"]), "the first tag anyone may set: {:#}", posts[0]);
    assert_eq!(posts[0]["response"]["id"].as_str(), Some(channel_id.as_str()));
    assert!(descriptions(&emulator, channel_id.parse().unwrap()).contains(&"shop deployed".to_owned()));

    // Other projects still report to the home text channel, a thread from a starter message.
    let (_, delivered) = client.notify(&frame("blog", &blog, "blog built")).await;
    assert!(matches!(delivered, ServerFrame::Delivered { .. }), "{delivered:?}");
    assert_eq!(emulator.state().messages(DEFAULT_HOME_CHANNEL_ID).len(), 1, "the blog session's starter");

    // A forum that requires a tag and has none: the message fails, saying what to change.
    let (_, refused) = client.notify(&frame("bare", &bare, "never posted")).await;
    let ServerFrame::Error { message, .. } = refused else { panic!("{refused:?}") };
    assert!(message.contains("#bare-posts") && message.contains("requires a tag"), "{message}");
    assert!(message.contains("add one in the forum's settings"), "{message}");
    assert!(posts_in(&emulator, BARE_FORUM).is_empty(), "nothing Discord would refuse was sent");

    // A message sent straight to a forum (discord_send, notify --channel): Discord's refusal, and what to do.
    let mut direct = serde_json::to_value(notify("direct", "blog", "to the forum")).unwrap();
    direct["channel_id"] = json!(TAGGED_FORUM.to_string());
    let direct = omp_discord_core::protocol::decode_client_frame(direct.to_string().as_bytes()).unwrap();
    let (_, refused) = client.notify(&direct).await;
    let ServerFrame::Error { message, .. } = refused else { panic!("{refused:?}") };
    assert!(message.contains("50008") && message.contains("send to one of its posts"), "{message}");

    // doctor sees the same: which tag posts get, and what to fix.
    let doctor = std::process::Command::new(sidecar_bin())
        .arg("doctor")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&doctor.stdout), String::from_utf8_lossy(&doctor.stderr));
    assert!(text.contains("a forum that requires a tag; each session opens a post tagged \"omp\""), "{text}");
    assert!(text.contains("#bare-posts") && text.contains("requires a tag on every post but has no tags"), "{text}");
    assert!(!doctor.status.success(), "{text}");
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_checks_what_a_forum_home_needs() {
    let dir = TestDir::new();
    // A second forum where no one may post in posts (Send Messages in Threads denied to @everyone).
    let mut config = EmulatorConfig::default();
    let mut closed = config.seed.guilds[0].channels.iter().find(|c| c.id == DEFAULT_FORUM_CHANNEL_ID).unwrap().clone();
    (closed.id, closed.name) = (CLOSED_FORUM, "closed-posts".into());
    closed.permission_overwrites.push(SeedOverwrite { id: DEFAULT_GUILD_ID, kind: 0, allow: 0, deny: 1 << 38 });
    config.seed.guilds[0].channels.push(closed);
    let emulator = Emulator::start(config).await.unwrap();
    let doctor = |env: &[(String, String)]| {
        let output = std::process::Command::new(sidecar_bin())
            .arg("doctor")
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let mut env = forum_env(&dir, &emulator);
    let text = doctor(&env);
    let home = text.lines().find(|l| l.contains("home channel")).unwrap_or_else(|| panic!("{text}"));
    assert!(home.starts_with("ok") && home.contains("#omp-forum") && home.contains("opens a post"), "{text}");

    // A forum takes no plain messages: sessions without threads cannot report there.
    set(&mut env, "OMP_DISCORD_THREADS", "off");
    let text = doctor(&env);
    let home = text.lines().find(|l| l.contains("home channel")).unwrap_or_else(|| panic!("{text}"));
    assert!(home.starts_with("FAIL") && home.contains("is a forum"), "{text}");
    assert!(text.contains("threads = true"), "{text}");

    // A forum's own permission names: the bot could open a post but not write in it.
    set(&mut env, "OMP_DISCORD_THREADS", "on");
    set(&mut env, "OMP_DISCORD_CHANNEL_ID", &CLOSED_FORUM.to_string());
    let text = doctor(&env);
    let home = text.lines().find(|l| l.contains("home channel")).unwrap_or_else(|| panic!("{text}"));
    assert!(home.starts_with("FAIL") && home.ends_with("lacks: Send Messages in Posts"), "{text}");
}

/// The sidecar dies right after Discord opened the post and before it was
/// recorded; the next start finds that post instead of opening another, also
/// when the post was archived in the meantime. A death just before the
/// request opens the post once on the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_while_a_post_opens_never_opens_a_second() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = forum_env(&dir, &emulator);
    let cases = [
        ("after_forum_post_before_record", false),
        ("before_forum_post", false),
        ("after_forum_post_before_record", true),
    ];
    for (n, (point, archive)) in cases.into_iter().enumerate() {
        let session = format!("crash-{n}");
        let text = format!("{point}: delivered once");
        let mut failing = env.clone();
        failing.push(("OMP_DISCORD_FAILPOINTS".into(), format!("{point}:1")));
        let sidecar = Sidecar::start(&dir, &failing).await;
        let mut client = Client::greeted(&sidecar.socket).await;
        client.send_raw(encode_frame(&notify("m", &session, &text)).as_bytes()).await;
        let accepted = client.read().await;
        assert!(matches!(accepted, Some(ServerFrame::Accepted { .. })), "journaled before the crash: {accepted:?}");
        wait_for("the failpoint to kill the sidecar", Duration::from_secs(30), || {
            sidecar.log().contains(&format!("failpoint {point}: killing")).then_some(())
        })
        .await;
        drop(client);
        drop(sidecar);
        if archive {
            let post = id_of(&posts_in(&emulator, DEFAULT_FORUM_CHANNEL_ID)[n]["response"]["id"]);
            let auth = format!("Bot {DEFAULT_BOT_TOKEN}");
            let body = json!({"archived": true});
            let path = format!("/api/v10/channels/{post}");
            let (status, answer) = emulator_request(&emulator, "PATCH", &path, Some(&auth), Some(&body)).await;
            assert_eq!(status, 200, "archiving the post: {answer}");
        }

        let sidecar = Sidecar::start(&dir, &env).await;
        let posts = wait_for("the message in its post", Duration::from_secs(60), || {
            let posts = posts_in(&emulator, DEFAULT_FORUM_CHANNEL_ID);
            let post = posts.get(n)?;
            descriptions(&emulator, id_of(&post["response"]["id"])).contains(&text).then_some(posts)
        })
        .await;
        assert_eq!(posts.len(), n + 1, "one post per session: {posts:#?}");
        let thread = id_of(&posts[n]["response"]["id"]);
        let copies = descriptions(&emulator, thread).iter().filter(|t| **t == text).count();
        assert_eq!(copies, 1, "delivered exactly once");
        if point == "after_forum_post_before_record" {
            assert!(sidecar.log().contains("an interrupted attempt had opened the forum post"), "{}", sidecar.log());
        }
        sidecar.terminate().await;
    }
}

/// `omp-discord setup` with a forum as the home channel: a forum takes no
/// plain messages, so the one-time code is typed in a post setup opens for
/// it, and the test message is a post of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_with_a_forum_home_asks_for_the_code_in_a_post() {
    use tokio::io::AsyncBufReadExt;
    let dir = TestDir::new();
    let emulator = emulator().await;
    let forum = DEFAULT_FORUM_CHANNEL_ID.to_string();
    let repo_dir = crate::util::repo().display().to_string();
    let mut child = tokio::process::Command::new(sidecar_bin())
        .args(["setup", "--non-interactive", "--channel", &forum, "--plugin", &repo_dir, "--wait", "30"])
        .env_clear()
        .env("HOME", dir.home())
        .env("PATH", crate::util::omp_path())
        .env("OMP_DISCORD_SOCKET", dir.socket())
        .env("OMP_DISCORD_TOKEN", omp_discord_emulator::DEFAULT_BOT_TOKEN)
        .env("OMP_DISCORD_API_URL", emulator.http_url())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    let play = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            let code = line.trim();
            if code.len() == 10 && code.starts_with("omp-") && code[4..].chars().all(|c| c.is_ascii_digit()) {
                // The person types the code in the post setup opened, as the forum allows.
                let post = posts_in(&emulator, DEFAULT_FORUM_CHANNEL_ID)
                    .into_iter()
                    .find(|p| p["body"]["name"] == "omp-discord setup")
                    .expect("setup opened a post for the code");
                let post = id_of(&post["response"]["id"]);
                let owner = omp_discord_emulator::DEFAULT_OWNER_USER_ID;
                emulator.state().inject_message(post, owner, &json!({"content": code})).unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), play).await.expect("setup finishes within 90 s");
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "setup failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("type this code in the post \"omp-discord setup\" in #omp-forum"), "{stdout}");
    assert!(stdout.contains("✓ owner: Discord user"), "{stdout}");

    // The test message is a post; nothing went to the forum itself.
    let posts = posts_in(&emulator, DEFAULT_FORUM_CHANNEL_ID);
    let done = posts.iter().find(|p| p["body"]["name"] == "omp-discord is set up").expect("the test post");
    assert!(done["body"]["message"]["content"].as_str().unwrap().contains("omp-discord is set up"), "{done:#}");
    assert_eq!(done["status"], 201, "{done:#}");
    let forum_messages = format!("/channels/{forum}/messages");
    assert!(requests(&emulator).iter().all(|r| !r["path"].as_str().unwrap().contains(&forum_messages)));
    let config = std::fs::read_to_string(dir.home().join(".config/omp-discord/config.toml")).unwrap();
    let table: toml::Table = config.parse().unwrap();
    assert_eq!(table["home_channel_id"].as_str(), Some(forum.as_str()));
    assert_eq!(table["threads"].as_bool(), Some(true));
}
