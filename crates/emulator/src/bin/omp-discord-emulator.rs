//! Runs the emulator as a process: `omp-discord-emulator [--listen ADDR] [--seed FILE]`.
//! It prints where it listens and how to point a sidecar at it, then serves
//! until interrupted.

use std::path::Path;
use std::process::ExitCode;

use omp_discord_emulator::{DEFAULT_HOME_CHANNEL_ID, EmulatorConfig, serve};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OMP_DISCORD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut listen = "127.0.0.1:0".to_owned();
    let mut config = EmulatorConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            ("--seed", Some(path)) => match EmulatorConfig::from_seed_file(Path::new(&path)) {
                Ok(seeded) => config = seeded,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("usage: omp-discord-emulator [--listen 127.0.0.1:PORT] [--seed seed.json]");
                return ExitCode::from(2);
            }
        }
    }
    let listener = match TcpListener::bind(&listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("error: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    match listener.local_addr() {
        Ok(addr) => {
            // Scripts read the first line to find the port.
            println!("listening on http://{addr}");
            println!("Discord emulator: REST http://{addr}/api/v10, gateway ws://{addr}, web view http://{addr}/");
            println!(
                "Point the sidecar at it with OMP_DISCORD_API_URL=http://{addr} OMP_DISCORD_TOKEN={} \
                 OMP_DISCORD_CHANNEL_ID={} (the default seed's #omp-sessions); Ctrl-C stops it.",
                config.token, DEFAULT_HOME_CHANNEL_ID
            );
        }
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match serve(listener, config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
