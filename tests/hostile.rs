//! Hostile and broken socket peers against the real sidecar binary: a crowd
//! connecting at once, slow writers and readers, oversized, garbage and
//! truncated frames, an old protocol, and peers of another user.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use omp_discord_core::embed::{Notification, build_notification};
use omp_discord_core::protocol::{
    ClientFrame, ErrorCode, Hello, MAX_FRAME_BYTES, NotifyRequest, ServerFrame, SessionRef, decode_server_frame,
    encode_frame,
};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::util::{Client, Sidecar, TestDir, emulator, sidecar_bin, sidecar_env, wait_for};

/// A notify frame for `session` whose embed description is `text`.
pub(crate) fn notify(id: &str, session: &str, text: &str) -> ClientFrame {
    ClientFrame::Notify(NotifyRequest {
        id: id.into(),
        session: SessionRef { id: session.into(), cwd: Some("/w/hostile".into()), prompt: None },
        message: build_notification(&Notification { message: text.into(), ..Default::default() }, "hostile"),
        key: None,
        edit: false,
        idempotency_key: None,
        channel_id: None,
    })
}

/// Reads frames until `want` matches one, with a generous deadline (Discord's
/// rate limits decide how long a delivery takes, not this machine's speed).
pub(crate) async fn read_until(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    what: &str,
    mut want: impl FnMut(&ServerFrame) -> bool,
) -> ServerFrame {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout_at(deadline, reader.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("read");
        assert!(n > 0, "the sidecar closed the connection while waiting for {what}");
        let frame = decode_server_frame(line.as_bytes()).expect("a valid server frame");
        if want(&frame) {
            return frame;
        }
    }
}

/// Each message description the emulator holds in `session`-threads, with
/// how many times it appears across all delivered messages (a nonce replay
/// returns the first message, so only real duplicates count twice).
pub(crate) fn delivered_texts(emulator: &omp_discord_emulator::Emulator) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let mut ids = std::collections::HashSet::new();
    for request in emulator.requests() {
        let request = serde_json::to_value(request).unwrap();
        let is_create = request["method"] == "POST" && request["path"].as_str().unwrap().ends_with("/messages");
        let answered = request["status"] == 200 && request["response"].is_object();
        if !is_create || !answered || !ids.insert(request["response"]["id"].clone()) {
            continue;
        }
        for embed in request["response"]["embeds"].as_array().into_iter().flatten() {
            if let Some(text) = embed["description"].as_str() {
                *seen.entry(text.to_owned()).or_default() += 1;
            }
        }
    }
    seen
}

async fn status_of(socket: &Path) -> Value {
    let mut client = Client::greeted(socket).await;
    match client.call(&ClientFrame::Status { id: "st".into() }).await {
        ServerFrame::Status { status, .. } => status,
        other => panic!("expected a status, got {other:?}"),
    }
}

fn error_code(frame: &ServerFrame) -> Option<ErrorCode> {
    match frame {
        ServerFrame::Error { code, .. } => Some(*code),
        _ => None,
    }
}

