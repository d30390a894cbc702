//! Operations: `status`, `doctor` and `install-service` against the
//! emulator and a private HOME, through the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use omp_discord_core::embed::{Level, Notification, build_notification};
use omp_discord_core::protocol::{ClientFrame, ServerFrame, decode_client_frame};
use omp_discord_emulator::{
    DEFAULT_BOT_TOKEN, DEFAULT_HIDDEN_CHANNEL_ID, DEFAULT_READ_ONLY_CHANNEL_ID, Emulator, RecordedRequest,
};
use serde_json::{Value, json};

use crate::util::{Client, Sidecar, TestDir, emulator, sidecar_bin, sidecar_env, wait_for};

/// Runs `omp-discord ARGS` with exactly `env` (PATH is `dir/bin`, so neither omp nor systemctl is found).
async fn cli(dir: &TestDir, env: &[(String, String)], args: &[&str]) -> Output {
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    tokio::process::Command::new(sidecar_bin())
        .args(args)
        .env_clear()
        .env("PATH", &bin)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output()
        .await
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn all_output(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn set(env: &mut Vec<(String, String)>, key: &str, value: &str) {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
}

fn unset(env: &mut Vec<(String, String)>, key: &str) {
    env.retain(|(k, _)| k != key);
}

fn notify(id: &str) -> ClientFrame {
    let note = Notification { message: "tests passed".into(), level: Level::Success, ..Default::default() };
    // Through JSON, as the shim sends it, so optional fields keep their defaults.
    let frame = json!({
        "type": "notify",
        "id": id,
        "session": {"id": "ops-session", "cwd": "/work/ops", "prompt": "check"},
        "message": build_notification(&note, "ops"),
    });
    decode_client_frame(frame.to_string().as_bytes()).expect("a valid notify frame")
}

/// A token file with `mode`, holding the emulator's token.
fn token_file(dir: &TestDir, mode: u32) -> String {
    let path = dir.path().join("token");
    std::fs::write(&path, format!("{DEFAULT_BOT_TOKEN}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

/// OMP's settings with a tool-call timeout long enough for the default approval timeout.
fn omp_settings(dir: &TestDir, ms: u64) {
    let agent = dir.home().join(".omp/agent");
    std::fs::create_dir_all(&agent).unwrap();
    std::fs::write(agent.join("config.yml"), format!("extensionHandlers:\n  toolCallTimeoutMs: {ms}\n")).unwrap();
}

fn unauthorized(requests: &[RecordedRequest]) -> usize {
    requests.iter().filter(|r| serde_json::to_value(r).unwrap()["status"] == 401).count()
}

#[tokio::test]
async fn status_shows_the_queue_version_and_no_error_when_healthy() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    let mut client = Client::greeted(&sidecar.socket).await;
    let (_, answer) = client.notify(&notify("r1")).await;
    assert!(matches!(answer, ServerFrame::Delivered { .. }), "{answer:?}");

    let output = cli(&dir, &env, &["status", "--json"]).await;
    assert!(output.status.success(), "{}", all_output(&output));
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["queue"], json!({ "depth": 0, "oldest_age_secs": null }));
    assert_eq!(status["last_error"], Value::Null);
    assert_eq!(status["delivered"], 1);
    assert_eq!(status["api"], emulator.http_url());

    let output = cli(&dir, &env, &["status"]).await;
    let text = stdout(&output);
    assert!(text.starts_with(&format!("omp-discord {} (commit", env!("CARGO_PKG_VERSION"))), "{text}");
    for expected in ["  queue         empty", "  last error    none", "1 delivered, 0 refused", "token configured"] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    assert!(text.contains("ops on test: thread "), "{text}");
    assert!(!text.contains(DEFAULT_BOT_TOKEN), "{text}");
}

#[tokio::test]
async fn a_revoked_token_shows_in_status_and_is_not_hammered() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;
    emulator.state().set_faults(&json!({ "revoke_token": true })).unwrap();
    let mut client = Client::greeted(&sidecar.socket).await;
    let (seq, answer) = client.notify(&notify("r1")).await;
    assert!(seq.is_some(), "journaled even though Discord refuses the token");
    let ServerFrame::Error { message, .. } = answer else { panic!("{answer:?}") };
    assert!(message.contains("401") && message.contains("stays queued"), "{message}");

    let output = cli(&dir, &env, &["status", "--json"]).await;
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(status["last_error"].as_str().is_some_and(|e| e.contains("HTTP 401")), "{status:#}");
    assert_eq!(status["queue"]["depth"], 1, "the message stays queued: {status:#}");
    let text = stdout(&cli(&dir, &env, &["status"]).await);
    assert!(text.contains("  last error    Discord refused the bot token (HTTP 401)"), "{text}");
    assert!(text.contains("  queue         1 waiting, oldest "), "{text}");

    // Watch for 4 s: the sidecar backs off instead of retrying in a loop. (Watching
    // over time is the point here, so this loop polls until its window closes.)
    let (start, before) = (Instant::now(), unauthorized(&emulator.requests()));
    while start.elapsed() < Duration::from_secs(4) {
        let refused = unauthorized(&emulator.requests()) - before;
        assert!(refused <= 4, "{refused} requests with a revoked token in {:?}", start.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Restored: the queued message goes out.
    emulator.state().set_faults(&json!({ "revoke_token": false })).unwrap();
    wait_for("the queue to drain", Duration::from_secs(40), || {
        emulator.state().messages(omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID).first().map(|_| ())
    })
    .await;
}

async fn doctor(dir: &TestDir, env: &[(String, String)]) -> (bool, String) {
    let output = cli(dir, env, &["doctor"]).await;
    let text = all_output(&output);
    assert!(!text.contains(DEFAULT_BOT_TOKEN), "the token leaked:\n{text}");
    (output.status.success(), text)
}

fn line<'a>(text: &'a str, start: &str) -> &'a str {
    text.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("no line starting {start:?} in:\n{text}"))
}

#[tokio::test]
async fn doctor_passes_a_healthy_setup() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = sidecar_env(&dir, Some(&emulator));
    unset(&mut env, "OMP_DISCORD_TOKEN");
    set(&mut env, "OMP_DISCORD_TOKEN_FILE", &token_file(&dir, 0o600));
    omp_settings(&dir, 900_000);
    let _sidecar = Sidecar::start(&dir, &env).await;
    let (ok, text) = doctor(&dir, &env).await;
    assert!(ok, "{text}");
    assert!(line(&text, "ok    config").contains("no config file"), "{text}");
    assert!(line(&text, "ok    token").contains("bot omp"), "{text}");
    assert!(line(&text, "ok    home channel").contains("#omp-sessions"), "{text}");
    assert!(line(&text, "ok    socket").contains("mode 700"), "{text}");
    assert!(line(&text, "ok    sidecar").contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(line(&text, "ok    omp timeout").contains("900000 ms"), "{text}");
    // omp is not on PATH here: a warning, not a failure.
    assert!(line(&text, "warn  plugin").contains("not on PATH"), "{text}");
    assert!(line(&text, "ok    intents").contains("Message Content"), "{text}");
    assert!(text.contains("All checks passed"), "{text}");

    let output = cli(&dir, &env, &["doctor", "--json"]).await;
    assert!(output.status.success(), "{}", all_output(&output));
    let checks: Value = serde_json::from_slice(&output.stdout).unwrap();
    let token = checks.as_array().unwrap().iter().find(|c| c["name"] == "token").unwrap();
    assert_eq!(token["level"], "ok", "{checks:#}");
    let intents = checks.as_array().unwrap().iter().find(|c| c["name"] == "intents").unwrap();
    assert_eq!(intents["level"], "ok", "{checks:#}");
}

#[tokio::test]
async fn doctor_warns_when_message_content_is_not_granted() {
    let dir = TestDir::new();
    // A bot whose application has no Message Content intent enabled.
    let config = omp_discord_emulator::EmulatorConfig { privileged_intents: 0, ..Default::default() };
    let emulator = omp_discord_emulator::Emulator::start(config).await.unwrap();
    let env = sidecar_env(&dir, Some(&emulator));
    let output = cli(&dir, &env, &["doctor", "--json"]).await;
    let checks: Value = serde_json::from_slice(&output.stdout).unwrap();
    let intents = checks.as_array().unwrap().iter().find(|c| c["name"] == "intents").unwrap();
    assert_eq!(intents["level"], "warn", "{checks:#}");
    assert!(intents["fix"].as_str().unwrap().contains("MESSAGE CONTENT INTENT"), "{checks:#}");
}

#[tokio::test]
async fn doctor_explains_each_failure() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let base = sidecar_env(&dir, Some(&emulator));

    // A refused token.
    let mut env = base.clone();
    set(&mut env, "OMP_DISCORD_TOKEN", "not-the-emulator-token");
    let (ok, text) = doctor(&dir, &env).await;
    assert!(!ok, "{text}");
    assert!(line(&text, "FAIL  token").contains("refused the bot token (HTTP 401)"), "{text}");
    assert!(text.contains("fix: reset the token") && !text.contains("not-the-emulator-token"), "{text}");

    // A channel that does not exist.
    let mut env = base.clone();
    set(&mut env, "OMP_DISCORD_CHANNEL_ID", "1100000000000000999");
    let (ok, text) = doctor(&dir, &env).await;
    assert!(!ok && line(&text, "FAIL  home channel").contains("does not exist"), "{text}");
    assert!(text.contains("Copy Channel ID"), "{text}");

    // A channel the bot cannot see.
    let mut env = base.clone();
    set(&mut env, "OMP_DISCORD_CHANNEL_ID", &DEFAULT_HIDDEN_CHANNEL_ID.to_string());
    let (ok, text) = doctor(&dir, &env).await;
    assert!(!ok && line(&text, "FAIL  home channel").contains("cannot see channel"), "{text}");
    assert!(text.contains("Permissions") && text.contains("View Channel"), "{text}");

    // A channel the bot can see but not post in.
    let mut env = base.clone();
    set(&mut env, "OMP_DISCORD_CHANNEL_ID", &DEFAULT_READ_ONLY_CHANNEL_ID.to_string());
    let (ok, text) = doctor(&dir, &env).await;
    assert!(!ok && line(&text, "FAIL  home channel").contains("lacks: Send Messages"), "{text}");

    // A token file others can read.
    let mut env = base.clone();
    unset(&mut env, "OMP_DISCORD_TOKEN");
    set(&mut env, "OMP_DISCORD_TOKEN_FILE", &token_file(&dir, 0o644));
    let (ok, text) = doctor(&dir, &env).await;
    assert!(!ok && line(&text, "FAIL  config").contains("readable by other users"), "{text}");
    assert!(text.contains("chmod 600"), "{text}");

    // A token in the config file, and a typo next to it.
    let mut env = base.clone();
    unset(&mut env, "OMP_DISCORD_TOKEN");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, format!("token = \"{DEFAULT_BOT_TOKEN}\"\n")).unwrap();
    set(&mut env, "OMP_DISCORD_CONFIG", &config.display().to_string());
    let (ok, text) = doctor(&dir, &env).await;
    assert!(!ok && line(&text, "FAIL  config").contains("contains a `token` key"), "{text}");

    // No token at all; a typo in the file is a warning; OMP's timeout is too short.
    std::fs::write(&config, "home_chanel_id = \"1\"\n").unwrap();
    omp_settings(&dir, 30_000);
    let (ok, text) = doctor(&dir, &env).await;
    assert!(!ok && line(&text, "FAIL  token").contains("no Discord bot token"), "{text}");
    assert!(line(&text, "warn  config").contains("did you mean `home_channel_id`?"), "{text}");
    assert!(line(&text, "warn  omp timeout").contains("30000 ms"), "{text}");
    assert!(text.contains("omp config set extensionHandlers.toolCallTimeoutMs 660000"), "{text}");

    // A socket directory others can enter.
    let mut env = base.clone();
    let socket_dir = dir.socket().parent().unwrap().to_owned();
    std::fs::create_dir_all(&socket_dir).unwrap();
    std::fs::set_permissions(&socket_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    set(&mut env, "OMP_DISCORD_SOCKET", &dir.socket().display().to_string());
    let (ok, text) = doctor(&dir, &env).await;
    assert!(!ok && line(&text, "FAIL  socket").contains("mode 755"), "{text}");
    assert!(text.contains(&format!("chmod 700 {}", socket_dir.display())), "{text}");
}

