//! Inbound benchmark: how fast a reply in a session's thread reaches the
//! session, and how long delivery pauses when the gateway connection drops.
//!
//! ```text
//! cargo build --release --bin omp-discord
//! cargo bench --bench inbound -- [--sidecar PATH] [--messages 500] [--drops 20] \
//!     [--identifies 3] [--omp-messages 50] [--json OUT]
//! ```
//!
//! The emulator runs in this process; the sidecar (release build) is a child
//! process connected to it over the gateway and REST. Phases:
//!
//! 1. **dispatch → inbound frame**: a client that acts like the extension
//!    (hello, attach, `inbound_ack` for each reply) holds a session with a
//!    thread; `--messages` replies are injected into the thread one at a time
//!    (the emulator dispatches MESSAGE_CREATE at once); latency is from the
//!    injection to the `inbound` frame arriving on the client's socket.
//! 2. **drop → resumed delivery**: `--drops` times, the emulator drops the
//!    gateway's TCP connection (no close frame) and, once it is gone, a reply
//!    is injected; the time is from the drop to that reply's `inbound` frame
//!    (twilight reconnects and RESUMEs; the emulator replays what was missed).
//!    The same for op 7 RECONNECT, and `--identifies` times for a session
//!    the gateway cannot resume (op 9, not resumable: a new IDENTIFY, then the
//!    REST catch-up of each thread).
//! 3. **dispatch → `sendUserMessage` in a real omp** (`--omp-messages`, 0 skips
//!    it; needs `node_modules` and `dist/` from `scripts/build.sh`): an omp in
//!    RPC mode with the scripted model; each reply starts a run, and the time
//!    is from injection to the sidecar's ✅ reaction request reaching the
//!    emulator, which the sidecar sends once the extension has called
//!    `pi.sendUserMessage` and acknowledged (polled every millisecond, so the
//!    numbers are ~1 ms coarse and include the acknowledgement's round trip).
//!
//! It prints numbers; it asserts nothing about speed.

#[path = "common/mod.rs"]
mod common;

use common::{Sidecar, release_binary};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use omp_discord_core::embed::{Notification, build_notification};
use omp_discord_core::protocol::{
    ClientFrame, Hello, NotifyRequest, PROTOCOL_VERSION, ServerFrame, SessionRef, decode_server_frame, encode_frame,
};
use omp_discord_emulator::{DEFAULT_OWNER_USER_ID, Emulator, EmulatorConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The benchmark is one person writing hundreds of replies: no per-person limit.
const ONE_PERSON: &[(&str, &str)] = &[("OMP_DISCORD_INBOUND_RATE_LIMIT", "off")];

struct Args {
    sidecar: PathBuf,
    messages: usize,
    drops: usize,
    identifies: usize,
    omp_messages: usize,
    json: Option<PathBuf>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn parse_args() -> Args {
    let mut args =
        Args { sidecar: release_binary(), messages: 500, drops: 20, identifies: 3, omp_messages: 50, json: None };
    common::parse_flags(|flag, value| {
        match flag {
            "--sidecar" => args.sidecar = value.into(),
            "--messages" => args.messages = value.parse().expect("--messages N"),
            "--drops" => args.drops = value.parse().expect("--drops N"),
            "--identifies" => args.identifies = value.parse().expect("--identifies N"),
            "--omp-messages" => args.omp_messages = value.parse().expect("--omp-messages N"),
            "--json" => args.json = Some(value.into()),
            _ => return false,
        }
        true
    });
    args
}

/// A client that acts like the extension: it acknowledges every reply.
struct Shim {
    lines: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Shim {
    async fn connect(socket: &Path) -> Self {
        let (read, writer) = UnixStream::connect(socket).await.expect("connect to the sidecar").into_split();
        let mut shim = Self { lines: BufReader::new(read), writer };
        let hello = ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: "bench-inbound/0".into(),
            pid: std::process::id(),
            host: "bench".into(),
        });
        shim.send(&hello).await;
        assert!(matches!(shim.next().await, ServerFrame::Welcome { .. }));
        shim
    }

    async fn send(&mut self, frame: &ClientFrame) {
        self.writer.write_all(encode_frame(frame).as_bytes()).await.expect("write a frame");
    }

    async fn next(&mut self) -> ServerFrame {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(120), self.lines.read_line(&mut line))
            .await
            .expect("the sidecar answers within 120 s")
            .expect("read a frame");
        assert!(n > 0, "the sidecar closed the connection");
        decode_server_frame(line.as_bytes()).expect("a valid frame")
    }

    /// Waits for the reply whose text ends with `marker`, acknowledges it,
    /// and returns when it arrived (before the acknowledgement).
    async fn inbound(&mut self, marker: &str) -> Instant {
        loop {
            if let ServerFrame::Inbound { message_id, text, .. } = self.next().await {
                let at = Instant::now();
                self.send(&ClientFrame::InboundAck { id: format!("ack-{message_id}"), message_id }).await;
                if text.ends_with(marker) {
                    return at;
                }
            }
        }
    }
}

