//! The demo's story: one command that shows the product working.
//!
//! By default it needs no token and no network: the Discord emulator (in
//! this process), a sidecar (`omp-discord serve`), and a long-lived `omp`
//! (RPC mode) driven by a scripted model. A simulated person answers in
//! Discord, and the demo narrates each step as it happens: the session's
//! thread, the live run card, an approval (a stranger's click refused, the
//! owner's "Always allow"), a secret redacted on its way to Discord, the run
//! summary, a reply in the thread that starts the next run, and `/omp
//! status`. It ends with the web view's address (and, with `--screenshot`, a
//! picture of it).
//!
//! With `OMP_DISCORD_TOKEN` (or `_FILE`) and `OMP_DISCORD_CHANNEL_ID` set it
//! posts to the real Discord instead (your configuration, your approvals); with
//! `OMP_DISCORD_DEMO_MODEL` set it uses that model instead of the script.
//!
//! It reaches the product only from outside, as a person would: the
//! `omp-discord` binary (`OMP_DISCORD_BIN`, else the one built next to this
//! program) and the plugin in the checkout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use omp_discord_emulator::{
    DEFAULT_BOT_TOKEN, DEFAULT_GUEST_USER_ID, DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, Emulator, EmulatorConfig,
    EmulatorState,
};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// The product's environment variables the demo sets or reads (docs/configuration.md).
pub(crate) mod env {
    /// The config file's path (left unset for the demo's sidecar).
    pub(crate) const CONFIG: &str = "OMP_DISCORD_CONFIG";
    /// The bot token itself.
    pub(crate) const TOKEN: &str = "OMP_DISCORD_TOKEN";
    /// A file holding the bot token.
    pub(crate) const TOKEN_FILE: &str = "OMP_DISCORD_TOKEN_FILE";
    /// The home channel id.
    pub(crate) const CHANNEL_ID: &str = "OMP_DISCORD_CHANNEL_ID";
    /// Discord's API origin: the emulator's.
    pub(crate) const API_URL: &str = "OMP_DISCORD_API_URL";
    /// The sidecar's socket.
    pub(crate) const SOCKET: &str = "OMP_DISCORD_SOCKET";
    /// The log filter.
    pub(crate) const LOG: &str = "OMP_DISCORD_LOG";
    /// The `omp-discord` binary (also what the extension starts).
    pub(crate) const BIN: &str = "OMP_DISCORD_BIN";
}

/// How long each narrated step may take before the demo gives up on it.
const STEP_DEADLINE: Duration = Duration::from_secs(60);

/// The first prompt (it must not mention tests: the script answers those differently).
const FIRST_PROMPT: &str = "Deploy the app to staging, then tell the team how it went.";
/// What the simulated owner replies in the session's thread.
const REPLY: &str = "Thanks. Now run the tests, please.";

/// The scripted model: turn by turn, the deploy run (a `bash` call that needs
/// approval and leaks a secret, a Discord notification, an answer), or — when
/// the last message asks for tests — the test run.
fn script(secret: &str) -> Value {
    let deploy = format!(
        "echo \"deploy: connecting with DEPLOY_API_KEY={secret}\"; sleep 2; \
         echo \"deploy: staging is locked by another deploy\" >&2; exit 1"
    );
    json!([
        { "match": { "tests": { "tool": "bash", "args": { "command": "echo running 12 tests; sleep 2; echo 12 passed" } } },
          "else": { "tool": "bash", "args": { "command": deploy } } },
        { "match": { "tests": { "text": "All 12 tests passed." } },
          "else": { "tool": "discord_notify", "args": {
              "title": "Staging deploy blocked", "level": "warning",
              "message": "Staging is locked by another deploy. I will try again once it is free." } } },
        { "text": "Staging was locked, so nothing was deployed; I told the team in Discord." }
    ])
}

