//! A long OMP session keeps its Discord while sidecars come and go: the real
//! `omp` (RPC mode, the scripted model) starts its own sidecar, which dies
//! three times with -9, is stopped with `omp-discord stop`, and is frozen
//! with SIGSTOP. After each, the session's next run is reported in its
//! thread through a sidecar the shim started again, and OMP finishes every
//! run within its deadlines. And twenty kills at random moments while runs
//! report: every run is in the thread exactly once.

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};

use crate::util::{
    Plugin, TestDir, emulator, omp_command, process_alive, sidecar_bin, sidecar_env, thread_messages, thread_starts,
    wait_for,
};

/// How a sidecar goes away.
#[derive(Debug, Clone, Copy)]
enum Death {
    Kill,
    Stop,
    Freeze,
}

/// The pid of the sidecar holding the socket (its lock file names it), once one runs.
async fn holder(dir: &TestDir) -> u32 {
    let lock = dir.socket().with_extension("lock");
    wait_for("a running sidecar", Duration::from_secs(30), || {
        let pid: u32 = std::fs::read_to_string(&lock).ok()?.trim().parse().ok()?;
        process_alive(pid).then_some(pid)
    })
    .await
}

fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([signal, &pid.to_string()]).status().unwrap();
    assert!(status.success(), "kill {signal} {pid}");
}

async fn cli(env: &[(String, String)], args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(sidecar_bin())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .await
        .unwrap()
}

