//! Exactly once across the socket: a client keeps 50 notifications in flight
//! while the real sidecar is killed with -9 at random moments (every fourth
//! time right after journaling one, by its failpoint), and sends
//! every notification it has no `accepted` for again, under the same
//! idempotency key, to the next sidecar. Some of those were journaled before
//! the kill (the client just never read `accepted`): the journal must answer
//! them, not post them twice. In the bot mode and in the webhook-only mode.
//!
//! Randomized: the seed is printed; `OMP_DISCORD_CRASH_SEED=<n>` replays a run.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use omp_discord_core::protocol::{
    ClientFrame, Hello, PROTOCOL_VERSION, ServerFrame, decode_server_frame, encode_frame,
};
use omp_discord_emulator::Emulator;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::crash::{Rng, connect, fast_emulator, kill_9, spawn};
use crate::hostile::notify;
use crate::util::{TestDir, sidecar_env, wait_for};
use crate::webhook::webhook_env;

/// Notifications in all.
const NOTIFICATIONS: usize = 300;
/// Sidecars killed with -9 while notifications are in flight.
const KILLS: usize = 20;
/// Notifications the client keeps in flight (sent, no `accepted` yet).
const WINDOW: usize = 50;

fn text(n: usize) -> String {
    format!("once #{n:03}")
}

/// How often each notification's text shows in Discord now (messages as they
/// are stored, in every channel and thread; a resend Discord deduplicated by
/// nonce is not a second message).
fn shown(emulator: &Emulator) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let snapshot = emulator.state().snapshot();
    for messages in snapshot["messages"].as_object().expect("messages by channel").values() {
        for message in messages.as_array().into_iter().flatten() {
            for embed in message["embeds"].as_array().into_iter().flatten() {
                if let Some(text) = embed["description"].as_str().filter(|t| t.starts_with("once #")) {
                    *seen.entry(text.to_owned()).or_default() += 1;
                }
            }
        }
    }
    seen
}

