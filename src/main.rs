//! `omp-discord`: the sidecar that connects OMP sessions with Discord, and its
//! CLI. (The demo and the Discord emulator are programs of their own:
//! `crates/demo`, `crates/emulator`.)

mod client;
mod config;
mod discord;
mod doctor;
mod failpoint;
mod mcp;
mod metrics;
mod notify;
mod serve;
mod service;
mod setup;
mod store;

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use omp_discord_core::protocol::{ClientFrame, PROTOCOL_VERSION, ServerFrame};
use tracing_subscriber::EnvFilter;

const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("OMP_DISCORD_COMMIT"), ", socket protocol ", "3", ")");

#[derive(Parser)]
#[command(name = "omp-discord", version, long_version = LONG_VERSION, about = "Connects OMP coding-agent sessions with Discord")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as text or as JSON objects (one per line, for journald or a log shipper).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum NotifyLevel {
    Info,
    Success,
    Warning,
    Error,
}

impl From<NotifyLevel> for omp_discord_core::embed::Level {
    fn from(level: NotifyLevel) -> Self {
        match level {
            NotifyLevel::Info => Self::Info,
            NotifyLevel::Success => Self::Success,
            NotifyLevel::Warning => Self::Warning,
            NotifyLevel::Error => Self::Error,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar: the one process that talks to Discord for every OMP session of this user.
    Serve {
        /// Exit after this many seconds without clients (used when the extension starts the sidecar).
        #[arg(long, value_name = "SECS")]
        exit_when_idle: Option<u64>,
        /// Serve /healthz and /metrics (Prometheus text) on this loopback address, e.g. 127.0.0.1:9464.
        #[arg(long, value_name = "ADDR")]
        http: Option<std::net::SocketAddr>,
    },
    /// Show the running sidecar's state.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running sidecar to finish in-flight sends and exit.
    Stop,
    /// Post a notification from a script, cron job or CI through the running sidecar
    /// (same journal, redaction and limits as OMP sessions).
    ///
    /// Exit codes: 0 delivered; 75 queued (journaled, but Discord did not confirm in time: the sidecar
    /// retries); 1 failed (refused by the sidecar or by Discord); 69 no sidecar running; 2 usage.
    #[command(after_help = "Examples:\n  omp-discord notify --level success \"backup done\"\n  \
                            make test 2>&1 | tail -50 | omp-discord notify --level error --title \"tests failed\" -")]
    Notify {
        /// Post into this OMP session's thread (its session id) instead of this directory's own thread.
        #[arg(long, value_name = "SESSION", conflicts_with = "channel")]
        thread: Option<String>,
        /// Post into this channel (an id) instead of a thread.
        #[arg(long, value_name = "ID")]
        channel: Option<u64>,
        /// Colour and label of the notification.
        #[arg(long, value_enum, default_value_t = NotifyLevel::Info)]
        level: NotifyLevel,
        /// A headline above the text.
        #[arg(long, value_name = "T")]
        title: Option<String>,
        /// Seconds to wait for Discord's confirmation once the sidecar has journaled the message.
        #[arg(long, value_name = "SECS", default_value_t = 15)]
        wait: u64,
        /// Print the outcome as one JSON object.
        #[arg(long)]
        json: bool,
        /// The text (Markdown), or `-` to read it from stdin.
        #[arg(value_name = "TEXT|-")]
        text: String,
    },
    /// Check the configuration, the token, the home channel, the socket and the OMP plugin; say how to fix each problem.
    Doctor {
        /// Print the checks as JSON (`[{name, level, detail, fix}]`) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Guided setup: check the token and intents, invite the bot, pick or create the home channel,
    /// prove the owner, write the config (0600), link the plugin, run doctor.
    /// Tokens come from a prompt without echo, or with --non-interactive from OMP_DISCORD_TOKEN(_FILE)
    /// or OMP_DISCORD_WEBHOOK_URL — never from a flag.
    Setup(setup::Options),
    /// Write and start a systemd user unit that keeps the sidecar running.
    InstallService {
        /// Print the unit instead of writing it.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop, disable and remove the systemd user unit.
    UninstallService,
    /// Redact secrets from stdin to stdout, with the same rules as every path to Discord.
    Redact,
    /// Serve the Discord tools to an MCP client on stdin/stdout, through the running sidecar (started if needed).
    Mcp,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("omp-discord: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(format: LogFormat) {
    // OMP_DISCORD_LOG, else the config file's `log`, else quiet.
    let filter =
        config::log_filter().and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    const _: () = assert!(PROTOCOL_VERSION == 3, "update LONG_VERSION with the protocol version");
    match command {
        Command::Serve { exit_when_idle, http } => {
            // Refused before anything starts: metrics are for loopback only.
            let http = match http {
                Some(addr) => Some(metrics::bind(addr).await?),
                None => None,
            };
            serve(exit_when_idle.map(Duration::from_secs), http).await
        }
        Command::Status { json } => status(json).await,
        Command::Stop => stop().await,
        Command::Notify { thread, channel, level, title, wait, json, text } => {
            notify::run(notify::Options {
                thread,
                channel,
                level: level.into(),
                title,
                text,
                json,
                wait: Duration::from_secs(wait),
            })
            .await
        }
        Command::Doctor { json } => doctor(json).await,
        Command::Setup(options) => setup::run(options).await,
        Command::InstallService { dry_run } => install_service(dry_run),
        Command::UninstallService => uninstall_service(),
        Command::Redact => redact(),
        Command::Mcp => mcp::run().await,
    }
}

async fn serve(exit_when_idle: Option<Duration>, http: Option<tokio::net::TcpListener>) -> anyhow::Result<ExitCode> {
    // twilight's TLS connector needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = config::Config::load()?;
    let bound = match serve::socket::bind(&config.socket) {
        Ok(bound) => bound,
        Err(serve::socket::BindError::AlreadyRunning(path)) => {
            let Some(pid) = serve::socket::hung_holder(&path).await else {
                // Several OMP processes may start a sidecar at once; one wins.
                tracing::info!(path = %path.display(), "another sidecar is running; exiting");
                return Ok(ExitCode::SUCCESS);
            };
            tracing::warn!(
                pid,
                path = %path.display(),
                "the sidecar holding the socket has not answered for {} s (stopped or hung); replacing it",
                serve::socket::HUNG_AFTER.as_secs()
            );
            if let Err(err) = serve::socket::end_hung(pid) {
                // Gone already (another new sidecar ended it), or not ours: the lock says which.
                tracing::warn!(pid, error = %err, "cannot signal the hung sidecar");
            }
            match serve::socket::bind_within(&config.socket, Duration::from_secs(5)).await {
                Ok(bound) => bound,
                // Another new sidecar replaced it first.
                Err(serve::socket::BindError::AlreadyRunning(path))
                    if serve::socket::hung_holder(&path).await.is_none() =>
                {
                    return Ok(ExitCode::SUCCESS);
                }
                Err(serve::socket::BindError::AlreadyRunning(path)) => anyhow::bail!(
                    "the sidecar holding {} (pid {pid}) does not answer and could not be replaced; end it with \
                     `kill -9 {pid}`, then start again",
                    path.display()
                ),
                Err(err) => return Err(err.into()),
            }
        }
        Err(err) => return Err(err.into()),
    };
    match (&config.token, &config.webhook) {
        (None, None) => tracing::warn!("no Discord token or webhook configured; requests get not_configured"),
        (None, Some(_)) => tracing::info!("webhook-only mode: posting through the webhook, no gateway"),
        _ => {}
    }
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create the state directory {}", config.state_dir.display()))?;
    let outbox_path = config.state_dir.join("outbox.sqlite3");
    let outbox = store::Outbox::open(&outbox_path).inspect_err(|_| {
        // Clients find no socket, rather than one nobody answers.
        let _ = std::fs::remove_file(&bound.path);
    });
    let outbox = outbox.with_context(|| {
        format!(
            "cannot open the outbox {}: the sidecar needs a writable state directory with free space; free some \
             disk space or fix its permissions, or point OMP_DISCORD_STATE_DIR at another directory",
            outbox_path.display()
        )
    })?;
    let access = serve::Access {
        users: config.allowed_users.iter().copied().collect(),
        roles: config.allowed_roles.iter().copied().collect(),
        approvals: omp_discord_core::approval::ApprovalPolicy {
            tools: config.approve_tools.clone(),
            timeout_secs: config.approval_timeout.as_secs(),
        },
    };
    let gateway_url = config.gateway_url.clone().or_else(|| config.api.local_gateway());
    let token = config.token.clone();
    let sidecar = serve::Sidecar::new(config, outbox, access);
    sidecar.import_spool();
    let delivery = tokio::spawn(serve::deliver(sidecar.clone()));
    if let Some(token) = token {
        tokio::spawn(serve::learn_owner(sidecar.clone()));
        tokio::spawn(serve::gateway::run(sidecar.clone(), token, gateway_url));
    }
    tracing::info!(socket = %bound.path.display(), "sidecar listening");
    let signals = tokio::spawn(cancel_on_signal(sidecar.clone()));
    if let Some(listener) = http {
        tokio::spawn(metrics::serve(listener, sidecar.clone()));
    }
    if let Some(idle) = exit_when_idle {
        tokio::spawn(serve::exit_when_idle(sidecar.clone(), idle));
    }
    serve::run(bound.listener, sidecar.clone(), Duration::from_secs(10)).await;
    signals.abort();
    let _ = delivery.await;
    let _ = std::fs::remove_file(&bound.path);
    tracing::info!("sidecar stopped");
    Ok(ExitCode::SUCCESS)
}

async fn cancel_on_signal(sidecar: std::sync::Arc<serve::Sidecar>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("signal received; shutting down");
    sidecar.shutdown.cancel();
}

async fn status(json: bool) -> anyhow::Result<ExitCode> {
    let path = config::default_socket_path()?;
    let mut connection = client::Connection::open(&path).await?;
    let ServerFrame::Status { status, .. } = connection.call(&ClientFrame::Status { id: "status".into() }).await?
    else {
        anyhow::bail!("unexpected answer to status");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print!("{}", status_text(&status));
    }
    Ok(ExitCode::SUCCESS)
}

/// `status` for people: one line per aspect, problems first in their line.
fn status_text(status: &serde_json::Value) -> String {
    use std::fmt::Write as _;
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let secs = |value: &serde_json::Value| {
        let s = value.as_u64().unwrap_or(0);
        match s {
            0..60 => format!("{s} s"),
            60..3600 => format!("{} min {} s", s / 60, s % 60),
            _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
        }
    };
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<14}{value}");
    };
    let head = format!(
        "omp-discord {} (commit {}, protocol {}): pid {}, up {}\n",
        text(&status["version"]),
        text(&status["commit"]),
        text(&status["protocol"]),
        text(&status["pid"]),
        secs(&status["uptime_secs"])
    );
    line("socket", text(&status["socket"]));
    line(
        "config",
        match &status["config_file"] {
            serde_json::Value::String(path) => path.clone(),
            _ => "no config file (environment only)".to_owned(),
        },
    );
    if let Some(warnings) = status["config_warnings"].as_array().filter(|w| !w.is_empty()) {
        line("", format!("warning: {}", warnings.iter().map(text).collect::<Vec<_>>().join("; ")));
    }
    let token =
        if status["token_configured"] == true { "token configured" } else { "NO TOKEN (see `omp-discord doctor`)" };
    line("discord", format!("{}, {token}", text(&status["api"])));
    if !status["gateway"].is_null() {
        line("gateway", text(&status["gateway"]));
    }
    if let Some(advice) = status["gateway_close"]["advice"].as_str() {
        line("", format!("closed for good: {advice}"));
    }
    for held in status["held"].as_array().into_iter().flatten() {
        line(
            "held",
            format!(
                "{} (code {}: {}) for {}, tried again in {} or when the server's channels or roles change",
                text(&held["destination"]),
                text(&held["code"]),
                text(&held["reason"]),
                secs(&held["since_secs"]),
                secs(&held["retry_in_secs"])
            ),
        );
    }
    line("home channel", text(&status["home_channel_id"]));
    for project in status["projects"].as_array().into_iter().flatten() {
        let channel = match project["channel_id"].as_str() {
            Some(channel) => format!("channel {channel}"),
            None => "the home channel".to_owned(),
        };
        line("project", format!("{} → {channel} ({} dirs)", text(&project["path"]), text(&project["dirs"])));
    }
    line(
        "clients",
        format!("{} connected, {} requests in flight", text(&status["clients"]), text(&status["in_flight"])),
    );
    let queue = &status["queue"];
    line(
        "queue",
        match queue["depth"].as_u64() {
            None => "unknown (the outbox cannot be read)".to_owned(),
            Some(0) => "empty".to_owned(),
            Some(depth) => format!("{depth} waiting, oldest {} old", secs(&queue["oldest_age_secs"])),
        },
    );
    let limits = &status["rate_limits"];
    if !limits.is_null() {
        let mut text = format!("{} answered 429 since start", text(&limits["rate_limited"]));
        if limits["paused_ms"].as_u64().is_some_and(|ms| ms > 0) {
            text.push_str(&format!(", pausing requests for {} ms", limits["paused_ms"]));
        }
        if let Some([remaining, limit]) = limits["home_messages"].as_array().map(Vec::as_slice) {
            text.push_str(&format!(
                "; home channel posts: {remaining} of {limit} left, refill in {} ms",
                limits["home_messages_reset_ms"]
            ));
        }
        line("rate limits", text);
    }
    line("sent", format!("{} delivered, {} refused since start", text(&status["delivered"]), text(&status["failed"])));
    line(
        "last error",
        match &status["last_error"] {
            serde_json::Value::String(error) => error.clone(),
            _ => "none".to_owned(),
        },
    );
    let sessions = status["sessions"].as_array().cloned().unwrap_or_default();
    if !sessions.is_empty() {
        line("sessions", format!("{} recent", sessions.len()));
        for session in &sessions {
            let thread = match &session["thread_id"] {
                serde_json::Value::String(id) => format!("thread {id}"),
                _ => "no thread yet".to_owned(),
            };
            line("", format!("{} on {}: {thread}", text(&session["project"]), text(&session["host"])));
        }
    }
    head + &out
}

async fn stop() -> anyhow::Result<ExitCode> {
    let path = config::default_socket_path()?;
    let mut connection = client::Connection::open(&path).await?;
    connection.call(&ClientFrame::Shutdown { id: "stop".into() }).await?;
    // The sidecar removes its socket once in-flight sends are done.
    for _ in 0..200 {
        if !path.exists() {
            return Ok(ExitCode::SUCCESS);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the sidecar accepted the stop request but is still running after 10 s")
}

fn redact() -> anyhow::Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input).context("stdin is not UTF-8 text")?;
    let output = omp_discord_core::redact::redact_text(&input);
    std::io::stdout().write_all(output.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

async fn doctor(json: bool) -> anyhow::Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let report = doctor::run(config::Config::load(), &doctor::Environment::current()).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report.checks)?);
        return Ok(if report.failed() { ExitCode::FAILURE } else { ExitCode::SUCCESS });
    }
    for check in &report.checks {
        println!("{check}");
    }
    if report.failed() {
        println!("\nSome checks failed; fix them from the top (later checks may depend on earlier ones).");
        Ok(ExitCode::FAILURE)
    } else {
        println!(
            "\nAll checks passed{}.",
            if report.checks.iter().any(|c| c.level == doctor::Level::Warn) { " (see the warnings)" } else { "" }
        );
        Ok(ExitCode::SUCCESS)
    }
}