fn hello_line() -> String {
    encode_frame(&ClientFrame::Hello(Hello {
        protocol: omp_discord_core::protocol::PROTOCOL_VERSION,
        client: "hostile/0".into(),
        pid: std::process::id(),
        host: "test".into(),
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_clients_at_once_each_get_their_notify_delivered_exactly_once() {
    const CLIENTS: usize = 100;
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;

    // Every client is connected before any says hello, then all talk at once.
    let mut streams = Vec::new();
    for _ in 0..CLIENTS {
        streams.push(UnixStream::connect(&sidecar.socket).await.expect("the sidecar accepts 100 connections"));
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for (n, stream) in streams.into_iter().enumerate() {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut reader = BufReader::new(read);
            barrier.wait().await;
            let frames = hello_line() + &encode_frame(&notify(&format!("c{n}"), "crowd", &format!("crowd #{n:03}")));
            write.write_all(frames.as_bytes()).await.unwrap();
            let welcome = read_until(&mut reader, "welcome", |_| true).await;
            assert!(matches!(welcome, ServerFrame::Welcome { .. }), "{welcome:?}");
            let accepted = read_until(&mut reader, "accepted", |_| true).await;
            assert!(matches!(&accepted, ServerFrame::Accepted { id, .. } if *id == format!("c{n}")), "{accepted:?}");
            let delivered = read_until(&mut reader, "delivered", |_| true).await;
            match delivered {
                ServerFrame::Delivered { id, message_id, .. } => {
                    assert_eq!(id, format!("c{n}"));
                    message_id
                }
                other => panic!("client {n}: expected delivered, got {other:?}"),
            }
        }));
    }
    for task in tasks {
        task.await.expect("every client is served");
    }
    let seen = delivered_texts(&emulator);
    for n in 0..CLIENTS {
        assert_eq!(seen.get(&format!("crowd #{n:03}")), Some(&1), "crowd #{n:03} delivered exactly once");
    }
    let status = status_of(&sidecar.socket).await;
    assert_eq!(status["outbox"]["pending"], 0, "{status}");
    assert_eq!(status["delivered"], CLIENTS as u64, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trickling_a_frame_or_never_reading_holds_up_nobody() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;

    // The slow writer: hello, then half of a notify frame one byte at a time.
    let mut slow = Client::greeted(&sidecar.socket).await;
    let frame = encode_frame(&notify("slow", "slow-session", "the slow one"));
    let (first, rest) = frame.as_bytes().split_at(frame.len() / 2);
    for byte in first {
        slow.send_raw(&[*byte]).await;
        tokio::task::yield_now().await;
    }
    // The deaf client: floods status requests and never reads an answer.
    let mut deaf = UnixStream::connect(&sidecar.socket).await.unwrap();
    let flood = hello_line() + &encode_frame(&ClientFrame::Status { id: "flood".into() }).repeat(5_000);
    let deaf_writer = tokio::spawn(async move {
        // The sidecar stops reading once its answers back up; that must cost only this connection.
        let _ = deaf.write_all(flood.as_bytes()).await;
        deaf
    });

    // Meanwhile everybody else is served, while the slow frame is still incomplete.
    for n in 0..20 {
        let status = status_of(&sidecar.socket).await;
        assert!(status["pid"].is_u64(), "status {n}: {status}");
    }
    let mut other = Client::greeted(&sidecar.socket).await;
    let (seq, answer) = other.notify(&notify("fast", "fast-session", "the fast one")).await;
    assert!(seq.is_some() && matches!(answer, ServerFrame::Delivered { .. }), "{answer:?}");
    assert!(!delivered_texts(&emulator).contains_key("the slow one"), "the slow frame cannot be complete yet");

    // The slow frame, finished byte by byte, is accepted and delivered like any other.
    for byte in rest {
        slow.send_raw(&[*byte]).await;
        tokio::task::yield_now().await;
    }
    let (seq, answer) = {
        let accepted = slow.read().await.expect("an answer");
        let ServerFrame::Accepted { seq, .. } = accepted else { panic!("{accepted:?}") };
        (seq, slow.read().await.expect("delivery"))
    };
    assert!(seq > 0 && matches!(answer, ServerFrame::Delivered { .. }), "{answer:?}");
    assert_eq!(delivered_texts(&emulator).get("the slow one"), Some(&1));
    drop(deaf_writer);
    assert!(status_of(&sidecar.socket).await["pid"].is_u64(), "still serving after the deaf client");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_are_refused_without_costing_memory_the_connection_or_the_next_frame() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let mut client = Client::greeted(&sidecar.socket).await;

    // A valid notify that is one byte too big, with an id: refused as too large.
    let mut note = notify("big", "big-session", "x");
    if let ClientFrame::Notify(request) = &mut note {
        request.message.embeds[0].description = Some("y".repeat(MAX_FRAME_BYTES));
    }
    let (seq, answer) = client.notify(&note).await;
    assert_eq!(seq, None, "nothing journaled");
    assert_eq!(error_code(&answer), Some(ErrorCode::FrameTooLarge), "{answer:?}");

    // 64 MiB without a newline, sent in pieces, then the newline: one error, and the
    // sidecar never held the line in memory.
    let chunk = vec![b'z'; 1 << 20];
    let writer = async {
        for _ in 0..64 {
            client.send_raw(&chunk).await;
        }
        client.send_raw(b"\n").await;
    };
    writer.await;
    let answer = client.read().await.expect("an answer");
    assert_eq!(error_code(&answer), Some(ErrorCode::FrameTooLarge), "{answer:?}");
    let peak_kib = peak_rss_kib(sidecar.pid());
    assert!(peak_kib < 48 * 1024, "the sidecar's peak RSS grew to {peak_kib} KiB while discarding 64 MiB");

    // The same connection goes on: a notify right after is delivered, once.
    let (seq, answer) = client.notify(&notify("after", "big-session", "after the big ones")).await;
    assert!(seq.is_some() && matches!(answer, ServerFrame::Delivered { .. }), "{answer:?}");
    assert_eq!(delivered_texts(&emulator).get("after the big ones"), Some(&1));
    assert!(!delivered_texts(&emulator).keys().any(|t| t.starts_with("yyyy")), "the oversized notify was not sent");
}

/// `VmHWM` of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_frames_get_errors_and_lose_nothing_around_them() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;

    // Garbage before the handshake is answered; the handshake still works after it.
    let mut client = Client::connect(&sidecar.socket).await;
    client.send_raw(b"\x00\xff\xfe garbage\n").await;
    let answer = client.read().await.expect("an answer");
    assert_eq!(error_code(&answer), Some(ErrorCode::MalformedFrame), "{answer:?}");
    client.send_raw(hello_line().as_bytes()).await;
    assert!(matches!(client.read().await, Some(ServerFrame::Welcome { .. })));

    // One write: a notify, binary garbage, a truncated frame, invalid UTF-8 in a string,
    // an empty line, a notify split across writes. Each bad line gets an error; both
    // notifies are delivered.
    let good_a = encode_frame(&notify("a", "garbage-session", "before the garbage"));
    let good_b = encode_frame(&notify("b", "garbage-session", "after the garbage"));
    let truncated = &good_b[..good_b.len() / 2];
    let mut burst = good_a.into_bytes();
    burst.extend(b"\x01\x02\x03\x7f\xc3\x28\n");
    burst.extend(truncated.as_bytes());
    burst.push(b'\n');
    burst.extend(b"{\"type\":\"status\",\"id\":\"\xff\xfe\"}\n");
    burst.extend(b"\n");
    burst.extend(b"[1,2,3]\n");
    burst.extend(
        b"{\"type\":\"notify\",\"id\":\"r-bad\",\"session\":{\"id\":\"s\"},\"message\":{\"embeds\":\"nope\"}}\n",
    );
    let (b1, b2) = good_b.as_bytes().split_at(7);
    burst.extend(b1);
    client.send_raw(&burst).await;
    client.send_raw(b2).await;

    let mut errors = Vec::new();
    let mut delivered = Vec::new();
    while delivered.len() < 2 {
        match client.read().await.expect("the connection stays open") {
            ServerFrame::Error { id, code, message } => errors.push((id, code, message)),
            ServerFrame::Delivered { id, .. } => delivered.push(id),
            ServerFrame::Accepted { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    // Answers to different requests may come in any order; Discord's order is checked below.
    delivered.sort();
    assert_eq!(delivered, ["a", "b"], "both good frames delivered");
    assert_eq!(errors.len(), 6, "one error per bad line: {errors:#?}");
    assert!(errors.iter().all(|(_, code, _)| *code == ErrorCode::MalformedFrame), "{errors:#?}");
    assert!(errors.iter().any(|(id, _, _)| id.as_deref() == Some("r-bad")), "the id is echoed when readable");
    let seen = delivered_texts(&emulator);
    assert_eq!((seen.get("before the garbage"), seen.get("after the garbage")), (Some(&1), Some(&1)));
    let in_thread: Vec<String> = crate::util::all_message_posts(&emulator)
        .iter()
        .filter(|r| r["status"] == 200)
        .flat_map(|r| r["body"]["embeds"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["description"].as_str().map(str::to_owned))
        .filter(|t| t.ends_with("the garbage"))
        .collect();
    assert_eq!(in_thread, ["before the garbage", "after the garbage"], "in order in the thread");

    // A client that dies in the middle of a frame costs nothing.
    let mut dying = Client::greeted(&sidecar.socket).await;
    dying.send_raw(truncated.as_bytes()).await;
    drop(dying);
    let status = status_of(&sidecar.socket).await;
    assert_eq!(status["outbox"]["pending"], 0, "{status}");
    assert_eq!(status["delivered"], 2, "{status}");
}

#[tokio::test]
async fn a_client_of_another_protocol_gets_protocol_mismatch_and_others_carry_on() {
    let dir = TestDir::new();
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, None)).await;
    // A newer shim against this sidecar (the reverse of the old-shim case in `sidecar`).
    let mut newer = Client::connect(&sidecar.socket).await;
    newer.send_raw(br#"{"type":"hello","protocol":4,"client":"shim/9.0.0","pid":1,"host":"h","features":["x"]}"#).await;
    newer.send_raw(b"\n").await;
    let answer = newer.read().await.expect("an answer");
    let ServerFrame::Error { code: ErrorCode::ProtocolMismatch, message, .. } = &answer else { panic!("{answer:?}") };
    assert!(
        message.contains("protocol 3") && message.contains("shim/9.0.0") && message.contains("speaks 4"),
        "{message}"
    );
    assert!(newer.read().await.is_none(), "the connection is closed after the mismatch");
    // An old shim that skips the handshake and sends requests straight away.
    let mut old = Client::connect(&sidecar.socket).await;
    old.send_raw(encode_frame(&notify("r1", "s", "x")).as_bytes()).await;
    assert_eq!(error_code(&old.read().await.unwrap()), Some(ErrorCode::HandshakeRequired));
    assert!(old.read().await.is_none(), "the connection is closed");
    assert!(status_of(&sidecar.socket).await["pid"].is_u64());
}

/// A private directory owned by `uid` (for a sidecar that runs as that user).
fn dir_for(uid: u32, parent: &Path, name: &str) -> PathBuf {
    let path = parent.join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(parent, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// `omp-discord status --json` as another user (through `setpriv`).
fn status_as(uid: u32, socket: &Path, home: &Path) -> std::process::Output {
    Command::new("setpriv")
        .args([format!("--reuid={uid}"), format!("--regid={uid}"), "--clear-groups".to_owned()])
        .arg(sidecar_bin())
        .args(["status", "--json"])
        .env_clear()
        .env("OMP_DISCORD_SOCKET", socket)
        .env("HOME", home)
        .output()
        .expect("setpriv runs")
}

/// The peer-uid check, for real: a sidecar runs as `nobody` and root connects
/// (root passes the directory's 0700, so only the uid check can stop it);
/// `nobody`'s own client is served. And the other way round, `nobody` cannot
/// even reach root's socket. Needs root to switch users; as any other user
/// the test checks what it can: that its own sidecar refuses nobody.
#[tokio::test]
async fn peers_of_another_user_are_refused() {
    const NOBODY: u32 = 65534;
    let is_root = rustix::process::getuid().is_root();
    let dir = TestDir::new();

    // nobody against this user's sidecar: the 0700 directory keeps it out.
    let emulator_less = sidecar_env(&dir, None);
    let own = Sidecar::start(&dir, &emulator_less).await;
    if is_root {
        let out = status_as(NOBODY, &own.socket, Path::new("/nonexistent"));
        assert!(!out.status.success(), "nobody reached root's sidecar: {}", String::from_utf8_lossy(&out.stdout));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("\"pid\""), "{stderr}");
    }
    drop(own);
    if !is_root {
        return;
    }

    // A sidecar running as nobody, in nobody's private directory.
    let base = dir.path().join("nobody");
    std::fs::create_dir_all(&base).unwrap();
    let home = dir_for(NOBODY, &base, "home");
    let socket = home.join("run/sidecar.sock");
    let log = dir.path().join("nobody-sidecar.log");
    let child = Command::new("setpriv")
        .args([format!("--reuid={NOBODY}"), format!("--regid={NOBODY}"), "--clear-groups".to_owned()])
        .arg(sidecar_bin())
        .arg("serve")
        .env_clear()
        .env("OMP_DISCORD_SOCKET", &socket)
        .env("HOME", &home)
        .env("OMP_DISCORD_LOG", "omp_discord=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let pid = child.id();
    let guard = Kill(child);
    wait_for("nobody's sidecar to listen", Duration::from_secs(10), || socket.exists().then_some(())).await;

    // Root connects (the directory cannot stop root) and says hello: no welcome, one
    // `forbidden` error that says whose sidecar this is, then a closed connection.
    let stream = UnixStream::connect(&socket).await.expect("root can reach any socket");
    let (read, mut write) = stream.into_split();
    let _ = write.write_all(hello_line().as_bytes()).await;
    let mut read = BufReader::new(read);
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(30), read.read_line(&mut line)).await.expect("an answer").unwrap();
    let refusal = decode_server_frame(line.as_bytes()).expect("a server frame");
    let ServerFrame::Error { code: ErrorCode::Forbidden, message, .. } = &refusal else { panic!("{refusal:?}") };
    assert!(message.contains(&format!("uid {NOBODY} only")) && message.contains("OMP_DISCORD_SOCKET"), "{message}");
    line.clear();
    let n = tokio::time::timeout(Duration::from_secs(30), read.read_line(&mut line))
        .await
        .expect("the sidecar closes the connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "root got more from nobody's sidecar: {line}");
    let log_text = wait_for("the refusal in the log", Duration::from_secs(10), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("refused a connection from another user").then_some(text)
    })
    .await;
    assert!(!log_text.contains("client connected"), "{log_text}");

    // nobody's own client is served by the same sidecar.
    let out = status_as(NOBODY, &socket, &home);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: Value = serde_json::from_slice(&out.stdout).expect("status --json prints JSON");
    assert_eq!(status["pid"], pid, "{status}");
    drop(guard);
}