/// Runs the demo from the repository at `repo`. Waits for Ctrl-C at the end
/// unless `exit`; with `screenshot`, saves a picture of the web view there
/// (headless Chromium) before stopping.
///
/// # Errors
///
/// When the repository is not built, the sidecar or omp does not start, or a
/// step does not happen in time.
pub(crate) async fn run(repo: &Path, exit: bool, screenshot: Option<PathBuf>) -> anyhow::Result<()> {
    // omp runs in a project directory of its own: every path it gets must be absolute.
    let repo = &std::fs::canonicalize(repo).with_context(|| format!("no checkout at {}", repo.display()))?;
    let omp = repo.join("node_modules/.bin/omp");
    if !omp.exists() || !repo.join("dist/index.js").exists() {
        bail!("{} is not built: run `bash scripts/build.sh` there first", repo.display());
    }
    let sidecar = sidecar_binary()?;
    let real = std::env::var_os(env::TOKEN).is_some() || std::env::var_os(env::TOKEN_FILE).is_some();
    if real {
        return real_discord(repo, &omp, &sidecar).await;
    }
    let work = tempfile::Builder::new().prefix("omp-discord-demo").tempdir().context("cannot create a temp dir")?;
    let demo = Demo::start(repo, &omp, &sidecar, work.path()).await?;
    let outcome = demo.narrate(screenshot.as_deref()).await;
    if outcome.is_ok() && !exit {
        println!("\nPress Ctrl-C to stop the demo.");
        let _ = tokio::signal::ctrl_c().await;
    }
    demo.stop().await;
    outcome
}

/// The `omp-discord` binary: `OMP_DISCORD_BIN`, else the one built next to this program.
fn sidecar_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os(env::BIN) {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    let bin = exe.with_file_name("omp-discord");
    if !bin.exists() {
        bail!("{} is missing: run `bash scripts/build.sh` first (or set {})", bin.display(), env::BIN);
    }
    Ok(bin)
}

