//! The pricing model: contextual Thompson sampling over relative price
//! points, pure and seeded (the machine passes the command's `ids.rng()`),
//! so a replay draws the same prices.
//!
//! - **Candidates**: the reference price (the median of the quote's
//!   competitor prices) times each of [`MULTIPLIERS`]. Arms are the
//!   multipliers, not absolute prices, so what is learned carries over when
//!   competitors move.
//! - **Context**: the segment and the customer's `user_value_score`,
//!   bucketed in thirds ([`value_bucket`]); each (segment, bucket) has its
//!   own posterior.
//! - **Model**: conversion at arm *i* is Bernoulli(θᵢ) with θᵢ ~ Beta(αᵢ, βᵢ);
//!   prior Beta(1, 1) (uniform: no belief before data); an executed quote
//!   adds 1 to α of its arm, an expired one 1 to β.
//! - **Objective**: expected revenue per quote, multiplier × θ. One draw of
//!   every θ from its posterior; the arm with the best sampled objective is
//!   quoted (ties: the lower price).
//! - **Confidence interval**: [`CI_DRAWS`] further joint draws; the 2.5 %
//!   and 97.5 % quantiles of the revenue-optimal price among them.

use rand::Rng;
use rand_distr::{Beta, Distribution};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Relative price points (× the reference price).
pub const MULTIPLIERS: [f64; 9] = [0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3];
/// Joint posterior draws behind a quote's confidence interval.
pub const CI_DRAWS: usize = 200;
/// Buckets of `user_value_score` (thirds of [0, 1]).
pub const VALUE_BUCKETS: u8 = 3;

/// The bucket of a `user_value_score` in [0, 1] (clamped).
pub fn value_bucket(score: f64) -> u8 {
    let s = if score.is_nan() {
        0.0
    } else {
        score.clamp(0.0, 1.0)
    };
    ((s * f64::from(VALUE_BUCKETS)) as u8).min(VALUE_BUCKETS - 1)
}

/// The reference price: the median of the competitors' prices.
pub fn reference_price(competitors: &[Decimal]) -> Option<Decimal> {
    let mut prices: Vec<Decimal> = competitors
        .iter()
        .copied()
        .filter(|p| *p > Decimal::ZERO)
        .collect();
    if prices.is_empty() {
        return None;
    }
    prices.sort();
    let n = prices.len();
    Some(if n % 2 == 1 {
        prices[n / 2]
    } else {
        (prices[n / 2 - 1] + prices[n / 2]) / Decimal::TWO
    })
}

/// Arm `i`'s price for `reference`, in cents.
pub fn price(reference: Decimal, arm: usize) -> Decimal {
    let m = Decimal::from_f64(MULTIPLIERS[arm]).unwrap_or(Decimal::ONE);
    (reference * m).round_dp(2)
}

/// One context's posterior: Beta(α, β) per arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Posterior {
    pub alpha: Vec<f64>,
    pub beta: Vec<f64>,
}

impl Default for Posterior {
    fn default() -> Self {
        Posterior {
            alpha: vec![1.0; MULTIPLIERS.len()],
            beta: vec![1.0; MULTIPLIERS.len()],
        }
    }
}

/// What a quote decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub arm: usize,
    pub price: Decimal,
    pub lower: Decimal,
    pub upper: Decimal,
    /// Posterior mean conversion at the quoted arm.
    pub expected_conversion: f64,
    /// Arc elasticity of the posterior mean conversion between the quoted
    /// arm and its neighbour above (below, at the top).
    pub price_elasticity: f64,
}

impl Posterior {
    pub fn mean(&self, arm: usize) -> f64 {
        self.alpha[arm] / (self.alpha[arm] + self.beta[arm])
    }

    fn draw(&self, rng: &mut impl Rng) -> Vec<f64> {
        (0..MULTIPLIERS.len())
            .map(|i| {
                Beta::new(self.alpha[i], self.beta[i])
                    .map(|b| b.sample(rng))
                    .unwrap_or_else(|_| self.mean(i))
            })
            .collect()
    }

    /// The arm with the best revenue `m × θ` for `thetas` (ties: lower price).
    fn best(thetas: &[f64]) -> usize {
        let mut best = 0;
        for i in 1..thetas.len() {
            if MULTIPLIERS[i] * thetas[i] > MULTIPLIERS[best] * thetas[best] {
                best = i;
            }
        }
        best
    }

    /// The arm a Thompson draw picks.
    pub fn sample_arm(&self, rng: &mut impl Rng) -> usize {
        Self::best(&self.draw(rng))
    }

    /// The arm with the best posterior-mean revenue: what the model now
    /// believes is optimal.
    pub fn believed_best(&self) -> usize {
        let means: Vec<f64> = (0..MULTIPLIERS.len()).map(|i| self.mean(i)).collect();
        Self::best(&means)
    }

    /// A quote at `reference`: the Thompson draw, its interval and metrics.
    pub fn choose(&self, reference: Decimal, rng: &mut impl Rng) -> Choice {
        let arm = self.sample_arm(rng);
        let mut optimal: Vec<usize> = (0..CI_DRAWS).map(|_| self.sample_arm(rng)).collect();
        optimal.sort_unstable();
        let lo = optimal[CI_DRAWS * 25 / 1000];
        let hi = optimal[(CI_DRAWS * 975 / 1000).min(CI_DRAWS - 1)];
        let next = if arm + 1 < MULTIPLIERS.len() {
            arm + 1
        } else {
            arm - 1
        };
        let (c1, c2) = (self.mean(arm), self.mean(next));
        let (p1, p2) = (MULTIPLIERS[arm], MULTIPLIERS[next]);
        let elasticity = ((c2 - c1) / ((c2 + c1) / 2.0)) / ((p2 - p1) / ((p2 + p1) / 2.0));
        Choice {
            arm,
            price: price(reference, arm),
            lower: price(reference, lo),
            upper: price(reference, hi),
            // `+ 0.0` turns a negative zero positive: JSON keeps "-0.0",
            // Postgres' jsonb does not, and a quote must read back as it was answered.
            expected_conversion: (self.mean(arm) * 10_000.0).round() / 10_000.0 + 0.0,
            price_elasticity: (elasticity * 1_000.0).round() / 1_000.0 + 0.0,
        }
    }

    /// Learns one outcome at `arm`.
    pub fn learn(&mut self, arm: usize, converted: bool) {
        if converted {
            self.alpha[arm] += 1.0;
        } else {
            self.beta[arm] += 1.0;
        }
    }
}

/// Expected lifetime value of a converted customer at `price` a month:
/// 12 months, plus up to 24 more for the most valuable customers.
pub fn expected_ltv(price: Decimal, user_value_score: f64) -> Decimal {
    let months = 12.0 + 24.0 * user_value_score.clamp(0.0, 1.0);
    (price * Decimal::from_f64(months).unwrap_or(Decimal::from(12))).round_dp(2)
}

/// A price as `f64`, for metrics.
pub fn to_f64(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}
