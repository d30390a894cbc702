//! The sidecar over its real socket, against the emulator.

use std::time::Duration;

use omp_discord_core::embed::{Level, MessagePayload, Notification, build_notification};
use omp_discord_core::protocol::{
    ClientFrame, ErrorCode, Hello, MAX_FRAME_BYTES, NotifyRequest, ServerFrame, SessionRef,
};
use omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID;
use serde_json::json;

use crate::util::{Client, Sidecar, TestDir, all_message_posts, emulator, message_posts, sidecar_env, thread_starts};

fn notify(id: &str, message: MessagePayload) -> ClientFrame {
    ClientFrame::Notify(NotifyRequest {
        id: id.into(),
        session: SessionRef {
            id: "session-1".into(),
            cwd: Some("/work/demo".into()),
            prompt: Some("fix the build".into()),
        },
        message,
        channel_id: None,
        key: None,
        edit: false,
        idempotency_key: None,
    })
}

fn error_of(frame: ServerFrame) -> (Option<String>, ErrorCode, String) {
    match frame {
        ServerFrame::Error { id, code, message } => (id, code, message),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_session_gets_its_thread_and_notifications_land_in_it() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let note = Notification { message: "build passed".into(), level: Level::Success, ..Default::default() };
    let (seq, answer) = client.notify(&notify("r1", build_notification(&note, "demo"))).await;
    assert!(seq.is_some(), "accepted before delivery");
    let ServerFrame::Delivered { id, channel_id: thread_id, message_id } = answer else { panic!("{answer:?}") };
    assert_eq!(id, "r1");

    // The home channel got the session's starter message, and the thread was started from it.
    let home = message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID);
    assert_eq!(home.len(), 1, "only the starter goes to the home channel: {home:#?}");
    assert_eq!(home[0]["body"]["embeds"][0]["title"], "Session started · demo");
    let starts = thread_starts(&emulator);
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0]["body"]["name"], "demo · fix the build");
    assert_eq!(starts[0]["response"]["id"], thread_id.as_str());

    let in_thread = message_posts(&emulator, thread_id.parse().unwrap());
    assert_eq!(in_thread.len(), 1, "exactly one POST: {in_thread:#?}");
    let post = &in_thread[0];
    assert_eq!(post["status"], 200);
    assert_eq!(post["response"]["id"], message_id.as_str());
    assert_eq!(post["body"]["embeds"][0]["description"], "build passed");
    assert_eq!(post["body"]["embeds"][0]["color"], Level::Success.color());
    assert_eq!(post["body"]["allowed_mentions"], json!({ "parse": [] }));
    assert_eq!(post["body"]["enforce_nonce"], true);
    assert!(post["body"]["nonce"].is_string());
    // The token went to Discord, but the emulator never records it.
    assert!(!post["headers"].to_string().contains(omp_discord_emulator::DEFAULT_BOT_TOKEN));

    // The same session keeps its thread, across connections and sidecar restarts.
    drop(client);
    drop(sidecar);
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let (_, again) = client.notify(&notify("r2", build_notification(&note, "demo"))).await;
    let ServerFrame::Delivered { channel_id, .. } = again else { panic!("{again:?}") };
    assert_eq!(channel_id, thread_id);
    assert_eq!(thread_starts(&emulator).len(), 1, "no second thread");
    assert_eq!(message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID).len(), 1, "no second starter");
}

#[tokio::test]
async fn threads_off_posts_into_the_home_channel() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = sidecar_env(&dir, Some(&emulator));
    env.push(("OMP_DISCORD_THREADS".into(), "off".into()));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let note = Notification { message: "plain".into(), ..Default::default() };
    let (_, answer) = client.notify(&notify("r1", build_notification(&note, "demo"))).await;
    let ServerFrame::Delivered { channel_id, .. } = answer else { panic!("{answer:?}") };
    assert_eq!(channel_id, DEFAULT_HOME_CHANNEL_ID.to_string());
    assert!(thread_starts(&emulator).is_empty());
}