/// Percentiles of `samples` (milliseconds), printed and returned as JSON.
fn report(name: &str, samples: &mut [f64]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    let mean = samples.iter().sum::<f64>() / samples.len() as f64;
    println!(
        "{name:<44} n={:<4} p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  mean {:>8.2} ms",
        samples.len(),
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0),
        mean
    );
    json!({ "n": samples.len(), "p50_ms": at(0.5), "p90_ms": at(0.9), "p99_ms": at(0.99), "max_ms": at(1.0), "mean_ms": mean })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Waits (polling) until `check` holds, up to `limit`.
async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn gateway(emulator: &Emulator) -> Value {
    emulator.state().snapshot()["gateway"].clone()
}

fn thread_of(emulator: &Emulator) -> Option<u64> {
    emulator.requests().iter().find_map(|r| {
        let r = serde_json::to_value(r).ok()?;
        (r["method"] == "POST" && r["path"].as_str()?.ends_with("/threads"))
            .then(|| r["response"]["id"].as_str()?.parse().ok())?
    })
}

fn say(emulator: &Emulator, thread: u64, text: &str) -> u64 {
    let message = emulator
        .state()
        .inject_message(thread, DEFAULT_OWNER_USER_ID, &json!({ "content": text }))
        .expect("the emulator takes the message");
    message["id"].as_str().and_then(|id| id.parse().ok()).expect("a message id")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let dir = tempfile::Builder::new().prefix("omdbi").tempdir_in("/tmp").expect("a temp dir");
    let emulator = Emulator::start(EmulatorConfig::default()).await.expect("the emulator starts");
    let sidecar = Sidecar::start(&args.sidecar, dir.path(), &emulator.http_url(), ONE_PERSON);
    until("the gateway", Duration::from_secs(30), || gateway(&emulator)["connected"] == 1).await;
    println!(
        "inbound benchmark: sidecar {}, {} CPUs, load {}",
        args.sidecar.display(),
        std::thread::available_parallelism().map_or(0, usize::from),
        std::fs::read_to_string("/proc/loadavg").unwrap_or_default().split(' ').take(3).collect::<Vec<_>>().join(" ")
    );

    // A session with a thread, attached by a client acting like the extension.
    let session = SessionRef { id: "bench-inbound".into(), cwd: Some("/bench/inbound".into()), prompt: None };
    let mut shim = Shim::connect(&sidecar.socket).await;
    shim.send(&ClientFrame::Attach { id: "attach".into(), session: session.clone() }).await;
    let message = build_notification(&Notification { message: "open the thread".into(), ..Default::default() }, "b");
    let open = NotifyRequest {
        id: "open".into(),
        session: session.clone(),
        message,
        channel_id: None,
        key: None,
        edit: false,
        idempotency_key: None,
    };
    shim.send(&ClientFrame::Notify(open)).await;
    while !matches!(shim.next().await, ServerFrame::Delivered { .. }) {}
    let thread = thread_of(&emulator).expect("the session's thread");

    // 1. dispatch → inbound frame, one reply at a time.
    let mut latencies = Vec::with_capacity(args.messages);
    for n in 0..args.messages {
        let marker = format!("reply #{n}");
        let start = Instant::now();
        say(&emulator, thread, &marker);
        latencies.push(ms(shim.inbound(&marker).await - start));
    }
    let mut results = serde_json::Map::new();
    results
        .insert("dispatch_to_inbound_frame".into(), report("dispatch → inbound frame (socket client)", &mut latencies));

    // 2. a dropped connection → the first reply after it delivered.
    let kinds = [
        ("drop", "TCP drop → resumed delivery", json!({ "action": "drop" }), args.drops),
        ("reconnect", "op 7 reconnect → resumed delivery", json!({ "action": "reconnect" }), args.drops),
        (
            "identify",
            "op 9 → IDENTIFY + REST catch-up → delivery",
            json!({ "action": "invalid_session", "resumable": false }),
            args.identifies,
        ),
    ];
    for (name, label, fault, count) in kinds {
        let mut samples = Vec::with_capacity(count);
        for n in 0..count {
            let marker = format!("{name} #{n}");
            let before = gateway(&emulator);
            let start = Instant::now();
            emulator.state().set_faults(&json!({ "gateway": fault })).expect("a gateway fault");
            // Written once the connection (or the gateway session) is gone, so it waits for the recovery.
            until("the connection to go", Duration::from_secs(10), || {
                let now = gateway(&emulator);
                now["connected"] == 0 || now["connections"] != before["connections"]
            })
            .await;
            say(&emulator, thread, &marker);
            samples.push(ms(shim.inbound(&marker).await - start));
            // Back to a steady connection before the next fault.
            until("the gateway to be back", Duration::from_secs(30), || gateway(&emulator)["connected"] == 1).await;
        }
        results.insert(format!("{name}_to_delivery"), report(label, &mut samples));
    }
    drop(shim);

    // 3. dispatch → sendUserMessage in a real omp (the ✅ that follows it).
    if args.omp_messages > 0 {
        results.insert(
            "dispatch_to_send_user_message_omp".into(),
            omp_phase(&args, dir.path(), &sidecar, &emulator).await,
        );
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&Value::Object(results)).expect("json"))
            .expect("write --json");
    }
    drop(sidecar);
    emulator.shutdown().await;
}

