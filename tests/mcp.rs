//! `omp-discord mcp` driven by stock MCP clients: the `mcp` package from
//! PyPI (tests/fixtures/mcp_client.py) and the real `omp`, against the real
//! sidecar and the emulator.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use omp_discord_core::schema;
use omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};

use crate::util::{
    OmpRun, Plugin, Sidecar, TestDir, emulator, message_posts, question, repo, run_omp, sidecar_bin, sidecar_env,
    thread_messages, thread_starts, wait_for,
};

/// A fake token of a shape the redactor knows.
const SECRET: &str = "ghp_FAKEabcdefghijklmnopqrstuvwxyz012345"; // fake

/// The venv with PyPI's `mcp`, made once per test run by scripts/mcp-venv.sh
/// (next to the build, so a fresh machine gets it from `cargo test` alone).
fn mcp_python() -> PathBuf {
    static READY: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut ready = READY.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(python) = ready.as_ref() {
        return python.clone();
    }
    let target = sidecar_bin().parent().and_then(|p| p.parent()).expect("the target directory").to_owned();
    let venv = target.join("mcp-venv");
    let status = std::process::Command::new("bash")
        .arg(repo().join("scripts/mcp-venv.sh"))
        .arg(&venv)
        .status()
        .expect("bash runs scripts/mcp-venv.sh");
    assert!(status.success(), "scripts/mcp-venv.sh could not install the mcp client into {}", venv.display());
    let python = venv.join("bin/python");
    *ready = Some(python.clone());
    python
}

/// One `omp-discord mcp` server behind the stock Python MCP client.
struct McpClient {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Answers read while waiting for another tag.
    early: HashMap<String, Value>,
    stderr: PathBuf,
    next: u32,
}

