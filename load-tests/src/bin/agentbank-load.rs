//! `agentbank-load`: drives a mix of operations through the gateway (or the
//! baseline) and reports throughput, latency and the post-run audit.
//!
//! - `--rate R`: open loop at R requests/s (no coordinated omission).
//! - `--concurrency C` (no rate): closed loop, C requests in flight.
//! - `--find-max-rate`: open-loop steps that search the highest rate whose
//!   p99 stays under `--p99-bound-ms`.
//! - `--workload deposits|payments|mixed|op=weight,…`: what is sent.

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use load_tests::client::Api;
use load_tests::run::{find_max_rate, run, Pacing, Plan, Sustainable};
use load_tests::workload::{Mix, Op};

#[derive(Parser)]
struct Args {
    /// Gateway base URL.
    #[arg(long, env = "AGENTBANK_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Agents to spread the load over (they land on different partitions).
    #[arg(long, default_value_t = 64)]
    agents: usize,
    /// Open-loop arrival rate (requests/s); closed loop when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// Closed-loop requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured duration, after the warm-up (per step with --find-max-rate).
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    #[arg(long, default_value_t = 2)]
    warmup_s: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    #[arg(long, default_value = "agentbank")]
    name: String,
    /// The system's Postgres: after the run, audit it (journal balanced,
    /// balances equal the journal, every acknowledged payment present and
    /// finished); a failed audit exits non-zero.
    #[arg(long)]
    audit_database_url: Option<String>,
    /// A preset (deposits, payments, mixed) or weights like
    /// `deposit=30,payment=50,approval=10,read=10` (ops: signup, agent,
    /// deposit, payment, approval, read).
    #[arg(long, default_value = "deposits")]
    workload: Mix,
    /// Search the highest sustainable open-loop rate instead of one run.
    #[arg(long)]
    find_max_rate: bool,
    /// The search's first rate (it doubles until a step fails, then bisects).
    #[arg(long, default_value_t = 200.0)]
    start_rate: f64,
    /// A rate is sustainable while p99 stays at or under this.
    #[arg(long, default_value_t = 250)]
    p99_bound_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api = Api::new(&args.url);
    let approval_agents = if args.workload.uses(Op::ApprovalPayment) {
        8
    } else {
        0
    };
    eprintln!(
        "setting up {} agents (+{approval_agents} approval-required) at {}",
        args.agents, api.base
    );
    let tenant = Arc::new(api.tenant(args.agents, approval_agents, "1000000").await?);
    let plan = Plan {
        name: args.name.clone(),
        mix: args.workload.clone(),
        pacing: match args.rate {
            Some(rate) => Pacing::Open(rate),
            None => Pacing::Closed(args.concurrency),
        },
        warmup: Duration::from_secs(args.warmup_s),
        duration: Duration::from_secs(args.duration_s),
        progress: true,
    };
    let (mut report, payments) = if args.find_max_rate {
        let bound = Sustainable {
            p99_max: Duration::from_millis(args.p99_bound_ms),
            error_rate_max: 0.001,
        };
        eprintln!(
            "searching the highest rate with p99 ≤ {} ms, {} s per step",
            args.p99_bound_ms, args.duration_s
        );
        let step = Plan {
            warmup: Duration::from_secs(1),
            ..plan
        };
        let (rate, report, payments) =
            find_max_rate(&api, tenant, &step, args.start_rate, bound).await;
        println!(
            "{}: max sustainable rate {rate:.0}/s (p99 ≤ {} ms, errors ≤ 0.1%)",
            args.name, args.p99_bound_ms
        );
        match report {
            Some(r) => (r, payments),
            None => anyhow::bail!("no rate held, not even the lowest tried"),
        }
    } else {
        let outcome = run(&api, tenant, &plan).await;
        (outcome.report, outcome.payments)
    };
    report.print();
    if let Some(url) = &args.audit_database_url {
        let pool = sqlx::PgPool::connect(url).await?;
        let audit = load_tests::audit::run(&pool, &payments).await?;
        audit.print(&args.name);
        report.audit = Some(audit);
    }
    if let Some(path) = args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)?;
    }
    if report.audit.as_ref().is_some_and(|a| !a.passed()) {
        anyhow::bail!("the audit failed");
    }
    Ok(())
}
