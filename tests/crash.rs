//! Crash consistency of the outbox: the real sidecar binary is killed over and
//! over — by its failpoints (`OMP_DISCORD_FAILPOINTS`, debug builds only) at
//! every step a message passes, and by `kill -9` at random moments — and
//! restarted on the same journal. Every notification it accepted must be in
//! Discord exactly once, in order within its thread, and each session must
//! have exactly one thread.
//!
//! Randomized: the seed is printed; `OMP_DISCORD_CRASH_SEED=<n>` replays a run.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use omp_discord_core::protocol::{
    ClientFrame, Hello, PROTOCOL_VERSION, ServerFrame, decode_server_frame, encode_frame,
};
use omp_discord_emulator::{DEFAULT_HOME_CHANNEL_ID, Emulator, EmulatorConfig};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::hostile::notify;
use crate::util::{TestDir, sidecar_bin, sidecar_env, thread_messages, thread_starts, wait_for};

const ROUNDS: usize = 200;

/// Points a message passes on its way out (see `src/failpoint.rs`).
const SEND_POINTS: &[&str] = &["after_journal", "before_send", "after_send_before_mark"];
/// Points passed only while a session's thread is being opened.
const THREAD_POINTS: &[&str] = &["before_starter", "after_starter_before_record", "after_thread_before_record"];

/// xorshift64*: enough randomness for choosing faults, and replayable from its seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An emulator without rate limits: this test is about crashes, and Discord's
/// 5-per-5-s channel limit would make 200 rounds take minutes.
pub(crate) async fn fast_emulator() -> Emulator {
    let config = EmulatorConfig { rate_limits: false, identify_interval: Duration::ZERO, ..EmulatorConfig::default() };
    Emulator::start(config).await.expect("the emulator starts")
}

/// Starts `omp-discord serve`, appending its stderr to `log`.
pub(crate) fn spawn(env: &[(String, String)], log: &Path) -> Child {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
    Command::new(sidecar_bin())
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("the sidecar starts")
}

