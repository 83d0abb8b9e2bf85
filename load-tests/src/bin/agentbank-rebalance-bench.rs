//! Rebalance latency by portfolio size: for 10, 100 and 1,000 positions,
//! 90 days of daily returns from a few common factors plus noise (so the
//! covariance is realistic: correlated, near-singular when positions
//! outnumber days), then each strategy's solve under a position-size cap
//! and a turnover limit, timed over several runs (median and worst).
//! `cargo run --release -p load-tests --bin agentbank-rebalance-bench`.

use std::time::Instant;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::revenue::portfolio::math::{self, Constraints, Strategy};

const DAYS: usize = 90;
const FACTORS: usize = 4;

fn covariance(n: usize, rng: &mut StdRng) -> Vec<Vec<f64>> {
    let factors: Vec<Vec<f64>> = (0..FACTORS)
        .map(|_| (0..DAYS).map(|_| rng.gen_range(-0.02..0.02)).collect())
        .collect();
    let series: Vec<Vec<f64>> = (0..n)
        .map(|_| {
            let loadings: Vec<f64> = (0..FACTORS).map(|_| rng.gen_range(0.0..1.5)).collect();
            (0..DAYS)
                .map(|t| {
                    (0..FACTORS)
                        .map(|k| loadings[k] * factors[k][t])
                        .sum::<f64>()
                        + rng.gen_range(-0.01..0.01)
                })
                .collect()
        })
        .collect();
    math::covariance(&series)
}

fn main() {
    let mut rng = StdRng::seed_from_u64(42);
    println!("positions  strategy       median ms   max ms   (runs)");
    for n in [10usize, 100, 1_000] {
        let cov = covariance(n, &mut rng);
        let current = vec![1.0 / n as f64; n];
        let c = Constraints {
            max_position_size: (3.0 / n as f64).min(1.0),
            turnover_limit: Some(0.5),
            ..Constraints::default()
        };
        for s in [
            Strategy::EqualWeight,
            Strategy::MinVariance,
            Strategy::RiskParity,
        ] {
            let runs = if n >= 1_000 { 3 } else { 10 };
            let mut times: Vec<f64> = (0..runs)
                .map(|_| {
                    let t = Instant::now();
                    let w = math::rebalance(s, &cov, &current, &c).expect("feasible");
                    assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-9);
                    t.elapsed().as_secs_f64() * 1_000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            println!(
                "{n:>9}  {:<13} {:>10.2} {:>8.2}   ({runs})",
                s.as_str(),
                times[times.len() / 2],
                times[times.len() - 1]
            );
        }
    }
}
