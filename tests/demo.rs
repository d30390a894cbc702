//! The README's first command: `omp-discord-demo` (which `scripts/demo.sh`
//! runs) tells the whole story on the emulator, and leaves a picture of the
//! web view behind.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::util::{omp_path, repo, sidecar_bin};

/// The demo's release binary that `scripts/build.sh` builds, in the same target directory as the
/// test binaries (a program of its own, so not one cargo builds for these tests).
fn demo_bin() -> PathBuf {
    let release = sidecar_bin().parent().and_then(Path::parent).expect("target/<profile>/omp-discord").join("release");
    release.join("omp-discord-demo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_every_capability_and_leaves_a_screenshot() {
    let screenshot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-web-view.png");
    let _ = std::fs::remove_file(&screenshot);
    let home = tempfile::tempdir().unwrap();
    let demo = demo_bin();
    assert!(demo.is_file(), "{} is missing: run scripts/build.sh", demo.display());
    let run = tokio::process::Command::new(demo)
        .args(["--exit", "--screenshot"])
        .arg(&screenshot)
        .arg("--repo")
        .arg(repo())
        .env_clear()
        .env("PATH", omp_path())
        .env("HOME", home.path())
        // The sidecar these tests are about, as the extension would find it.
        .env("OMP_DISCORD_BIN", sidecar_bin())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), run).await.expect("the demo ends").unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{text}");
    for expected in [
        "[1/8] Sidecar started",
        "the session got its own thread",
        "[3/8] The live run card",
        "Running · ",
        "[4/8] bash needs a person",
        "DEPLOY_API_KEY=[REDACTED:generic-secret]",
        "a guest (not on the allowlist) clicks Approve → refused",
        "the owner clicks \"Always allow\"",
        "[5/8] The deploy script printed",
        "Tool error: bash",
        "the key is in none of the requests Discord received",
        "[6/8] The run card became the summary: Run finished",
        "[7/8] The owner replies in the thread",
        "✅ the bot reacts",
        "All 12 tests passed.",
        "[8/8] /omp status answers",
        "gateway ready",
        "?channel=",
    ] {
        assert!(text.contains(expected), "the demo did not show {expected:?}:\n{text}");
    }
    let png = std::fs::read(&screenshot).expect("the screenshot exists");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 20_000, "not a picture: {} bytes", png.len());
    println!("screenshot kept at {}", screenshot.display());
}
