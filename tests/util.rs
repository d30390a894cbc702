//! The test harness: a private directory per test, the sidecar as a child
//! process, the emulator in-process, `omp` runs, and waiting with deadlines.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use omp_discord_core::protocol::{
    ClientFrame, Hello, PROTOCOL_VERSION, ServerFrame, decode_server_frame, encode_frame,
};
use omp_discord_emulator::{DEFAULT_BOT_TOKEN, DEFAULT_HOME_CHANNEL_ID, Emulator, EmulatorConfig};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sidecar binary cargo built for these tests.
pub fn sidecar_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_omp-discord"))
}

/// Waits until `check` returns `Some`, or panics with `what` after `deadline`.
pub async fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < deadline, "timed out after {deadline:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private directory for one test, short enough for a Unix socket path.
pub struct TestDir {
    dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("omd").tempdir_in("/tmp").expect("a temp dir");
        for sub in ["home", "tmp", "run", "project"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Self { dir }
    }
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }
    pub fn tmp(&self) -> PathBuf {
        self.path().join("tmp")
    }
    pub fn socket(&self) -> PathBuf {
        self.path().join("run/omp-discord/sidecar.sock")
    }
}

impl Drop for TestDir {
    /// A sidecar that a shim started inside this test (detached, so no
    /// `Sidecar` handle owns it) is asked to stop, even when the test failed.
    fn drop(&mut self) {
        use std::io::Write;
        let Ok(mut stream) = std::os::unix::net::UnixStream::connect(self.socket()) else { return };
        let hello = ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: "test-cleanup/0".into(),
            pid: std::process::id(),
            host: "test".into(),
        });
        let stop = ClientFrame::Shutdown { id: "cleanup".into() };
        let _ = stream.write_all(format!("{}{}", encode_frame(&hello), encode_frame(&stop)).as_bytes());
    }
}

/// The environment that points a sidecar at `emulator` (or at nothing).
pub fn sidecar_env(dir: &TestDir, emulator: Option<&Emulator>) -> Vec<(String, String)> {
    let mut env = vec![
        ("OMP_DISCORD_SOCKET".to_owned(), dir.socket().display().to_string()),
        ("HOME".to_owned(), dir.home().display().to_string()),
        ("OMP_DISCORD_LOG".to_owned(), "omp_discord=debug".to_owned()),
    ];
    if let Some(emulator) = emulator {
        env.push(("OMP_DISCORD_TOKEN".to_owned(), DEFAULT_BOT_TOKEN.to_owned()));
        env.push(("OMP_DISCORD_CHANNEL_ID".to_owned(), DEFAULT_HOME_CHANNEL_ID.to_string()));
        env.push(("OMP_DISCORD_API_URL".to_owned(), emulator.http_url()));
    }
    env
}

/// Starts the emulator with its default seed.
pub async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default()).await.expect("the emulator starts")
}

/// A sidecar child process, killed on drop.
pub struct Sidecar {
    child: Child,
    pub socket: PathBuf,
    stderr: PathBuf,
}

