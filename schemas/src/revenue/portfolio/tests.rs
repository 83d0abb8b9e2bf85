//! The solvers over random covariance matrices — positive semi-definite,
//! including near-singular ones (rank below size, a zero-variance position):
//! risk parity equalises risk contributions, minimum variance beats every
//! other feasible point tried, every constraint holds in every answer,
//! turnover stays within its limit, and infeasible constraints are named.
//! And the risk figures against hand-worked series.

use proptest::prelude::{
    any, prop, prop_assert, prop_assume, prop_oneof, proptest, Just, ProptestConfig,
};
use proptest::strategy::Strategy as _;

use super::math::Strategy as Rebalancing;
use super::math::*;

/// `A Aᵀ` with `A` of `n × rank`: PSD by construction, singular when
/// `rank < n`; plus `ridge` on the diagonal.
fn cov_of(a: &[Vec<f64>], ridge: f64) -> Vec<Vec<f64>> {
    let n = a.len();
    (0..n)
        .map(|i| {
            (0..n)
                .map(|j| {
                    let dot: f64 = a[i].iter().zip(&a[j]).map(|(x, y)| x * y).sum();
                    dot + if i == j { ridge } else { 0.0 }
                })
                .collect()
        })
        .collect()
}

/// Random covariances: exactly singular ones among them (no ridge, rank
/// below size) and near-singular ones (a 10⁻⁶ ridge).
fn arb_cov() -> impl prop::strategy::Strategy<Value = Vec<Vec<f64>>> {
    any::<bool>().prop_flat_map(|ridged| arb_cov_with(if ridged { 1e-6 } else { 0.0 }))
}

fn arb_cov_with(ridge: f64) -> impl prop::strategy::Strategy<Value = Vec<Vec<f64>>> {
    (2usize..12, 1usize..12).prop_flat_map(move |(n, rank)| {
        prop::collection::vec(prop::collection::vec(-0.05f64..0.05, rank.min(n)), n)
            .prop_map(move |a| cov_of(&a, ridge))
    })
}

fn sums_to_one(w: &[f64]) -> bool {
    (w.iter().sum::<f64>() - 1.0).abs() < 1e-9
}

