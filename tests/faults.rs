//! Discord misbehaving, through the emulator's faults API: 30-second storms
//! of 429s (bucket, global, header-less) and of 5xx while sessions keep
//! notifying, a stalled REST endpoint, broken answers, and a token revoked
//! mid-run. Whatever happens, every accepted message arrives exactly once,
//! in order per thread, and the sidecar does not hammer Discord.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use omp_discord_core::protocol::{ClientFrame, ServerFrame, encode_frame};
use serde_json::{Value, json};

use crate::hostile::{delivered_texts, notify};
use crate::util::{
    Client, Sidecar, TestDir, emulator, emulator_post, emulator_request, sidecar_bin, sidecar_env, wait_for,
};

/// How long one answer may take while Discord misbehaves (the sidecar rests up to 30 s between tries).
const LONG: Duration = Duration::from_secs(90);

fn requests(emulator: &omp_discord_emulator::Emulator) -> Vec<Value> {
    emulator.requests().into_iter().map(|r| serde_json::to_value(r).unwrap()).collect()
}

/// Recorded message creates (any status) in one channel, in order.
fn creates_in(emulator: &omp_discord_emulator::Emulator, channel: &str) -> Vec<Value> {
    let path = format!("/channels/{channel}/messages");
    requests(emulator)
        .into_iter()
        .filter(|r| r["method"] == "POST" && r["path"].as_str().unwrap().ends_with(&path))
        .collect()
}