fn install_service(dry_run: bool) -> anyhow::Result<ExitCode> {
    let config = config::Config::load()?;
    let exe = std::env::current_exe().context("cannot find this program's path for ExecStart")?;
    let exe = exe.canonicalize().unwrap_or(exe);
    let plan = service::plan(&config, &exe, &|name| std::env::var(name).ok())?;
    if config.home_channel.is_none() {
        eprintln!("warning: no home channel is configured; the service will refuse notifications until one is");
    }
    if dry_run {
        println!("# {}", plan.unit_path.display());
        print!("{}", plan.unit);
        if let Some(env_file) = &plan.env_file {
            println!("# and {} (mode 0600) with OMP_DISCORD_TOKEN from this shell", env_file.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    service::write(&plan, &config)?;
    println!("wrote {}", plan.unit_path.display());
    if let Some(env_file) = &plan.env_file {
        println!("wrote {} (mode 0600, holds the token)", env_file.display());
    }
    let unit = service::UNIT_NAME;
    match service::systemctl(&[&["daemon-reload"], &["enable", "--now", unit]]) {
        service::Systemd::Done => {
            println!("started {unit}; `systemctl --user status {unit}` and `omp-discord status` show it");
        }
        service::Systemd::Manual { reason, commands } => {
            println!("could not start it here ({reason}); run:");
            for command in commands {
                println!("  {command}");
            }
            println!("(to keep it running after logout: `loginctl enable-linger $USER`)");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn uninstall_service() -> anyhow::Result<ExitCode> {
    let unit = service::UNIT_NAME;
    let stopped = service::systemctl(&[&["disable", "--now", unit]]);
    let removed = service::remove()?;
    for path in &removed {
        println!("removed {}", path.display());
    }
    if removed.is_empty() {
        println!("no {unit} was installed");
    }
    match (stopped, removed.is_empty()) {
        (service::Systemd::Done, _) => {
            let _ = service::systemctl(&[&["daemon-reload"]]);
            println!("stopped and disabled {unit}");
        }
        (service::Systemd::Manual { .. }, true) => {}
        (service::Systemd::Manual { reason, .. }, false) => {
            println!(
                "systemd was not told ({reason}); if the service runs, run `systemctl --user disable --now {unit}`"
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
