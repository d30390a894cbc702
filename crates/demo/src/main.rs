//! `omp-discord-demo`: shows the whole product working in one command, on the
//! local Discord emulator (or your Discord). A separate program from
//! `omp-discord`, so that the shipped binary does not carry the emulator.
//! `bash scripts/demo.sh` builds everything and runs it.
//!
//! # Layout
//!
//! - `main.rs`: the command line and the log filter.
//! - `demo.rs`: the story: emulator, sidecar, omp, and the narration.

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Shows the whole product working: emulator (or your Discord), sidecar, and one omp run.
#[derive(Parser)]
#[command(name = "omp-discord-demo", version)]
struct Cli {
    /// The omp-discord checkout (built with scripts/build.sh).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Exit when the story is told instead of waiting for Ctrl-C.
    #[arg(long)]
    exit: bool,
    /// Save a picture of the emulator's web view here at the end (needs Chromium).
    #[arg(long, value_name = "PNG")]
    screenshot: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The in-process emulator logs at OMP_DISCORD_LOG, like the sidecar the demo starts.
    let filter = tracing_subscriber::EnvFilter::try_from_env(demo::env::LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("the tokio runtime starts");
    match runtime.block_on(demo::run(&cli.repo, cli.exit, cli.screenshot)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("omp-discord-demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}