fn unit_of(text: &str) -> &str {
    text.split_once('\n').map(|(_, unit)| unit).unwrap_or_default()
}

#[tokio::test]
async fn install_service_writes_a_unit_without_the_token() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = sidecar_env(&dir, Some(&emulator));
    unset(&mut env, "OMP_DISCORD_TOKEN");
    let token = token_file(&dir, 0o600);
    set(&mut env, "OMP_DISCORD_TOKEN_FILE", &token);

    // The token from a file: systemd hands it over as a credential.
    let output = cli(&dir, &env, &["install-service", "--dry-run"]).await;
    let text = stdout(&output);
    assert!(output.status.success(), "{}", all_output(&output));
    let unit_path = dir.home().join(".config/systemd/user/omp-discord.service");
    assert!(text.starts_with(&format!("# {}\n", unit_path.display())), "{text}");
    let unit = unit_of(&text);
    assert!(!unit.contains(DEFAULT_BOT_TOKEN), "{unit}");
    assert!(unit.contains(&format!("LoadCredential=omp-discord-token:{token}\n")), "{unit}");
    let exec = unit.lines().find_map(|l| l.strip_prefix("ExecStart=")).expect("ExecStart");
    assert!(exec.starts_with('/') && exec.ends_with("omp-discord serve"), "{exec}");
    assert!(Path::new(exec.trim_end_matches(" serve")).is_file(), "{exec}");
    for line in [
        "Restart=on-failure",
        "WantedBy=default.target",
        &format!("Environment=OMP_DISCORD_CHANNEL_ID={}", omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID),
        &format!("Environment=OMP_DISCORD_SOCKET={}", dir.socket().display()),
    ] {
        assert!(unit.lines().any(|l| l == line), "{line:?} missing from:\n{unit}");
    }
    assert!(!unit_path.exists(), "--dry-run writes nothing");

    // The token from the environment: a 0600 environment file, never the unit.
    unset(&mut env, "OMP_DISCORD_TOKEN_FILE");
    set(&mut env, "OMP_DISCORD_TOKEN", DEFAULT_BOT_TOKEN);
    let output = cli(&dir, &env, &["install-service"]).await;
    let text = all_output(&output);
    assert!(output.status.success(), "{text}");
    assert!(!text.contains(DEFAULT_BOT_TOKEN), "{text}");
    // systemctl is not on this test's PATH: the commands to run are printed instead.
    assert!(text.contains("systemctl --user enable --now omp-discord.service"), "{text}");
    let unit = std::fs::read_to_string(&unit_path).unwrap();
    let env_file = dir.home().join(".config/omp-discord/service.env");
    assert!(unit.contains(&format!("EnvironmentFile={}\n", env_file.display())), "{unit}");
    assert!(!unit.contains(DEFAULT_BOT_TOKEN) && !unit.contains("LoadCredential"), "{unit}");
    assert_eq!(std::fs::metadata(&env_file).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&env_file).unwrap(), format!("OMP_DISCORD_TOKEN={DEFAULT_BOT_TOKEN}\n"));

    let output = cli(&dir, &env, &["uninstall-service"]).await;
    let text = stdout(&output);
    assert!(output.status.success() && text.contains("removed"), "{}", all_output(&output));
    assert!(!unit_path.exists() && !env_file.exists());

    // Without a token there is nothing to install.
    unset(&mut env, "OMP_DISCORD_TOKEN");
    let output = cli(&dir, &env, &["install-service", "--dry-run"]).await;
    assert!(!output.status.success() && all_output(&output).contains("no bot token is configured"));
}