fn arb_current(n: usize) -> impl prop::strategy::Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.01f64..1.0, n).prop_map(|v| {
        let s: f64 = v.iter().sum();
        v.into_iter().map(|x| x / s).collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn risk_parity_equalises_risk_contributions(cov in arb_cov_with(1e-6)) {
        // Where equal contributions exist: Σ positive definite (here as
        // near-singular as a 10⁻⁶ ridge on a rank-deficient product). On an
        // exactly singular Σ see the next test.
        let n = cov.len();
        let w = risk_parity(&cov);
        prop_assert!(sums_to_one(&w));
        prop_assert!(w.iter().all(|x| *x > 0.0));
        let rc = risk_contributions(&cov, &w);
        for r in &rc {
            prop_assert!(((r - 1.0 / n as f64) * n as f64).abs() < 1e-6, "{rc:?}");
        }
    }

    #[test]
    fn risk_parity_stays_finite_on_singular_matrices(cov in arb_cov()) {
        let w = risk_parity(&cov);
        prop_assert!(sums_to_one(&w));
        prop_assert!(w.iter().all(|x| x.is_finite() && *x > 0.0), "{w:?}");
    }

    #[test]
    fn min_variance_beats_every_feasible_point_tried(
        cov in arb_cov(),
        probes in prop::collection::vec(prop::collection::vec(0.0f64..1.0, 12), 20),
        hi in 0.3f64..1.0,
    ) {
        let n = cov.len();
        prop_assume!(hi * n as f64 >= 1.0);
        let w = min_variance(&cov, 0.0, hi);
        prop_assert!(sums_to_one(&w));
        prop_assert!(w.iter().all(|x| *x >= -1e-12 && *x <= hi + 1e-12));
        let best = variance(&cov, &w);
        for p in probes {
            let q = project(&p[..n], 0.0, hi);
            prop_assert!(best <= variance(&cov, &q) + 1e-10, "{best} > {}", variance(&cov, &q));
        }
    }

    #[test]
    fn every_answer_honours_every_constraint(
        cov in arb_cov(),
        seed in any::<u64>(),
        strategy in prop_oneof![Just(Rebalancing::RiskParity), Just(Rebalancing::EqualWeight), Just(Rebalancing::MinVariance)],
        hi in 0.05f64..1.0,
        lo in 0.0f64..0.2,
        target in prop::option::of(0.05f64..2.0),
        limit in prop::option::of(0.01f64..1.0),
    ) {
        let n = cov.len();
        let current: Vec<f64> = {
            let v: Vec<f64> = (0..n).map(|i| ((seed >> (i % 60)) % 97 + 1) as f64).collect();
            let s: f64 = v.iter().sum();
            v.into_iter().map(|x| x / s).collect()
        };
        let c = Constraints { max_position_size: hi, min_position_size: lo, target_risk: target, turnover_limit: limit };
        match rebalance(strategy, &cov, &current, &c) {
            Ok(w) => {
                prop_assert!(sums_to_one(&w));
                prop_assert!(w.iter().all(|x| *x <= hi + 1e-7 && *x >= lo - 1e-7), "{w:?}");
                if let Some(t) = target {
                    prop_assert!(volatility(&cov, &w) <= t + 1e-7);
                }
                if let Some(l) = limit {
                    prop_assert!(turnover(&current, &w) <= l + 1e-9);
                }
            }
            Err(e) => {
                // Refusals name a constraint that was given.
                let named = match e.constraint {
                    "max_position_size" | "min_position_size" => true,
                    "target_risk" => target.is_some(),
                    "turnover_limit" => limit.is_some(),
                    _ => false,
                };
                prop_assert!(named, "{e:?}");
            }
        }
    }

    #[test]
    fn without_binding_constraints_nothing_is_refused(cov in arb_cov(), current in arb_current(12)) {
        let n = cov.len();
        let current: Vec<f64> = {
            let s: f64 = current[..n].iter().sum();
            current[..n].iter().map(|x| x / s).collect()
        };
        for s in Rebalancing::ALL {
            prop_assert!(rebalance(s, &cov, &current, &Constraints::default()).is_ok());
        }
    }
}

#[test]
fn infeasible_constraints_are_named() {
    let cov = vec![vec![0.0004, 0.0], vec![0.0, 0.0009]];
    let cur = [0.5, 0.5];
    let refuse = |c: Constraints| rebalance(Rebalancing::RiskParity, &cov, &cur, &c).unwrap_err();
    let base = Constraints::default();
    assert_eq!(
        refuse(Constraints {
            max_position_size: 0.4,
            ..base
        })
        .constraint,
        "max_position_size"
    );
    assert_eq!(
        refuse(Constraints {
            min_position_size: 0.6,
            ..base
        })
        .constraint,
        "min_position_size"
    );
    // The least risky mix of the two has an annualised volatility of
    // √(365 · 0.0004·0.0009/0.0013) ≈ 0.318.
    assert_eq!(
        refuse(Constraints {
            target_risk: Some(0.2),
            ..base
        })
        .constraint,
        "target_risk"
    );
    assert!(rebalance(
        Rebalancing::RiskParity,
        &cov,
        &cur,
        &Constraints {
            target_risk: Some(0.33),
            ..base
        }
    )
    .is_ok());
    // Far from 60/40 with little turnover allowed: the size limit stays broken.
    let refused = rebalance(
        Rebalancing::EqualWeight,
        &cov,
        &[0.9, 0.1],
        &Constraints {
            max_position_size: 0.6,
            turnover_limit: Some(0.1),
            ..base
        },
    )
    .unwrap_err();
    assert_eq!(refused.constraint, "turnover_limit");
}

#[test]
fn risk_figures_of_a_hand_worked_series() {
    let values = [100.0, 110.0, 99.0, 108.9, 120.0];
    let r = returns(&values);
    assert!((r[0] - 0.1).abs() < 1e-12 && (r[1] + 0.1).abs() < 1e-12);
    // Peak 110 → 99: a 10 % drawdown.
    assert!((max_drawdown(&values) - 0.1).abs() < 1e-12);
    // 4 returns at 95 %: k = ⌊0.05·4⌋ = 0, the worst one (−10 %).
    let (var, cvar) = var_cvar(&r, VAR_CONFIDENCE).unwrap();
    assert!((var - 0.1).abs() < 1e-12 && (cvar - 0.1).abs() < 1e-12);
    assert!((herfindahl(&[0.5, 0.25, 0.25]) - 0.375).abs() < 1e-12);
    let a = [0.01, 0.02, -0.01, 0.03];
    let b = [0.02, 0.04, -0.02, 0.06];
    assert!((correlation(&a, &b).unwrap() - 1.0).abs() < 1e-12);
    assert_eq!(correlation(&a, &[0.0; 4]), None);
    assert!((average_correlation(&[a.to_vec(), b.to_vec()]).unwrap() - 1.0).abs() < 1e-12);
}
