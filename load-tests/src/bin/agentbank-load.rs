//! `agentbank-load`: drives deposits or instant payments through the gateway
//! and reports throughput and latency.
//!
//! - `--rate R`: open loop — requests start on a fixed schedule whatever the
//!   server does, and latency counts from the scheduled start, so a stall
//!   shows up in the tail instead of hiding (no coordinated omission).
//! - `--concurrency C` (no rate): closed loop — C requests always in flight;
//!   measures the peak throughput.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use load_tests::client::{Api, Tenant};
use load_tests::report::{histogram, Report};

#[derive(Parser)]
struct Args {
    /// Gateway base URL.
    #[arg(long, env = "AGENTBANK_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Agents to spread deposits over (they land on different partitions).
    #[arg(long, default_value_t = 64)]
    agents: usize,
    /// Open-loop arrival rate (requests/s); closed loop when absent.
    #[arg(long)]
    rate: Option<u64>,
    /// Closed-loop requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Measured duration, after the warm-up.
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
    /// What each request is: a deposit, or an instant payment to the next agent.
    #[arg(long, value_enum, default_value_t = Workload::Deposits)]
    workload: Workload,
}

#[derive(Clone, Copy, clap::ValueEnum, PartialEq, Eq, Debug)]
enum Workload {
    Deposits,
    Payments,
}

/// One request of the workload: its status, and the payment it created.
async fn request(
    api: &Api,
    tenant: &Tenant,
    workload: Workload,
    i: usize,
) -> anyhow::Result<(u16, Option<uuid::Uuid>)> {
    match workload {
        Workload::Deposits => Ok((api.deposit(tenant, i, "0.000001").await?, None)),
        Workload::Payments => api.pay(tenant, i, "0.000001").await,
    }
}

struct Tally {
    hist: hdrhistogram::Histogram<u64>,
    errors: BTreeMap<String, u64>,
    /// Every payment acknowledged (warm-up included), for the audit.
    payments: Vec<uuid::Uuid>,
}

impl Tally {
    fn record(
        &mut self,
        measured: bool,
        started: Instant,
        outcome: anyhow::Result<(u16, Option<uuid::Uuid>)>,
    ) {
        if let Ok((200, Some(id))) = &outcome {
            self.payments.push(*id);
        }
        if !measured {
            return;
        }
        match outcome.map(|(status, _)| status) {
            Ok(200) => {
                let _ = self
                    .hist
                    .record(started.elapsed().as_micros().max(1) as u64);
            }
            Ok(status) => *self.errors.entry(format!("http {status}")).or_default() += 1,
            Err(e) => {
                *self
                    .errors
                    .entry(format!("io: {}", e.root_cause()))
                    .or_default() += 1
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let api = Api::new(&args.url);
    eprintln!("setting up {} agents at {}", args.agents, api.base);
    let tenant = Arc::new(api.tenant(args.agents, "1000000").await?);
    let workload = args.workload;
    let tally = Arc::new(Mutex::new(Tally {
        hist: histogram(),
        errors: BTreeMap::new(),
        payments: vec![],
    }));
    let begin = Instant::now();
    let warmup = Duration::from_secs(args.warmup_s);
    let end = warmup + Duration::from_secs(args.duration_s);
    let progress = {
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let t = tally.lock().unwrap();
                let n = t.hist.len();
                eprintln!(
                    "[{:>4.0}s] {:>6}/s  p99 {:.2} ms  errors {}",
                    begin.elapsed().as_secs_f64(),
                    n - last,
                    t.hist.value_at_quantile(0.99) as f64 / 1000.0,
                    t.errors.values().sum::<u64>()
                );
                last = n;
            }
        })
    };
    let mode;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(rate) = args.rate {
        mode = format!("{workload:?} open loop {rate}/s");
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let mut i: u64 = 0;
        loop {
            let scheduled = begin + interval.mul_f64(i as f64);
            if scheduled.duration_since(begin) >= end {
                break;
            }
            tokio::time::sleep_until(scheduled.into()).await;
            let (api, tenant, tally) = (api.clone(), tenant.clone(), tally.clone());
            let measured = scheduled.duration_since(begin) >= warmup;
            tasks.spawn(async move {
                let outcome = request(&api, &tenant, workload, i as usize).await;
                tally.lock().unwrap().record(measured, scheduled, outcome);
            });
            i += 1;
            while tasks.try_join_next().is_some() {}
        }
    } else {
        mode = format!("{workload:?} closed loop x{}", args.concurrency);
        for worker in 0..args.concurrency {
            let (api, tenant, tally) = (api.clone(), tenant.clone(), tally.clone());
            tasks.spawn(async move {
                let mut i = worker;
                while begin.elapsed() < end {
                    let started = Instant::now();
                    let measured = started.duration_since(begin) >= warmup;
                    let outcome = request(&api, &tenant, workload, i).await;
                    tally.lock().unwrap().record(measured, started, outcome);
                    i += args.concurrency;
                }
            });
        }
    }
    while tasks.join_next().await.is_some() {}
    progress.abort();
    let elapsed = begin
        .elapsed()
        .saturating_sub(warmup)
        .min(Duration::from_secs(args.duration_s));
    let (mut report, payments) = {
        let t = tally.lock().unwrap();
        let report = Report::new(&args.name, &mode, elapsed, &t.hist, t.errors.clone());
        (report, t.payments.clone())
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
