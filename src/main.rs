//! `omp-discord`: the sidecar that connects OMP sessions with Discord, its
//! CLI, and a local Discord emulator.

mod client;
mod config;
mod demo;
mod serve;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use omp_discord_core::protocol::{ClientFrame, PROTOCOL_VERSION, ServerFrame};
use tracing_subscriber::EnvFilter;

const LONG_VERSION: &str =
    concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("OMP_DISCORD_COMMIT"), ", socket protocol ", "1", ")");

#[derive(Parser)]
#[command(name = "omp-discord", version, long_version = LONG_VERSION, about = "Connects OMP coding-agent sessions with Discord")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar: the one process that talks to Discord for every OMP session of this user.
    Serve {
        /// Exit after this many seconds without clients (used when the extension starts the sidecar).
        #[arg(long, value_name = "SECS")]
        exit_when_idle: Option<u64>,
    },
    /// Show the running sidecar's state.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running sidecar to finish in-flight sends and exit.
    Stop,
    /// Redact secrets from stdin to stdout, with the same rules as every path to Discord.
    Redact,
    /// Show the whole product working: emulator (or your Discord), sidecar, and one omp run.
    Demo {
        /// The omp-discord checkout (built with scripts/build.sh).
        #[arg(long, default_value = ".")]
        repo: PathBuf,
        /// Exit when the run is reported instead of waiting for Ctrl-C.
        #[arg(long)]
        exit: bool,
    },
    /// Run the local Discord emulator (REST v10 + gateway) until interrupted.
    Emulator {
        /// Port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 0)]
        port: u16,
        /// A JSON seed describing guilds, channels, users and roles.
        #[arg(long)]
        seed: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
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

fn init_tracing() {
    let filter = EnvFilter::try_from_env(config::env::LOG).unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    const _: () = assert!(PROTOCOL_VERSION == 1, "update LONG_VERSION with the protocol version");
    match command {
        Command::Serve { exit_when_idle } => serve(exit_when_idle.map(Duration::from_secs)).await,
        Command::Status { json } => status(json).await,
        Command::Stop => stop().await,
        Command::Redact => redact(),
        Command::Demo { repo, exit } => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            demo::run(&repo, exit).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Emulator { port, seed } => emulator(port, seed).await,
    }
}

async fn serve(exit_when_idle: Option<Duration>) -> anyhow::Result<ExitCode> {
    // twilight's TLS connector needs a process-wide crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = config::Config::from_env()?;
    let bound = match serve::socket::bind(&config.socket) {
        Ok(bound) => bound,
        Err(serve::socket::BindError::AlreadyRunning(path)) => {
            // Several OMP processes may start a sidecar at once; one wins.
            tracing::info!(path = %path.display(), "another sidecar is running; exiting");
            return Ok(ExitCode::SUCCESS);
        }
        Err(err) => return Err(err.into()),
    };
    if config.token.is_none() {
        tracing::warn!("no Discord token configured; requests will be answered with not_configured");
    }
    std::fs::create_dir_all(&config.state_dir)
        .with_context(|| format!("cannot create the state directory {}", config.state_dir.display()))?;
    let outbox = serve::outbox::Outbox::open(&config.state_dir.join("outbox.sqlite3"))?;
    let access = serve::Access {
        users: config.allowed_users.iter().copied().collect(),
        roles: config.allowed_roles.iter().copied().collect(),
    };
    // An emulator serves its gateway on the same port as its REST API.
    let gateway_url = config.gateway_url.clone().or_else(|| {
        config.api.proxy.as_ref().filter(|_| config.api.plain_http).map(|proxy| format!("ws://{proxy}"))
    });
    let token = config.token.clone();
    let sidecar = serve::Sidecar::new(config, outbox, access);
    let delivery = tokio::spawn(serve::deliver(sidecar.clone()));
    if let Some(token) = token {
        tokio::spawn(serve::learn_owner(sidecar.clone()));
        tokio::spawn(serve::gateway::run(sidecar.clone(), token, gateway_url));
    }
    tracing::info!(socket = %bound.path.display(), "sidecar listening");
    let signals = tokio::spawn(cancel_on_signal(sidecar.clone()));
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
        let field = |key: &str| status[key].to_string().trim_matches('"').to_owned();
        println!("omp-discord sidecar {} (pid {}, up {} s)", field("version"), field("pid"), field("uptime_secs"));
        println!("  socket:        {}", field("socket"));
        println!("  token:         {}", if status["token_configured"] == true { "configured" } else { "MISSING" });
        println!("  home channel:  {}", field("home_channel_id"));
        println!("  clients:       {}", field("clients"));
        println!("  delivered:     {}   failed: {}", field("delivered"), field("failed"));
        println!("  last error:    {}", field("last_error"));
    }
    Ok(ExitCode::SUCCESS)
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

async fn emulator(port: u16, seed: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use omp_discord_emulator::EmulatorConfig;
    let config = match seed {
        Some(path) => EmulatorConfig::from_seed_file(&path)
            .map_err(|err| anyhow::anyhow!("cannot read the seed {}: {err}", path.display()))?,
        None => EmulatorConfig::default(),
    };
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", port)).await.context("cannot bind the emulator's port")?;
    let addr = listener.local_addr()?;
    println!("Discord emulator on http://{addr}/ (REST: http://{addr}/api/v10, gateway: ws://{addr})");
    println!(
        "Point the sidecar at it with OMP_DISCORD_API_URL=http://{addr} OMP_DISCORD_TOKEN={} \
         OMP_DISCORD_CHANNEL_ID={} (the default seed's #omp-sessions); Ctrl-C stops it.",
        omp_discord_emulator::DEFAULT_BOT_TOKEN,
        omp_discord_emulator::DEFAULT_HOME_CHANNEL_ID
    );
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    omp_discord_emulator::serve(listener, config, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
