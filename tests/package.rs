//! The packed plugin (`scripts/pack.sh`) installed the documented way into a
//! fresh HOME's OMP, on a PATH without a Rust toolchain: OMP loads it, the
//! model's `discord_notify` reaches the emulator, and the sidecar that sent it
//! is the binary from the platform package; its `setup` leaves the installed
//! plugin alone.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use omp_discord_emulator::{DEFAULT_BOT_TOKEN, DEFAULT_HOME_CHANNEL_ID};
use serde_json::{Value, json};
use twilight_model::id::Id;

use crate::util::{TestDir, all_message_posts, emulator, process_alive, repo, sidecar_bin, sidecar_env, wait_for};

/// The release binary `scripts/build.sh` builds (`scripts/test.sh` runs it first), in the same target
/// directory as the test binaries: that is what gets packed, so rebuild it after changing the sidecar.
fn release_bin() -> PathBuf {
    let bin = sidecar_bin().parent().and_then(Path::parent).expect("target/<profile>/omp-discord").join("release");
    bin.join("omp-discord")
}

/// Runs `scripts/pack.sh` into `out` and returns the two tarballs (main, platform).
async fn pack(out: &Path) -> (PathBuf, PathBuf) {
    let release = release_bin();
    assert!(release.is_file(), "{} is missing: run scripts/build.sh", release.display());
    let packed = tokio::process::Command::new("bash")
        .arg(repo().join("scripts/pack.sh"))
        .arg("--out")
        .arg(out)
        .arg("--bin")
        .arg(&release)
        .env("PATH", crate::util::omp_path())
        .output()
        .await
        .unwrap();
    assert!(packed.status.success(), "pack.sh failed: {}", String::from_utf8_lossy(&packed.stderr));
    let version = env!("CARGO_PKG_VERSION");
    let main = out.join(format!("omp-discord-{version}.tgz"));
    let platform = out.join(format!("omp-discord-linux-x64-{version}.tgz"));
    assert!(
        main.is_file() && platform.is_file(),
        "pack.sh made: {:?}",
        std::fs::read_dir(out).unwrap().collect::<Vec<_>>()
    );
    (main, platform)
}

