//! `clawbot-hub`: parses settings, binds, and runs until SIGINT or SIGTERM.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;
use clawbot_hub::config::Cli;
use clawbot_hub::{run, Listeners};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: the hub allocates and frees many
/// small buffers per message on every thread, and glibc's arena upkeep
/// (`malloc_consolidate`, `unlink_chunk`) was 7% of the hub's CPU under a
/// DM load (references/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal: in a file or the
        // journal the escape codes are noise around every field.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let config = match Cli::parse().resolve() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("clawbot-hub: {error:#}");
            return ExitCode::from(2);
        }
    };
    let listeners = match Listeners::bind(&config).await {
        Ok(listeners) => listeners,
        Err(error) => {
            eprintln!("clawbot-hub: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    // One machine-readable line on stdout once the hub serves, for scripts
    // and tests that start it on port 0.
    let announce = |http, ws| {
        println!("clawbot-hub listening http={http} ws={ws}");
        let _ = std::io::stdout().flush();
    };
    match run(config, listeners, shutdown_signal(), announce).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("clawbot-hub: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