/// Runs the client against sidecars started with `env`, killing one at a
/// random moment after each burst, until every notification is accepted and
/// `KILLS` sidecars died with notifications in flight; then checks that the
/// journal holds each notification once and Discord shows every one.
async fn run(dir: &TestDir, env: &[(String, String)], emulator: &Emulator, seed: u64) -> Outcome {
    let mut rng = Rng(seed);
    let log = dir.path().join("sidecar.log");
    // Notification index → its idempotency key; those without `accepted` yet, in order.
    let keys: Vec<String> = (0..NOTIFICATIONS).map(|n| format!("{seed:x}-{n}")).collect();
    let mut unconfirmed: BTreeMap<usize, ()> = BTreeMap::new();
    let mut made = 0;
    let mut kills = 0;
    let mut attempt = 0;
    while made < NOTIFICATIONS || !unconfirmed.is_empty() || kills < KILLS {
        attempt += 1;
        assert!(attempt < 200, "no progress after 200 sidecars: {made} made, {} unconfirmed", unconfirmed.len());
        // Fill the window: everything unconfirmed again (same keys, new request ids), then new ones.
        while unconfirmed.len() < WINDOW && made < NOTIFICATIONS {
            unconfirmed.insert(made, ());
            made += 1;
        }
        let in_flight = !unconfirmed.is_empty();
        // Every fourth death is certain to fall between journaling a notification and its
        // `accepted` (the failpoint kills the sidecar there); the others come at random.
        let at_failpoint = kills < KILLS && in_flight && kills % 4 == 0;
        let mut round_env = env.to_vec();
        if at_failpoint {
            let nth = 1 + rng.below(unconfirmed.len() as u64);
            round_env.push(("OMP_DISCORD_FAILPOINTS".into(), format!("after_journal:{nth}")));
        }
        let mut child = spawn(&round_env, &log);
        let Some(stream) = connect(&mut child, &dir.socket()).await else { continue };
        let hello = ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: "exactly-once-test/0".into(),
            pid: std::process::id(),
            host: "test".into(),
        });
        let mut burst = encode_frame(&hello);
        let mut by_request: HashMap<String, usize> = HashMap::new();
        for &n in unconfirmed.keys() {
            let id = format!("a{attempt}-{n}");
            let ClientFrame::Notify(mut request) = notify(&id, &format!("s{}", n % 3), &text(n)) else {
                unreachable!()
            };
            request.idempotency_key = Some(keys[n].clone());
            burst.push_str(&encode_frame(&ClientFrame::Notify(request)));
            by_request.insert(id, n);
        }
        let (read, mut write) = stream.into_split();
        if write.write_all(burst.as_bytes()).await.is_err() {
            kill_9(&mut child);
            continue;
        }
        // Killed a random moment after the burst was written, mid-journal or mid-answer.
        let kill_at = if kills < KILLS && in_flight && !at_failpoint {
            Instant::now() + Duration::from_millis(rng.below(25))
        } else {
            Instant::now() + Duration::from_secs(10)
        };
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        while !unconfirmed.is_empty() {
            line.clear();
            match tokio::time::timeout_at(kill_at.into(), reader.read_line(&mut line)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
            match decode_server_frame(line.as_bytes()) {
                Ok(ServerFrame::Accepted { id, .. }) => {
                    if let Some(n) = by_request.get(&id) {
                        unconfirmed.remove(n);
                    }
                }
                Ok(ServerFrame::Error { code, message, .. }) => {
                    // After `accepted`, "unavailable" only means Discord has not confirmed yet.
                    assert_eq!(code.as_str(), "discord_unavailable", "{message}");
                }
                Ok(_) => {}
                Err(err) => panic!("a bad frame from the sidecar: {err}: {line}"),
            }
        }
        if kills < KILLS && in_flight {
            kills += 1;
        }
        kill_9(&mut child);
    }
    eprintln!("{NOTIFICATIONS} notifications through {attempt} sidecars, {kills} killed mid-flight");

    // A last sidecar without faults finishes the journal.
    let mut child = spawn(env, &log);
    let everything = wait_for("every notification in Discord", Duration::from_secs(90), || {
        let seen = shown(emulator);
        (seen.len() == NOTIFICATIONS).then_some(seen)
    })
    .await;
    // Anything still in flight would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(everything, shown(emulator));
    kill_9(&mut child);

    // The journal holds each notification once, however often it was sent.
    let journal = rusqlite::Connection::open(dir.home().join(".local/state/omp-discord/outbox.sqlite3")).unwrap();
    let mut rows = journal.prepare("SELECT idempotency_key, attempts FROM outbox").unwrap();
    let attempts: HashMap<String, i64> =
        rows.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    assert_eq!(attempts.len(), NOTIFICATIONS, "one journal row per notification");
    let answered = std::fs::read_to_string(&log).unwrap().matches("was sent again; answered, not journaled").count();
    eprintln!("the journal answered {answered} resends of notifications it held already");
    // The point of the test: some resends were of notifications journaled before the kill.
    assert!(answered > 0, "no kill fell between journaling and `accepted`; the test proved nothing");
    Outcome { shown: everything, attempts: (0..NOTIFICATIONS).map(|n| attempts[&keys[n]]).collect() }
}

/// What Discord shows in the end, and how often each notification's row was sent.
struct Outcome {
    shown: HashMap<String, usize>,
    attempts: Vec<i64>,
}

fn seed() -> u64 {
    let seed = std::env::var("OMP_DISCORD_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    }) | 1;
    eprintln!("seed: {seed} (replay with OMP_DISCORD_CRASH_SEED={seed})");
    seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_in_flight_across_twenty_kills_post_each_notification_once_with_a_bot() {
    let dir = TestDir::new();
    let emulator = fast_emulator().await;
    let outcome = run(&dir, &sidecar_env(&dir, Some(&emulator)), &emulator, seed()).await;
    // A row sent again after a kill between Discord's answer and its record carries its
    // nonce: Discord returns the first message. So nothing at all is posted twice.
    let twice: Vec<_> = outcome.shown.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "posted more than once: {twice:?}");
}

/// Webhooks take no nonce, so one seam stays open in this mode: a sidecar
/// killed after Discord posted a message but before it recorded that sends it
/// again. The socket's seam is closed as in the bot mode: a message shows twice
/// only if its own journal row was sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_in_flight_across_twenty_kills_post_each_notification_once_through_a_webhook() {
    let dir = TestDir::new();
    let emulator = fast_emulator().await;
    let (env, _) = webhook_env(&dir, &emulator).await;
    let outcome = run(&dir, &env, &emulator, seed()).await;
    let mut resent = 0;
    for n in 0..NOTIFICATIONS {
        let times = outcome.shown[&text(n)];
        let sends = outcome.attempts[n];
        assert!(times as i64 <= sends, "{} shows {times} times, but its row was sent {sends} times", text(n));
        resent += usize::from(times > 1);
    }
    eprintln!("{resent} of {NOTIFICATIONS} shown twice: resent after a kill between Discord's answer and its record");
}
