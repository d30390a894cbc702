//! Discord misbehaving, through the emulator's faults API: a 5xx storm
//! during a burst, a stalled REST endpoint, and a token revoked
//! mid-run. Whatever happens, every accepted message arrives exactly once,
//! in order per thread, and the sidecar does not hammer Discord.

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
async fn a_5xx_storm_during_a_burst_delivers_everything_once_in_order() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let thread = open_thread(&mut client, "storm-5xx").await;

    // Half of all message creates fail with a 5xx, for the whole burst.
    let storm = json!({"http": [
        {"status": 503, "fraction": 0.3, "method": "POST", "path_prefix": "/channels"},
        {"status": 500, "fraction": 0.2, "method": "POST", "path_prefix": "/channels"},
        {"status": 502, "count": 3, "method": "POST", "path_prefix": "/channels"}
    ]});
    emulator_post(&emulator, "/_emulator/faults", &storm).await;
    let texts = burst(&mut client, "storm-5xx", "5xx", 40).await;
    await_deliveries(&mut client, &emulator, &texts).await;
    assert_exactly_once_in_order(&emulator, &thread, &texts);
    let creates = creates_in(&emulator, &thread);
    let failed = creates.iter().filter(|r| r["status"].as_u64().unwrap() >= 500).count();
    assert!(failed >= 3, "the storm happened: {failed} failures");
    // Bounded: with half the requests failing, the expected number of attempts is
    // twice the messages; ten times would mean retries without backoff or cap.
    let ok = creates.len() - failed;
    assert!(creates.len() <= 10 * ok, "{} creates for {ok} messages", creates.len());
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_storm_during_a_burst_delivers_everything_once_in_order_without_hammering() {
    storm_of_429s(json!({})).await;
}

/// A global 429 and one with no rate-limit headers at all (as Cloudflare sends):
/// twilight retries those at once by itself, so the sidecar must pace them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn global_and_header_less_429_storms_are_paced_too() {
    storm_of_429s(json!({"global": true})).await;
    storm_of_429s(json!({"scope": "none"})).await;
}

/// Every message create is a 429 (the rule `kind` added to it) while 30
/// notifications wait; then the storm ends and all of them arrive once, in order.
async fn storm_of_429s(kind: Value) {
    const RETRY_AFTER: f64 = 0.5;
    let dir = TestDir::new();
    let emulator = emulator().await;
    let sidecar = Sidecar::start(&dir, &sidecar_env(&dir, Some(&emulator))).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let thread = open_thread(&mut client, "storm-429").await;

    // Every message create is a 429 until the storm is lifted.
    let before = creates_in(&emulator, &thread).len();
    let mut rule = json!({"status": 429, "method": "POST", "path_prefix": "/channels", "retry_after": RETRY_AFTER});
    rule.as_object_mut().unwrap().extend(kind.as_object().unwrap().clone());
    let storm = json!({ "http": rule });
    emulator_post(&emulator, "/_emulator/faults", &storm).await;
    let started = Instant::now();
    let texts = burst(&mut client, "storm-429", "rl", 30).await;
    wait_for("a few 429s", Duration::from_secs(60), || {
        (creates_in(&emulator, &thread).iter().filter(|r| r["status"] == 429).count() >= 3).then_some(())
    })
    .await;
    let (status, _) = emulator_request(&emulator, "DELETE", "/_emulator/faults", None, None).await;
    assert_eq!(status, 204);
    let storm_secs = started.elapsed().as_secs_f64();
    let limited = creates_in(&emulator, &thread)[before..].iter().filter(|r| r["status"] == 429).count();
    // Honouring retry_after allows one attempt per window (plus the first); a client that
    // ignores it makes hundreds in the same time. A slower machine only lowers the count.
    let bound = (storm_secs / RETRY_AFTER).ceil() as usize + 2;
    assert!(
        limited <= bound,
        "{kind}: {limited} requests answered 429 in {storm_secs:.1} s with retry_after {RETRY_AFTER} s"
    );

    await_deliveries(&mut client, &emulator, &texts).await;
    assert_exactly_once_in_order(&emulator, &thread, &texts);

    // status counts the 429s, and the pause is over.
    let ServerFrame::Status { status, .. } = client.call(&ClientFrame::Status { id: "st".into() }).await else {
        panic!("no status")
    };
    let limits = &status["rate_limits"];
    assert!(limits["rate_limited"].as_u64().is_some_and(|n| n >= 3), "{limits}");
    assert_eq!(limits["paused_ms"], 0, "{limits}");
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
/// spinning, and once Discord answers properly every message is there exactly
/// once and in order (the creates that did happen are returned by their nonce).
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
    // Let it sit long enough for a second round of tries.
    wait_for("a rest and another try", Duration::from_secs(30), || {
        (creates_in(emulator, thread).len() - before >= 6).then_some(())
    })
    .await;
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
    assert_eq!(broken, tries, "{mode}: every create during the fault was broken");
    let (status, _) = emulator_request(emulator, "DELETE", "/_emulator/faults", None, None).await;
    assert_eq!(status, 204);
    await_deliveries(client, emulator, &texts).await;
    assert_exactly_once_in_order(emulator, thread, &texts);
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
