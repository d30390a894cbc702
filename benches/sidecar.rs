//! Sidecar benchmark: notify latency, drain time against the rate-limit lower
//! bound, requests per notification, and the sidecar's memory.
//!
//! ```text
//! bash scripts/build.sh            # target/release/omp-discord
//! cargo bench --bench sidecar -- [--sidecar PATH] [--notifications 1000] \
//!     [--clients 20] [--rate 40] [--drain 10000] [--sessions 20] [--json OUT]
//! ```
//!
//! The emulator runs in this process. Between the sidecar and the emulator sits
//! a byte-forwarding TCP proxy (also in this process) that notes when each
//! notification's marker (`BENCH#<n>#`, in the embed text) first arrives: that
//! is the emulator's receipt time. Latency is measured from just before the
//! client's socket write of the `notify` frame to that receipt, and also to
//! the `accepted` and `delivered` frames on the client's connection.
//!
//! Phases:
//! 1. sequential: one connection, one session, one notification at a time,
//!    paced at `--rate` per second (below Discord's global 50/s);
//! 2. concurrent: `--clients` connections, one session each, each one
//!    notification at a time, `--rate` per second in all;
//! 3. burst: the same connections write all their notifications at once
//!    (open loop), which shows queueing and coalescing;
//! 4. drain (emulator rate limits on, fresh emulator and sidecar): `--drain`
//!    notifications over `--sessions` sessions written at once; the time until
//!    the last is delivered, against the lower bound Discord's limits imply.
//!
//! It prints numbers and ratios; it asserts nothing about speed.

#[path = "common/mod.rs"]
mod common;

use common::{Sidecar, release_binary};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omp_discord_core::embed::{Notification, build_notification};
use omp_discord_core::protocol::{ClientFrame, PROTOCOL_VERSION, ServerFrame, decode_server_frame, encode_frame};
use omp_discord_emulator::{Emulator, EmulatorConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixStream};
use tokio::sync::mpsc;

const MARKER: &[u8] = b"BENCH#";
/// Error frames seen (a postponed delivery is retried and reported again).
static ERRORS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// `BENCH#` + 8 digits + `#`.
const MARKER_LEN: usize = MARKER.len() + 9;

struct Args {
    sidecar: PathBuf,
    notifications: usize,
    clients: usize,
    drain: usize,
    sessions: usize,
    /// Offered notifications per second in the latency phases.
    rate: f64,
    json: Option<PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        sidecar: release_binary(),
        notifications: 1000,
        clients: 20,
        drain: 10_000,
        sessions: 20,
        rate: 40.0,
        json: None,
    };
    common::parse_flags(|flag, value| {
        match flag {
            "--sidecar" => args.sidecar = value.into(),
            "--notifications" => args.notifications = value.parse().expect("--notifications N"),
            "--clients" => args.clients = value.parse().expect("--clients N"),
            "--drain" => args.drain = value.parse().expect("--drain N"),
            "--sessions" => args.sessions = value.parse().expect("--sessions N"),
            "--rate" => args.rate = value.parse().expect("--rate N (per second)"),
            "--json" => args.json = Some(value.into()),
            _ => return false,
        }
        true
    });
    args
}

/// When each marker first reached the emulator's side of the proxy.
type Receipts = Arc<Mutex<HashMap<u32, Instant>>>;

/// Finds complete markers in `window` and records the unseen ones at `now`.
fn scan(window: &[u8], now: Instant, receipts: &Receipts) {
    let mut found = Vec::new();
    let mut i = 0;
    while i + MARKER_LEN <= window.len() {
        if &window[i..i + MARKER.len()] == MARKER {
            let digits = &window[i + MARKER.len()..i + MARKER_LEN - 1];
            if window[i + MARKER_LEN - 1] == b'#' && digits.iter().all(u8::is_ascii_digit) {
                let n: u32 = std::str::from_utf8(digits).expect("ascii digits").parse().expect("8 digits");
                found.push(n);
                i += MARKER_LEN;
                continue;
            }
        }
        i += 1;
    }
    if !found.is_empty() {
        let mut receipts = receipts.lock().expect("receipts lock");
        for n in found {
            receipts.entry(n).or_insert(now);
        }
    }
}

