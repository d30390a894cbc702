//! `omp-discord demo`: one command that shows the product working. By default
//! it needs no token and no network: the built-in Discord emulator, a sidecar,
//! and one `omp` run with a scripted model. With `OMP_DISCORD_TOKEN` and
//! `OMP_DISCORD_CHANNEL_ID` set it posts to the real Discord; with
//! `OMP_DISCORD_DEMO_MODEL` set it uses that model instead of the script.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use omp_discord_core::protocol::{ClientFrame, ServerFrame};
use omp_discord_emulator::{DEFAULT_BOT_TOKEN, DEFAULT_HOME_CHANNEL_ID, Emulator, EmulatorConfig};
use serde_json::Value;

use crate::config;

/// The scripted model's turns: notify Discord, then answer.
const SCRIPT: &str = r#"[
  {"tool": "discord_notify", "args": {"title": "Hello from omp-discord", "level": "success",
    "message": "This notification was sent by the model through the `discord_notify` tool. The run summary follows when the run ends.",
    "fields": [{"name": "mode", "value": "demo", "inline": true}]}},
  {"text": "I posted a notification to Discord. This answer is reported there too, as the run summary."}
]"#;

/// Runs the demo from the repository at `repo`; waits for Ctrl-C at the end unless `exit`.
///
/// # Errors
///
/// When the repository is not built, the sidecar does not start, or omp fails.
pub async fn run(repo: &Path, exit: bool) -> anyhow::Result<()> {
    let omp = repo.join("node_modules/.bin/omp");
    if !omp.exists() || !repo.join("dist/index.js").exists() {
        bail!("{} is not built: run `bash scripts/build.sh` there first", repo.display());
    }
    let work = tempfile::Builder::new().prefix("omp-discord-demo").tempdir().context("cannot create a temp dir")?;
    let socket = work.path().join("run/sidecar.sock");
    let real = std::env::var_os(config::env::TOKEN).is_some() || std::env::var_os(config::env::TOKEN_FILE).is_some();
    let mut env: Vec<(String, String)> = vec![(config::env::SOCKET.into(), socket.display().to_string())];
    let emulator = if real {
        println!("Using the real Discord (OMP_DISCORD_TOKEN is set).");
        None
    } else {
        let emulator = Emulator::start(EmulatorConfig::default()).await.context("the emulator did not start")?;
        env.push((config::env::TOKEN.into(), DEFAULT_BOT_TOKEN.into()));
        env.push((config::env::CHANNEL_ID.into(), DEFAULT_HOME_CHANNEL_ID.to_string()));
        env.push((config::env::API_URL.into(), emulator.http_url()));
        println!(
            "Discord emulator:  {}/  (web view; REST at /api/v10, requests at /_emulator/requests)",
            emulator.http_url()
        );
        Some(emulator)
    };

    let exe = std::env::current_exe().context("cannot find this binary")?;
    let mut sidecar = Command::new(&exe)
        .arg("serve")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .spawn()
        .context("cannot start the sidecar")?;
    wait_for_socket(&socket).await?;
    println!("Sidecar:           pid {} on {}", sidecar.id(), socket.display());

    let model = std::env::var("OMP_DISCORD_DEMO_MODEL").ok();
    let path = format!("{}:{}", repo.join("node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(&omp);
    command.envs(env.iter().map(|(k, v)| (k, v))).env("PATH", path).env("OMP_DISCORD_BIN", &exe);
    command.args(["-p", "--mode", "json", "--no-session"]);
    match &model {
        Some(model) => {
            command.args(["-e"]).arg(repo).args(["--model", model]);
        }
        None => {
            // A private HOME keeps the scripted run away from your own OMP settings.
            let home = work.path().join("home");
            std::fs::create_dir_all(&home)?;
            command.env("HOME", &home).env("TMPDIR", work.path()).env("OMP_DISCORD_SCRIPT", SCRIPT);
            command.arg("-e").arg(repo.join("tests/fixtures/scripted-model.ts")).arg("-e").arg(repo);
            command.args(["--model", "fake/scripted"]);
        }
    }
    command.arg("Tell the people on Discord that the demo works, then summarise what you did.");
    println!("Running omp ({}) …", model.as_deref().unwrap_or("scripted model"));
    let started = Instant::now();
    let output = command.stdin(Stdio::null()).output().context("cannot run omp")?;
    print_events(&String::from_utf8_lossy(&output.stdout));
    println!("omp finished in {:.1} s with {}", started.elapsed().as_secs_f64(), output.status);
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    }

    // Reports are journaled before omp exits and delivered right after: wait for the outbox to drain.
    let status = drained_status(&socket).await;
    if let Some(emulator) = &emulator {
        println!("\nWhat Discord shows now (the emulator's #omp-sessions and the session threads):");
        print_channel("#omp-sessions", &emulator.state().messages(DEFAULT_HOME_CHANNEL_ID));
        for session in status["sessions"].as_array().into_iter().flatten() {
            if let Some(thread) = session["thread_id"].as_str().and_then(|id| id.parse().ok()) {
                let name = emulator.state().channel(thread).map(|c| c["name"].to_string()).unwrap_or_default();
                print_channel(&format!("thread {name}"), &emulator.state().messages(thread));
            }
        }
        println!("\nOpen {}/ to see it the way Discord lays it out.", emulator.http_url());
    }
    if !exit {
        println!("\nPress Ctrl-C to stop the demo.");
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = Command::new("kill").arg("-TERM").arg(sidecar.id().to_string()).status();
    let _ = sidecar.wait();
    if let Some(emulator) = emulator {
        emulator.shutdown().await;
    }
    if !output.status.success() {
        bail!("omp exited with {}", output.status);
    }
    Ok(())
}

async fn wait_for_socket(socket: &Path) -> anyhow::Result<()> {
    let start = Instant::now();
    while tokio::net::UnixStream::connect(socket).await.is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("the sidecar did not open {} within 10 s", socket.display());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// The sidecar's status once nothing is pending (or after 15 s).
async fn drained_status(socket: &Path) -> Value {
    let start = Instant::now();
    loop {
        let status = match crate::client::Connection::open(socket).await {
            Ok(mut connection) => match connection.call(&ClientFrame::Status { id: "demo".into() }).await {
                Ok(ServerFrame::Status { status, .. }) => status,
                _ => Value::Null,
            },
            Err(_) => Value::Null,
        };
        if status["outbox"]["pending"] == 0 || start.elapsed() > Duration::from_secs(15) {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_channel(name: &str, messages: &[Value]) {
    println!("  {name}:");
    for message in messages {
        for embed in message["embeds"].as_array().into_iter().flatten() {
            println!(
                "    • {} — {}",
                embed["title"].as_str().unwrap_or("(no title)"),
                embed["description"].as_str().unwrap_or("").lines().next().unwrap_or("")
            );
        }
    }
}

/// One line per tool call and result, from omp's JSON event stream.
fn print_events(stdout: &str) {
    for event in stdout.lines().filter_map(|line| serde_json::from_str::<Value>(line).ok()) {
        match event["type"].as_str() {
            Some("tool_execution_start") => println!("  → tool {}", event["toolName"].as_str().unwrap_or("?")),
            Some("tool_execution_end") => {
                let text = event["result"]["content"][0]["text"].as_str().unwrap_or("");
                println!("  ← {}", text.lines().next().unwrap_or(""));
            }
            Some("agent_end") => println!("  ✓ run ended"),
            _ => {}
        }
    }
}