#[tokio::test]
async fn serve_logs_json_lines_on_request() {
    let dir = TestDir::new();
    let env = sidecar_env(&dir, None::<&Emulator>);
    let output = cli(&dir, &env, &["--log-format", "json", "serve", "--exit-when-idle", "0"]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Value> = stderr.lines().map(|l| serde_json::from_str(l).expect("a JSON log line")).collect();
    assert!(lines.iter().any(|l| l["message"] == "sidecar listening"), "{stderr}");
}

/// `GET path` over plain HTTP/1.0; the whole answer, or None when nothing listens.
async fn http_get(addr: &str, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    Some(answer)
}

#[tokio::test]
async fn serve_http_exposes_health_and_metrics_on_loopback_only() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let refused = cli(&dir, &env, &["serve", "--http", "0.0.0.0:9464"]).await;
    assert!(!refused.status.success(), "{}", all_output(&refused));
    assert!(all_output(&refused).contains("is not a loopback address"), "{}", all_output(&refused));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let _serve = tokio::process::Command::new(sidecar_bin())
        .args(["serve", "--http", &addr])
        .env_clear()
        .env("PATH", &bin)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let socket = dir.socket();
    wait_for("the sidecar's socket", Duration::from_secs(10), || socket.exists().then_some(())).await;
    let mut client = Client::greeted(&socket).await;
    let (_, answer) = client.notify(&notify("r1")).await;
    assert!(matches!(answer, ServerFrame::Delivered { .. }), "{answer:?}");

    // The HTTP listener was bound before the socket, so it accepts by now.
    let metrics = http_get(&addr, "/metrics").await.expect("/metrics answers");
    assert!(metrics.starts_with("HTTP/1.0 200") || metrics.starts_with("HTTP/1.1 200"), "{metrics}");
    for line in ["omp_discord_delivered_total 1", "omp_discord_pending 0", "omp_discord_clients 1"] {
        assert!(metrics.lines().any(|l| l == line), "{line:?} missing from:\n{metrics}");
    }
    let health = http_get(&addr, "/healthz").await.unwrap();
    let body: Value = serde_json::from_str(health.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["queue_depth"], 0);
}