/// A TCP proxy in front of `upstream` that timestamps markers in requests.
///
/// With `hide_limits`, rate-limit headers in responses are renamed (same
/// length, so nothing else changes): the emulator keeps counting its buckets
/// down in `X-RateLimit-*` headers even with `rate_limits: false`, and
/// twilight-http paces by them, which would turn a latency run into a
/// rate-limit run.
async fn proxy(upstream: std::net::SocketAddr, receipts: Receipts, hide_limits: bool) -> std::net::SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind the proxy");
    let addr = listener.local_addr().expect("proxy address");
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else { return };
            let receipts = receipts.clone();
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else { return };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match server_read.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if hide_limits {
                            hide_rate_limit_headers(&mut buf[..n]);
                        }
                        if client_write.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 64 * 1024];
                // The tail of the previous read, so a marker split across reads is still found.
                let mut window: Vec<u8> = Vec::with_capacity(buf.len() + MARKER_LEN);
                loop {
                    let n = match client_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let now = Instant::now();
                    window.extend_from_slice(&buf[..n]);
                    scan(&window, now, &receipts);
                    if server_write.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let keep = window.len().min(MARKER_LEN - 1);
                    window.drain(..window.len() - keep);
                }
            });
        }
    });
    addr
}

/// Renames `x-ratelimit-` header names to `x-ratelimix-` in place. A header
/// split across two reads would be missed; responses are small and written
/// at once, so it does not happen in practice.
fn hide_rate_limit_headers(bytes: &mut [u8]) {
    const NAME: &[u8] = b"x-ratelimit-";
    let mut i = 0;
    while i + NAME.len() <= bytes.len() {
        if bytes[i..i + NAME.len()].eq_ignore_ascii_case(NAME) {
            bytes[i + NAME.len() - 2] = b'x';
            i += NAME.len();
        } else {
            i += 1;
        }
    }
}

/// One protocol connection; answers arrive on `frames` with their arrival time.
struct Client {
    writer: tokio::net::unix::OwnedWriteHalf,
    frames: mpsc::UnboundedReceiver<(ServerFrame, Instant)>,
}

