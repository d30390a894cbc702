//! A full disk and a read-only state directory, for real: the state directory
//! is a 1 MiB tmpfs that the test fills, or a read-only bind mount, each in a
//! private mount namespace (`unshare`; as root, or in a user namespace
//! otherwise, since root ignores permission bits and `chmod` would prove
//! nothing). The sidecar says what happened and what to do, and a real `omp`
//! run with the plugin still finishes, its Discord tool saying the message was
//! not taken.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use omp_discord_core::protocol::{ErrorCode, ServerFrame};
use serde_json::{Value, json};

use crate::hostile::notify;
use crate::util::{Client, OmpRun, Plugin, TestDir, emulator, omp_command, sidecar_bin, sidecar_env, wait_for};

/// `unshare` arguments that give a private mount namespace here, or why there is none.
fn namespace() -> Result<Vec<&'static str>, String> {
    let root = rustix::process::geteuid().is_root();
    // Without root, a user namespace maps us to root inside it, which may mount.
    let args = if root { vec!["-m", "--propagation", "private"] } else { vec!["-r", "-m", "--propagation", "private"] };
    let probe = Command::new("unshare").args(&args).arg("true").stderr(Stdio::piped()).output();
    match probe {
        Ok(out) if out.status.success() => Ok(args),
        Ok(out) => Err(format!("unshare {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(err) => Err(format!("no unshare: {err}")),
    }
}

/// `command`, run in a new mount namespace after `setup` (a shell line that
/// gets the state directory as `$1`).
fn in_namespace(ns: &[&str], setup: &str, state: &Path, command: &Command) -> Command {
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(ns)
        .args(["sh", "-c", &format!("{setup} && shift && exec \"$@\""), "sh"])
        .arg(state)
        .arg(command.get_program())
        .args(command.get_args())
        .env_clear();
    for (key, value) in command.get_envs() {
        if let Some(value) = value {
            wrapped.env(key, value);
        }
    }
    if let Some(cwd) = command.get_current_dir() {
        wrapped.current_dir(cwd);
    }
    wrapped
}

fn serve_command(env: &[(String, String)]) -> Command {
    let mut command = Command::new(sidecar_bin());
    command.arg("serve").env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command
}

/// Runs `command` (an `omp -p --mode json` invocation) and parses its events.
async fn run(command: Command) -> OmpRun {
    let output = tokio::process::Command::from(command)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("omp runs");
    let events =
        String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect();
    OmpRun { status: output.status, events, seen: Vec::new(), stderr: String::from_utf8_lossy(&output.stderr).into() }
}

/// The plugin's `discord_send` during the fault, then a final answer.
fn omp_sending(dir: &TestDir, env: &[(String, String)], text: &str) -> Command {
    let script = json!([{ "tool": "discord_send", "args": { "message": text } }, { "text": "finished anyway" }]);
    let mut command = omp_command(dir, env, Plugin::Flag, &script, &["-p", "--mode", "json"]);
    command.arg("post it");
    let std = command.as_std();
    let mut copy = Command::new(std.get_program());
    copy.args(std.get_args()).env_clear();
    for (key, value) in std.get_envs() {
        if let Some(value) = value {
            copy.env(key, value);
        }
    }
    if let Some(cwd) = std.get_current_dir() {
        copy.current_dir(cwd);
    }
    copy
}

fn assert_finished_with_discord_unavailable(run: &OmpRun, what: &str) {
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let results = run.tool_results("discord_send");
    let result = results.first().unwrap_or_else(|| panic!("no discord_send result: {}", run.stderr));
    let text = result["result"]["content"][0]["text"].as_str().unwrap_or_default();
    assert_eq!(result["isError"], true, "{text}");
    assert!(text.contains("Discord is unavailable") && text.contains(what), "{text}");
    let last = run.events.iter().rev().find(|e| e["type"] == "message_end" || e["type"] == "agent_end");
    assert!(run.events.iter().any(|e| e.to_string().contains("finished anyway")), "the run went on: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_new_messages_clearly_omp_goes_on_and_freed_space_recovers() {
    let ns = match namespace() {
        Ok(ns) => ns,
        Err(why) => return eprintln!("SKIPPED: no mount namespace for a tiny filesystem: {why}"),
    };
    let dir = TestDir::new();
    let emulator = emulator().await;
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut env = sidecar_env(&dir, Some(&emulator));
    env.push(("OMP_DISCORD_STATE_DIR".into(), state.display().to_string()));
    let log = dir.path().join("sidecar.log");
    let mut sidecar =
        in_namespace(&ns, "mount -t tmpfs -o size=1m,mode=0700 tmpfs \"$1\"", &state, &serve_command(&env))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
    let socket = dir.socket();
    wait_for("the sidecar to listen", Duration::from_secs(10), || {
        std::os::unix::net::UnixStream::connect(&socket).ok()
    })
    .await;
    let mut client = Client::greeted(&socket).await;
    let (_, answer) = client.notify(&notify("a", "disk", "before the disk filled")).await;
    assert!(matches!(answer, ServerFrame::Delivered { .. }), "{answer:?}");

    // The sidecar's tmpfs, seen through its own root: fill it to the last byte.
    let filler =
        Path::new(&format!("/proc/{}/root", sidecar.id())).join(state.strip_prefix("/").unwrap()).join("filler");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        while file.write_all(&chunk).is_ok() {}
        while file.write_all(&[0]).is_ok() {}
    }
    let answer = client.call(&notify("b", "disk", "while the disk is full")).await;
    let ServerFrame::Error { code: ErrorCode::DiscordUnavailable, message, .. } = &answer else {
        panic!("a full disk must refuse the message: {answer:?}")
    };
    assert!(message.contains("not accepted") && message.contains("disk is full"), "{message}");
    assert!(message.contains("disk space"), "says what to do: {message}");

    // OMP goes on: its tool says Discord did not take the message, the run finishes.
    let omp = run(omp_sending(&dir, &env, "sent by omp while the disk is full")).await;
    assert_finished_with_discord_unavailable(&omp, "disk is full");

    // Space comes back: the same sidecar takes and delivers messages again.
    std::fs::remove_file(&filler).unwrap();
    let (_, answer) = client.notify(&notify("c", "disk", "after space was freed")).await;
    assert!(matches!(answer, ServerFrame::Delivered { .. }), "{answer:?}");
    let texts = crate::hostile::delivered_texts(&emulator);
    assert!(!texts.contains_key("while the disk is full") && !texts.contains_key("sent by omp while the disk is full"));
    assert!(std::fs::read_to_string(&log).unwrap().contains("cannot journal a message"));
    let _ = sidecar.kill();
    let _ = sidecar.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_state_dir_stops_the_sidecar_with_a_clear_error_and_omp_goes_on() {
    let ns = match namespace() {
        Ok(ns) => ns,
        Err(why) => return eprintln!("SKIPPED: no mount namespace for a read-only bind mount: {why}"),
    };
    let dir = TestDir::new();
    let emulator = emulator().await;
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let mut env = sidecar_env(&dir, Some(&emulator));
    env.push(("OMP_DISCORD_STATE_DIR".into(), state.display().to_string()));
    let read_only = "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\"";

    let out = in_namespace(&ns, read_only, &state, &serve_command(&env)).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the sidecar cannot run without its journal: {stderr}");
    assert!(stderr.contains(&format!("cannot open the outbox {}", state.join("outbox.sqlite3").display())), "{stderr}");
    assert!(stderr.contains("writable state directory") && stderr.contains("OMP_DISCORD_STATE_DIR"), "{stderr}");
    assert!(!dir.socket().exists(), "no socket is left behind for clients to hang on");

    // OMP in the same situation: the plugin starts a sidecar that cannot run; the run finishes.
    let omp = run(in_namespace(&ns, read_only, &state, &omp_sending(&dir, &env, "sent with a read-only state"))).await;
    assert_finished_with_discord_unavailable(&omp, "sidecar_unavailable");
    assert!(crate::hostile::delivered_texts(&emulator).is_empty());
}
