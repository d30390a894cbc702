//! `omp-discord setup --non-interactive` against the emulator, from an empty
//! HOME to a passing `doctor` and a delivered test message, and each failure
//! it explains (the message must say what to do).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use omp_discord_emulator::{
    DEFAULT_BOT_TOKEN, DEFAULT_BOT_USER_ID, DEFAULT_GUILD_ID, DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID,
    DEFAULT_READ_ONLY_CHANNEL_ID, Emulator, EmulatorConfig,
};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::util::{TestDir, omp_path, repo, sidecar_bin, thread_messages, wait_for};

/// The outcome of one setup (or doctor) run.
struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// `omp-discord <args>` with exactly `env` (plus HOME and a PATH without cargo).
fn command(dir: &TestDir, env: &[(&str, String)], args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(sidecar_bin());
    command
        .args(args)
        .env_clear()
        .env("HOME", dir.home())
        .env("PATH", "/usr/bin:/bin")
        .env("OMP_DISCORD_SOCKET", dir.socket())
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn run(dir: &TestDir, env: &[(&str, String)], args: &[&str]) -> Run {
    let output = tokio::time::timeout(Duration::from_secs(60), command(dir, env, args).output())
        .await
        .expect("setup ends within 60 s")
        .expect("omp-discord runs");
    let run = Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!run.all().contains(DEFAULT_BOT_TOKEN), "the token leaked into the output:\n{}", run.all());
    run
}

fn bot_env(emulator: &Emulator) -> Vec<(&'static str, String)> {
    vec![("OMP_DISCORD_TOKEN", DEFAULT_BOT_TOKEN.to_owned()), ("OMP_DISCORD_API_URL", emulator.http_url())]
}