/// The emulated world: emulator, sidecar and a long-lived omp.
struct Demo {
    emulator: Emulator,
    sidecar: Child,
    omp: Child,
    /// The `omp-discord` binary, and the environment that points it at this world.
    bin: PathBuf,
    vars: Vec<(&'static str, String)>,
    secret: String,
}

impl Demo {
    async fn start(repo: &Path, omp: &Path, bin: &Path, work: &Path) -> anyhow::Result<Self> {
        println!("omp-discord demo: the whole product on a local Discord emulator, with a scripted model.\n");
        let emulator = Emulator::start(EmulatorConfig::default()).await.context("the emulator did not start")?;
        println!("Web view (updates live):  {}/\n", emulator.http_url());

        // A private HOME: its config asks for approvals of bash and a quick run card.
        let home = work.join("home");
        let config_dir = home.join(".config/omp-discord");
        std::fs::create_dir_all(&config_dir)?;
        std::fs::write(
            config_dir.join("config.toml"),
            "approve_tools = [\"bash\"]\n\n[report]\ncard_interval_secs = 1\n",
        )?;
        let project = work.join("shop-api");
        std::fs::create_dir_all(&project)?;
        let socket = work.join("run/sidecar.sock");
        let vars = vec![
            (env::SOCKET, socket.display().to_string()),
            (env::TOKEN, DEFAULT_BOT_TOKEN.to_owned()),
            (env::CHANNEL_ID, DEFAULT_HOME_CHANNEL_ID.to_string()),
            (env::API_URL, emulator.http_url()),
            ("HOME", home.display().to_string()),
        ];

        let sidecar = Command::new(bin)
            .arg("serve")
            .envs(vars.iter().map(|(k, v)| (*k, v)))
            .env_remove(env::CONFIG)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the sidecar")?;
        wait_for_socket(&socket).await?;
        step(
            1,
            &format!(
                "Sidecar started (pid {}): one gateway connection and one outbox for every OMP process.",
                sidecar.id().unwrap_or(0)
            ),
        );

        let secret = fake_secret();
        let path =
            format!("{}:{}", repo.join("node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default());
        let mut omp = Command::new(omp)
            .current_dir(&project)
            .envs(vars.iter().map(|(k, v)| (*k, v)))
            .env("PATH", path)
            .env("TMPDIR", work)
            .env(env::BIN, bin)
            .env("OMP_DISCORD_SCRIPT", script(&secret).to_string())
            .args(["--mode", "rpc", "--no-session", "-e"])
            .arg(repo.join("tests/fixtures/scripted-model.ts"))
            .arg("-e")
            .arg(repo)
            .args(["--model", "fake/scripted"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot run omp")?;
        let prompt = json!({ "type": "prompt", "message": FIRST_PROMPT });
        let stdin = omp.stdin.as_mut().context("omp's stdin")?;
        stdin.write_all(format!("{prompt}\n").as_bytes()).await?;
        step(2, &format!("omp runs in shop-api (RPC mode, scripted model). Prompt: \"{FIRST_PROMPT}\""));
        Ok(Self { emulator, sidecar, omp, bin: bin.to_owned(), vars, secret })
    }

    fn state(&self) -> &EmulatorState {
        self.emulator.state()
    }

    /// Plays the story, printing each step once it is visible in Discord.
    async fn narrate(&self, screenshot: Option<&Path>) -> anyhow::Result<()> {
        let thread = until("the session's thread", || {
            self.state().snapshot()["threads"].as_array()?.first()?["id"].as_str()?.parse::<u64>().ok()
        })
        .await?;
        detail("the session got its own thread in #omp-sessions, named after the project and the prompt");

        // The live run card, edited in place while the run goes on.
        step(3, "The live run card (edited in place, at most once a second here):");
        let card =
            until("the run card", || self.find(thread, |m| title(m).starts_with("Running")).map(|m| id(&m))).await?;
        let mut shown = String::new();

        // The approval: a stranger's click is refused, the owner's "Always allow" lets bash run.
        let approval = self.follow_card(thread, &card, &mut shown, |m| button(m, "omp:always:").is_some()).await?;
        step(4, "bash needs a person: the approval request shows the exact command, redacted:");
        detail(&code_line(&description(&approval)));
        let refusal = self.click(thread, &approval, "omp:approve:", DEFAULT_GUEST_USER_ID).await?;
        detail(&format!("a guest (not on the allowlist) clicks Approve → refused: \"{refusal}\""));
        self.click(thread, &approval, "omp:always:", DEFAULT_OWNER_USER_ID).await?;
        detail("the owner clicks \"Always allow\" → bash runs, and runs without asking again in this session");

        // The deploy script leaks a key: Discord gets it redacted, and never in clear.
        let leaked = self.follow_card(thread, &card, &mut shown, |m| title(m).starts_with("Tool error")).await?;
        step(5, &format!("The deploy script printed DEPLOY_API_KEY={}… and failed. Discord got:", &self.secret[..6]));
        detail(&format!("{}: {}", title(&leaked), code_line(&description(&leaked))));
        let everywhere = self.emulator.requests().iter().any(|r| r.body.to_string().contains(&self.secret));
        if everywhere {
            bail!("the secret reached Discord in clear");
        }
        detail("the key is in none of the requests Discord received (nor, by default, in what the model read)");

        let summary = self
            .follow_card(thread, &card, &mut shown, |m| m["id"] == card && !title(m).starts_with("Running"))
            .await?;
        step(6, &format!("The run card became the summary: {} — \"{}\"", title(&summary), first_line(&summary)));
        let labels: Vec<&str> = summary["components"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row["components"].as_array().into_iter().flatten())
            .filter_map(|c| c["label"].as_str())
            .collect();
        if !labels.is_empty() {
            detail(&format!("its buttons: {} (a running card has Stop)", labels.join(", ")));
        }

        // The owner replies in the thread: it reaches omp and starts the next run.
        let reply = self
            .state()
            .inject_message(thread, DEFAULT_OWNER_USER_ID, &json!({ "content": REPLY }))
            .map_err(|err| anyhow::anyhow!("the emulator refused the reply: {err}"))?;
        step(7, &format!("The owner replies in the thread: \"{REPLY}\""));
        let reply_id = reply["id"].as_str().unwrap_or_default().to_owned();
        until("the ✅ receipt", || self.requested("PUT", &format!("/messages/{reply_id}/reactions/"))).await?;
        until("the typing indicator", || self.requested("POST", &format!("/channels/{thread}/typing"))).await?;
        detail("✅ the bot reacts once OMP has it, and shows itself typing while the agent works");
        let second = until("the second run's summary", || self.runs(thread).get(1).cloned()).await?;
        detail(&format!(
            "the reply ran as a new turn (bash always allowed now): {} — \"{}\"",
            title(&second),
            first_line(&second)
        ));

        // /omp status, as anyone on the allowlist types it.
        let status = self.slash_status(thread).await?;
        step(8, "/omp status answers (only the person who asked sees it):");
        for line in status.lines().take(4) {
            detail(line);
        }

        let name = self.state().channel(thread).and_then(|c| c["name"].as_str().map(str::to_owned)).unwrap_or_default();
        println!(
            "\nEverything above happened in the emulator: open {}/?channel={thread} to see the thread \"{name}\".",
            self.emulator.http_url()
        );
        if let Some(path) = screenshot {
            take_screenshot(&format!("{}/?channel={thread}&still=1", self.emulator.http_url()), path).await?;
            println!("Screenshot of the web view: {}", path.display());
        }
        Ok(())
    }

    /// Prints each new state of the run card until a message of the thread passes `check`.
    async fn follow_card(
        &self,
        thread: u64,
        card: &str,
        shown: &mut String,
        check: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            if let Some(line) =
                self.message(thread, card).filter(|m| title(m).starts_with("Running")).map(|m| card_line(&m))
                && line != *shown
            {
                detail(&line);
                *shown = line;
            }
            if let Some(found) = self.find(thread, &check) {
                return Ok(found);
            }
            if start.elapsed() > STEP_DEADLINE {
                bail!(
                    "the demo waited {} s for the run to go on; run `OMP_DISCORD_LOG=debug omp-discord-demo` to see why",
                    STEP_DEADLINE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The first message of `channel` that `check` accepts.
    fn find(&self, channel: u64, check: impl Fn(&Value) -> bool) -> Option<Value> {
        self.state().messages(channel).into_iter().find(|m| check(m))
    }

    fn message(&self, channel: u64, message_id: &str) -> Option<Value> {
        self.find(channel, |m| m["id"] == message_id)
    }

    /// Finished runs in the thread, oldest first.
    fn runs(&self, thread: u64) -> Vec<Value> {
        let ended = |m: &Value| ["Run finished", "Run failed"].iter().any(|t| title(m).starts_with(t));
        self.state().messages(thread).into_iter().filter(ended).collect()
    }

    fn requested(&self, method: &str, path_part: &str) -> Option<()> {
        self.emulator.requests().iter().any(|r| r.method == method && r.path.contains(path_part)).then_some(())
    }

    /// Clicks the button of `message` whose id starts with `prefix`, as `user`;
    /// returns the ephemeral answer's text, if any.
    async fn click(&self, thread: u64, message: &Value, prefix: &str, user: u64) -> anyhow::Result<String> {
        let custom_id = button(message, prefix).context("the button")?;
        let spec = json!({
            "type": "button", "custom_id": custom_id, "message_id": id(message),
            "channel_id": thread.to_string(), "user_id": user.to_string(),
        });
        self.answer(&spec).await
    }

    async fn slash_status(&self, thread: u64) -> anyhow::Result<String> {
        let spec = json!({
            "type": "command", "name": "omp", "channel_id": thread.to_string(),
            "user_id": DEFAULT_OWNER_USER_ID.to_string(), "options": [{ "name": "status", "type": 1 }],
        });
        self.answer(&spec).await
    }

    /// Injects an interaction and waits for the bot's answer: the text of its first callback.
    async fn answer(&self, spec: &Value) -> anyhow::Result<String> {
        let payload =
            self.state().inject_interaction(spec).map_err(|err| anyhow::anyhow!("the emulator refused it: {err}"))?;
        let interaction: u64 = payload["id"].as_str().and_then(|i| i.parse().ok()).context("an interaction id")?;
        until("the bot's answer", || {
            let state = self.state().interaction(interaction)?;
            let callback = state["callbacks"].as_array()?.first()?.clone();
            Some(callback["data"]["content"].as_str().unwrap_or_default().to_owned())
        })
        .await
    }

    async fn stop(mut self) {
        drop(self.omp.stdin.take());
        let _ = tokio::time::timeout(Duration::from_secs(10), self.omp.wait()).await;
        let _ = self.omp.kill().await;
        // Let the outbox drain, then stop the sidecar like `omp-discord stop` does.
        wait_until_drained(&self.bin, &self.vars).await;
        if let Some(pid) = self.sidecar.id() {
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0)).expect("a child's pid"),
                rustix::process::Signal::TERM,
            );
        }
        let _ = tokio::time::timeout(Duration::from_secs(15), self.sidecar.wait()).await;
        self.emulator.shutdown().await;
    }
}

/// A real token is configured: one `omp -p` run against your Discord.
async fn real_discord(repo: &Path, omp: &Path, bin: &Path) -> anyhow::Result<()> {
    println!("Using the real Discord (OMP_DISCORD_TOKEN is set): watch your home channel.");
    let model = std::env::var("OMP_DISCORD_DEMO_MODEL").ok();
    let path = format!("{}:{}", repo.join("node_modules/.bin").display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(omp);
    command.env("PATH", path).env(env::BIN, bin).args(["-p", "--no-session", "-e"]).arg(repo);
    match &model {
        Some(model) => command.args(["--model", model]),
        None => {
            let secret = fake_secret();
            command
                .env("OMP_DISCORD_SCRIPT", script(&secret).to_string())
                .arg("-e")
                .arg(repo.join("tests/fixtures/scripted-model.ts"))
                .args(["--model", "fake/scripted"])
        }
    };
    command.arg(FIRST_PROMPT);
    println!(
        "Running omp ({}); approve its bash call in the session's thread if your config asks for approvals …",
        model.as_deref().unwrap_or("scripted model")
    );
    let status = command.stdin(Stdio::null()).status().await.context("cannot run omp")?;
    if !status.success() {
        bail!("omp exited with {status}");
    }
    println!("Done: the session's thread in your home channel has the run.");
    Ok(())
}

fn step(n: usize, text: &str) {
    println!("[{n}/8] {text}");
}

fn detail(text: &str) {
    println!("      {text}");
}

fn title(message: &Value) -> String {
    message["embeds"][0]["title"].as_str().unwrap_or_default().to_owned()
}

fn description(message: &Value) -> String {
    message["embeds"][0]["description"].as_str().unwrap_or_default().to_owned()
}

fn first_line(message: &Value) -> String {
    description(message).lines().next().unwrap_or_default().to_owned()
}

fn id(message: &Value) -> String {
    message["id"].as_str().unwrap_or_default().to_owned()
}

/// The first line of code in a Markdown text (fences and their language left out).
fn code_line(markdown: &str) -> String {
    let line = markdown.lines().find(|l| !l.trim().is_empty() && !l.trim_start().starts_with("```"));
    line.unwrap_or_default().trim().to_owned()
}

/// The card as one line: its title and its fields' first lines.
fn card_line(message: &Value) -> String {
    let fields = message["embeds"][0]["fields"].as_array().cloned().unwrap_or_default();
    let parts: Vec<String> = fields
        .iter()
        .map(|f| {
            format!(
                "{}: {}",
                f["name"].as_str().unwrap_or_default(),
                code_line(f["value"].as_str().unwrap_or_default())
            )
        })
        .collect();
    format!("{} · {}", title(message), parts.join(" · "))
}

/// The `custom_id` of the first button of `message` whose id starts with `prefix`.
fn button(message: &Value, prefix: &str) -> Option<String> {
    message["components"]
        .as_array()?
        .iter()
        .flat_map(|row| row["components"].as_array().into_iter().flatten())
        .find_map(|c| c["custom_id"].as_str().filter(|id| id.starts_with(prefix)).map(str::to_owned))
}

/// Waits (polling) until `check` gives a value, or fails naming `what`.
async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return Ok(value);
        }
        if start.elapsed() > STEP_DEADLINE {
            bail!(
                "the demo waited {} s for {what}; run `OMP_DISCORD_LOG=debug omp-discord-demo` to see why",
                STEP_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A fresh, obviously fake key that the redaction rules recognise (32 letters and digits).
fn fake_secret() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut state =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64 | 1;
    (0..32)
        .map(|_| {
            // xorshift: random-looking, not secret.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ALPHABET[usize::try_from(state % ALPHABET.len() as u64).unwrap_or(0)] as char
        })
        .collect()
}

/// Saves a picture of `url` with headless Chromium.
async fn take_screenshot(url: &str, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|name| std::process::Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success()))
        .context("--screenshot needs Chromium (Debian: apt-get install chromium)")?;
    let profile = tempfile::tempdir()?;
    let run = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1280,1400"])
        // `still` keeps the page from long-polling, so it goes idle once drawn, however busy the machine.
        .arg("--virtual-time-budget=3000")
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .context("Chromium took more than 60 s for the screenshot")?
        .context("cannot run Chromium")?;
    if !output.status.success() || !path.exists() {
        bail!(
            "Chromium could not take the screenshot: {}",
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
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

/// Waits until the sidecar's outbox has nothing pending (as `omp-discord status --json`
/// reports it through the socket in `vars`), or 15 s.
async fn wait_until_drained(bin: &Path, vars: &[(&str, String)]) {
    let start = Instant::now();
    loop {
        let status = Command::new(bin)
            .args(["status", "--json"])
            .envs(vars.iter().map(|(k, v)| (*k, v)))
            .env_remove(env::CONFIG)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await;
        let status: Value = status
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| serde_json::from_slice(&output.stdout).ok())
            .unwrap_or_default();
        if status["outbox"]["pending"] == 0 || start.elapsed() > Duration::from_secs(15) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