impl Sidecar {
    /// Starts `omp-discord serve` with exactly `env` (plus PATH) and waits for its socket.
    pub async fn start(dir: &TestDir, env: &[(String, String)]) -> Self {
        let stderr = dir.path().join("sidecar.log");
        let child = Command::new(sidecar_bin())
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("the sidecar starts");
        let socket = dir.socket();
        let sidecar = Self { child, socket: socket.clone(), stderr };
        let start = Instant::now();
        loop {
            if UnixStream::connect(&socket).await.is_ok() {
                return sidecar;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "the sidecar did not listen: {}", sidecar.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Everything the sidecar wrote to stderr.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no chance to flush or clean up.
    pub fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().unwrap();
        let status = wait_for("the sidecar to exit", Duration::from_secs(15), || self.child.try_wait().unwrap()).await;
        assert!(!self.socket.exists(), "the socket file was left behind");
        status
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A raw protocol client.
pub struct Client {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl Client {
    /// Connects without saying hello.
    pub async fn connect(socket: &Path) -> Self {
        let (read, writer) = UnixStream::connect(socket).await.expect("connect").into_split();
        Self { reader: BufReader::new(read), writer }
    }

    /// Connects and completes the handshake.
    pub async fn greeted(socket: &Path) -> Self {
        let mut client = Self::connect(socket).await;
        let hello = ClientFrame::Hello(Hello {
            protocol: PROTOCOL_VERSION,
            client: "test/0".into(),
            pid: std::process::id(),
            host: "test".into(),
        });
        let welcome = client.call(&hello).await;
        assert!(matches!(welcome, ServerFrame::Welcome { protocol: PROTOCOL_VERSION, .. }), "{welcome:?}");
        client
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// Reads the next frame (None when the sidecar closed the connection).
    pub async fn read(&mut self) -> Option<ServerFrame> {
        self.read_within(Duration::from_secs(30)).await
    }

    /// As [`Client::read`], waiting up to `limit` (a delivery that Discord's
    /// faults postpone takes longer than a normal answer).
    pub async fn read_within(&mut self, limit: Duration) -> Option<ServerFrame> {
        let mut line = String::new();
        let n = tokio::time::timeout(limit, self.reader.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("the sidecar answers within {limit:?}"))
            .unwrap();
        (n > 0).then(|| decode_server_frame(line.as_bytes()).expect("a valid server frame"))
    }

    pub async fn call(&mut self, frame: &ClientFrame) -> ServerFrame {
        self.send_raw(encode_frame(frame).as_bytes()).await;
        self.read().await.expect("an answer")
    }

    /// Sends a notify frame; returns the journal position (if it was accepted) and the final answer.
    pub async fn notify(&mut self, frame: &ClientFrame) -> (Option<i64>, ServerFrame) {
        match self.call(frame).await {
            ServerFrame::Accepted { seq, .. } => (Some(seq), self.read().await.expect("a final answer")),
            other => (None, other),
        }
    }
}

/// The result of one `omp` run.
pub struct OmpRun {
    pub status: std::process::ExitStatus,
    /// JSON event lines printed by `--mode json`.
    pub events: Vec<Value>,
    /// What the scripted model saw, one entry per model call.
    pub seen: Vec<Value>,
    pub stderr: String,
}

impl OmpRun {
    /// `tool_execution_end` events for `tool`.
    pub fn tool_results(&self, tool: &str) -> Vec<&Value> {
        self.events.iter().filter(|e| e["type"] == "tool_execution_end" && e["toolName"] == tool).collect()
    }
}

/// How to load the plugin into an `omp` run.
pub enum Plugin {
    /// `-e <repo>` (the package.json's `omp.extensions`).
    Flag,
    /// Nothing on the command line: it must come from `omp plugin link`.
    Linked,
}

/// `node_modules/.bin` first, so `omp` finds the pinned Bun.
pub fn omp_path() -> String {
    format!("{}:{}", repo().join("node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default())
}

/// Runs `omp -p --mode json` with the scripted model playing `script`. Async,
/// so the in-process emulator keeps serving while omp runs.
pub async fn run_omp(dir: &TestDir, env: &[(String, String)], plugin: Plugin, script: &Value, prompt: &str) -> OmpRun {
    let command = omp_command(dir, env, plugin, script, &["-p", "--mode", "json"]);
    finish_omp(dir, command, prompt).await
}

/// As [`run_omp`] (plugin from `-e`), with OMP keeping its session file, so a
/// later run with `--continue` in `mode` resumes the same session.
pub async fn run_omp_keeping_session(
    dir: &TestDir,
    env: &[(String, String)],
    script: &Value,
    mode: &[&str],
    prompt: &str,
) -> OmpRun {
    let mut all = vec!["-p", "--mode", "json"];
    all.extend_from_slice(mode);
    let command = omp_command_with(dir, env, Plugin::Flag, script, &all, true);
    finish_omp(dir, command, prompt).await
}

async fn finish_omp(dir: &TestDir, mut command: tokio::process::Command, prompt: &str) -> OmpRun {
    let seen_log = dir.path().join(format!("seen-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&seen_log);
    command.env("OMP_DISCORD_SCRIPT_LOG", &seen_log);
    let output =
        command.arg(prompt).stdin(Stdio::null()).output().await.expect("omp runs (installed by scripts/build.sh)");
    let parse = |text: &str| text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect::<Vec<_>>();
    OmpRun {
        status: output.status,
        events: parse(&String::from_utf8_lossy(&output.stdout)),
        seen: parse(&std::fs::read_to_string(&seen_log).unwrap_or_default()),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `omp <mode args> --no-session` with the scripted model playing `script`, in
/// the test's project directory with its own HOME and TMPDIR, the sidecar
/// binary under test, and `env`; killed when dropped.
pub fn omp_command(
    dir: &TestDir,
    env: &[(String, String)],
    plugin: Plugin,
    script: &Value,
    mode: &[&str],
) -> tokio::process::Command {
    omp_command_with(dir, env, plugin, script, mode, false)
}

fn omp_command_with(
    dir: &TestDir,
    env: &[(String, String)],
    plugin: Plugin,
    script: &Value,
    mode: &[&str],
    keep_session: bool,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(repo().join("node_modules/.bin/omp"));
    command
        .kill_on_drop(true)
        .current_dir(dir.path().join("project"))
        .env_clear()
        .env("PATH", omp_path())
        .env("HOME", dir.home())
        .env("TMPDIR", dir.tmp())
        .env("OMP_DISCORD_BIN", sidecar_bin())
        .env("OMP_DISCORD_SCRIPT", script.to_string())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(mode)
        .args(if keep_session { &[][..] } else { &["--no-session"][..] })
        .arg("-e")
        .arg(repo().join("tests/fixtures/scripted-model.ts"));
    if let Plugin::Flag = plugin {
        command.arg("-e").arg(repo());
    }
    command.args(["--model", "fake/scripted"]);
    command
}

/// Recorded requests that created a message in `channel`.
pub fn message_posts(emulator: &Emulator, channel: u64) -> Vec<Value> {
    let path = format!("/channels/{channel}/messages");
    emulator
        .requests()
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .filter(|r| r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with(&path)))
        .collect()
}

/// Every recorded request that created a message, in order.
pub fn all_message_posts(emulator: &Emulator) -> Vec<Value> {
    emulator
        .requests()
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .filter(|r| r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/messages")))
        .collect()
}

/// The messages of a channel or thread as they are now (after edits), oldest first.
pub fn thread_messages(emulator: &Emulator, channel: u64) -> Vec<Value> {
    let mut messages = emulator.state().messages(channel);
    messages.sort_by_key(|m| m["id"].as_str().and_then(|id| id.parse::<u64>().ok()).unwrap_or_default());
    messages
}

/// Recorded requests that started a thread from a message.
pub fn thread_starts(emulator: &Emulator) -> Vec<Value> {
    emulator
        .requests()
        .into_iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .filter(|r| r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/threads")))
        .collect()
}

/// Whether a process with `pid` is alive.
pub fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default().contains(") Z ")
}

/// POSTs JSON to the emulator's control API (`/_emulator/...`) and returns the JSON answer.
pub async fn emulator_post(emulator: &Emulator, path: &str, body: &Value) -> Value {
    let (status, answer) = emulator_request(emulator, "POST", path, None, Some(body)).await;
    assert!((200..300).contains(&status), "{path} answered {status}: {answer}");
    answer
}

/// One HTTP request to the emulator (`authorization`: e.g. `Bot <token>`);
/// returns the status and the JSON body (`Null` when empty).
pub async fn emulator_request(
    emulator: &Emulator,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    use tokio::io::AsyncReadExt;
    let mut stream = tokio::net::TcpStream::connect(emulator.addr()).await.expect("the emulator listens");
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = authorization.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        emulator.addr(),
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The model's question (`discord_ask`) in the only session thread, once posted: (thread, message).
pub async fn question(emulator: &Emulator) -> (u64, Value) {
    wait_for("the question in the session's thread", Duration::from_secs(30), || {
        let thread: u64 = thread_starts(emulator).first()?["response"]["id"].as_str()?.parse().ok()?;
        let message = thread_messages(emulator, thread)
            .into_iter()
            .find(|m| m["embeds"][0]["title"].as_str().is_some_and(|t| t.contains("asks")))?;
        Some((thread, message))
    })
    .await
}