#[tokio::test]
async fn secrets_and_mass_mentions_from_any_client_are_neutralised() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let secret = "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"; // fake, made-up token
    // A raw payload that skipped core's builder: the sidecar must still clean it.
    let raw: MessagePayload = serde_json::from_value(json!({
        "content": format!("@everyone the token is {secret}"),
        "allowed_mentions": { "parse": ["everyone"] },
    }))
    .unwrap();
    let (_, answer) = client.notify(&notify("r1", raw)).await;
    assert!(matches!(answer, ServerFrame::Delivered { .. }), "{answer:?}");
    let posts = all_message_posts(&emulator);
    let body = &posts.last().unwrap()["body"];
    let content = body["content"].as_str().unwrap();
    assert!(!content.contains(secret) && content.contains("[REDACTED:"), "{content}");
    assert!(!content.contains("@everyone"), "{content}");
    assert_eq!(body["allowed_mentions"], json!({ "parse": [] }));
}

#[tokio::test]
async fn bad_frames_get_clear_errors_and_the_connection_survives() {
    let dir = TestDir::new();
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, None)).await;
    let mut client = Client::greeted(&sidecar.socket).await;

    client.send_raw(b"this is not json\n").await;
    let (id, code, message) = error_of(client.read().await.unwrap());
    assert_eq!((id, code), (None, ErrorCode::MalformedFrame));
    assert!(message.contains("invalid JSON"), "{message}");

    client.send_raw(br#"{"type":"notify","id":"r9"}"#).await;
    client.send_raw(b"\n").await;
    let (id, code, message) = error_of(client.read().await.unwrap());
    assert_eq!((id.as_deref(), code), (Some("r9"), ErrorCode::MalformedFrame));
    assert!(message.contains("missing field"), "{message}");

    let mut huge = vec![b'x'; MAX_FRAME_BYTES + 10];
    huge.push(b'\n');
    client.send_raw(&huge).await;
    let (_, code, _) = error_of(client.read().await.unwrap());
    assert_eq!(code, ErrorCode::FrameTooLarge);

    // Still usable after all of that.
    let status = client.call(&ClientFrame::Status { id: "s".into() }).await;
    let ServerFrame::Status { status, .. } = status else { panic!("{status:?}") };
    assert_eq!(status["token_configured"], false);
}

#[tokio::test]
async fn first_frame_must_be_a_matching_hello() {
    let dir = TestDir::new();
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, None)).await;

    let mut client = Client::connect(&sidecar.socket).await;
    let (_, code, _) = error_of(client.call(&ClientFrame::Status { id: "s".into() }).await);
    assert_eq!(code, ErrorCode::HandshakeRequired);
    assert!(client.read().await.is_none(), "the connection is closed");

    let mut old = Client::connect(&sidecar.socket).await;
    let hello = ClientFrame::Hello(Hello { protocol: 0, client: "shim/0.0.1".into(), pid: 1, host: "h".into() });
    let (_, code, message) = error_of(old.call(&hello).await);
    assert_eq!(code, ErrorCode::ProtocolMismatch);
    assert!(message.contains("shim/0.0.1") && message.contains("rebuild"), "{message}");
}

#[tokio::test]
async fn without_a_token_requests_say_what_to_configure() {
    let dir = TestDir::new();
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, None)).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let note = build_notification(&Notification { message: "x".into(), ..Default::default() }, "p");
    let (id, code, message) = error_of(client.call(&notify("r1", note)).await);
    assert_eq!((id.as_deref(), code), (Some("r1"), ErrorCode::NotConfigured));
    assert!(message.contains("OMP_DISCORD_TOKEN"), "{message}");
}

