//! Latency recording and the run report (text and JSON).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies in microseconds, 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
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
    /// The post-run audit, when the run was given the system's database.
    pub audit: Option<crate::audit::Audit>,
}

impl Report {
    pub fn new(
        name: &str,
        mode: &str,
        elapsed: Duration,
        h: &Histogram<u64>,
        errors: BTreeMap<String, u64>,
    ) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
        let requests = h.len() + errors.values().sum::<u64>();
        Report {
            name: name.into(),
            mode: mode.into(),
            duration_s: elapsed.as_secs_f64(),
            requests,
            ok: h.len(),
            throughput_per_s: h.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: h.max() as f64 / 1_000.0,
            errors,
            audit: None,
        }
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
    }
}