impl Client {
    async fn connect(socket: &Path) -> Self {
        let (read, writer) = UnixStream::connect(socket).await.expect("connect to the sidecar").into_split();
        let (tx, frames) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(read);
            let mut line = String::new();
            loop {
                line.clear();
                match lines.read_line(&mut line).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        let now = Instant::now();
                        let frame = decode_server_frame(line.as_bytes()).expect("a valid server frame");
                        if tx.send((frame, now)).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut client = Self { writer, frames };
        let hello = serde_json::json!({
            "type": "hello", "protocol": PROTOCOL_VERSION, "client": "bench/0", "pid": std::process::id(), "host": "bench",
        });
        let hello: ClientFrame = serde_json::from_value(hello).expect("a valid hello frame");
        client.writer.write_all(encode_frame(&hello).as_bytes()).await.expect("write hello");
        let (welcome, _) = client.next().await;
        assert!(matches!(welcome, ServerFrame::Welcome { .. }), "unexpected answer to hello: {welcome:?}");
        client
    }

    async fn next(&mut self) -> (ServerFrame, Instant) {
        tokio::time::timeout(Duration::from_secs(300), self.frames.recv())
            .await
            .expect("the sidecar answers within 300 s")
            .expect("the sidecar keeps the connection open")
    }

    /// Writes notification `n` of `session`; returns the time just before the write.
    async fn send(&mut self, session: &str, n: u32) -> Instant {
        let frame = notify_frame(session, n);
        let start = Instant::now();
        self.writer.write_all(frame.as_bytes()).await.expect("write a notify frame");
        start
    }

    /// Reads answers until `n` (request id) is delivered; returns (accepted, delivered) times.
    async fn wait_delivered(&mut self, pending: &mut HashMap<u32, Timing>) -> u32 {
        loop {
            let (frame, at) = self.next().await;
            match frame {
                ServerFrame::Accepted { id, .. } => {
                    if let Some(t) = pending.get_mut(&request_number(&id)) {
                        t.accepted = Some(at);
                    }
                }
                ServerFrame::Delivered { id, .. } => {
                    let n = request_number(&id);
                    if let Some(t) = pending.get_mut(&n) {
                        t.delivered = Some(at);
                    }
                    return n;
                }
                // Postponed (Discord unavailable) or refused: counted, and the wait goes on.
                ServerFrame::Error { id, code, message } => {
                    let errors = ERRORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if errors < 3 {
                        eprintln!("notify {id:?}: {code}: {message}");
                    }
                }
                // Frames this benchmark does not use (e.g. pushed by newer sidecars).
                _ => {}
            }
        }
    }
}

fn request_number(id: &str) -> u32 {
    id.strip_prefix('n').and_then(|n| n.parse().ok()).expect("request ids are n<number>")
}

/// A realistic small notification (what `discord_notify` or a tool error produces).
fn notify_frame(session: &str, n: u32) -> String {
    let note: Notification = serde_json::from_value(serde_json::json!({
        "title": "cargo test finished",
        "message": format!("BENCH#{n:08}# 142 passed; 0 failed; 3 ignored; finished in 12.4 s (crates/core, crates/emulator)"),
        "level": "success",
    }))
    .expect("a valid notification");
    // Built as JSON, so fields the protocol adds later with defaults need no change here.
    let frame = serde_json::json!({
        "type": "notify",
        "id": format!("n{n}"),
        "session": {"id": session, "cwd": "/home/dev/src/omp-discord", "prompt": "run the tests and report"},
        "message": build_notification(&note, "omp-discord"),
    });
    let frame: ClientFrame = serde_json::from_value(frame).expect("a valid notify frame");
    encode_frame(&frame)
}

#[derive(Default, Clone, Copy)]
struct Timing {
    sent: Option<Instant>,
    accepted: Option<Instant>,
    delivered: Option<Instant>,
}

#[derive(serde::Serialize, Clone, Copy, Default)]
struct Stats {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

fn stats(mut ms: Vec<f64>) -> Stats {
    if ms.is_empty() {
        return Stats::default();
    }
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((p / 100.0 * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    Stats { count: ms.len(), p50_ms: at(50.0), p99_ms: at(99.0), max_ms: ms[ms.len() - 1] }
}

#[derive(serde::Serialize, Default)]
struct Latency {
    receipt: Stats,
    accepted: Stats,
    delivered: Stats,
}

fn latency(timings: &HashMap<u32, Timing>, receipts: &Receipts) -> Latency {
    let receipts = receipts.lock().expect("receipts lock");
    let mut r = Vec::new();
    let mut a = Vec::new();
    let mut d = Vec::new();
    let ms = |from: Instant, to: Instant| to.saturating_duration_since(from).as_secs_f64() * 1e3;
    for (n, t) in timings {
        let Some(sent) = t.sent else { continue };
        if let Some(at) = receipts.get(n) {
            r.push(ms(sent, *at));
        }
        if let Some(at) = t.accepted {
            a.push(ms(sent, at));
        }
        if let Some(at) = t.delivered {
            d.push(ms(sent, at));
        }
    }
    Latency { receipt: stats(r), accepted: stats(a), delivered: stats(d) }
}

fn print_latency(label: &str, l: &Latency) {
    let line = |what: &str, s: &Stats| {
        println!(
            "  {what:<22} p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>8.3} ms   (n={})",
            s.p50_ms, s.p99_ms, s.max_ms, s.count
        );
    };
    println!("{label}");
    line("write -> emulator", &l.receipt);
    line("write -> accepted", &l.accepted);
    line("write -> delivered", &l.delivered);
}

/// Counts of what the emulator received.
#[derive(serde::Serialize, Default)]
struct Requests {
    total: usize,
    message_posts: usize,
    thread_creates: usize,
    status_429: usize,
    /// The 429s by route (ids as `{id}`) and scope: which limit pacing missed.
    status_429_by_route: std::collections::BTreeMap<String, usize>,
}

/// `POST /channels/{id}/messages (bucket)` for a request Discord answered with 429.
fn route_of_429(method: &str, path: &str, response: &serde_json::Value) -> String {
    let route: Vec<&str> = path
        .trim_start_matches("/api/v10")
        .split('/')
        .map(
            |segment| if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) { "{id}" } else { segment },
        )
        .collect();
    let scope = if response["global"] == true { "global" } else { "bucket" };
    format!("{method} {} ({scope})", route.join("/"))
}

fn requests(emulator: &Emulator) -> Requests {
    let mut out = Requests::default();
    for r in emulator.requests() {
        if !r.path.starts_with("/api/") {
            continue;
        }
        out.total += 1;
        if r.status == 429 {
            out.status_429 += 1;
            *out.status_429_by_route.entry(route_of_429(&r.method, &r.path, &r.response)).or_default() += 1;
        }
        if r.method == "POST" && r.path.ends_with("/messages") {
            out.message_posts += 1;
        }
        if r.method == "POST" && r.path.ends_with("/threads") {
            out.thread_creates += 1;
        }
    }
    out
}

/// Each of `clients` connections (own session) sends `per_client` notifications,
/// one at a time; numbers start at `first`.
/// With `gap`, each client starts its sends at least `gap` apart (a paced offered load).
async fn closed_loop(
    socket: &Path,
    sessions: &[String],
    per_client: usize,
    first: u32,
    gap: Duration,
) -> HashMap<u32, Timing> {
    let mut tasks = Vec::new();
    let sessions_len = sessions.len();
    for (c, session) in sessions.iter().enumerate() {
        let socket = socket.to_owned();
        let session = session.clone();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(&socket).await;
            let mut timings = HashMap::new();
            // Clients start spread over one gap, so a paced load is even.
            let mut next = tokio::time::Instant::now() + gap.mul_f64(c as f64 / sessions_len as f64);
            for i in 0..per_client {
                tokio::time::sleep_until(next).await;
                next += gap;
                let n = first + (c * per_client + i) as u32;
                let sent = client.send(&session, n).await;
                timings.insert(n, Timing { sent: Some(sent), ..Timing::default() });
                let done = client.wait_delivered(&mut timings).await;
                assert_eq!(done, n, "answers arrive in order on a closed loop");
            }
            timings
        }));
    }
    let mut all = HashMap::new();
    for task in tasks {
        all.extend(task.await.expect("a client task"));
    }
    all
}

