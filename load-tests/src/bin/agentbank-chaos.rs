//! `agentbank-chaos`: fault injection under load on a private stack (see
//! [`load_tests::chaos`]); prints what was killed and the audit, and exits
//! non-zero when the audit fails.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use load_tests::chaos::{self, Role};

#[derive(Parser)]
struct Args {
    /// Kills in all (every chosen role once before any twice).
    #[arg(long, default_value_t = 12)]
    kills: usize,
    /// Roles to kill, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "processor,sink,publisher,gateway,dispatcher,broker,postgres"
    )]
    roles: Vec<Role>,
    /// Shortest and longest pause between kills, in ms.
    #[arg(long, default_value_t = 1_500)]
    interval_min_ms: u64,
    #[arg(long, default_value_t = 4_000)]
    interval_max_ms: u64,
    /// Shortest and longest time a killed role stays down, in ms.
    #[arg(long, default_value_t = 200)]
    downtime_min_ms: u64,
    #[arg(long, default_value_t = 2_000)]
    downtime_max_ms: u64,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 8)]
    agents: usize,
    /// Seed for the kill order and timing (a failing run can be repeated).
    #[arg(long, default_value_t = 20261123)]
    seed: u64,
    /// The agentbank binary (default: next to this one).
    #[arg(long)]
    agentbank_bin: Option<PathBuf>,
    /// Data and logs of the private stack.
    #[arg(long, default_value = ".run/chaos")]
    dir: PathBuf,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let agentbank_bin = match args.agentbank_bin {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("agentbank"),
    };
    let ms = Duration::from_millis;
    let cfg = chaos::Config {
        agentbank_bin,
        dir: std::path::absolute(&args.dir)?,
        kills: args.kills,
        roles: args.roles,
        interval: (ms(args.interval_min_ms), ms(args.interval_max_ms)),
        downtime: (ms(args.downtime_min_ms), ms(args.downtime_max_ms)),
        concurrency: args.concurrency,
        agents: args.agents,
        seed: args.seed,
    };
    eprintln!(
        "chaos: {} kills over {:?}, seed {}, stack in {}",
        cfg.kills,
        cfg.roles,
        cfg.seed,
        cfg.dir.display()
    );
    let report = chaos::run(cfg).await.context("chaos run")?;
    report.print();
    if let Some(path) = args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    anyhow::ensure!(report.passed(), "the audit failed");
    Ok(())
}