/// Connects once the sidecar listens; None when it died first (a failpoint
/// may fire on rows left by the previous round before the socket is reached).
pub(crate) async fn connect(child: &mut Child, socket: &Path) -> Option<UnixStream> {
    let start = Instant::now();
    loop {
        if let Ok(stream) = UnixStream::connect(socket).await {
            return Some(stream);
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the sidecar did not listen");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

pub(crate) fn kill_9(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// What one round does to the sidecar.
#[derive(Debug)]
enum Fault {
    /// A failpoint fires at its `nth` pass.
    Failpoint(&'static str, u64),
    /// `kill -9` this long after the burst was written.
    Kill(Duration),
    /// Nothing: it delivers, then is killed anyway.
    None,
}

/// Sends `frames` and reads answers until every request has its final answer,
/// the sidecar dies, or `until` passes. Returns the request ids answered `accepted`.
async fn burst(stream: UnixStream, frames: &str, requests: usize, until: Instant) -> Vec<String> {
    let (read, mut write) = stream.into_split();
    let hello = ClientFrame::Hello(Hello {
        protocol: PROTOCOL_VERSION,
        client: "crash-test/0".into(),
        pid: std::process::id(),
        host: "test".into(),
    });
    let mut accepted = Vec::new();
    if write.write_all(format!("{}{frames}", encode_frame(&hello)).as_bytes()).await.is_err() {
        return accepted;
    }
    let mut reader = BufReader::new(read);
    let mut finished = 0;
    while finished < requests {
        let mut line = String::new();
        match tokio::time::timeout_at(until.into(), reader.read_line(&mut line)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => break,
        }
        match decode_server_frame(line.as_bytes()) {
            Ok(ServerFrame::Accepted { id, .. }) => accepted.push(id),
            Ok(ServerFrame::Delivered { .. } | ServerFrame::Error { .. }) => finished += 1,
            Ok(_) => {}
            Err(err) => panic!("a bad frame from the sidecar: {err}: {line}"),
        }
    }
    accepted
}

/// `crash r<round> <session> #<n>`, parsed back to its order key.
fn marker(round: usize, session: &str, n: usize) -> String {
    format!("crash r{round:03} {session} #{n}")
}

fn order_key(text: &str) -> Option<(String, usize, usize)> {
    let rest = text.strip_prefix("crash r")?;
    let (round, rest) = rest.split_once(' ')?;
    let (session, n) = rest.split_once(" #")?;
    Some((session.to_owned(), round.parse().ok()?, n.parse().ok()?))
}

/// Each thread's markers as Discord shows them now, oldest message first.
fn markers_by_thread(emulator: &Emulator) -> BTreeMap<u64, Vec<String>> {
    let threads: BTreeSet<u64> = thread_starts(emulator)
        .iter()
        .filter(|r| r["status"].as_u64().is_some_and(|s| (200..300).contains(&s)))
        .filter_map(|r| r["response"]["id"].as_str()?.parse().ok())
        .collect();
    threads
        .into_iter()
        .map(|thread| {
            let texts = thread_messages(emulator, thread)
                .iter()
                .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default())
                .filter_map(|e| e["description"].as_str().map(str::to_owned))
                .filter(|t| t.starts_with("crash r"))
                .collect();
            (thread, texts)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_random_crashes_lose_and_duplicate_nothing() {
    let seed = std::env::var("OMP_DISCORD_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }) | 1;
    eprintln!("crash test seed: {seed} (replay with OMP_DISCORD_CRASH_SEED={seed})");
    let mut rng = Rng(seed);
    let dir = TestDir::new();
    let emulator = fast_emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let log = dir.path().join("sidecar.log");
    let started = Instant::now();

    // Request id → marker; the ids the sidecar answered `accepted`; every marker sent.
    let mut texts: HashMap<String, String> = HashMap::new();
    let mut accepted: BTreeSet<String> = BTreeSet::new();
    let mut sessions = BTreeSet::new();
    let mut startup = Duration::ZERO;
    for round in 0..ROUNDS {
        // A new session every 8 rounds (its thread gets opened under fire) and one of two long-lived ones.
        let new_session = format!("n{}", round / 8);
        let old_session = format!("o{}", round % 2);
        let fault = match rng.below(10) {
            // Only the new session's thread can still be opening: the point's first pass is the one.
            _ if round % 8 < 3 && rng.below(2) == 0 => Fault::Failpoint(THREAD_POINTS[rng.below(3) as usize], 1),
            0..=4 => Fault::Failpoint(SEND_POINTS[rng.below(3) as usize], 1 + rng.below(2)),
            5..=8 => Fault::Kill(Duration::from_millis(rng.below(150))),
            _ => Fault::None,
        };
        let mut round_env = env.clone();
        if let Fault::Failpoint(point, nth) = fault {
            round_env.push(("OMP_DISCORD_FAILPOINTS".into(), format!("{point}:{nth}")));
        }
        let mut frames = String::new();
        let mut requests = 0;
        for session in [&new_session, &old_session] {
            sessions.insert(session.clone());
            for n in 0..=rng.below(3) as usize {
                let id = format!("{round}-{session}-{n}");
                let text = marker(round, session, n);
                frames.push_str(&encode_frame(&notify(&id, session, &text)));
                texts.insert(id, text);
                requests += 1;
            }
        }
        let spawned = Instant::now();
        let mut child = spawn(&round_env, &log);
        let stream = connect(&mut child, &dir.socket()).await;
        startup += spawned.elapsed();
        if let Some(stream) = stream {
            let until = Instant::now()
                + match fault {
                    Fault::Kill(after) => after,
                    _ => Duration::from_secs(5),
                };
            accepted.extend(burst(stream, &frames, requests, until).await);
        }
        kill_9(&mut child);
    }
    let rounds_took = started.elapsed();
    eprintln!(
        "{ROUNDS} rounds in {rounds_took:.1?} (starting the sidecar: {:.1?} in all); {} of {} notifications accepted",
        startup,
        accepted.len(),
        texts.len()
    );
    // Every failpoint fired at least once (each says so in the log as it kills the process).
    let log_text = std::fs::read_to_string(&log).unwrap();
    let mut fired_in_all = 0;
    for point in SEND_POINTS.iter().chain(THREAD_POINTS) {
        let fired = log_text.matches(&format!("failpoint {point}: killing")).count();
        eprintln!("  {point}: fired {fired} times");
        assert!(fired > 0, "the failpoint {point} never fired");
        fired_in_all += fired;
    }
    // The rest of the rounds ended in kill -9 (about 40% are aimed at a random moment).
    assert!(fired_in_all >= ROUNDS / 4, "the failpoints fired in only {fired_in_all} rounds");
    // Random kills often land before the burst is journaled; a quarter is plenty to prove the point.
    assert!(accepted.len() >= texts.len() / 4, "too few notifications were accepted to prove anything");

    // A last sidecar without faults finishes the journal.
    let mut child = spawn(&env, &log);
    let accepted_texts: Vec<&String> = accepted.iter().map(|id| &texts[id]).collect();
    let finishing = Instant::now();
    loop {
        let shown: BTreeSet<String> = markers_by_thread(&emulator).into_values().flatten().collect();
        let missing: Vec<&&String> = accepted_texts.iter().filter(|t| !shown.contains(**t)).collect();
        if missing.is_empty() {
            break;
        }
        if finishing.elapsed() > Duration::from_secs(60) {
            let conn = rusqlite::Connection::open(dir.home().join(".local/state/omp-discord/outbox.sqlite3")).unwrap();
            let mut rows = conn.prepare("SELECT seq, destination, request_id, state, attempts, batch, message_id FROM outbox WHERE state != 'delivered' OR seq > (SELECT MAX(seq) - 20 FROM outbox)").unwrap();
            let rows: Vec<String> = rows
                .query_map([], |r| {
                    Ok(format!(
                        "{:?}",
                        (
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, Option<i64>>(5)?,
                            r.get::<_, Option<String>>(6)?
                        )
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let tail: String =
                std::fs::read_to_string(&log).unwrap().lines().rev().take(40).collect::<Vec<_>>().join("\n");
            panic!(
                "{} accepted notifications never arrived, e.g. {:?}\nrows: {rows:#?}\nlog (newest first):\n{tail}",
                missing.len(),
                &missing[..missing.len().min(10)]
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = wait_for("an empty outbox", Duration::from_secs(30), || {
        let out = Command::new(sidecar_bin())
            .args(["status", "--json"])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (status["outbox"]["pending"] == 0).then_some(status)
    })
    .await;
    kill_9(&mut child);

    let by_thread = markers_by_thread(&emulator);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (thread, markers) in &by_thread {
        for text in markers {
            *seen.entry(text).or_default() += 1;
        }
        let keys: Vec<_> = markers.iter().map(|t| order_key(t).expect("a marker")).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "thread {thread} is out of order: {markers:?}");
        let owners: BTreeSet<&String> = keys.iter().map(|(session, _, _)| session).collect();
        assert!(owners.len() <= 1, "thread {thread} mixes sessions: {owners:?}");
    }
    for text in &accepted_texts {
        assert_eq!(seen.get(text.as_str()), Some(&1), "{text} is in Discord exactly once");
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "posted twice: {duplicated:?}");
    // One thread per session that got any message out, opened from one starter in the home channel.
    let sessions_shown = by_thread.values().filter(|m| !m.is_empty()).count();
    assert_eq!(sessions_shown, by_thread.len(), "a session has a second, empty thread");
    assert!(by_thread.len() <= sessions.len());
    let starters = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID).len();
    assert_eq!(starters, by_thread.len(), "one starter message per thread in the home channel");
    assert_eq!(status["outbox"]["failed"], 0, "{status}");
    eprintln!("verified in {:.1?} overall", started.elapsed());
}

/// A crash inside the schema migration leaves the old schema (the migration
/// is one transaction); the next start migrates and delivers what the old
/// file had queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_every_migration_step_loses_nothing() {
    let dir = TestDir::new();
    let emulator = fast_emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let state = dir.home().join(".local/state/omp-discord");
    std::fs::create_dir_all(&state).unwrap();
    let db = state.join("outbox.sqlite3");
    {
        // A version-1 file (the first release's schema) with three messages queued.
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(include_str!("fixtures/outbox-v1.sql")).unwrap();
        let home = format!("channel:{DEFAULT_HOME_CHANNEL_ID}");
        for n in 0..3 {
            let payload = omp_discord_core::embed::build_notification(
                &omp_discord_core::embed::Notification {
                    message: format!("queued before the upgrade #{n}"),
                    ..Default::default()
                },
                "p",
            );
            conn.execute(
                "INSERT INTO outbox (destination, session_id, request_id, payload, nonce, created_ms)
                 VALUES (?1, 's', ?2, ?3, ?4, 0)",
                rusqlite::params![
                    home,
                    format!("r{n}"),
                    serde_json::to_string(&payload).unwrap(),
                    format!("{}", 4242 + n)
                ],
            )
            .unwrap();
        }
        conn.pragma_update(None, "user_version", 1).unwrap();
    }
    let log = dir.path().join("sidecar.log");
    let version = || -> i64 {
        rusqlite::Connection::open(&db).unwrap().pragma_query_value(None, "user_version", |r| r.get(0)).unwrap()
    };
    // Migrations 2..=9 run after the file's version 1: die in each of them in turn.
    for step in 1..=8 {
        let mut failing = env.clone();
        failing.push(("OMP_DISCORD_FAILPOINTS".into(), format!("during_migration:{step}")));
        let mut child = spawn(&failing, &log);
        let status =
            wait_for("the sidecar to die in the migration", Duration::from_secs(10), || child.try_wait().unwrap())
                .await;
        assert!(!status.success(), "step {step}: {status:?}");
        assert_eq!(version(), 1, "a half-done migration was committed at step {step}");
    }
    let mut child = spawn(&env, &log);
    wait_for("the queued messages", Duration::from_secs(30), || {
        let texts: Vec<String> = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID)
            .iter()
            .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["description"].as_str().map(str::to_owned))
            .collect();
        (texts.len() >= 3).then_some(texts)
    })
    .await;
    kill_9(&mut child);
    let texts: Vec<String> = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID)
        .iter()
        .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["description"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(texts, (0..3).map(|n| format!("queued before the upgrade #{n}")).collect::<Vec<_>>());
    assert!(version() > 1, "migrated");
}

/// A sidecar killed after Discord posted a message but before it recorded
/// that, restarted after Discord forgot the nonce (a long outage, a laptop
/// asleep): the next one finds the message among the channel's newest and
/// does not post it again. The emulator's nonce window is cut to nothing to
/// stand for the hours between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_posted_just_before_a_crash_is_found_not_posted_again_after_its_nonce_expired() {
    let dir = TestDir::new();
    let config = EmulatorConfig { nonce_window: Duration::ZERO, ..EmulatorConfig::default() };
    let emulator = Emulator::start(config).await.unwrap();
    let env = sidecar_env(&dir, Some(&emulator));
    let log = dir.path().join("sidecar.log");
    let mut failing = env.clone();
    failing.push(("OMP_DISCORD_FAILPOINTS".into(), "after_send_before_mark:1".into()));
    let mut child = spawn(&failing, &log);
    let stream = connect(&mut child, &dir.socket()).await.expect("the sidecar listens");
    let mut frame = notify("late-1", "outage", "posted before the crash");
    if let ClientFrame::Notify(request) = &mut frame {
        request.channel_id = Some(DEFAULT_HOME_CHANNEL_ID.to_string());
    }
    burst(stream, &encode_frame(&frame), 1, Instant::now() + Duration::from_secs(10)).await;
    assert!(child.wait().unwrap().code().is_none(), "the failpoint killed it");
    let posted = |emulator: &Emulator| {
        thread_messages(emulator, DEFAULT_HOME_CHANNEL_ID)
            .iter()
            .filter(|m| m.to_string().contains("posted before the crash"))
            .count()
    };
    assert_eq!(posted(&emulator), 1, "Discord has it; the journal does not know");

    let mut child = spawn(&env, &log);
    let log_text = wait_for("the replay to find the message", Duration::from_secs(20), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("found the message posted before").then_some(text)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    kill_9(&mut child);
    assert_eq!(posted(&emulator), 1, "posted once: {log_text}");
    let journal = rusqlite::Connection::open(dir.home().join(".local/state/omp-discord/outbox.sqlite3")).unwrap();
    let state: String = journal.query_row("SELECT state FROM outbox", [], |r| r.get(0)).unwrap();
    assert_eq!(state, "delivered");
}
