//! Drives a [`Mix`] against the API and measures it.
//!
//! - Open loop ([`Pacing::Open`]): requests start on a fixed schedule whatever
//!   the server does, and latency counts from the scheduled start, so a stall
//!   shows up in the tail instead of hiding (no coordinated omission).
//! - Closed loop ([`Pacing::Closed`]): C requests always in flight; measures
//!   the peak throughput.
//! - [`find_max_rate`]: open-loop steps searching the highest rate whose p99
//!   stays under a bound.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::client::{Api, Tenant};
use crate::report::{histogram, Report};
use crate::workload::{perform, Done, Mix};

#[derive(Clone, Copy, Debug)]
pub enum Pacing {
    /// Requests per second on a fixed schedule.
    Open(f64),
    /// Requests in flight.
    Closed(usize),
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub name: String,
    pub mix: Mix,
    pub pacing: Pacing,
    pub warmup: Duration,
    pub duration: Duration,
    /// Print a progress line every second (to stderr).
    pub progress: bool,
}

/// Open-loop requests still in flight beyond this are not started but
/// counted as errors: a stalled server must not make the client grow
/// without bound.
pub const OPEN_LOOP_IN_FLIGHT_MAX: usize = 20_000;

/// A finished run: the report and every payment acknowledged (warm-up
/// included), for the audit.
pub struct Outcome {
    pub report: Report,
    pub payments: Vec<uuid::Uuid>,
}

struct Tally {
    all: Histogram<u64>,
    per_op: BTreeMap<String, Histogram<u64>>,
    errors: BTreeMap<String, u64>,
    payments: Vec<uuid::Uuid>,
}

impl Tally {
    fn error(&mut self, measured: bool, kind: String) {
        if measured {
            *self.errors.entry(kind).or_default() += 1;
        }
    }

    fn record(
        &mut self,
        measured: bool,
        op: &str,
        started: Instant,
        outcome: anyhow::Result<Done>,
    ) {
        match outcome {
            Ok(Done {
                status: 200 | 201,
                payment,
            }) => {
                self.payments.extend(payment);
                if measured {
                    let micros = started.elapsed().as_micros().max(1) as u64;
                    let _ = self.all.record(micros);
                    let h = self.per_op.entry(op.to_string()).or_insert_with(histogram);
                    let _ = h.record(micros);
                }
            }
            Ok(Done { status, .. }) => self.error(measured, format!("{op}: http {status}")),
            Err(e) => self.error(measured, format!("{op}: {}", e.root_cause())),
        }
    }
}