/// A seed whose one guild has not invited the bot yet.
fn uninvited() -> EmulatorConfig {
    let mut config = EmulatorConfig::default();
    config.seed.guilds[0].bot_invited = false;
    config.seed.guilds[0].members.retain(|m| m.user_id != DEFAULT_BOT_USER_ID);
    // Discord makes the bot's managed role when the bot joins.
    config.seed.guilds[0].roles.retain(|r| !r.managed);
    config
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

fn config_file(dir: &TestDir) -> std::path::PathBuf {
    dir.home().join(".config/omp-discord/config.toml")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bot_path_from_an_empty_home_to_a_passing_doctor() {
    let dir = TestDir::new();
    let emulator = Emulator::start(uninvited()).await.unwrap();
    let mut env = bot_env(&emulator);
    env.push(("PATH", omp_path()));
    let repo_dir = repo().display().to_string();
    let args = ["setup", "--non-interactive", "--create-channel", "omp-home", "--plugin", &repo_dir, "--wait", "30"];
    let mut child = command(&dir, &env, &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = String::new();
    // Play the person: accept the invite URL setup printed, then type the code it shows.
    let mut invited = false;
    let mut channel: Option<u64> = None;
    let read_all = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            stdout.push_str(&line);
            stdout.push('\n');
            if line.starts_with("Waiting for the bot to join") {
                let url = stdout.lines().find(|l| l.contains("oauth2/authorize")).unwrap().to_owned();
                let bits: u64 = url.split("&permissions=").nth(1).unwrap().trim().parse().unwrap();
                assert_eq!(bits, omp_discord_core::invite::permission_bits(omp_discord_core::invite::Features::ALL));
                emulator.state().invite_bot(DEFAULT_GUILD_ID, bits).unwrap();
                invited = true;
            }
            if let Some(rest) = line.strip_prefix("✓ home channel #omp-home (") {
                channel = rest.split(')').next().and_then(|id| id.parse().ok());
            }
            let code = line.trim();
            if code.len() == 10 && code.starts_with("omp-") && code[4..].chars().all(|c| c.is_ascii_digit()) {
                let channel = channel.expect("the channel is named before the code");
                // A guest typing something else first does not count.
                emulator.state().inject_message(channel, DEFAULT_OWNER_USER_ID, &json!({"content": "hello?"})).unwrap();
                emulator.state().inject_message(channel, DEFAULT_OWNER_USER_ID, &json!({"content": code})).unwrap();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(90), read_all).await.expect("setup finishes within 90 s");
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "setup failed:\n{stdout}\n{stderr}");
    assert!(invited, "setup never waited for the invite:\n{stdout}");
    assert!(!stdout.contains(DEFAULT_BOT_TOKEN) && !stderr.contains(DEFAULT_BOT_TOKEN));
    assert!(stdout.contains("Done: every OMP session"), "{stdout}");

    // The created channel lets the bot do its work and keeps threads for sessions.
    let channel = stdout
        .lines()
        .find_map(|l| l.strip_prefix("✓ home channel #omp-home (")?.split(')').next()?.parse::<u64>().ok())
        .expect("the channel id");
    let created = emulator.state().channel(channel).unwrap();
    let overwrites = created["permission_overwrites"].as_array().unwrap();
    assert!(
        overwrites.iter().any(|o| o["id"].as_str() == Some(&*DEFAULT_BOT_USER_ID.to_string()) && o["type"] == 1),
        "{created}"
    );
    // The test message arrived.
    let messages = thread_messages(&emulator, channel);
    assert!(
        messages.iter().any(|m| m["content"].as_str().is_some_and(|c| c.contains("omp-discord is set up"))),
        "{messages:#?}"
    );

    // The files: private, the token only in its own file.
    let config = config_file(&dir);
    let token = dir.home().join(".config/omp-discord/token");
    assert_eq!((mode(&config), mode(&token)), (0o600, 0o600));
    assert_eq!(std::fs::read_to_string(&token).unwrap().trim(), DEFAULT_BOT_TOKEN);
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(!text.contains(DEFAULT_BOT_TOKEN), "{text}");
    let table: toml::Table = text.parse().unwrap();
    assert_eq!(table["home_channel_id"].as_str(), Some(&*channel.to_string()));
    assert_eq!(
        table["allowed_users"].as_array().unwrap(),
        &vec![toml::Value::String(DEFAULT_OWNER_USER_ID.to_string())]
    );

    // doctor passes from the written config alone (no token or API in the environment).
    let doctor = run(&dir, &[("PATH", omp_path())], &["doctor"]).await;
    assert!(doctor.ok, "doctor failed:\n{}", doctor.all());
    assert!(doctor.stdout.contains("omp-discord 0.1.0 is linked into OMP"), "{}", doctor.stdout);

    // Re-running shows the current state and keeps keys it does not ask about.
    std::fs::write(&config, format!("{text}approve_tools = [\"bash\"]\n\n[report]\nlevel = \"quiet\"\n")).unwrap();
    let again = run(
        &dir,
        &[("PATH", omp_path())],
        &["setup", "--non-interactive", "--owner-id", &DEFAULT_OWNER_USER_ID.to_string(), "--plugin", &repo_dir],
    )
    .await;
    assert!(again.ok, "{}", again.all());
    assert!(again.stdout.contains(&format!("home channel: {channel}")), "{}", again.stdout);
    assert!(again.stdout.contains("bot token: in"), "{}", again.stdout);
    let table: toml::Table = std::fs::read_to_string(&config).unwrap().parse().unwrap();
    assert_eq!(table["approve_tools"].as_array().unwrap().len(), 1);
    assert_eq!(table["report"]["level"].as_str(), Some("quiet"));
    assert_eq!(table["allowed_users"].as_array().unwrap().len(), 1, "the owner is not added twice");
    assert_eq!(mode(&config), 0o600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_path_verifies_posts_and_saves_the_url_privately() {
    let dir = TestDir::new();
    let emulator = crate::util::emulator().await;
    let client = twilight_http::Client::builder()
        .token(DEFAULT_BOT_TOKEN.to_owned())
        .proxy(emulator.addr().to_string(), true)
        .build();
    let channel = twilight_model::id::Id::new(DEFAULT_HOME_CHANNEL_ID);
    let hook = client.create_webhook(channel, "omp").await.unwrap().model().await.unwrap();
    let url = format!("{}/api/webhooks/{}/{}", emulator.http_url(), hook.id, hook.token.clone().unwrap());
    let env = [("OMP_DISCORD_WEBHOOK_URL", url.clone()), ("OMP_DISCORD_API_URL", emulator.http_url())];
    let setup = run(&dir, &env, &["setup", "--non-interactive", "--webhook"]).await;
    assert!(setup.ok, "{}", setup.all());
    assert!(!setup.all().contains(hook.token.as_deref().unwrap()), "the webhook token leaked:\n{}", setup.all());
    let messages = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID);
    let posted = messages.iter().find(|m| m["content"].as_str().is_some_and(|c| c.contains("omp-discord is set up")));
    assert_eq!(posted.expect("the test message")["webhook_id"], hook.id.to_string());

    let file = dir.home().join(".config/omp-discord/webhook");
    assert_eq!((mode(&file), mode(&config_file(&dir))), (0o600, 0o600));
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), url);
    let table: toml::Table = std::fs::read_to_string(config_file(&dir)).unwrap().parse().unwrap();
    assert_eq!(table["webhook_file"].as_str(), Some(&*file.display().to_string()));
    assert!(!table.contains_key("token_file"));

    // doctor understands webhook-only mode from the config alone: no token is not a failure.
    let doctor = run(&dir, &[], &["doctor"]).await;
    assert!(doctor.ok, "{}", doctor.all());
    assert!(doctor.stdout.contains(&format!("ok    webhook       webhook \"omp\" ({})", hook.id)), "{}", doctor.stdout);
    // Once the webhook is deleted, doctor says so and what to do.
    client.delete_webhook(hook.id).await.unwrap();
    let doctor = run(&dir, &[], &["doctor"]).await;
    assert!(!doctor.ok && doctor.stdout.contains("does not know webhook"), "{}", doctor.stdout);
    assert!(doctor.stdout.contains("New Webhook"), "{}", doctor.stdout);
    // And setup refuses a webhook Discord does not know.
    let again = run(&dir, &env, &["setup", "--non-interactive", "--webhook"]).await;
    assert!(!again.ok && again.stderr.contains("it was deleted, or the URL is incomplete"), "{}", again.all());
}

/// Each failure names the problem and what to do about it, and exits non-zero.
async fn fails_with(dir: &TestDir, env: &[(&str, String)], args: &[&str], says: &[&str]) {
    let run = run(dir, env, args).await;
    assert!(!run.ok, "setup should have failed:\n{}", run.all());
    for text in says {
        assert!(run.stderr.contains(text), "expected {text:?} in:\n{}", run.all());
    }
    assert!(run.stderr.contains("what to do:"), "{}", run.stderr);
    assert!(!config_file(dir).exists(), "a failed setup wrote a config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_explained() {
    let dir = TestDir::new();
    let emulator = crate::util::emulator().await;
    let env = [("OMP_DISCORD_TOKEN", "fake-wrong-token".to_owned()), ("OMP_DISCORD_API_URL", emulator.http_url())];
    fails_with(&dir, &env, &["setup", "--non-interactive"], &["refused the bot token (HTTP 401)", "Reset Token"]).await;
    // A token reset (revoked) reads the same.
    emulator.state().set_faults(&json!({"revoke_token": true})).unwrap();
    fails_with(&dir, &bot_env(&emulator), &["setup", "--non-interactive"], &["wrong, or it was reset"]).await;
    // No token at all says where to put one.
    let env = [("OMP_DISCORD_API_URL", emulator.http_url())];
    fails_with(&dir, &env, &["setup", "--non-interactive"], &["no bot token", "OMP_DISCORD_TOKEN_FILE"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_message_content_intent_is_explained() {
    let dir = TestDir::new();
    let emulator =
        Emulator::start(EmulatorConfig { privileged_intents: 0, ..EmulatorConfig::default() }).await.unwrap();
    let says = ["Message Content intent", "Bot → Privileged Gateway Intents", "MESSAGE CONTENT INTENT"];
    fails_with(&dir, &bot_env(&emulator), &["setup", "--non-interactive"], &says).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_in_no_server_gets_the_invite_url_and_an_explanation() {
    let dir = TestDir::new();
    let emulator = Emulator::start(uninvited()).await.unwrap();
    let run = run(&dir, &bot_env(&emulator), &["setup", "--non-interactive", "--channel", "1", "--wait", "1"]).await;
    assert!(!run.ok);
    assert!(
        run.stdout
            .contains(&format!("oauth2/authorize?client_id={DEFAULT_BOT_USER_ID}&scope=bot+applications.commands")),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("Send Messages: post session cards"), "{}", run.stdout);
    assert!(
        run.stderr.contains("not in any server yet") && run.stderr.contains("open the invite URL"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_without_the_needed_permissions_is_explained() {
    let dir = TestDir::new();
    let emulator = crate::util::emulator().await;
    let channel = DEFAULT_READ_ONLY_CHANNEL_ID.to_string();
    let args = ["setup", "--non-interactive", "--channel", &channel];
    fails_with(&dir, &bot_env(&emulator), &args, &["the bot lacks: Send Messages", "Edit Channel → Permissions"]).await;
    // The default seed's bot may not create channels either.
    let args = ["setup", "--non-interactive", "--create-channel", "omp"];
    fails_with(&dir, &bot_env(&emulator), &args, &["Manage Channels", "invite it again"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_config_directory_is_explained_before_anything_else() {
    let dir = TestDir::new();
    let emulator = crate::util::emulator().await;
    // A file where the directory should be: unwritable even for root.
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let mut env = bot_env(&emulator);
    env.push(("XDG_CONFIG_HOME", blocker.display().to_string()));
    fails_with(
        &dir,
        &env,
        &["setup", "--non-interactive"],
        &["cannot write to the config directory", "OMP_DISCORD_CONFIG"],
    )
    .await;
    let asked = emulator.requests().len();
    assert_eq!(asked, 0, "setup talked to Discord before checking it can save the result");
}

/// A private tmux server running one command in a real terminal; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &[String]) -> Self {
        let socket = format!("omd-setup-{}", std::process::id());
        let status = std::process::Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-x", "220", "-y", "60", "-s", "setup"])
            .args(command)
            .status()
            .expect("tmux runs (scripts/build.sh installs it)");
        assert!(status.success());
        Self { socket }
    }

    fn screen(&self) -> String {
        let output = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-J", "-S", "-200", "-t", "setup"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let status = std::process::Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "setup"])
            .args(keys)
            .status();
        assert!(status.unwrap().success());
    }

    async fn wait_for(&self, text: &str) -> String {
        let what = format!("{text:?} on the terminal");
        // A ceiling, not a pace: once (first run after the rebase, on a loaded machine) a wait ran past 30 s.
        wait_for(&what, Duration::from_secs(60), || {
            let screen = self.screen();
            screen.contains(text).then_some(screen)
        })
        .await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_interactive_flow_in_a_real_terminal() {
    let dir = TestDir::new();
    let emulator = crate::util::emulator().await;
    let done = dir.path().join("exit-code");
    // `env -i` so the terminal's shell sees only this test's environment; the exit code lands in a file.
    let script = format!(
        "env -i HOME={} PATH=/usr/bin:/bin TERM=xterm OMP_DISCORD_API_URL={} OMP_DISCORD_SOCKET={} {} setup \
         --no-plugin --wait 30; echo $? > {}; sleep 600",
        dir.home().display(),
        emulator.http_url(),
        dir.socket().display(),
        sidecar_bin().display(),
        done.display()
    );
    let tmux = Tmux::start(&["sh".to_owned(), "-c".to_owned(), script]);

    tmux.wait_for("choose 1-2 [1]:").await;
    tmux.keys(&["Enter"]);
    // The prompt itself, not "bot token: none" in the summary above it.
    tmux.wait_for("It is not shown while you type.\nbot token: ").await;
    tmux.keys(&["-l", DEFAULT_BOT_TOKEN]);
    tmux.keys(&["Enter"]);
    tmux.wait_for("Should setup create the home channel? [Y/n]").await;
    let screen = tmux.screen();
    assert!(!screen.contains(DEFAULT_BOT_TOKEN), "the token was echoed:\n{screen}");
    tmux.keys(&["n", "Enter"]);
    let screen = tmux.wait_for("Which channel is the home channel?").await;
    assert!(screen.contains("#omp-sessions") && !screen.contains("#private"), "{screen}");
    let line = screen.lines().find(|l| l.contains("#omp-sessions")).unwrap().trim().to_owned();
    let number = line.split(')').next().unwrap().to_owned();
    tmux.keys(&["-l", &number]);
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for("type this code in #omp-sessions").await;
    let code = wait_for("the one-time code", Duration::from_secs(30), || {
        let screen = tmux.screen();
        screen.lines().map(str::trim).find(|l| l.len() == 10 && l.starts_with("omp-")).map(str::to_owned)
    })
    .await;
    let _ = screen;
    emulator.state().inject_message(DEFAULT_HOME_CHANNEL_ID, DEFAULT_OWNER_USER_ID, &json!({"content": code})).unwrap();
    tmux.wait_for("Install the systemd user service? [y/N]").await;
    tmux.keys(&["Enter"]);
    let code = wait_for("setup to exit", Duration::from_secs(60), || std::fs::read_to_string(&done).ok()).await;
    let screen = tmux.screen();
    assert_eq!(code.trim(), "0", "setup failed:\n{screen}");
    assert!(screen.contains("Done: every OMP session") && !screen.contains(DEFAULT_BOT_TOKEN), "{screen}");
    let table: toml::Table = std::fs::read_to_string(config_file(&dir)).unwrap().parse().unwrap();
    assert_eq!(table["home_channel_id"].as_str(), Some(&*DEFAULT_HOME_CHANNEL_ID.to_string()));
    assert_eq!(table["allowed_users"][0].as_str(), Some(&*DEFAULT_OWNER_USER_ID.to_string()));
    let messages = thread_messages(&emulator, DEFAULT_HOME_CHANNEL_ID);
    assert!(messages.iter().any(|m| m["content"].as_str().is_some_and(|c| c.contains("omp-discord is set up"))));
}