/// Runs omp in RPC mode against the sidecar and measures each reply's way to `sendUserMessage`.
async fn omp_phase(args: &Args, dir: &Path, sidecar: &Sidecar, emulator: &Emulator) -> Value {
    let root = repo();
    let omp = root.join("node_modules/.bin/omp");
    if !omp.exists() || !root.join("dist/index.js").exists() {
        println!("dispatch → sendUserMessage (real omp): skipped, run bash scripts/build.sh first");
        return Value::Null;
    }
    let threads_before =
        emulator.requests().iter().filter(|r| r.method == "POST" && r.path.ends_with("/threads")).count();
    let path = format!("{}:{}", root.join("node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut child = tokio::process::Command::new(&omp)
        .args(["--mode", "rpc", "--no-session", "-e"])
        .arg(root.join("tests/fixtures/scripted-model.ts"))
        .arg("-e")
        .arg(&root)
        .args(["--model", "fake/scripted"])
        .current_dir(dir.join("project"))
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir.join("home"))
        .env("TMPDIR", dir.join("tmp"))
        .env("OMP_DISCORD_SOCKET", &sidecar.socket)
        .env("OMP_DISCORD_SPAWN", "off")
        .env("OMP_DISCORD_SCRIPT", json!([{ "text": "ok" }]).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("omp starts");
    let thread = loop {
        let threads: Vec<u64> = emulator
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/threads"))
            .filter_map(|r| r.response["id"].as_str()?.parse().ok())
            .collect();
        if threads.len() > threads_before {
            break threads[threads.len() - 1];
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let runs = |emulator: &Emulator| {
        emulator.state().messages(thread).iter().filter(|m| m["embeds"][0]["title"] == "Run finished").count()
    };
    let mut samples = Vec::with_capacity(args.omp_messages);
    let mut last_reply = Instant::now();
    for n in 0..args.omp_messages {
        let finished = runs(emulator);
        // Discord allows one reaction per 250 ms in a channel, and the sidecar
        // keeps to it: replies closer together would time that wait, not the path.
        tokio::time::sleep(Duration::from_millis(300).saturating_sub(last_reply.elapsed())).await;
        last_reply = Instant::now();
        let start = Instant::now();
        let id = say(emulator, thread, &format!("omp reply #{n}"));
        let reaction = format!("/messages/{id}/reactions/");
        until("the reply's ✅", Duration::from_secs(30), || {
            emulator.requests().iter().rev().any(|r| r.method == "PUT" && r.path.contains(&reaction))
        })
        .await;
        samples.push(ms(start.elapsed()));
        // The next reply finds the session idle again.
        until("the run's end", Duration::from_secs(60), || runs(emulator) > finished).await;
    }
    let _ = child.kill().await;
    report("dispatch → sendUserMessage (real omp, ✅)", &mut samples)
}
