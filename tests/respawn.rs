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
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_keeps_reporting_across_kills_a_stop_and_a_frozen_sidecar() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let script = json!([{ "echo": "heard: " }]);
    let mut omp = omp_command(&dir, &env, Plugin::Flag, &script, &["--mode", "rpc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("omp starts");
    let mut stdin = omp.stdin.take().unwrap();
    let mut events = BufReader::new(omp.stdout.take().unwrap()).lines();
    // The session's start started a sidecar and opened its thread.
    let thread: u64 = wait_for("the session's thread", Duration::from_secs(60), || {
        thread_starts(&emulator).first().and_then(|t| t["response"]["id"].as_str()?.parse().ok())
    })
    .await;

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
        let prompt = json!({ "type": "prompt", "message": marker });
        stdin.write_all(format!("{prompt}\n").as_bytes()).await.unwrap();
        let asked = Instant::now();
        // OMP is held up at most by its deadlines: the run ends, sidecar or not.
        loop {
            let line = tokio::time::timeout(Duration::from_secs(45), events.next_line())
                .await
                .unwrap_or_else(|_| panic!("round {round}: the run did not end within 45 s"))
                .unwrap()
                .expect("omp is still running");
            if serde_json::from_str::<Value>(&line).is_ok_and(|event| event["type"] == "agent_end") {
                break;
            }
        }
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
    let env = sidecar_env(&dir, Some(&emulator));
    let script = json!([{ "echo": "heard: " }]);
    let mut omp = omp_command(&dir, &env, Plugin::Flag, &script, &["--mode", "rpc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("omp starts");
    let mut stdin = omp.stdin.take().unwrap();
    let mut events = BufReader::new(omp.stdout.take().unwrap()).lines();
    let thread: u64 = wait_for("the session's thread", Duration::from_secs(60), || {
        thread_starts(&emulator).first().and_then(|t| t["response"]["id"].as_str()?.parse().ok())
    })
    .await;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1;
    eprintln!("seed {seed}");
    let mut rng = crate::crash::Rng(seed);
    const KILLS: usize = 20;
    let markers: Vec<String> = (0..=KILLS).map(|n| format!("kill round {n:02}")).collect();
    for (round, marker) in markers.iter().enumerate() {
        let prompt = json!({ "type": "prompt", "message": marker });
        stdin.write_all(format!("{prompt}\n").as_bytes()).await.unwrap();
        if round > 0 {
            // While the run reports: before, during or after its card is journaled.
            tokio::time::sleep(Duration::from_millis(rng.below(400))).await;
            signal(holder(&dir).await, "-KILL");
        }
        loop {
            let line = tokio::time::timeout(Duration::from_secs(45), events.next_line())
                .await
                .unwrap_or_else(|_| panic!("round {round}: the run did not end within 45 s"))
                .unwrap()
                .expect("omp is still running");
            if serde_json::from_str::<Value>(&line).is_ok_and(|event| event["type"] == "agent_end") {
                break;
            }
        }
    }
    // The first run, before any kill, shows how many messages one run leaves.
    let per_run = wait_for("the first run's report", Duration::from_secs(60), || {
        let n = showing(&emulator, thread, &markers[0]);
        (n > 0).then_some(n)
    })
    .await;
    wait_for("every run's report", Duration::from_secs(120), || {
        markers.iter().all(|m| showing(&emulator, thread, m) >= per_run).then_some(())
    })
    .await;
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
