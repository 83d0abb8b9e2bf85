//! The pricing model, pure: determinism, bounds, and learning in a simulated
//! market with a known demand curve per segment — the quoted price ends at
//! each segment's revenue-optimal price and regret grows sublinearly.

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use super::model::*;

/// A segment's true conversion at multiplier `m`: a logistic demand curve
/// falling around `m0` with steepness `s`, at most 80 %.
fn conversion(m: f64, m0: f64, s: f64) -> f64 {
    0.8 / (1.0 + (s * (m - m0)).exp())
}

fn optimal_arm(m0: f64, s: f64) -> usize {
    (0..MULTIPLIERS.len())
        .max_by(|a, b| {
            let ra = MULTIPLIERS[*a] * conversion(MULTIPLIERS[*a], m0, s);
            let rb = MULTIPLIERS[*b] * conversion(MULTIPLIERS[*b], m0, s);
            ra.partial_cmp(&rb).unwrap()
        })
        .unwrap()
}

/// The continuous revenue-optimal multiplier (grid search at 0.001).
fn optimal_multiplier(m0: f64, s: f64) -> f64 {
    (500..=1300)
        .map(|i| f64::from(i) / 1000.0)
        .max_by(|a, b| {
            (a * conversion(*a, m0, s))
                .partial_cmp(&(b * conversion(*b, m0, s)))
                .unwrap()
        })
        .unwrap()
}

/// Runs `rounds` quotes for a segment; returns the posterior and the
/// cumulative regret after each round (expected revenue lost against always
/// quoting the best arm).
fn simulate(m0: f64, s: f64, rounds: usize, seed: u64) -> (Posterior, Vec<f64>) {
    let mut post = Posterior::default();
    let mut quotes = StdRng::seed_from_u64(seed);
    let mut market = StdRng::seed_from_u64(seed ^ 0x5EED);
    let best = optimal_arm(m0, s);
    let best_revenue = MULTIPLIERS[best] * conversion(MULTIPLIERS[best], m0, s);
    let mut regret = Vec::with_capacity(rounds);
    let mut total = 0.0;
    for _ in 0..rounds {
        let arm = post.sample_arm(&mut quotes);
        let p = conversion(MULTIPLIERS[arm], m0, s);
        post.learn(arm, market.gen_bool(p));
        total += best_revenue - MULTIPLIERS[arm] * p;
        regret.push(total);
    }
    (post, regret)
}

#[test]
fn learns_each_segments_optimal_price_with_sublinear_regret() {
    // Two segments with different demand: optimum 0.7× and 0.9× reference.
    for (m0, s, seed) in [(0.85, 14.0, 7u64), (1.1, 14.0, 11u64)] {
        let (post, regret) = simulate(m0, s, 4_000, seed);
        let reference = Decimal::from(100);
        let quoted = to_f64(price(reference, post.believed_best()));
        let optimum = 100.0 * optimal_multiplier(m0, s);
        assert!(
            (quoted - optimum).abs() <= 0.10 * optimum,
            "segment m0={m0}: believes {quoted}, optimum {optimum:.1}"
        );
        assert_eq!(post.believed_best(), optimal_arm(m0, s));
        // Sublinear: the regret of the last 1,000 rounds is a fraction of the first 1,000's.
        let first = regret[999];
        let last = regret[3_999] - regret[2_999];
        eprintln!(
            "m0={m0}: regret after 250/500/1000/2000/4000 rounds: {:.1} {:.1} {:.1} {:.1} {:.1}",
            regret[249], regret[499], regret[999], regret[1_999], regret[3_999]
        );
        assert!(
            last < 0.5 * first,
            "regret not flattening: first 1000 {first:.1}, last 1000 {last:.1}"
        );
    }
}

#[test]
fn buckets_and_reference_prices() {
    assert_eq!(
        (value_bucket(0.0), value_bucket(0.5), value_bucket(1.0)),
        (0, 1, 2)
    );
    assert_eq!(value_bucket(f64::NAN), 0);
    assert_eq!(value_bucket(7.0), 2);
    let d = |v: i64| Decimal::from(v);
    assert_eq!(reference_price(&[d(99), d(149)]), Some(d(124)));
    assert_eq!(reference_price(&[d(99), d(149), d(10)]), Some(d(99)));
    assert_eq!(reference_price(&[]), None);
    assert_eq!(price(d(99), 4), Decimal::new(8910, 2));
    assert_eq!(expected_ltv(d(79), 0.75), d(79 * 30));
}

proptest! {
    #[test]
    fn quotes_are_seeded_bounded_and_ordered(
        seed in any::<u64>(),
        outcomes in proptest::collection::vec((0usize..9, any::<bool>()), 0..200),
        reference in 1i64..100_000,
    ) {
        let mut post = Posterior::default();
        for (arm, converted) in outcomes {
            post.learn(arm, converted);
        }
        let reference = Decimal::new(reference, 2);
        let a = post.choose(reference, &mut StdRng::seed_from_u64(seed));
        let b = post.choose(reference, &mut StdRng::seed_from_u64(seed));
        prop_assert_eq!(&a, &b);
        prop_assert!(a.lower <= a.upper);
        prop_assert!(price(reference, 0) <= a.lower && a.upper <= price(reference, MULTIPLIERS.len() - 1));
        prop_assert!((0.0..=1.0).contains(&a.expected_conversion));
        prop_assert!(a.price_elasticity.is_finite());
        prop_assert!(!(a.price_elasticity == 0.0 && a.price_elasticity.is_sign_negative()), "no negative zero");
        prop_assert_eq!(a.price, price(reference, a.arm));
    }

    #[test]
    fn learning_moves_only_its_arm(arm in 0usize..9, converted in any::<bool>()) {
        let mut post = Posterior::default();
        let before = post.clone();
        post.learn(arm, converted);
        for i in 0..MULTIPLIERS.len() {
            let moved = post.alpha[i] != before.alpha[i] || post.beta[i] != before.beta[i];
            prop_assert_eq!(moved, i == arm);
        }
        prop_assert_eq!(post.mean(arm) > before.mean(arm), converted);
    }
}
