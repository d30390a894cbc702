//! Inbound soak (issue #7's bar): 1,000 replies across 5 sessions' threads
//! while the gateway is dropped 50 times (resumable), invalidated 5 times (a
//! new session: what was said meanwhile is never dispatched and must be caught
//! up over REST), and the sidecar is restarted once. Clients that act like the
//! shim (attach, hand each reply on, acknowledge it, reconnect when the
//! sidecar goes away) must see every reply of their session exactly once and
//! in order.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use omp_discord_core::protocol::{
    ClientFrame, Hello, PROTOCOL_VERSION, ServerFrame, SessionRef, decode_server_frame, encode_frame,
};
use omp_discord_emulator::{DEFAULT_OWNER_USER_ID, Emulator, EmulatorConfig};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio_util::sync::CancellationToken;

use crate::hostile::notify;
use crate::util::{Client, Sidecar, TestDir, sidecar_env, wait_for};

const SESSIONS: usize = 5;
const PER_SESSION: usize = 200;
const DROPS: usize = 50;
const NON_RESUMABLE: usize = 5;

type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A shim-like client for `session`, as `js-shim/index.ts` does it: attaches,
/// hands each reply on (records its id and text) and acknowledges it, and
/// reconnects whenever the connection ends, until `stop`. A reply offered
/// again (its acknowledgement was lost to a restart) is acknowledged, not
/// handed on twice; `offered_again` counts those.
async fn shim(
    socket: std::path::PathBuf,
    session: SessionRef,
    received: Received,
    offered_again: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    let mut handed_on = HashSet::new();
    while !stop.is_cancelled() {
        let Ok(stream) = UnixStream::connect(&socket).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        let (read, mut write) = stream.into_split();
        let hello = ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: "soak-shim/0".into(),
            pid: std::process::id(),
            host: "test".into(),
        });
        let attach = ClientFrame::Attach { id: "attach".into(), session: session.clone() };
        if write.write_all(format!("{}{}", encode_frame(&hello), encode_frame(&attach)).as_bytes()).await.is_err() {
            continue;
        }
        let mut reader = BufReader::new(read);
        loop {
            let mut line = String::new();
            let read = tokio::select! {
                () = stop.cancelled() => return,
                read = reader.read_line(&mut line) => read,
            };
            if !matches!(read, Ok(n) if n > 0) {
                break;
            }
            if let Ok(ServerFrame::Inbound { message_id, text, .. }) = decode_server_frame(line.as_bytes()) {
                if handed_on.insert(message_id.clone()) {
                    received.lock().unwrap().push((message_id.clone(), text));
                } else {
                    offered_again.fetch_add(1, Ordering::SeqCst);
                }
                let ack = ClientFrame::InboundAck { id: format!("ack-{message_id}"), message_id };
                if write.write_all(encode_frame(&ack).as_bytes()).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// The marker `soak s<i> #<n>` at the end of a reply's text.
fn marker(text: &str) -> &str {
    text.rfind("soak s").map_or(text, |at| &text[at..])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_replies_through_drops_invalid_sessions_and_a_restart_arrive_once_in_order() {
    // Discord's IDENTIFY spacing and rate limits are other tests' business; here they only add waiting.
    let config = EmulatorConfig { rate_limits: false, identify_interval: Duration::ZERO, ..EmulatorConfig::default() };
    let emulator = Emulator::start(config).await.unwrap();
    let dir = TestDir::new();
    let mut env = sidecar_env(&dir, Some(&emulator));
    // One person writes all 1,000 replies: far over a person's inbound rate limit.
    env.push(("OMP_DISCORD_INBOUND_RATE_LIMIT".to_owned(), "off".to_owned()));
    let mut sidecar = Sidecar::start(&dir, &env).await;
    let state = emulator.state();
    let started = Instant::now();

    // Five sessions, each with its thread.
    let mut client = Client::greeted(&sidecar.socket).await;
    let mut sessions = Vec::new();
    for s in 0..SESSIONS {
        let session = SessionRef { id: format!("soak-{s}"), cwd: Some(format!("/w/soak{s}")), prompt: None };
        let (_, answer) = client.notify(&notify(&format!("open{s}"), &session.id, "thread opened")).await;
        let ServerFrame::Delivered { channel_id, .. } = answer else { panic!("{answer:?}") };
        sessions.push((session, channel_id.parse::<u64>().unwrap()));
    }
    drop(client);
    let stop = CancellationToken::new();
    let offered_again = Arc::new(AtomicUsize::new(0));
    let received: Vec<Received> = (0..SESSIONS).map(|_| Received::default()).collect();
    let shims: Vec<_> = sessions
        .iter()
        .zip(&received)
        .map(|((session, _), got)| {
            tokio::spawn(shim(dir.socket(), session.clone(), got.clone(), offered_again.clone(), stop.clone()))
        })
        .collect();

    let connected = || state.snapshot()["gateway"]["connected"].as_u64().unwrap_or(0) >= 1;
    let total = SESSIONS * PER_SESSION;
    let (mut drops, mut invalidations) = (0, 0);
    for n in 0..total {
        let (s, index) = (n % SESSIONS, n / SESSIONS);
        let thread = sessions[s].1;
        state
            .inject_message(thread, DEFAULT_OWNER_USER_ID, &json!({ "content": format!("soak s{s} #{index:03}") }))
            .unwrap();
        // A drop every 20 replies, an invalid session every 200 (offset), the restart halfway.
        if n % (total / DROPS) == total / DROPS / 2 {
            wait_for("a gateway connection to drop", Duration::from_secs(30), || connected().then_some(())).await;
            state.set_faults(&json!({ "gateway": { "action": "drop" } })).unwrap();
            drops += 1;
        }
        if n % (total / NON_RESUMABLE) == total / NON_RESUMABLE / 4 {
            wait_for("a gateway session to invalidate", Duration::from_secs(30), || connected().then_some(())).await;
            state.set_faults(&json!({ "gateway": { "action": "invalid_session", "resumable": false } })).unwrap();
            invalidations += 1;
        }
        if n == total / 2 {
            sidecar.terminate().await;
            sidecar = Sidecar::start(&dir, &env).await;
        }
    }
    assert_eq!((drops, invalidations), (DROPS, NON_RESUMABLE));
    let injected = started.elapsed();

    let count = |got: &Received| got.lock().unwrap().len();
    wait_for("every reply at its session", Duration::from_secs(90), || {
        received.iter().all(|got| count(got) >= PER_SESSION).then_some(())
    })
    .await;
    // Anything extra (a duplicate) would arrive right behind; give it a moment through a status round trip.
    let mut client = Client::greeted(&sidecar.socket).await;
    let _ = client.call(&ClientFrame::Status { id: "settle".into() }).await;
    stop.cancel();
    for shim in shims {
        shim.await.unwrap();
    }

    for (s, got) in received.iter().enumerate() {
        let got = got.lock().unwrap();
        let expected: Vec<String> = (0..PER_SESSION).map(|i| format!("soak s{s} #{i:03}")).collect();
        let markers: Vec<&str> = got.iter().map(|(_, text)| marker(text)).collect();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (id, _) in got.iter() {
            *seen.entry(id).or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
        assert!(twice.is_empty(), "session {s} got replies twice: {twice:?}");
        assert_eq!(markers, expected, "session {s}: every reply once, in order");
    }
    let log = sidecar.log();
    eprintln!(
        "{total} replies, {drops} drops, {invalidations} invalid sessions, 1 restart: injected in {injected:.1?}, \
         all delivered after {:.1?}; {} IDENTIFYs; {} replies offered again after the restart",
        started.elapsed(),
        state.identify_count(),
        offered_again.load(Ordering::SeqCst)
    );
    let _ = log;
    sidecar.terminate().await;
    // Each reply journaled once (live, replayed on resume or caught up) and acknowledged.
    let db = rusqlite::Connection::open(dir.home().join(".local/state/omp-discord/outbox.sqlite3")).unwrap();
    let (rows, acked): (i64, i64) = db
        .query_row("SELECT COUNT(*), SUM(state = 'delivered') FROM inbound", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    assert_eq!((rows, acked), (total as i64, total as i64));
}