/// A long-lived omp (RPC mode, the scripted model echoing each prompt) whose stderr goes to
/// `stderr`, its stdin and event stream, and its session's thread (opened as the session
/// started, through the sidecar the extension started).
async fn rpc_session(
    dir: &TestDir,
    env: &[(String, String)],
    emulator: &omp_discord_emulator::Emulator,
    stderr: Stdio,
) -> (tokio::process::Child, tokio::process::ChildStdin, Lines<BufReader<tokio::process::ChildStdout>>, u64) {
    let script = json!([{ "echo": "heard: " }]);
    let mut omp = omp_command(dir, env, Plugin::Flag, &script, &["--mode", "rpc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("omp starts");
    let stdin = omp.stdin.take().unwrap();
    let events = BufReader::new(omp.stdout.take().unwrap()).lines();
    let thread = wait_for("the session's thread", Duration::from_secs(60), || {
        thread_starts(emulator).first().and_then(|t| t["response"]["id"].as_str()?.parse().ok())
    })
    .await;
    (omp, stdin, events, thread)
}

/// Asks for a run with `prompt`.
async fn prompt(stdin: &mut tokio::process::ChildStdin, prompt: &str) {
    let command = json!({ "type": "prompt", "message": prompt });
    stdin.write_all(format!("{command}\n").as_bytes()).await.unwrap();
}

/// Reads OMP's events until the run ends (within 45 s: OMP is held up at most by its deadlines).
async fn run_end(events: &mut Lines<BufReader<tokio::process::ChildStdout>>, round: usize) {
    loop {
        let line = tokio::time::timeout(Duration::from_secs(45), events.next_line())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the run did not end within 45 s"))
            .unwrap()
            .expect("omp is still running");
        if serde_json::from_str::<Value>(&line).is_ok_and(|event| event["type"] == "agent_end") {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_reporting_across_kills_a_stop_and_a_frozen_sidecar() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let (mut omp, mut stdin, mut events, thread) = rpc_session(&dir, &env, &emulator, Stdio::null()).await;

    let deaths = [Death::Kill, Death::Kill, Death::Kill, Death::Stop, Death::Freeze];
    for (round, death) in deaths.into_iter().enumerate() {
        let pid = holder(&dir).await;
        match death {
            Death::Kill => signal(pid, "-KILL"),
            Death::Stop => {
                let stopped = cli(&env, &["stop"]).await;
                assert!(stopped.status.success(), "{stopped:?}");
                wait_for("the stopped sidecar to exit", Duration::from_secs(15), || {
                    (!process_alive(pid)).then_some(())
                })
                .await;
            }
            Death::Freeze => signal(pid, "-STOP"),
        }
        let marker = format!("round {round} after {death:?}");
        prompt(&mut stdin, &marker).await;
        let asked = Instant::now();
        // OMP is held up at most by its deadlines: the run ends, sidecar or not.
        run_end(&mut events, round).await;
        let run_took = asked.elapsed();
        // Its report reaches the thread through a sidecar started again.
        wait_for(&format!("round {round}'s report in the thread"), Duration::from_secs(60), || {
            thread_messages(&emulator, thread).iter().any(|m| m.to_string().contains(&marker)).then_some(())
        })
        .await;
        let replacement = holder(&dir).await;
        assert_ne!(replacement, pid, "round {round}: a new sidecar serves the session");
        if let Death::Freeze = death {
            // The frozen one was replaced, not waited on: the new sidecar ended it.
            wait_for("the frozen sidecar to be gone", Duration::from_secs(10), || (!process_alive(pid)).then_some(()))
                .await;
        }
        eprintln!("round {round} ({death:?}): the run took {run_took:.1?}, reported after {:.1?}", asked.elapsed());
    }
    // One thread for the whole session, however many sidecars served it.
    assert_eq!(thread_starts(&emulator).len(), 1);

    drop(stdin);
    let _ = omp.kill().await;
    let stopped = cli(&env, &["stop"]).await;
    assert!(stopped.status.success(), "{stopped:?}");
}

/// How many of the thread's messages show `marker` (its run card, once edited into the summary).
fn showing(emulator: &omp_discord_emulator::Emulator, thread: u64, marker: &str) -> usize {
    thread_messages(emulator, thread).iter().filter(|m| m.to_string().contains(marker)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_at_random_moments_under_a_real_session_lose_and_duplicate_nothing() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = sidecar_env(&dir, Some(&emulator));
    // The sidecars the extension starts log into one file, to show what they did if this fails.
    let wrapper = dir.path().join("sidecar.sh");
    let log = dir.path().join("sidecars.log");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec {} \"$@\" 2>>{}\n", sidecar_bin().display(), log.display()))
        .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    env.push(("OMP_DISCORD_BIN".into(), wrapper.display().to_string()));
    let stderr = Stdio::from(std::fs::File::create(dir.path().join("omp.err")).unwrap());
    let (mut omp, mut stdin, mut events, thread) = rpc_session(&dir, &env, &emulator, stderr).await;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("seed {seed}");
    let mut rng = crate::crash::Rng(seed);
    const KILLS: usize = 20;
    // A run before the first kill, one after each, and a last one that brings a sidecar back for
    // good (a sidecar starts on demand: what the last killed one journaled waits for the next).
    let markers: Vec<String> = (0..=KILLS + 1).map(|n| format!("kill round {n:02}")).collect();
    for (round, marker) in markers.iter().enumerate() {
        prompt(&mut stdin, marker).await;
        if (1..=KILLS).contains(&round) {
            // The sidecar serving this run (started again for it if the last one died), killed
            // a random moment later: before, during or after the run's reports are journaled.
            let pid = holder(&dir).await;
            wait_for("it to listen", Duration::from_secs(30), || {
                std::os::unix::net::UnixStream::connect(dir.socket()).ok().map(drop)
            })
            .await;
            tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
            // (Gone already is as good: a sidecar that lost a start-up race exits by itself.)
            let _ = std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
        run_end(&mut events, round).await;
    }
    // The first run, before any kill, shows how many messages one run leaves.
    let per_run = wait_for("the first run's report", Duration::from_secs(60), || {
        let n = showing(&emulator, thread, &markers[0]);
        (n > 0).then_some(n)
    })
    .await;
    let start = Instant::now();
    while !markers.iter().all(|m| showing(&emulator, thread, m) >= per_run) {
        if start.elapsed() > Duration::from_secs(120) {
            let counts: Vec<_> = markers.iter().map(|m| showing(&emulator, thread, m)).collect();
            let journal =
                rusqlite::Connection::open(dir.home().join(".local/state/omp-discord/outbox.sqlite3")).unwrap();
            let mut rows = journal
                .prepare("SELECT seq, state, destination, key, edit, attempts, batch, last_error FROM outbox WHERE seq > (SELECT MIN(seq) FROM outbox WHERE state = 'pending') - 4 ORDER BY seq ASC LIMIT 8")
                .unwrap();
            let rows: Vec<String> = rows
                .query_map([], |r| {
                    Ok(format!(
                        "{:?}",
                        (
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, Option<String>>(3)?,
                            r.get::<_, bool>(4)?,
                            r.get::<_, i64>(5)?,
                            r.get::<_, Option<i64>>(6)?,
                            r.get::<_, Option<String>>(7)?
                        )
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            let recent: Vec<String> = emulator
                .requests()
                .iter()
                .rev()
                .take(12)
                .map(|r| format!("{} {} {}", r.method, r.path, r.status))
                .collect();
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = logged.lines().rev().take(30).collect();
            panic!(
                "runs missing after 120 s (per run {per_run}): {counts:?}\nrows {rows:#?}\nrequests {recent:#?}\nlog {tail:#?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for marker in &markers {
        assert_eq!(showing(&emulator, thread, marker), per_run, "{marker}: lost or posted twice");
    }
    assert_eq!(thread_starts(&emulator).len(), 1, "one thread for the session");
    drop(stdin);
    let _ = omp.kill().await;
    let stopped = cli(&env, &["stop"]).await;
    assert!(stopped.status.success(), "{stopped:?}");
}