#[tokio::test]
async fn doctor_checks_the_plugin_link_with_omp() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let mut env = sidecar_env(&dir, Some(&emulator));
    omp_settings(&dir, 900_000);
    // `omp` (and the Bun it needs) from the checkout's node_modules, nothing else.
    let path =
        format!("{}:{}", crate::util::repo().join("node_modules/.bin").display(), dir.path().join("bin").display());
    let doctor_with_omp = |env: Vec<(String, String)>| {
        let path = path.clone();
        let dir = &dir;
        async move {
            let output = tokio::process::Command::new(sidecar_bin())
                .arg("doctor")
                .env_clear()
                .env("PATH", path)
                .env("TMPDIR", dir.tmp())
                .envs(env)
                .kill_on_drop(true)
                .output()
                .await
                .unwrap();
            (output.status.success(), all_output(&output))
        }
    };
    set(&mut env, "HOME", &dir.home().display().to_string());

    let (ok, text) = doctor_with_omp(env.clone()).await;
    assert!(!ok && line(&text, "FAIL  plugin").contains("not linked"), "{text}");
    assert!(text.contains("omp plugin link"), "{text}");

    // A plugin package (the real manifest) whose bundle is not built yet.
    let package = dir.path().join("plugin");
    std::fs::create_dir_all(&package).unwrap();
    std::fs::copy(crate::util::repo().join("package.json"), package.join("package.json")).unwrap();
    let linked = tokio::process::Command::new(crate::util::repo().join("node_modules/.bin/omp"))
        .args(["plugin", "link"])
        .arg(&package)
        .env_clear()
        .env("PATH", &path)
        .env("HOME", dir.home())
        .env("TMPDIR", dir.tmp())
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    assert!(linked.status.success(), "{}", all_output(&linked));
    let (ok, text) = doctor_with_omp(env.clone()).await;
    assert!(!ok && line(&text, "FAIL  plugin").contains("dist/index.js is not built"), "{text}");

    std::fs::create_dir_all(package.join("dist")).unwrap();
    std::fs::write(package.join("dist/index.js"), "export default function () {}\n").unwrap();
    let (ok, text) = doctor_with_omp(env).await;
    assert!(ok, "{text}");
    assert!(
        line(&text, "ok    plugin").contains(&format!("omp-discord {} is linked", env!("CARGO_PKG_VERSION"))),
        "{text}"
    );
}

