//! The state file over a long soak: N notifications (default 100,000) through
//! the release sidecar to the emulator (rate limits off; twilight-http still
//! paces at Discord's global 50 requests per second), pipelined over 10
//! connections, each into its own session's thread, with idempotency keys as
//! the shim sends them. Prints the file's size (and its write-ahead log's)
//! once everything is delivered, and per notification. Retention then removes
//! delivered rows after a day (`src/store/retention.rs`, whose tests show the
//! file shrinking); this is the high-water mark of a day this busy.
//!
//!   cargo bench --bench soak -- --notifications 100000

mod common;

use std::time::{Duration, Instant};

use common::{Sidecar, parse_flags, release_binary};
use omp_discord_core::embed::{Notification, build_notification};
use omp_discord_core::protocol::{
    ClientFrame, Hello, NotifyRequest, PROTOCOL_VERSION, ServerFrame, SessionRef, decode_server_frame, encode_frame,
};
use omp_discord_emulator::{Emulator, EmulatorConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const CONNECTIONS: usize = 10;
/// Notifications a connection keeps in flight (sent, no `accepted` yet).
const WINDOW: usize = 200;

async fn client(socket: std::path::PathBuf, session: String, count: usize) {
    let stream = UnixStream::connect(&socket).await.expect("the sidecar listens");
    let (read, mut write) = stream.into_split();
    let hello =
        ClientFrame::Hello(Hello { protocol: PROTOCOL_VERSION, client: "soak/0".into(), pid: 0, host: "bench".into() });
    write.write_all(encode_frame(&hello).as_bytes()).await.unwrap();
    let mut lines = BufReader::new(read).lines();
    let (mut sent, mut accepted) = (0, 0);
    while accepted < count {
        let mut burst = String::new();
        while sent < count && sent - accepted < WINDOW {
            let text = format!("soak {session} #{sent}: build step finished in 1.{sent}s, 0 warnings");
            let message = build_notification(&Notification { message: text, ..Default::default() }, "soak");
            let request = NotifyRequest {
                id: format!("{sent}"),
                session: SessionRef { id: session.clone(), cwd: Some("/w/soak".into()), prompt: Some("soak".into()) },
                message,
                idempotency_key: Some(format!("{session}-{sent}")),
                ..NotifyRequest::default()
            };
            burst.push_str(&encode_frame(&ClientFrame::Notify(request)));
            sent += 1;
        }
        write.write_all(burst.as_bytes()).await.unwrap();
        let line = lines.next_line().await.unwrap().expect("the sidecar answers");
        if let Ok(ServerFrame::Accepted { .. }) = decode_server_frame(line.as_bytes()) {
            accepted += 1;
        }
    }
}

fn file_size(path: &std::path::Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

#[tokio::main]
async fn main() {
    let mut notifications = 100_000_usize;
    parse_flags(|flag, value| match flag {
        "--notifications" => {
            notifications = value.parse().expect("a count");
            true
        }
        _ => false,
    });
    let dir = tempfile::Builder::new().prefix("omds").tempdir_in("/tmp").expect("a temp dir");
    let emulator = Emulator::start(EmulatorConfig { rate_limits: false, ..EmulatorConfig::default() })
        .await
        .expect("the emulator starts");
    let sidecar = Sidecar::start(&release_binary(), dir.path(), &emulator.http_url(), &[]);
    let started = Instant::now();
    let per_connection = notifications / CONNECTIONS;
    let clients: Vec<_> = (0..CONNECTIONS)
        .map(|c| tokio::spawn(client(sidecar.socket.clone(), format!("soak-{c}"), per_connection)))
        .collect();
    for task in clients {
        task.await.expect("a client");
    }
    let accepted_after = started.elapsed();
    let db = dir.path().join("state/outbox.sqlite3");
    let journal = rusqlite::Connection::open(&db).expect("the state file opens");
    let total = per_connection * CONNECTIONS;
    loop {
        let pending: i64 =
            journal.query_row("SELECT COUNT(*) FROM outbox WHERE state = 'pending'", [], |r| r.get(0)).unwrap();
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let delivered_after = started.elapsed();
    let (main, wal) = (file_size(&db), file_size(&db.with_extension("sqlite3-wal")));
    println!(
        "soak: {total} notifications over {CONNECTIONS} connections, all accepted after {:.1} s, delivered after {:.1} s",
        accepted_after.as_secs_f64(),
        delivered_after.as_secs_f64()
    );
    println!(
        "  state file {:.1} MiB (+ {:.1} MiB write-ahead log): {:.0} bytes per notification kept for a day",
        main as f64 / 1048576.0,
        wal as f64 / 1048576.0,
        main as f64 / total as f64
    );
    drop(sidecar);
}