/// Each connection (own session) writes all its notifications at once, then
/// reads until every one is delivered.
async fn open_loop(socket: &Path, sessions: &[String], per_client: usize, first: u32) -> HashMap<u32, Timing> {
    let mut clients = Vec::new();
    for _ in sessions {
        clients.push(Client::connect(socket).await);
    }
    let mut tasks = Vec::new();
    for (c, (mut client, session)) in clients.into_iter().zip(sessions.iter().cloned()).enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut timings = HashMap::new();
            for i in 0..per_client {
                let n = first + (c * per_client + i) as u32;
                let sent = client.send(&session, n).await;
                timings.insert(n, Timing { sent: Some(sent), ..Timing::default() });
            }
            for _ in 0..per_client {
                client.wait_delivered(&mut timings).await;
            }
            timings
        }));
    }
    let mut all = HashMap::new();
    for task in tasks {
        all.extend(task.await.expect("a client task"));
    }
    all
}

/// Opens each session's thread (one delivered notification each), so the
/// measured phases do not include thread creation.
async fn warm_up(socket: &Path, sessions: &[String], first: u32) {
    let _ = closed_loop(socket, sessions, 1, first, Duration::ZERO).await;
    // Opening 20 threads is a burst of ~60 requests: twilight-http holds
    // requests past Discord's global 50 per second, and the backlog would
    // spill into the timed phase. Let its one-second window pass first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

/// The least time Discord's limits allow for `total` notifications spread
/// evenly over `sessions` new sessions, each opening its thread with a starter
/// message in the home channel and a thread creation, then posting its
/// notifications packed 10 embeds to a message. Buckets are fixed windows
/// that start at their first request (as in Discord and the emulator).
fn lower_bound(total: usize, sessions: usize) -> (f64, String) {
    let per_session = total.div_ceil(sessions);
    let messages_per_session = per_session.div_ceil(10);
    let windows = |requests: usize, per: usize, secs: f64| (requests.div_ceil(per).saturating_sub(1)) as f64 * secs;
    // Home channel: starter messages 5 / 5 s; the last session's thread opens no earlier than its starter.
    let last_starter = windows(sessions, 5, 5.0);
    let thread_creates = windows(sessions, 10, 10.0);
    let per_thread = windows(messages_per_session, 5, 5.0);
    let channel_bound = last_starter.max(thread_creates) + per_thread;
    let requests = 2 * sessions + sessions * messages_per_session;
    let global_bound = windows(requests, 50, 1.0);
    let bound = channel_bound.max(global_bound);
    let why = format!(
        "{sessions} sessions x {per_session} notifications = {messages_per_session} messages/thread at 10 embeds; \
         last thread opens >= {:.0} s (starters 5/5 s, threads 10/10 s), its messages take >= {per_thread:.0} s \
         (5/5 s); global {requests} requests at 50/s >= {global_bound:.0} s",
        last_starter.max(thread_creates)
    );
    (bound, why)
}

#[derive(serde::Serialize)]
struct Report {
    sequential: Latency,
    concurrent: Latency,
    burst: Latency,
    burst_requests_per_notification: f64,
    drain_seconds: f64,
    drain_lower_bound_seconds: f64,
    drain_ratio: f64,
    drain_requests: Requests,
    drain_requests_per_notification: f64,
    rss_idle_kib: u64,
    rss_after_latency_kib: u64,
    rss_after_drain_kib: u64,
    hwm_after_drain_kib: u64,
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let dir = tempfile::Builder::new().prefix("omdb").tempdir_in("/tmp").expect("a temp dir");
    println!(
        "sidecar benchmark: {} ({} CPUs, load {})",
        args.sidecar.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );

    // Latency: emulator without rate limits (and their headers hidden from
    // twilight), so only our own path is measured.
    let emulator = Emulator::start(EmulatorConfig { rate_limits: false, ..EmulatorConfig::default() })
        .await
        .expect("the emulator starts");
    let receipts: Receipts = Arc::default();
    let api = proxy(emulator.addr(), receipts.clone(), true).await;
    let sidecar = Sidecar::start(&args.sidecar, &dir.path().join("lat"), &format!("http://{api}"), &[]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (rss_idle, _) = sidecar.memory();
    println!("sidecar RSS idle: {:.1} MiB", rss_idle as f64 / 1024.0);

    let seq_session = vec!["bench-seq".to_owned()];
    warm_up(&sidecar.socket, &seq_session, 9_000_000).await;
    // Paced below Discord's global 50 requests/s, which twilight-http enforces
    // on the client side: back to back, every 50th request waits for the next
    // second, and that wait, not the sidecar, would be the p99.
    let gap = Duration::from_secs_f64(1.0 / args.rate);
    let seq = closed_loop(&sidecar.socket, &seq_session, args.notifications, 0, gap).await;
    let sequential = latency(&seq, &receipts);
    print_latency(
        &format!("sequential: {} notifications, one at a time, one session, {}/s", args.notifications, args.rate),
        &sequential,
    );

    let sessions: Vec<String> = (0..args.clients).map(|c| format!("bench-conc-{c}")).collect();
    warm_up(&sidecar.socket, &sessions, 9_100_000).await;
    let per_client = args.notifications.div_ceil(args.clients);
    let conc = closed_loop(&sidecar.socket, &sessions, per_client, 1_000_000, gap * args.clients as u32).await;
    let concurrent = latency(&conc, &receipts);
    print_latency(
        &format!(
            "concurrent: {} connections/sessions x {per_client}, each one at a time, {}/s in all",
            args.clients, args.rate
        ),
        &concurrent,
    );

    let before = requests(&emulator);
    let burst_timings = open_loop(&sidecar.socket, &sessions, per_client, 2_000_000).await;
    let after = requests(&emulator);
    let burst = latency(&burst_timings, &receipts);
    let burst_posts = after.message_posts - before.message_posts;
    let burst_rpn = burst_posts as f64 / burst_timings.len() as f64;
    print_latency(&format!("burst: {} connections/sessions x {per_client} written at once", args.clients), &burst);
    println!(
        "  {burst_posts} message posts for {} notifications: {burst_rpn:.3} requests per notification",
        burst_timings.len()
    );
    let (rss_after_latency, _) = sidecar.memory();
    println!(
        "sidecar RSS after {} notifications: {:.1} MiB",
        2 * args.notifications,
        rss_after_latency as f64 / 1024.0
    );
    drop(sidecar);
    emulator.shutdown().await;

    // Drain: rate limits on, fresh emulator and sidecar, nothing warmed up.
    let emulator = Emulator::start(EmulatorConfig::default()).await.expect("the emulator starts");
    let receipts: Receipts = Arc::default();
    let api = proxy(emulator.addr(), receipts.clone(), false).await;
    let sidecar = Sidecar::start(&args.sidecar, &dir.path().join("drain"), &format!("http://{api}"), &[]);
    let sessions: Vec<String> = (0..args.sessions).map(|s| format!("bench-drain-{s}")).collect();
    let per_session = args.drain / args.sessions;
    let total = per_session * args.sessions;
    let (bound, why) = lower_bound(total, args.sessions);
    println!("drain: {total} notifications over {} sessions, emulator rate limits on", args.sessions);
    println!("  lower bound {bound:.1} s: {why}");
    let start = Instant::now();
    let timings = open_loop(&sidecar.socket, &sessions, per_session, 0).await;
    let drain = start.elapsed().as_secs_f64();
    let last_accept = timings.values().filter_map(|t| t.accepted).max().map_or(0.0, |t| (t - start).as_secs_f64());
    let counts = requests(&emulator);
    let drain_rpn = counts.message_posts as f64 / total as f64;
    let ratio = if bound > 0.0 { drain / bound } else { f64::NAN };
    println!("  drained in {drain:.1} s (all accepted after {last_accept:.2} s): {ratio:.2}x the lower bound");
    println!(
        "  requests: {} total, {} message posts ({} starters incl.), {} thread creations, {} answered 429; \
         {drain_rpn:.3} message posts per notification (ideal {:.3})",
        counts.total,
        counts.message_posts,
        args.sessions,
        counts.thread_creates,
        counts.status_429,
        (args.sessions + args.sessions * per_session.div_ceil(10)) as f64 / total as f64
    );
    if !counts.status_429_by_route.is_empty() {
        let by_route: Vec<String> =
            counts.status_429_by_route.iter().map(|(route, n)| format!("{route} x{n}")).collect();
        println!("  429s by route: {}", by_route.join(", "));
    }
    let (rss_after_drain, hwm) = sidecar.memory();
    println!(
        "sidecar RSS after the drain: {:.1} MiB (peak {:.1} MiB)",
        rss_after_drain as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    drop(sidecar);
    emulator.shutdown().await;

    if let Some(path) = &args.json {
        let report = Report {
            sequential,
            concurrent,
            burst,
            burst_requests_per_notification: burst_rpn,
            drain_seconds: drain,
            drain_lower_bound_seconds: bound,
            drain_ratio: ratio,
            drain_requests: counts,
            drain_requests_per_notification: drain_rpn,
            rss_idle_kib: rss_idle,
            rss_after_latency_kib: rss_after_latency,
            rss_after_drain_kib: rss_after_drain,
            hwm_after_drain_kib: hwm,
        };
        std::fs::write(path, serde_json::to_string_pretty(&report).expect("serializes") + "\n").expect("write json");
    }
}
