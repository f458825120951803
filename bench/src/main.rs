//! `clawbot-bench`: runs one scenario and prints its result, or prints a
//! table of earlier results. Exit status: 0 when the scenario ran without
//! errors, 1 when it ran but saw errors (missing, doubled or refused
//! messages...), 2 when it could not run at all.

use std::io::{BufRead, BufReader, Read};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use clawbot_bench::cli::{Cli, Command, ReportArgs};
use clawbot_bench::compare::comparison;
use clawbot_bench::report::{medians, table, Report};
use clawbot_bench::scenarios::{self, Ctx};
use clawbot_bench::target::Target;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // See Cargo.toml: reqwest, as the connector configures it, needs a
    // crypto provider installed before any client is built, TLS or not.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Command::Report(args) = &cli.command {
        return match print_table(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("clawbot-bench: {error:#}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match build_runtime(cli.hub.threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("clawbot-bench: {error:#}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(mut report) => {
            report.hub.clone_from(&cli.hub.label);
            if cli.hub.json {
                println!("{}", report.json());
                eprintln!("{}", report.human());
            } else {
                println!("{}", report.human());
            }
            if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("clawbot-bench: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// One worker thread per CPU this process may use: pinned to one core it
/// runs single-threaded, which is cheaper than a work-stealing pool that
/// has nowhere to steal to.
fn build_runtime(threads: Option<usize>) -> Result<tokio::runtime::Runtime> {
    let threads = threads
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1)
        .max(1);
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads);
        builder
    };
    builder.enable_all().build().context("starting the runtime")
}

async fn run(cli: &Cli) -> Result<Report> {
    let target = Target::new(&cli.hub).await?;
    let ctx = Ctx::new(target, cli.hub.run_id.clone(), cli.hub.pacing);
    ctx.wait_for_quiet_hub().await;
    match &cli.command {
        Command::Dm(args) => scenarios::dm::run(&ctx, args).await,
        Command::Fanout(args) => scenarios::fanout::run(&ctx, args).await,
        Command::Idle(args) => scenarios::idle::run(&ctx, args).await,
        Command::Backlog(args) => scenarios::backlog::run(&ctx, args).await,
        Command::History(args) => scenarios::history::run(&ctx, args).await,
        Command::Report(_) => unreachable!("handled without a runtime"),
    }
}

fn print_table(args: &ReportArgs) -> Result<()> {
    let mut reports = Vec::new();
    let stdin_only = args.files.is_empty() || args.files.iter().all(|f| f.as_os_str() == "-");
    let mut sources: Vec<(String, Box<dyn Read>)> = Vec::new();
    if stdin_only {
        sources.push(("stdin".to_owned(), Box::new(std::io::stdin())));
    } else {
        for path in &args.files {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            sources.push((path.display().to_string(), Box::new(file)));
        }
    }
    for (name, source) in sources {
        for (number, line) in BufReader::new(source).lines().enumerate() {
            let line = line.with_context(|| format!("reading {name}"))?;
            if line.trim().is_empty() {
                continue;
            }
            let report: Report = serde_json::from_str(&line)
                .with_context(|| format!("{name} line {}", number + 1))?;
            reports.push(report);
        }
    }
    match &args.compare {
        Some(baseline) => print!("{}", comparison(&reports, baseline, args.markdown)),
        None => print!("{}", table(&medians(&reports), args.markdown)),
    }
    Ok(())
}