impl McpClient {
    /// Starts the client, which starts `omp-discord mcp` with `env` in the
    /// test's project directory, and waits for the handshake.
    async fn start(dir: &TestDir, env: &[(String, String)], name: &str, mode: &str) -> Self {
        let stderr = dir.path().join(format!("mcp-{name}.log"));
        let mut child = tokio::process::Command::new(mcp_python())
            .arg(repo().join("tests/fixtures/mcp_client.py"))
            .args([name, mode])
            .arg(sidecar_bin())
            .arg("mcp")
            .current_dir(dir.path().join("project"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("python runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut client = Self { child, stdin, stdout, early: HashMap::new(), stderr, next: 0 };
        let ready = client.answer("ready").await;
        assert!(ready["protocol"].is_string(), "{ready}");
        client
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    async fn send(&mut self, command: &Value) {
        self.stdin.write_all(format!("{command}\n").as_bytes()).await.unwrap();
    }

    /// The answer tagged `tag`, within 60 s.
    async fn answer(&mut self, tag: &str) -> Value {
        if let Some(answer) = self.early.remove(tag) {
            return answer;
        }
        let read = async {
            loop {
                let mut line = String::new();
                if self.stdout.read_line(&mut line).await.unwrap() == 0 {
                    return None;
                }
                let answer: Value = serde_json::from_str(&line).expect("the client prints JSON lines");
                let got = answer["tag"].as_str().unwrap_or_default().to_owned();
                if got == tag {
                    return Some(answer);
                }
                self.early.insert(got, answer);
            }
        };
        match tokio::time::timeout(Duration::from_secs(60), read).await {
            Ok(Some(answer)) => answer,
            Ok(None) => panic!("the MCP client exited before answering {tag}: {}", self.log()),
            Err(_) => panic!("no answer to {tag} within 60 s: {}", self.log()),
        }
    }

    /// Starts a tool call; returns its tag.
    async fn start_call(&mut self, tool: &str, args: Value) -> String {
        self.next += 1;
        let tag = format!("call-{}", self.next);
        self.send(&json!({ "op": "call", "tag": tag, "name": tool, "args": args })).await;
        tag
    }

    /// Calls a tool: (text, isError), or panics on a protocol error.
    async fn call(&mut self, tool: &str, args: Value) -> (String, bool) {
        let tag = self.start_call(tool, args).await;
        let answer = self.answer(&tag).await;
        assert!(answer.get("error").is_none(), "{tool} failed at the protocol level: {answer}");
        (answer["text"].as_str().unwrap().to_owned(), answer["isError"] == true)
    }

    async fn list_tools(&mut self) -> Vec<Value> {
        self.send(&json!({ "op": "list_tools", "tag": "tools" })).await;
        self.answer("tools").await["tools"].as_array().unwrap().clone()
    }

    /// Closes the session; the server must exit with its stdin.
    async fn quit(mut self) {
        self.send(&json!({ "op": "quit" })).await;
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("the MCP client and server exit when the session closes")
            .unwrap();
        assert!(status.success(), "{}", self.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_lists_core_s_tools_and_sends_reads_and_lists_guilds_through_a_sidecar_it_starts() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    // No sidecar runs: the MCP server starts one, detached.
    assert!(!dir.socket().exists());
    let mut client = McpClient::start(&dir, &env, "Test Client", "legacy").await;

    let tools = client.list_tools().await;
    let core = schema::mcp_tools();
    assert_eq!(
        tools.iter().map(|t| t["name"].as_str().unwrap()).collect::<Vec<_>>(),
        core.iter().map(|t| t.name).collect::<Vec<_>>()
    );
    for (tool, core) in tools.iter().zip(&core) {
        assert_eq!(tool["inputSchema"], core.parameters, "{}", core.name);
        assert_eq!(tool["description"], core.description, "{}", core.name);
    }

    let home = DEFAULT_HOME_CHANNEL_ID.to_string();
    let (sent, is_error) = client
        .call("discord_send", json!({ "channelId": home, "message": format!("deploy key {SECRET} @everyone") }))
        .await;
    assert!(!is_error && sent.starts_with("Posted to Discord"), "{sent}");
    let posted = message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID)
        .into_iter()
        .find(|p| p["body"]["content"].as_str().is_some_and(|c| c.starts_with("deploy key")))
        .expect("the sent message at the emulator");
    let content = posted["body"]["content"].as_str().unwrap();
    assert!(!content.contains(SECRET) && !content.contains("@everyone"), "{content}");
    assert_eq!(posted["body"]["allowed_mentions"], json!({ "parse": [] }));

    let (read, is_error) = client.call("discord_read", json!({ "channelId": home, "limit": 5 })).await;
    assert!(!is_error && read.contains("deploy key") && !read.contains(SECRET), "{read}");

    let (guilds, is_error) = client.call("discord_guilds", json!({})).await;
    assert!(!is_error && guilds.contains("Server \"omp-discord emulator\""), "{guilds}");
    assert!(!guilds.contains('#'), "discord_guilds lists no channels: {guilds}");

    // Discord's own words for an unknown channel, as an MCP tool error (not a protocol error).
    let (lost, is_error) =
        client.call("discord_send", json!({ "channelId": "1100000000000009999", "message": "x" })).await;
    assert!(is_error && lost.contains("unknown_channel") && lost.contains("Unknown Channel"), "{lost}");
    let (bad, is_error) = client.call("discord_send", json!({ "channelId": "#general", "message": "x" })).await;
    assert!(is_error && bad.contains("channelId must be a Discord id"), "{bad}");
    let tag = client.start_call("discord_launch", json!({})).await;
    let unknown = client.answer(&tag).await;
    assert!(unknown["error"]["message"].as_str().is_some_and(|m| m.contains("unknown tool")), "{unknown}");

    // Without a channel: this client's own thread, named after it, and read back from there.
    let (own, is_error) = client.call("discord_send", json!({ "message": "to my own thread" })).await;
    assert!(!is_error, "{own}");
    let start = thread_starts(&emulator).into_iter().next().expect("a thread for the MCP client");
    assert!(start["body"]["name"].as_str().is_some_and(|n| n.contains("MCP client Test Client")), "{start}");
    let thread: u64 = start["response"]["id"].as_str().unwrap().parse().unwrap();
    assert!(thread_messages(&emulator, thread).iter().any(|m| m["content"] == "to my own thread"));
    let (read, is_error) = client.call("discord_read", json!({})).await;
    assert!(!is_error && read.contains("to my own thread"), "{read}");

    // The sidecar it started is not its child: it outlives the MCP server.
    client.quit().await;
    drop(crate::util::Client::greeted(&dir.socket()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_mcp_servers_and_an_omp_extension_share_one_identify() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    // All three start at once with no sidecar running; whoever starts one, one wins the socket.
    let (mut first, mut second) =
        tokio::join!(McpClient::start(&dir, &env, "first", "legacy"), McpClient::start(&dir, &env, "second", "auto"),);
    let script = json!([
        { "tool": "discord_notify", "args": { "message": "from the extension" } },
        { "text": "done" }
    ]);
    let home = DEFAULT_HOME_CHANNEL_ID.to_string();
    let (run, (a, _), (b, _)) = tokio::join!(
        run_omp(&dir, &env, Plugin::Flag, &script, "notify"),
        first.call("discord_send", json!({ "channelId": home, "message": "from the first MCP server" })),
        second.call("discord_send", json!({ "channelId": home, "message": "from the second MCP server" })),
    );
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    assert!(a.starts_with("Posted") && b.starts_with("Posted"), "{a} / {b}");
    assert_eq!(run.tool_results("discord_notify")[0]["isError"], false, "{:?}", run.tool_results("discord_notify"));
    // The gateway connects after startup; let it, then count.
    wait_for("the sidecar's IDENTIFY", Duration::from_secs(20), || {
        (emulator.state().identify_count() > 0).then_some(())
    })
    .await;
    let (guilds, _) = first.call("discord_guilds", json!({})).await;
    assert!(guilds.contains("omp-discord emulator"), "{guilds}");
    assert_eq!(emulator.state().identify_count(), 1, "one bot connection for every client");
    first.quit().await;
    second.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_question_ends_the_wait_and_stays_in_discord() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = McpClient::start(&dir, &env, "asker", "legacy").await;
    let tag = client
        .start_call("discord_ask", json!({ "question": "Ship it?", "options": ["yes", "no"], "timeoutSeconds": 600 }))
        .await;
    let (thread, asked) = question(&emulator).await;
    // One connection to the sidecar carries both: this answer overtakes the waiting question's.
    let (guilds, is_error) = client.call("discord_guilds", json!({})).await;
    assert!(!is_error && guilds.contains("omp-discord emulator"), "{guilds}");
    client.send(&json!({ "op": "cancel", "tag": tag })).await;
    assert_eq!(client.answer(&tag).await["cancelled"], true);
    // The server saw notifications/cancelled and stopped waiting for the sidecar...
    wait_for("the server to end the cancelled wait", Duration::from_secs(10), || {
        client.log().contains("call cancelled by the client").then_some(())
    })
    .await;
    // ...and goes on serving.
    let (guilds, is_error) = client.call("discord_guilds", json!({})).await;
    assert!(!is_error, "{guilds}");
    // The question is still open in Discord, buttons and all.
    let still = thread_messages(&emulator, thread).into_iter().find(|m| m["id"] == asked["id"]).unwrap();
    assert!(still["components"].as_array().is_some_and(|c| !c.is_empty()), "{still}");
    client.quit().await;
    sidecar.terminate().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_without_a_token_or_one_that_cannot_start_says_what_to_do() {
    let dir = TestDir::new();
    // A sidecar without a token answers every request with not_configured.
    let env = sidecar_env(&dir, None);
    let sidecar = Sidecar::start(&dir, &env).await;
    // With the default log filter the server writes nothing to stderr (and stdout is the protocol).
    let quiet: Vec<_> = env.iter().filter(|(k, _)| k != "OMP_DISCORD_LOG").cloned().collect();
    let mut client = McpClient::start(&dir, &quiet, "tokenless", "legacy").await;
    let (text, is_error) = client.call("discord_send", json!({ "message": "hello" })).await;
    assert!(is_error && text.contains("not_configured") && text.contains("OMP_DISCORD_TOKEN"), "{text}");
    let (text, is_error) = client.call("discord_guilds", json!({})).await;
    assert!(is_error && text.contains("not_configured"), "{text}");
    let log = client.stderr.clone();
    client.quit().await;
    assert_eq!(std::fs::read_to_string(log).unwrap(), "", "the server logged by default");
    sidecar.terminate().await;

    // A socket path no sidecar can bind: the started sidecar fails, and the tool says so.
    let blocked = dir.path().join("not-a-dir");
    std::fs::write(&blocked, "").unwrap();
    let mut env = sidecar_env(&dir, None);
    env.retain(|(k, _)| k != "OMP_DISCORD_SOCKET");
    env.push(("OMP_DISCORD_SOCKET".into(), blocked.join("sidecar.sock").display().to_string()));
    let mut client = McpClient::start(&dir, &env, "stranded", "legacy").await;
    let (text, is_error) = client.call("discord_send", json!({ "message": "hello" })).await;
    assert!(
        is_error && text.contains("no omp-discord sidecar answered") && text.contains("omp-discord serve"),
        "{text}"
    );
    assert!(!text.contains("emulator-token"), "{text}");
    client.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_went_away_is_started_again() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = McpClient::start(&dir, &env, "steady", "legacy").await;
    let (guilds, is_error) = client.call("discord_guilds", json!({})).await;
    assert!(!is_error, "{guilds}");
    sidecar.terminate().await;
    // The next call finds the connection closed, starts a sidecar and asks it.
    let (guilds, is_error) = client.call("discord_guilds", json!({})).await;
    assert!(!is_error && guilds.contains("omp-discord emulator"), "{guilds}");
    drop(crate::util::Client::greeted(&dir.socket()).await);
    client.quit().await;
}

/// The text of a tool's only result, and whether it was an error.
fn result(run: &OmpRun, tool: &str) -> (String, bool) {
    let results = run.tool_results(tool);
    let result = results.first().unwrap_or_else(|| panic!("no result of {tool}: {:?} {}", run.events, run.stderr));
    let text = result["result"]["content"][0]["text"].as_str().unwrap_or_default().to_owned();
    (text, result["isError"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn omp_calls_discord_send_through_its_mcp_config() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    // OMP's project-level MCP config; no omp-discord plugin is loaded.
    let config = json!({ "mcpServers": { "discord": { "command": sidecar_bin(), "args": ["mcp"] } } });
    std::fs::create_dir_all(dir.path().join("project/.omp")).unwrap();
    std::fs::write(dir.path().join("project/.omp/mcp.json"), config.to_string()).unwrap();
    // OMP names an MCP tool mcp__<server>_<tool>, dropping a tool prefix equal to the server
    // name, and by default mounts it as the device xd://<name>: the model writes its arguments there.
    let args =
        json!({ "channelId": DEFAULT_HOME_CHANNEL_ID.to_string(), "message": format!("from omp over MCP {SECRET}") });
    let script = json!([
        { "tool": "write", "args": { "path": "xd://mcp__discord_send", "content": args.to_string(), "i": "post to Discord" } },
        { "text": "done" }
    ]);
    let run = run_omp(&dir, &env, Plugin::Linked, &script, "send it").await;
    assert!(run.status.success(), "omp failed: {}", run.stderr);
    let (text, is_error) = result(&run, "write");
    assert!(!is_error && text.contains("Posted to Discord"), "{text}\n{:?}", run.seen.get(1));
    let posted = message_posts(&emulator, DEFAULT_HOME_CHANNEL_ID)
        .into_iter()
        .find(|p| p["body"]["content"].as_str().is_some_and(|c| c.starts_with("from omp over MCP")))
        .expect("the message at the emulator");
    assert!(!posted["body"]["content"].as_str().unwrap().contains(SECRET), "{posted}");
}