/// Runs `plan` against `api` as `tenant`.
pub async fn run(api: &Api, tenant: Arc<Tenant>, plan: &Plan) -> Outcome {
    let tally = Arc::new(Mutex::new(Tally {
        all: histogram(),
        per_op: BTreeMap::new(),
        errors: BTreeMap::new(),
        payments: vec![],
    }));
    let begin = Instant::now();
    let end = plan.warmup + plan.duration;
    let progress = plan.progress.then(|| {
        let tally = tally.clone();
        tokio::spawn(async move {
            let mut last = 0;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let t = tally.lock().unwrap();
                let n = t.all.len();
                eprintln!(
                    "[{:>4.0}s] {:>6}/s  p99 {:.2} ms  errors {}",
                    begin.elapsed().as_secs_f64(),
                    n - last,
                    t.all.value_at_quantile(0.99) as f64 / 1000.0,
                    t.errors.values().sum::<u64>()
                );
                last = n;
            }
        })
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mode = match plan.pacing {
        Pacing::Open(rate) => {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let mut i: u64 = 0;
            loop {
                let scheduled = begin + interval.mul_f64(i as f64);
                if scheduled.duration_since(begin) >= end {
                    break;
                }
                tokio::time::sleep_until(scheduled.into()).await;
                let measured = scheduled.duration_since(begin) >= plan.warmup;
                let op = plan.mix.op(i);
                while tasks.try_join_next().is_some() {}
                if tasks.len() >= OPEN_LOOP_IN_FLIGHT_MAX {
                    let kind = format!("{op}: not started, {OPEN_LOOP_IN_FLIGHT_MAX} in flight");
                    tally.lock().unwrap().error(measured, kind);
                } else {
                    let (api, tenant, tally) = (api.clone(), tenant.clone(), tally.clone());
                    tasks.spawn(async move {
                        let outcome = perform(&api, &tenant, op, i).await;
                        tally
                            .lock()
                            .unwrap()
                            .record(measured, op.name(), scheduled, outcome);
                    });
                }
                i += 1;
            }
            format!("{} open loop {rate:.0}/s", plan.mix)
        }
        Pacing::Closed(concurrency) => {
            for worker in 0..concurrency {
                let (api, tenant, tally) = (api.clone(), tenant.clone(), tally.clone());
                let mix = plan.mix.clone();
                let warmup = plan.warmup;
                tasks.spawn(async move {
                    let mut i = worker as u64;
                    while begin.elapsed() < end {
                        let started = Instant::now();
                        let measured = started.duration_since(begin) >= warmup;
                        let op = mix.op(i);
                        let outcome = perform(&api, &tenant, op, i).await;
                        tally
                            .lock()
                            .unwrap()
                            .record(measured, op.name(), started, outcome);
                        i += concurrency as u64;
                    }
                });
            }
            format!("{} closed loop x{concurrency}", plan.mix)
        }
    };
    while tasks.join_next().await.is_some() {}
    if let Some(p) = progress {
        p.abort();
    }
    let elapsed = begin
        .elapsed()
        .saturating_sub(plan.warmup)
        .min(plan.duration);
    let t = tally.lock().unwrap();
    Outcome {
        report: Report::new(
            &plan.name,
            &mode,
            elapsed,
            &t.all,
            &t.per_op,
            t.errors.clone(),
        ),
        payments: t.payments.clone(),
    }
}

/// What makes a rate sustainable in [`find_max_rate`].
#[derive(Clone, Copy, Debug)]
pub struct Sustainable {
    pub p99_max: Duration,
    /// Largest share of failed requests, e.g. 0.001.
    pub error_rate_max: f64,
}

impl Sustainable {
    /// Whether a run at `rate` held: p99 under the bound, few errors, and
    /// the server kept up (completed ≥ 95% of the offered rate).
    pub fn held(&self, rate: f64, r: &Report) -> bool {
        r.p99_ms <= self.p99_max.as_secs_f64() * 1_000.0
            && r.error_rate() <= self.error_rate_max
            && r.throughput_per_s >= rate * 0.95
    }
}

/// The next rate to try, from the highest rate that held and the lowest that
/// did not: doubling until one fails, then bisecting. `None` once the two
/// are within 10% (or after the failure floor).
pub fn next_rate(held: f64, failed: Option<f64>) -> Option<f64> {
    match failed {
        None => Some(held * 2.0),
        Some(f) if f - held <= held.max(1.0) * 0.1 => None,
        Some(f) => Some((held + f) / 2.0),
    }
}

/// Searches the highest open-loop rate `bound` holds at, starting at
/// `start`/s with steps of `step` each (after a one-second warm-up); prints
/// each step. Returns the rate found, its report, and every payment
/// acknowledged across the steps (for the audit).
pub async fn find_max_rate(
    api: &Api,
    tenant: Arc<Tenant>,
    base: &Plan,
    start: f64,
    bound: Sustainable,
) -> (f64, Option<Report>, Vec<uuid::Uuid>) {
    let (mut held, mut failed, mut best) = (0.0, None::<f64>, None);
    let mut payments = vec![];
    let mut rate = start;
    for _ in 0..16 {
        let plan = Plan {
            pacing: Pacing::Open(rate),
            progress: false,
            ..base.clone()
        };
        let outcome = run(api, tenant.clone(), &plan).await;
        payments.extend(outcome.payments);
        let r = outcome.report;
        let ok = bound.held(rate, &r);
        eprintln!(
            "  {rate:>8.0}/s → {:>8.1}/s p99 {:>8.2} ms errors {:.2}%  {}",
            r.throughput_per_s,
            r.p99_ms,
            r.error_rate() * 100.0,
            if ok { "holds" } else { "does not hold" }
        );
        if ok {
            held = rate;
            best = Some(r);
        } else {
            failed = Some(failed.map_or(rate, |f: f64| f.min(rate)));
        }
        // Let the backlog of a failed step drain before the next one.
        tokio::time::sleep(Duration::from_secs(if ok { 1 } else { 5 })).await;
        match next_rate(held, failed) {
            Some(r) => rate = r,
            None => break,
        }
    }
    (held, best, payments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_search_doubles_then_bisects_then_stops() {
        assert_eq!(next_rate(100.0, None), Some(200.0));
        assert_eq!(next_rate(200.0, Some(400.0)), Some(300.0));
        assert_eq!(next_rate(300.0, Some(320.0)), None);
    }
}
