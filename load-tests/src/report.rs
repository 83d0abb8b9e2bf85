//! Latency recording and the run report (text and JSON).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

/// Latency of one kind of operation in a mix.
#[derive(Debug, Serialize)]
pub struct OpLatency {
    pub ok: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub name: String,
    pub mode: String,
    pub duration_s: f64,
    pub requests: u64,
    pub ok: u64,
    pub throughput_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub errors: BTreeMap<String, u64>,
    /// Per operation kind, when the run mixed several.
    pub ops: BTreeMap<String, OpLatency>,
    /// The post-run audit, when the run was given the system's database.
    pub audit: Option<crate::audit::Audit>,
}

impl Report {
    pub fn new(
        name: &str,
        mode: &str,
        elapsed: Duration,
        h: &Histogram<u64>,
        per_op: &BTreeMap<String, Histogram<u64>>,
        errors: BTreeMap<String, u64>,
    ) -> Self {
        let requests = h.len() + errors.values().sum::<u64>();
        let ops = if per_op.len() > 1 {
            per_op
                .iter()
                .map(|(op, h)| {
                    let latency = OpLatency {
                        ok: h.len(),
                        p50_ms: ms(h, 0.5),
                        p99_ms: ms(h, 0.99),
                    };
                    (op.clone(), latency)
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        Report {
            name: name.into(),
            mode: mode.into(),
            duration_s: elapsed.as_secs_f64(),
            requests,
            ok: h.len(),
            throughput_per_s: h.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: ms(h, 0.5),
            p90_ms: ms(h, 0.9),
            p99_ms: ms(h, 0.99),
            p999_ms: ms(h, 0.999),
            max_ms: h.max() as f64 / 1_000.0,
            errors,
            ops,
            audit: None,
        }
    }

    /// Share of requests that failed.
    pub fn error_rate(&self) -> f64 {
        (self.requests - self.ok) as f64 / self.requests.max(1) as f64
    }

    pub fn print(&self) {
        println!(
            "{:<28} {:>9.1}/s  ok {:>7}  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  max {:>7.2} ms  errors {:?}",
            format!("{} ({})", self.name, self.mode),
            self.throughput_per_s,
            self.ok,
            self.p50_ms,
            self.p90_ms,
            self.p99_ms,
            self.p999_ms,
            self.max_ms,
            self.errors
        );
        for (op, l) in &self.ops {
            println!(
                "    {op:<10} ok {:>7}  p50 {:>7.2} ms  p99 {:>7.2} ms",
                l.ok, l.p50_ms, l.p99_ms
            );
        }
    }
}