/// The descriptions of a thread's messages as posted, in posting order.
fn thread_texts(emulator: &omp_discord_emulator::Emulator, thread: &str) -> Vec<String> {
    let mut ids = std::collections::HashSet::new();
    creates_in(emulator, thread)
        .into_iter()
        // A malformed answer (an injected fault) is recorded as text: its message shows up in the retry.
        .filter(|r| r["status"] == 200 && r["response"].is_object() && ids.insert(r["response"]["id"].clone()))
        .flat_map(|r| {
            r["response"]["embeds"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|e| e["description"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Opens the session's thread with a first message and returns the thread id.
async fn open_thread(client: &mut Client, session: &str) -> String {
    let (_, answer) = client.notify(&notify("open", session, "thread opened")).await;
    match answer {
        ServerFrame::Delivered { channel_id, .. } => channel_id,
        other => panic!("the thread did not open: {other:?}"),
    }
}

/// Sends `count` notifies for `session` in one write, without waiting.
async fn burst(client: &mut Client, session: &str, prefix: &str, count: usize) -> Vec<String> {
    let texts: Vec<String> = (0..count).map(|n| format!("{prefix} #{n:03}")).collect();
    let frames: String = texts
        .iter()
        .enumerate()
        .map(|(n, text)| encode_frame(&notify(&format!("{prefix}{n}"), session, text)))
        .collect();
    client.send_raw(frames.as_bytes()).await;
    texts
}

/// Reads one final answer per request of the burst (delivered, or "Discord is
/// unavailable, the message stays queued"), then waits until the emulator has
/// every text: a postponed message is delivered later without another answer.
async fn await_deliveries(client: &mut Client, emulator: &omp_discord_emulator::Emulator, texts: &[String]) {
    let (mut accepted, mut answered) = (0, 0);
    while answered < texts.len() {
        match client.read_within(LONG).await.expect("the connection stays open") {
            ServerFrame::Accepted { .. } => accepted += 1,
            ServerFrame::Delivered { .. }
            | ServerFrame::Error { code: omp_discord_core::protocol::ErrorCode::DiscordUnavailable, .. } => {
                answered += 1;
            }
            other => panic!("unexpected answer: {other:?}"),
        }
    }
    assert_eq!(accepted, texts.len());
    wait_for("every queued message to arrive", Duration::from_secs(180), || {
        let seen = delivered_texts(emulator);
        texts.iter().all(|t| seen.contains_key(t)).then_some(())
    })
    .await;
}

fn assert_exactly_once_in_order(emulator: &omp_discord_emulator::Emulator, thread: &str, texts: &[String]) {
    let seen = delivered_texts(emulator);
    for text in texts {
        assert_eq!(seen.get(text), Some(&1), "{text} delivered exactly once");
    }
    let posted: Vec<String> = thread_texts(emulator, thread).into_iter().filter(|t| texts.contains(t)).collect();
    assert_eq!(posted, texts, "in order within the thread");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_rest_endpoint_times_out_and_the_message_is_retried_once_it_answers() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let thread = open_thread(&mut client, "stall").await;

    // Discord stops answering for longer than the per-attempt deadline.
    emulator_post(&emulator, "/_emulator/faults", &json!({"latency_ms": 60_000})).await;
    let (seq, _) = {
        client.send_raw(encode_frame(&notify("late", "stall", "sent during the stall")).as_bytes()).await;
        let accepted = client.read_within(LONG).await.expect("accepted");
        let ServerFrame::Accepted { seq, .. } = accepted else { panic!("{accepted:?}") };
        (seq, ())
    };
    assert!(seq > 0);
    // The deadline fires and the sidecar says so (in its log) and retries.
    wait_for("a timed-out attempt", Duration::from_secs(60), || {
        sidecar.log().contains("the request timed out").then_some(())
    })
    .await;
    assert!(!delivered_texts(&emulator).contains_key("sent during the stall"));
    emulator.state().set_faults(&json!({"latency_ms": 0})).unwrap();
    wait_for("the retried message", Duration::from_secs(120), || {
        delivered_texts(&emulator).contains_key("sent during the stall").then_some(())
    })
    .await;
    assert_exactly_once_in_order(&emulator, &thread, &["sent during the stall".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_mid_run_stops_the_destination_shows_in_status_and_does_not_hammer() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let thread = open_thread(&mut client, "revoked").await;

    emulator_post(&emulator, "/_emulator/faults", &json!({"revoke_token": true})).await;
    let revoked_at = Instant::now();
    let before = requests(&emulator).len();
    let texts = burst(&mut client, "revoked", "401", 5).await;
    // Each request hears why its message waits.
    let mut unavailable = 0;
    while unavailable < 5 {
        match client.read_within(LONG).await.expect("an answer") {
            ServerFrame::Accepted { .. } => {}
            ServerFrame::Error { message, .. } => {
                assert!(message.contains("401") && message.contains("stays queued"), "{message}");
                unavailable += 1;
            }
            other => panic!("nothing can be delivered with a revoked token: {other:?}"),
        }
    }
    // `omp-discord status` names the problem.
    let status = std::process::Command::new(sidecar_bin())
        .arg("status")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("refused the bot token (HTTP 401)"), "{text}");
    assert!(text.contains("5 waiting"), "the queue shows the waiting messages: {text}");

    // No hammering: let it sit for a while, then count what reached Discord. Resting
    // with backoff from 1 s allows a handful; retrying at once would be hundreds.
    wait_for("a few retries", Duration::from_secs(60), || {
        let unauthorized = requests(&emulator)[before..].iter().filter(|r| r["status"] == 401).count();
        (unauthorized >= 3).then_some(())
    })
    .await;
    let secs = revoked_at.elapsed().as_secs_f64();
    let unauthorized = requests(&emulator)[before..].iter().filter(|r| r["status"] == 401).count();
    // Backoff 1, 2, 4 … s: at most log2(secs) + a few rests, each one request.
    let bound = (secs.log2().ceil() as usize) + 4;
    assert!(unauthorized <= bound, "{unauthorized} requests with a revoked token in {secs:.1} s");
    assert!(delivered_texts(&emulator).keys().all(|t| !t.starts_with("401 #")));

    // The token is fixed (reset on the portal): everything queued arrives, once, in order.
    emulator.state().set_faults(&json!({"revoke_token": false})).unwrap();
    wait_for("the queued messages to arrive", Duration::from_secs(120), || {
        let seen = delivered_texts(&emulator);
        texts.iter().all(|t| seen.contains_key(t)).then_some(())
    })
    .await;
    assert_exactly_once_in_order(&emulator, &thread, &texts);
}
/// `omp-discord status --json` of the sidecar `env` points at.
fn status_json(env: &[(String, String)]) -> Value {
    let out = std::process::Command::new(sidecar_bin())
        .args(["status", "--json"])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("status --json: {}", String::from_utf8_lossy(&out.stderr)))
}

/// One broken-answer fault for every message create, held until cleared: the
/// sidecar says what is wrong in `status`, rests between tries instead of
/// spinning (its retries carry the nonce, so Discord returns the message it
/// created), and after a rest finds each message Discord did create among
/// the thread's newest: every one is there exactly once and in order, before
/// the fault ends.
async fn broken_answers_phase(
    emulator: &omp_discord_emulator::Emulator,
    env: &[(String, String)],
    client: &mut Client,
    thread: &str,
    mode: &str,
    expected_error: &str,
) {
    let rule = json!({"http": {"mode": mode, "method": "POST", "path_prefix": format!("/channels/{thread}/messages")}});
    emulator_post(emulator, "/_emulator/faults", &rule).await;
    let started = Instant::now();
    let before = creates_in(emulator, thread).len();
    let texts = burst(client, "broken", mode, 6).await;
    let status = wait_for("status to name the fault", Duration::from_secs(30), || {
        let status = status_json(env);
        status["last_error"].as_str().is_some_and(|e| e.contains(expected_error)).then_some(status)
    })
    .await;
    assert!(status["queue"]["depth"].as_i64().unwrap() >= 1, "{status}");
    // Discord created each message before its answer broke: after a rest, the sidecar finds
    // them among the thread's newest and records them, while the fault lasts, posting nothing twice.
    let thread_id: u64 = thread.parse().unwrap();
    let stored = || -> Vec<String> {
        crate::util::thread_messages(emulator, thread_id)
            .iter()
            .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default())
            .filter_map(|e| e["description"].as_str().map(str::to_owned))
            .filter(|text| texts.contains(text))
            .collect()
    };
    // Each is accepted, then answered: "stays queued" while its answers break, or delivered once found.
    let mut answered = 0;
    while answered < 2 * texts.len() {
        match client.read_within(LONG).await.expect("the connection stays open") {
            ServerFrame::Accepted { .. }
            | ServerFrame::Delivered { .. }
            | ServerFrame::Error { code: omp_discord_core::protocol::ErrorCode::DiscordUnavailable, .. } => {
                answered += 1;
            }
            other => panic!("unexpected answer: {other:?}"),
        }
    }
    // Only finding them empties the queue: every create still breaks.
    wait_for("the messages found and recorded during the fault", Duration::from_secs(60), || {
        (status_json(env)["queue"]["depth"] == 0).then_some(())
    })
    .await;
    assert_eq!(stored(), texts, "{mode}: each message once, in order");
    let secs = started.elapsed().as_secs_f64();
    let tries = creates_in(emulator, thread).len() - before;
    // Four attempts per try, and rests of 1, 2, 4 … s between tries.
    let bound = 4 * (secs.log2().max(0.0).ceil() as usize + 3);
    assert!(tries <= bound, "{mode}: {tries} creates in {secs:.1} s: the sidecar spins");
    // The fault did what it says on the wire: a 200 whose body is not JSON, or no answer at all.
    let broken = creates_in(emulator, thread)[before..]
        .iter()
        .filter(|r| match mode {
            "malformed" => r["status"] == 200 && r["response"].is_string(),
            _ => r["status"] == 0,
        })
        .count();
    // (A 429 from the channel's 5-per-5-s bucket creates nothing and is no broken answer: the
    // broken answers carry rate-limit headers twilight cannot always read.)
    let statuses: Vec<_> = creates_in(emulator, thread)[before..].iter().map(|r| r["status"].clone()).collect();
    let limited = statuses.iter().filter(|status| **status == 429).count();
    assert_eq!(broken + limited, tries, "{mode}: every create during the fault was broken: {statuses:?}");
    let (status, _) = emulator_request(emulator, "DELETE", "/_emulator/faults", None, None).await;
    assert_eq!(status, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_dropped_and_stalled_answers_lose_nothing_show_in_status_and_do_not_spin() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let thread = open_thread(&mut client, "broken").await;

    // 200 with half a body: the message was created, the answer cannot be read.
    broken_answers_phase(&emulator, &env, &mut client, &thread, "malformed", "could not be read").await;
    // The connection closes after the message was created, without an answer.
    broken_answers_phase(&emulator, &env, &mut client, &thread, "drop", "connection to Discord failed").await;

    // One create hangs past the per-attempt deadline; the next attempt goes through.
    let rule = json!({"http": {"mode": "stall", "count": 1, "stall_ms": 30_000, "method": "POST",
                               "path_prefix": format!("/channels/{thread}/messages")}});
    emulator_post(&emulator, "/_emulator/faults", &rule).await;
    let texts = burst(&mut client, "broken", "stall", 3).await;
    await_deliveries(&mut client, &emulator, &texts).await;
    assert_exactly_once_in_order(&emulator, &thread, &texts);
    let stalled = creates_in(&emulator, &thread).iter().filter(|r| r["status"] == 0).count();
    assert!(stalled >= 1, "the stall happened");
    assert!(sidecar.log().contains("the request timed out"), "the log says why it retried");
}

// ---------------------------------------------------------------------------
// 30-second storms
// ---------------------------------------------------------------------------

/// How long each storm lasts (the "a 429/5xx storm injected for 30 s").
const STORM: Duration = Duration::from_secs(30);
/// Sessions notifying all through a storm, each on its own connection and thread.
const STORM_SESSIONS: usize = 3;
/// How often each of them notifies.
const NOTIFY_EVERY: Duration = Duration::from_millis(250);
/// The sidecar's pacing (src/discord/request.rs, src/serve/mod.rs), which the
/// bounds below follow: a request gets `MAX_ATTEMPTS` tries (5xx, timeouts)
/// before its destination rests; rests, and the pause every request waits
/// out after a 429, start at 1 s and double up to 30 s.
const MAX_ATTEMPTS: usize = 4;
const FIRST_PAUSE_SECS: f64 = 1.0;
const MAX_PAUSE_SECS: f64 = 30.0;
/// Discord's ban threshold: 10,000 invalid requests (401, 403, 429) in 10 minutes.
const BAN_THRESHOLD: u64 = 10_000;

/// The kinds of storm, each its own test; they run at the same time (see [`storm_outcome`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Storm {
    /// A route's bucket ran out (`x-ratelimit-scope: user`, with bucket headers).
    Bucket429,
    /// The global limit (`x-ratelimit-global`).
    Global429,
    /// A 429 without any rate-limit header, as Cloudflare sends.
    HeaderLess429,
    /// 500, 502 and 503 answers.
    ServerErrors,
}

impl Storm {
    const ALL: [Storm; 4] = [Storm::Bucket429, Storm::Global429, Storm::HeaderLess429, Storm::ServerErrors];

    /// The emulator's fault rules: every POST under /channels (message creates, edits are
    /// PATCH) fails this way until the rules are lifted.
    fn rules(self) -> Value {
        let limited = |extra: Value| {
            let mut rule = json!({"status": 429, "method": "POST", "path_prefix": "/channels", "retry_after": 1.0});
            rule.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            json!({ "http": [rule] })
        };
        match self {
            Storm::Bucket429 => limited(json!({})),
            Storm::Global429 => limited(json!({"global": true})),
            Storm::HeaderLess429 => limited(json!({"scope": "none"})),
            Storm::ServerErrors => json!({"http": [
                {"status": 503, "fraction": 0.5, "method": "POST", "path_prefix": "/channels"},
                {"status": 500, "fraction": 0.5, "method": "POST", "path_prefix": "/channels"},
                {"status": 502, "method": "POST", "path_prefix": "/channels"}
            ]}),
        }
    }

    fn is_429(self) -> bool {
        self != Storm::ServerErrors
    }
}

/// How many times a destination can be released within `secs` when each failure
/// makes it wait at least 1 s, 2 s, 4 s … (at most 30 s) before its next request.
fn releases_within(secs: f64) -> usize {
    let (mut at, mut pause, mut releases) = (0.0, FIRST_PAUSE_SECS, 0);
    while at <= secs {
        releases += 1;
        at += pause;
        pause = (pause * 2.0).min(MAX_PAUSE_SECS);
    }
    releases
}

/// The most requests the sidecar may make during a storm of `secs` with
/// `destinations` busy. A 429 pauses every request of the client (1 s, then
/// doubled each time the first requests after a pause meet a 429 again), so each release lets each destination send at
/// most one request. A 5xx makes a destination rest (1 s, doubled per failed
/// try), so each release lets it send one try of up to `MAX_ATTEMPTS`. One
/// release more covers requests already on their way when the storm began.
fn storm_request_bound(storm: Storm, secs: f64, destinations: usize) -> usize {
    let per_release = if storm.is_429() { 1 } else { MAX_ATTEMPTS };
    destinations * per_release * (releases_within(secs) + 1)
}

/// One session's part in a storm: notifies every [`NOTIFY_EVERY`] until
/// `until`, reading each acceptance as it goes, then reads the final answer
/// of every request (delivered, or "stays queued" — delivered later).
async fn keep_notifying(mut client: Client, session: String, prefix: String, until: Instant) -> Vec<String> {
    use omp_discord_core::protocol::ErrorCode;
    let mut texts = Vec::new();
    let mut answered = 0;
    let answer = |frame: ServerFrame, answered: &mut usize| match frame {
        ServerFrame::Accepted { .. } => true,
        ServerFrame::Delivered { .. } | ServerFrame::Error { code: ErrorCode::DiscordUnavailable, .. } => {
            *answered += 1;
            false
        }
        other => panic!("{session}: unexpected answer during the storm: {other:?}"),
    };
    while Instant::now() < until {
        let text = format!("{prefix} #{:03}", texts.len());
        let frame = notify(&format!("{prefix}{}", texts.len()), &session, &text);
        client.send_raw(encode_frame(&frame).as_bytes()).await;
        texts.push(text);
        // Answers of earlier requests may come first; the acceptance follows at once.
        while !answer(client.read_within(LONG).await.expect("the connection stays open"), &mut answered) {}
        tokio::time::sleep(NOTIFY_EVERY).await;
    }
    while answered < texts.len() {
        let frame = client.read_within(Duration::from_secs(120)).await.expect("the connection stays open");
        assert!(!answer(frame, &mut answered), "every request was accepted once");
    }
    texts
}

/// Runs one storm end to end and returns what was measured, or panics with what went wrong.
async fn run_storm(storm: Storm) -> String {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let mut sessions = Vec::new();
    for n in 0..STORM_SESSIONS {
        let session = format!("storm-{n}");
        let mut client = Client::greeted(&sidecar.socket).await;
        let thread = open_thread(&mut client, &session).await;
        sessions.push((session, client, thread));
    }

    emulator_post(&emulator, "/_emulator/faults", &storm.rules()).await;
    let started_ms = unix_ms();
    let started = Instant::now();
    let until = started + STORM;
    let senders: Vec<_> = sessions
        .into_iter()
        .map(|(session, client, thread)| {
            let prefix = format!("{storm:?} {session}");
            (thread, tokio::spawn(keep_notifying(client, session, prefix, until)))
        })
        .collect();
    tokio::time::sleep_until(until.into()).await;
    let (status, _) = emulator_request(&emulator, "DELETE", "/_emulator/faults", None, None).await;
    assert_eq!(status, 204);
    let cleared_ms = unix_ms();
    let storm_secs = started.elapsed().as_secs_f64();

    let mut all_texts = Vec::new();
    for (thread, sender) in senders {
        let texts = sender.await.expect("a session's sender");
        all_texts.push((thread, texts));
    }
    wait_for("every notification to arrive", Duration::from_secs(180), || {
        let seen = delivered_texts(&emulator);
        all_texts.iter().flat_map(|(_, texts)| texts).all(|t| seen.contains_key(t)).then_some(())
    })
    .await;
    let drained_secs = started.elapsed().as_secs_f64() - storm_secs;
    let sent: usize = all_texts.iter().map(|(_, texts)| texts.len()).sum();
    for (thread, texts) in &all_texts {
        assert_exactly_once_in_order(&emulator, thread, texts);
    }

    let recorded = requests(&emulator);
    let received = |r: &Value| r["received_ms"].as_u64().unwrap();
    // The requests the storm refuses (POSTs under /channels): the start-up's own reads
    // and command registration, which it spares, are not what the pacing bounds.
    let during: Vec<&Value> = recorded
        .iter()
        .filter(|r| (started_ms..=cleared_ms).contains(&received(r)))
        .filter(|r| r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.starts_with("/api/v10/channels")))
        .collect();
    let failed = during.iter().filter(|r| r["status"].as_u64().unwrap() >= 429).count();
    let bound = storm_request_bound(storm, storm_secs, STORM_SESSIONS);
    assert!(failed >= STORM_SESSIONS, "{storm:?}: the storm happened: {failed} failed requests");
    let timeline: Vec<String> = during
        .iter()
        .map(|r| {
            let at = received(r) - started_ms;
            format!("{at} ms {} {} {}", r["status"], r["method"], r["path"])
        })
        .collect();
    assert!(
        during.len() <= bound,
        "{storm:?}: {} requests in a {storm_secs:.1} s storm, more than the pacing allows ({bound}):\n{}",
        during.len(),
        timeline.join("\n")
    );
    // Once the storm is over, the sidecar's own pacing keeps every answer a success.
    let after: Vec<&Value> = recorded.iter().filter(|r| received(r) > cleared_ms).collect();
    let limited_after = after.iter().filter(|r| r["status"] == 429).count();
    assert_eq!(limited_after, 0, "{storm:?}: 429s caused by our own pacing after the storm");

    // Discord's ban counter: 401, 403 and 429 answers in the last 10 minutes (the whole test).
    let (_, state) = emulator_request(&emulator, "GET", "/_emulator/state", None, None).await;
    let invalid = state["rate_limits"]["invalid_requests"].as_u64().expect("the emulator counts invalid requests");
    let invalid_recorded =
        recorded.iter().filter(|r| matches!(r["status"].as_u64(), Some(401 | 403 | 429))).count() as u64;
    assert_eq!(invalid, invalid_recorded, "{storm:?}: the emulator counts what it answered");
    assert!(invalid * 100 <= BAN_THRESHOLD, "{storm:?}: {invalid} invalid requests: not far below the ban threshold");
    // Only the injected 429s count: none of the emulator's own limits was hit, before or after.
    let injected_429s = if storm.is_429() { failed } else { 0 };
    assert_eq!(invalid as usize, injected_429s, "{storm:?}: invalid requests beyond the storm's own");

    // status counted the 429s, and no pause is left.
    let mut client = Client::greeted(&sidecar.socket).await;
    let ServerFrame::Status { status, .. } = client.call(&ClientFrame::Status { id: "st".into() }).await else {
        panic!("no status")
    };
    let limits = &status["rate_limits"];
    if storm.is_429() {
        assert!(limits["rate_limited"].as_u64().is_some_and(|n| n >= 1), "{storm:?}: {limits}");
    }
    assert_eq!(limits["paused_ms"], 0, "{storm:?}: {limits}");
    format!(
        "{storm:?}: {storm_secs:.1} s storm, {sent} notifications from {STORM_SESSIONS} sessions, {} requests \
         during it ({failed} failed; bound {bound}), {} after it ({limited_after} answered 429), drained \
         {drained_secs:.1} s after it, {invalid} invalid requests in 10 min (ban at {BAN_THRESHOLD})",
        during.len(),
        after.len()
    )
}

fn unix_ms() -> u64 {
    u64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

type Outcomes = (std::sync::Mutex<HashMap<Storm, Result<String, String>>>, std::sync::Condvar);

/// The outcome of `storm`. The four storms run at the same time, on a
/// runtime of their own started by whichever storm test comes first, so they
/// add about one storm's length to the suite instead of four, however many
/// test threads the harness runs.
fn storm_outcome(storm: Storm) -> Result<String, String> {
    static STORMS: OnceLock<Arc<Outcomes>> = OnceLock::new();
    let shared = STORMS
        .get_or_init(|| {
            let shared = Arc::new((std::sync::Mutex::new(HashMap::new()), std::sync::Condvar::new()));
            let outcomes = shared.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
                runtime.expect("a runtime").block_on(async {
                    let runs: Vec<_> = Storm::ALL.into_iter().map(|s| (s, tokio::spawn(run_storm(s)))).collect();
                    for (storm, run) in runs {
                        let outcome = run.await.map_err(|err| match err.try_into_panic() {
                            Ok(panic) => panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                                .unwrap_or_else(|| "the storm panicked".to_owned()),
                            Err(err) => err.to_string(),
                        });
                        outcomes.0.lock().unwrap().insert(storm, outcome);
                        outcomes.1.notify_all();
                    }
                });
            });
            shared
        })
        .clone();
    let (lock, ready) = &*shared;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut outcomes = lock.lock().unwrap();
    loop {
        if let Some(outcome) = outcomes.get(&storm) {
            return outcome.clone();
        }
        let left = deadline.checked_duration_since(Instant::now()).expect("the storms finish within 5 minutes");
        outcomes = ready.wait_timeout(outcomes, left).unwrap().0;
    }
}

fn storm_test(storm: Storm) {
    match storm_outcome(storm) {
        Ok(measured) => eprintln!("{measured}"),
        Err(failure) => panic!("{failure}"),
    }
}

/// 30 s of 429s on every message create (a route's bucket) while three sessions keep
/// notifying: nothing lost or doubled, order kept per thread, requests bounded by the
/// pacing, no 429 once it is over, invalid requests far below Discord's ban threshold.
#[test]
fn a_30_s_storm_of_bucket_429s_loses_nothing_and_stays_far_from_a_ban() {
    storm_test(Storm::Bucket429);
}

/// As the bucket storm, with global 429s (twilight would retry those at once by itself).
#[test]
fn a_30_s_storm_of_global_429s_loses_nothing_and_stays_far_from_a_ban() {
    storm_test(Storm::Global429);
}

/// As the bucket storm, with 429s that carry no rate-limit header at all (Cloudflare's).
#[test]
fn a_30_s_storm_of_header_less_429s_loses_nothing_and_stays_far_from_a_ban() {
    storm_test(Storm::HeaderLess429);
}

/// 30 s of 500/502/503 on every message create while three sessions keep notifying:
/// nothing lost or doubled, order kept, tries capped and rested, no 429 afterwards.
#[test]
fn a_30_s_storm_of_5xx_loses_nothing_and_retries_are_bounded() {
    storm_test(Storm::ServerErrors);
}