#[tokio::test]
async fn discord_rejections_carry_discords_message() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&sidecar.socket).await;

    // A colour above 0xFFFFFF passes our limits but not Discord's form validation.
    let mut payload = build_notification(&Notification { message: "x".into(), ..Default::default() }, "p");
    payload.embeds[0].color = Some(0x0100_0000);
    let (_, code, message) = error_of(client.notify(&notify("r1", payload)).await.1);
    assert_eq!(code, ErrorCode::DiscordRejected);
    assert!(message.contains("50035") && message.contains("embeds.0.color"), "{message}");

    // Our own validator catches what it knows before Discord sees it.
    let mut too_long = build_notification(&Notification { message: "x".into(), ..Default::default() }, "p");
    too_long.embeds[0].title = Some("t".repeat(300));
    let (seq, answer) = client.notify(&notify("r2", too_long)).await;
    assert_eq!(seq, None);
    let (_, code, message) = error_of(answer);
    assert_eq!(code, ErrorCode::InvalidMessage);
    assert_eq!(message, "the embed 1 title is 300 characters long, but the max is 256");
    assert_eq!(all_message_posts(&emulator).len(), 2, "starter and the one rejected post");
    drop(client);
    drop(sidecar);

    // An unknown home channel is Discord's 10003, reported as unknown_channel for a new session's thread.
    env.retain(|(k, _)| k != "OMP_DISCORD_CHANNEL_ID");
    env.push(("OMP_DISCORD_CHANNEL_ID".into(), "42".into()));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let note = build_notification(&Notification { message: "x".into(), ..Default::default() }, "p");
    let ClientFrame::Notify(mut request) = notify("r3", note) else { unreachable!() };
    request.session.id = "session-2".into();
    let (_, code, message) = error_of(client.notify(&ClientFrame::Notify(request)).await.1);
    assert_eq!(code, ErrorCode::UnknownChannel);
    assert!(message.contains("10003") && message.contains("Unknown Channel"), "{message}");
}

#[tokio::test]
async fn one_sidecar_per_socket_and_clean_shutdown() {
    let dir = TestDir::new();
    let env = sidecar_env(&dir, None);
    let first = Sidecar::start(&dir, &env).await;
    // A second sidecar on the same socket exits at once and leaves the first serving.
    let second = std::process::Command::new(crate::util::sidecar_bin())
        .arg("serve")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(second.status.success());
    let mut client = Client::greeted(&first.socket).await;
    let ServerFrame::Status { status, .. } = client.call(&ClientFrame::Status { id: "s".into() }).await else {
        panic!("no status")
    };
    assert_eq!(status["pid"], first.pid());
    drop(client);
    let exit = first.terminate().await;
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test]
async fn idle_sidecar_exits_by_itself() {
    let dir = TestDir::new();
    let env = sidecar_env(&dir, None);
    let mut child = std::process::Command::new(crate::util::sidecar_bin())
        .args(["serve", "--exit-when-idle", "1"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let status =
        crate::util::wait_for("the idle sidecar to exit", Duration::from_secs(15), || child.try_wait().unwrap()).await;
    assert!(status.success());
    assert!(!dir.socket().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_sidecar_stays_until_its_accepted_messages_are_delivered() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    // Discord is down: every message post fails with 503.
    emulator
        .state()
        .set_faults(&json!({"http": {"status": 503, "method": "POST", "path_prefix": "/channels"}}))
        .unwrap();
    let env = sidecar_env(&dir, Some(&emulator));
    let mut child = std::process::Command::new(crate::util::sidecar_bin())
        .args(["serve", "--exit-when-idle", "1"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::util::wait_for("the socket", Duration::from_secs(10), || dir.socket().exists().then_some(())).await;
    let mut client = Client::greeted(&dir.socket()).await;
    let note =
        Notification { title: Some("queued while Discord is down".into()), message: "m".into(), ..Default::default() };
    client
        .send_raw(omp_discord_core::protocol::encode_frame(&notify("r1", build_notification(&note, "demo"))).as_bytes())
        .await;
    let accepted = client.read().await;
    assert!(matches!(accepted, Some(ServerFrame::Accepted { .. })), "{accepted:?}");
    drop(client);

    // Three refused attempts take more than the 1 s idle timeout (1 s, 2 s rests between them).
    crate::util::wait_for("three refused delivery attempts", Duration::from_secs(30), || {
        let refused = all_message_posts(&emulator).iter().filter(|p| p["status"] == 503).count();
        (refused >= 3).then_some(())
    })
    .await;
    assert!(child.try_wait().unwrap().is_none(), "the sidecar exited with a message not delivered");

    let (cleared, _) = crate::util::emulator_request(&emulator, "DELETE", "/_emulator/faults", None, None).await;
    assert_eq!(cleared, 204);
    let status = crate::util::wait_for("the sidecar to deliver, then exit", Duration::from_secs(60), || {
        child.try_wait().unwrap()
    })
    .await;
    assert!(status.success());
    let delivered = all_message_posts(&emulator)
        .iter()
        .filter(|p| {
            p["status"] == 200 && p["body"]["embeds"][0]["title"].as_str().is_some_and(|t| t.contains("queued while"))
        })
        .count();
    assert_eq!(delivered, 1);
}