/// The default seed plus a second server (guild `guild`, one text channel
/// `channel`) that the bot is in, as it would be after a second invite.
fn with_second_server(guild: u64, channel: u64) -> omp_discord_emulator::EmulatorConfig {
    let mut config = omp_discord_emulator::EmulatorConfig::default();
    let mut second = config.seed.guilds[0].clone();
    let first = second.id;
    let renumber = |id: u64| if id == first { guild } else { id + guild };
    second.id = guild;
    second.name = "second server".into();
    for role in &mut second.roles {
        role.id = renumber(role.id);
    }
    for member in &mut second.members {
        member.roles = member.roles.iter().map(|r| renumber(*r)).collect();
    }
    let mut text = second.channels.iter().find(|c| c.kind == 0).cloned().expect("a text channel");
    (text.id, text.name, text.parent_id) = (channel, "ops-alerts".into(), None);
    second.channels = vec![text];
    config.seed.guilds.push(second);
    config
}

#[tokio::test]
async fn projects_report_to_their_own_channel_in_another_server() {
    const SECOND_GUILD: u64 = 9_100_000_000_000_000;
    const ALERTS: u64 = 9_100_000_000_000_001;
    let dir = TestDir::new();
    let emulator = Emulator::start(with_second_server(SECOND_GUILD, ALERTS)).await.unwrap();
    let projects = dir.path().join("projects");
    for project in ["payments-api", "payments-web", "blog"] {
        std::fs::create_dir_all(projects.join(project)).unwrap();
    }
    let config = dir.home().join(".config/omp-discord/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "[[projects]]\npath = \"{0}/payments-*\"\nchannel_id = \"{ALERTS}\"\n\n[[projects]]\npath = \"{0}/blog\"\n\n\
             [[projects]]\npath = \"{0}/missing\"\n",
            projects.display()
        ),
    )
    .unwrap();
    let env = sidecar_env(&dir, Some(&emulator));
    let sidecar = Sidecar::start(&dir, &env).await;

    let mut client = Client::greeted(&dir.socket()).await;
    for (session, cwd) in [("pay", "payments-api/src"), ("blog", "blog")] {
        let frame = json!({
            "type": "notify",
            "id": session,
            "session": {"id": session, "cwd": projects.join(cwd).display().to_string(), "prompt": "deploy"},
            "message": build_notification(&Notification { message: format!("{session} done"), ..Default::default() }, "x"),
        });
        let (_, outcome) = client.notify(&decode_client_frame(frame.to_string().as_bytes()).unwrap()).await;
        assert!(matches!(outcome, ServerFrame::Delivered { .. }), "{outcome:?}");
    }

    // Each session's thread opened where its project reports: a channel of the second server, or home.
    let starts: Vec<String> =
        crate::util::thread_starts(&emulator).iter().map(|r| r["path"].as_str().unwrap().to_owned()).collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert!(starts[0].contains(&format!("/channels/{ALERTS}/messages/")), "{starts:?}");
    let home = omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID;
    assert!(starts[1].contains(&format!("/channels/{home}/messages/")), "{starts:?}");
    assert_eq!(emulator.state().messages(ALERTS).len(), 1, "the starter of the payments session");
    assert_eq!(emulator.state().messages(home).len(), 1, "the starter of the blog session");

    let status: Value = serde_json::from_slice(&cli(&dir, &env, &["status", "--json"]).await.stdout).unwrap();
    let listed: Vec<(Value, Value)> =
        status["projects"].as_array().unwrap().iter().map(|p| (p["channel_id"].clone(), p["dirs"].clone())).collect();
    assert_eq!(listed, [(json!(ALERTS.to_string()), json!(2)), (Value::Null, json!(1)), (Value::Null, json!(0))]);
    let text = stdout(&cli(&dir, &env, &["status"]).await);
    assert!(text.contains(&format!("payments-* → channel {ALERTS} (2 dirs)")), "{text}");

    // doctor checks each project: its channel in the other server, and a path that matches nothing.
    let (_, text) = doctor(&dir, &env).await;
    assert!(line(&text, "ok    project").contains("payments-* → #ops-alerts"), "{text}");
    assert!(text.contains("blog: 1 directory (reports to the home channel)"), "{text}");
    assert!(text.contains("no directory matches") && text.contains("/missing"), "{text}");
    sidecar.terminate().await;
}