/// A PATH with `omp` and Bun (OMP runs on Bun) and the system's tools, but no
/// `cargo`, `rustc` or `omp-discord`.
fn path_without_rust() -> String {
    let dirs = [repo().join("node_modules/.bin"), PathBuf::from("/usr/bin"), PathBuf::from("/bin")];
    for dir in &dirs {
        for tool in ["cargo", "rustc", "omp-discord"] {
            assert!(!dir.join(tool).exists(), "{tool} is in {}: the test PATH must not have it", dir.display());
        }
    }
    std::env::join_paths(&dirs).unwrap().into_string().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_packed_plugin_installs_into_omp_and_runs_without_a_rust_toolchain() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let (main, platform) = pack(&dir.path().join("pack")).await;

    // The documented install: both tarballs through `omp plugin install`, as
    // `name@file:<absolute path>` (a bare path would go to `omp plugin link`).
    // The registry is unreachable, so nothing can come from the network: the
    // optional dependency's lookup fails (and is skipped) and the binary can
    // only come from the platform tarball.
    let path = path_without_rust();
    let base_env = |command: &mut tokio::process::Command| {
        command
            .env_clear()
            .env("PATH", &path)
            .env("HOME", dir.home())
            .env("TMPDIR", dir.tmp())
            .env("BUN_CONFIG_REGISTRY", "http://127.0.0.1:9/")
            .env("NPM_CONFIG_REGISTRY", "http://127.0.0.1:9/");
    };
    let started = Instant::now();
    let mut install = tokio::process::Command::new(repo().join("node_modules/.bin/omp"));
    install
        .current_dir(dir.home())
        .args(["plugin", "install"])
        .arg(format!("omp-discord-linux-x64@file:{}", platform.display()))
        .arg(format!("omp-discord@file:{}", main.display()));
    base_env(&mut install);
    let installed = install.output().await.unwrap();
    let stdout = String::from_utf8_lossy(&installed.stdout);
    assert!(installed.status.success(), "install failed: {stdout}\n{}", String::from_utf8_lossy(&installed.stderr));
    eprintln!("omp plugin install took {:?}", started.elapsed());
    let plugins = dir.home().join(".omp/plugins/node_modules");
    let packaged = plugins.join("omp-discord-linux-x64/bin/omp-discord");
    assert!(plugins.join("omp-discord/dist/index.js").is_file(), "{stdout}");
    assert!(packaged.is_file(), "{stdout}");

    // A scripted session loads the installed plugin (no `-e` for it, no
    // OMP_DISCORD_BIN): the shim must find and start the packaged sidecar.
    let env = sidecar_env(&dir, Some(&emulator));
    let script = json!([
        { "tool": "discord_notify", "args": { "message": "installed from a tarball", "title": "Packaged" } },
        { "text": "Done." }
    ]);
    let mut run = tokio::process::Command::new(repo().join("node_modules/.bin/omp"));
    base_env(&mut run);
    run.kill_on_drop(true)
        .current_dir(dir.path().join("project"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("OMP_DISCORD_SCRIPT", script.to_string())
        .args(["-p", "--mode", "json", "--no-session", "-e"])
        .arg(repo().join("tests/fixtures/scripted-model.ts"))
        .args(["--model", "fake/scripted", "tell Discord"])
        .stdin(std::process::Stdio::null());
    let output = run.output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "omp failed: {stderr}");
    let events: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let result = events
        .iter()
        .find(|e| e["type"] == "tool_execution_end" && e["toolName"] == "discord_notify")
        .unwrap_or_else(|| panic!("the model's discord_notify did not run: {stderr}"));
    assert_eq!(result["isError"], false, "{result}");
    let text = result["result"]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Posted to Discord"), "{text}");

    // The notification arrived in Discord.
    wait_for("the notification in the emulator", Duration::from_secs(30), || {
        all_message_posts(&emulator)
            .iter()
            .any(|post| {
                let embed = &post["body"]["embeds"][0];
                embed["title"] == "Packaged" && embed["description"] == "installed from a tarball"
            })
            .then_some(())
    })
    .await;

    // The sidecar that sent it runs the packaged binary; its own CLI (from the
    // package too) reports it.
    let cli = |args: &[&str]| {
        let mut command = tokio::process::Command::new(&packaged);
        base_env(&mut command);
        command.args(args).envs(env.iter().map(|(k, v)| (k, v)));
        command
    };
    let status = cli(&["status", "--json"]).output().await.unwrap();
    assert!(status.status.success(), "status: {}", String::from_utf8_lossy(&status.stderr));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    let pid = u32::try_from(status["pid"].as_u64().expect("status has the pid")).unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, packaged.canonicalize().unwrap(), "the sidecar that ran is not the packaged binary");

    let stop = cli(&["stop"]).output().await.unwrap();
    assert!(stop.status.success(), "stop: {}", String::from_utf8_lossy(&stop.stderr));
    wait_for("the packaged sidecar to exit", Duration::from_secs(15), || (!process_alive(pid)).then_some(())).await;

    // `setup` from the package sees that the plugin is installed and leaves it
    // alone (`omp plugin link` on it would replace it with a link to itself).
    let client = twilight_http::Client::builder()
        .token(DEFAULT_BOT_TOKEN.to_owned())
        .proxy(emulator.addr().to_string(), true)
        .build();
    let hook = client.create_webhook(Id::new(DEFAULT_HOME_CHANNEL_ID), "omp").await.unwrap().model().await.unwrap();
    let url = format!("{}/api/webhooks/{}/{}", emulator.http_url(), hook.id, hook.token.unwrap());
    let mut setup = cli(&["setup", "--non-interactive", "--webhook"]);
    setup.env("OMP_DISCORD_WEBHOOK_URL", url).stdin(std::process::Stdio::null());
    let setup = setup.output().await.unwrap();
    let said = String::from_utf8_lossy(&setup.stdout);
    assert!(setup.status.success(), "setup: {said}\n{}", String::from_utf8_lossy(&setup.stderr));
    let plugin = plugins.join("omp-discord");
    assert!(said.contains(&format!("the plugin is installed in OMP ({})", plugin.display())), "{said}");
    assert!(!plugin.is_symlink() && plugin.join("dist/index.js").is_file(), "setup touched the installed plugin");
}
