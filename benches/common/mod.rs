//! What both sidecar benchmarks need: the release binary, started as a child
//! against an emulator, and its memory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use omp_discord_emulator::{DEFAULT_BOT_TOKEN, DEFAULT_HOME_CHANNEL_ID};

/// Reads `--flag value` pairs from the command line, handing each to
/// `apply(flag, value)`; `false` from it means an unknown flag. `cargo bench`
/// passes `--bench`, which is ignored.
pub fn parse_flags(mut apply: impl FnMut(&str, String) -> bool) {
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--bench" {
            continue;
        }
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        if !apply(&flag, value) {
            panic!("unknown argument {flag}");
        }
    }
}

/// The release binary: `$CARGO_TARGET_DIR/release/omp-discord` when it
/// exists (as `benches/run.sh` builds it), else the repository's own target.
pub fn release_binary() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(|dir| PathBuf::from(dir).join("release/omp-discord"))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/omp-discord"))
}

/// `omp-discord serve` as a child process, killed on drop.
pub struct Sidecar {
    child: Child,
    pub socket: PathBuf,
}

impl Sidecar {
    /// Starts `bin serve` in `dir` (its own HOME and state) against the API at
    /// `api`, with `env` on top; waits until it listens. Its log goes to
    /// `dir/sidecar.log`, or is appended to `$BENCH_LOG_FILE` at the filter in
    /// `$BENCH_SIDECAR_LOG` (default `warn`), to see what a slow run did.
    pub fn start(bin: &Path, dir: &Path, api: &str, env: &[(&str, &str)]) -> Self {
        // The sidecar creates the socket's directory itself, private (0700), as it requires.
        let socket = dir.join("run/s.sock");
        for sub in ["home", "state", "tmp", "project"] {
            std::fs::create_dir_all(dir.join(sub)).expect("create a directory");
        }
        let log = std::env::var("BENCH_LOG_FILE").map_or_else(|_| dir.join("sidecar.log"), PathBuf::from);
        let child = Command::new(bin)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.join("home"))
            .env("OMP_DISCORD_STATE_DIR", dir.join("state"))
            .env("OMP_DISCORD_SOCKET", &socket)
            .env("OMP_DISCORD_TOKEN", DEFAULT_BOT_TOKEN)
            .env("OMP_DISCORD_CHANNEL_ID", DEFAULT_HOME_CHANNEL_ID.to_string())
            .env("OMP_DISCORD_API_URL", api)
            .env("OMP_DISCORD_LOG", std::env::var("BENCH_SIDECAR_LOG").unwrap_or_else(|_| "warn".into()))
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::options().append(true).create(true).open(&log).expect("a log file"))
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {} ({err}); run `bash scripts/build.sh` first", bin.display()));
        let sidecar = Self { child, socket };
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&sidecar.socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the sidecar did not listen: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        sidecar
    }

    /// (VmRSS, VmHWM) in KiB.
    #[allow(dead_code, reason = "only the sidecar benchmark reports memory")]
    pub fn memory(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