/// Waits until the sidecar's gateway connection is up.
async fn gateway_connected(emulator: &Emulator) {
    wait_for("the gateway connection", Duration::from_secs(20), || {
        (emulator.state().snapshot()["gateway"]["connected"].as_u64().unwrap_or(0) >= 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fatal_gateway_close_is_reported_in_status_and_the_home_channel() {
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let _sidecar = Sidecar::start(&dir, &env).await;
    let state = emulator.state();
    gateway_connected(&emulator).await;
    // Discord refuses the Message Content intent: close 4014, no reconnecting.
    state.set_faults(&json!({ "gateway": { "action": "close", "code": 4014 } })).unwrap();

    let said = wait_for("a message in the home channel", Duration::from_secs(20), || {
        let messages = state.messages(omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID);
        messages.into_iter().find(|m| m.to_string().contains("Message Content"))
    })
    .await;
    assert!(said.to_string().contains("4014"), "{said}");
    let output = cli(&dir, &env, &["status", "--json"]).await;
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["gateway"], "closed", "{status:#}");
    assert_eq!(status["gateway_close"]["code"], 4014, "{status:#}");
    assert!(status["gateway_close"]["advice"].as_str().is_some_and(|a| a.contains("Privileged Gateway Intents")));
    let text = stdout(&cli(&dir, &env, &["status"]).await);
    assert!(text.contains("closed for good: Discord refused a privileged intent (close 4014)"), "{text}");
    let (_, doctor) = doctor(&dir, &env).await;
    assert!(doctor.contains("gateway closed for good (close 4014)"), "{doctor}");
    assert!(doctor.contains("Privileged Gateway Intents"), "{doctor}");
    // One message, not one per retry: the sidecar does not reconnect after a fatal close.
    let notes = state
        .messages(omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID)
        .into_iter()
        .filter(|m| m.to_string().contains("stopped listening"))
        .count();
    assert_eq!(notes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_the_bot_may_not_post_in_is_held_said_once_and_resumed_when_its_permissions_change() {
    use omp_discord_emulator::{DEFAULT_GUILD_ID, DEFAULT_HOME_CHANNEL_ID, DEFAULT_READ_ONLY_CHANNEL_ID};
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let _sidecar = Sidecar::start(&dir, &env).await;
    let state = emulator.state();
    gateway_connected(&emulator).await;
    let channel = DEFAULT_READ_ONLY_CHANNEL_ID.to_string();
    let posts = || {
        emulator
            .requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with(&format!("/channels/{channel}/messages")))
            .count()
    };
    let to_channel = |id: &str, text: &str| {
        let ClientFrame::Notify(mut request) = crate::hostile::notify(id, "held", text) else { unreachable!() };
        request.channel_id = Some(channel.clone());
        ClientFrame::Notify(request)
    };

    // Discord answers 403 Missing Permissions: the message waits, and the client hears why.
    let mut client = Client::greeted(&dir.socket()).await;
    let (seq, answer) = client.notify(&to_channel("h1", "first while held")).await;
    assert!(seq.is_some(), "journaled before Discord was asked");
    let ServerFrame::Error { code, message, .. } = &answer else { panic!("{answer:?}") };
    assert_eq!(code.as_str(), "destination_held");
    assert!(message.contains("50013") && message.contains("stays queued"), "{message}");
    // A second message to it waits behind the first without another request to Discord.
    let mut second = Client::greeted(&dir.socket()).await;
    let accepted = second.call(&to_channel("h2", "second while held")).await;
    assert!(matches!(accepted, ServerFrame::Accepted { .. }), "{accepted:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(posts(), 1, "one refused request, not one per message or per second");

    // Said once: status, its text, doctor and one line in the home channel.
    let output = cli(&dir, &env, &["status", "--json"]).await;
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    let held = &status["held"][0];
    assert_eq!(held["destination"], format!("channel:{channel}"), "{status:#}");
    assert_eq!(held["code"], 50013, "{status:#}");
    assert!(held["retry_in_secs"].as_u64().is_some_and(|s| (30..=60).contains(&s)), "{status:#}");
    assert_eq!(status["queue"]["depth"], 2, "{status:#}");
    let text = stdout(&cli(&dir, &env, &["status"]).await);
    assert!(text.contains(&format!("  held          channel:{channel} (code 50013: Missing Permissions)")), "{text}");
    let (healthy, doctor) = doctor(&dir, &env).await;
    assert!(!healthy && doctor.contains("Discord refuses the bot in channel:"), "{doctor}");
    let notes = || {
        state
            .messages(DEFAULT_HOME_CHANNEL_ID)
            .into_iter()
            .filter(|m| m.to_string().contains("cannot post somewhere"))
            .count()
    };
    assert_eq!(notes(), 1);

    // An admin lets everyone post there: CHANNEL_UPDATE, and the two go out in order, at once.
    state.set_permission_overwrite(DEFAULT_READ_ONLY_CHANNEL_ID, DEFAULT_GUILD_ID, 0, 0, 0).unwrap();
    let delivered = second.read_within(Duration::from_secs(20)).await.expect("an outcome");
    assert!(matches!(delivered, ServerFrame::Delivered { .. }), "{delivered:?}");
    let texts: Vec<String> = crate::util::thread_messages(&emulator, DEFAULT_READ_ONLY_CHANNEL_ID)
        .iter()
        .flat_map(|m| m["embeds"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e["description"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(texts, ["first while held", "second while held"]);
    let output = cli(&dir, &env, &["status", "--json"]).await;
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(status["held"], json!([]), "{status:#}");
    assert_eq!(notes(), 1, "said once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_omp_session_hears_once_that_replies_from_discord_stopped() {
    use tokio::io::AsyncBufReadExt;
    let dir = TestDir::new();
    let emulator = emulator().await;
    let env = sidecar_env(&dir, Some(&emulator));
    let _sidecar = Sidecar::start(&dir, &env).await;
    let state = emulator.state();
    let script = json!([{ "text": "ok" }]);
    let mut omp = crate::util::omp_command(&dir, &env, crate::util::Plugin::Flag, &script, &["--mode", "rpc"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("omp starts");
    let mut events = tokio::io::BufReader::new(omp.stdout.take().unwrap()).lines();
    gateway_connected(&emulator).await;
    wait_for("the session's thread", Duration::from_secs(60), || {
        (!crate::util::thread_starts(&emulator).is_empty()).then_some(())
    })
    .await;
    state.set_faults(&json!({ "gateway": { "action": "close", "code": 4004 } })).unwrap();

    // The terminal (here OMP's RPC stream) gets one warning that says what to do.
    let mut notices = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(15);
    while let Ok(Ok(Some(line))) = tokio::time::timeout_at(until, events.next_line()).await {
        let event: Value = serde_json::from_str(&line).unwrap_or_default();
        if event["type"] == "extension_ui_request" && event["method"] == "notify" {
            notices.push(event);
        }
    }
    let stopped: Vec<_> =
        notices.iter().filter(|n| n["message"].to_string().contains("from Discord stopped")).collect();
    assert_eq!(stopped.len(), 1, "{notices:#?}");
    assert_eq!(stopped[0]["notifyType"], "warning");
    let text = stopped[0]["message"].as_str().unwrap();
    assert!(text.starts_with("omp-discord: ") && text.contains("4004") && text.contains("token"), "{text}");
    let _ = omp.kill().await;
}
