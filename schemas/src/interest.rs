//! Interest: the savings vault's money rules, in one place.
//!
//! - A rate is an annual percentage (`4.5` = 4.5 % a year). Time is counted
//!   in milliseconds and a year is 365 days (ACT/365 fixed, the `days ÷ 365`
//!   of the seed's calculator).
//! - Vault positions grow by continuous compounding, A = P·e^(r·t). Across
//!   rate changes the exponent adds up, A = P·e^(Σ rᵢ·tᵢ), so the growth of a
//!   position is kept as its **rate-milliseconds** `Σ rateᵢ × msᵢ` — exact
//!   decimal products, no division — and however a period is split into
//!   ticks the sum is the same number: accrual over any split equals accrual
//!   over the whole, exactly.
//! - e^x is rust_decimal's `checked_exp` (28 significant digits; the error is
//!   far below 10⁻⁶ for any amount up to [`money::AMOUNT_MAX`] within the
//!   bounds here). The value is then rounded **once, toward zero**, to the
//!   currency's scale ([`money::round_to_scale`]). Interest posted at a tick is
//!   the rounded total to date minus what was posted before, so the posted
//!   sum never exceeds the formula and is below it by less than one unit.
//! - The calculator shows the seed's simple interest, principal × rate ×
//!   (days ÷ 365), with its steps; next to it, the continuous-compounding
//!   figure from [`value`] — what the vault itself pays, to the unit.

use rust_decimal::{Decimal, MathematicalOps, RoundingStrategy};

use crate::money;
use crate::SchemaError;

/// Milliseconds in the 365-day year.
pub const YEAR_MS: i64 = 365 * 86_400_000;
/// The highest annual rate accepted anywhere (config or calculator), in %.
pub const RATE_PCT_MAX: Decimal = Decimal::ONE_HUNDRED;
/// The longest period the calculator projects, in days (at the highest rate
/// e^(r·t) stays far inside `Decimal`'s range).
pub const CALCULATOR_DAYS_MAX: i64 = 3_650;
/// The vault's currency and its scale.
pub const CURRENCY: &str = "USDC";
const SCALE: u32 = 6;

/// One entry of the rate history: `rate_pct` applies from `effective_ms`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateChange {
    pub effective_ms: i64,
    pub rate_pct: Decimal,
}

/// The annual rate over time. A change applies from its effective time on,
/// never to time before it. The first entry applies since forever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateSchedule {
    changes: Vec<RateChange>,
}

fn bad_rate(msg: impl Into<String>) -> SchemaError {
    SchemaError::Amount(msg.into())
}

/// A valid annual rate: 0 to [`RATE_PCT_MAX`] %, at most 6 places.
pub fn check_rate(rate: Decimal) -> Result<Decimal, SchemaError> {
    if rate.is_sign_negative() || rate > RATE_PCT_MAX || rate.scale() > 6 {
        return Err(bad_rate(format!(
            "interest rate must be between 0 and {RATE_PCT_MAX} with at most 6 decimal places"
        )));
    }
    Ok(rate.normalize())
}

impl RateSchedule {
    /// Parses `4.5` (one rate) or `2026-01-01T00:00:00Z=4.5,2026-12-01T00:00:00Z=5`
    /// (a history, RFC 3339 times in increasing order).
    pub fn parse(spec: &str) -> Result<Self, SchemaError> {
        let mut changes = vec![];
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (effective_ms, rate) = match part.split_once('=') {
                None => (i64::MIN, part),
                Some((at, rate)) => {
                    let at = chrono::DateTime::parse_from_rfc3339(at.trim())
                        .map_err(|e| bad_rate(format!("'{at}' is not an RFC 3339 time: {e}")))?;
                    (at.timestamp_millis(), rate)
                }
            };
            let rate_pct = check_rate(money::parse_exact(rate)?)?;
            if changes
                .last()
                .is_some_and(|c: &RateChange| c.effective_ms >= effective_ms)
            {
                return Err(bad_rate("rate changes must be in increasing time order"));
            }
            changes.push(RateChange {
                effective_ms,
                rate_pct,
            });
        }
        if changes.is_empty() {
            return Err(bad_rate("the interest rate schedule is empty"));
        }
        Ok(RateSchedule { changes })
    }

    /// The change in force at `at_ms` (the first one before any change).
    pub fn at(&self, at_ms: i64) -> &RateChange {
        let i = self.changes.partition_point(|c| c.effective_ms <= at_ms);
        &self.changes[i.saturating_sub(1)]
    }

    /// `Σ rate × ms` over `[from_ms, to_ms)`, each part at the rate then in
    /// force; zero for an empty or reversed interval.
    pub fn rate_ms(&self, from_ms: i64, to_ms: i64) -> Decimal {
        let mut total = Decimal::ZERO;
        let mut start = from_ms;
        while start < to_ms {
            let i = self.changes.partition_point(|c| c.effective_ms <= start);
            let rate = self.changes[i.saturating_sub(1)].rate_pct;
            let end = self
                .changes
                .get(i)
                .map_or(to_ms, |c| c.effective_ms.min(to_ms));
            total += rate * Decimal::from(end - start);
            start = end;
        }
        total
    }
}

/// P·e^(rate_ms / (100 × year)), rounded toward zero to the scale; `None`
/// when the exponent would overflow.
pub fn value(principal: Decimal, rate_ms: Decimal) -> Option<Decimal> {
    let exponent = rate_ms.checked_div(Decimal::ONE_HUNDRED * Decimal::from(YEAR_MS))?;
    let grown = principal.checked_mul(exponent.checked_exp()?)?;
    Some(money::round_to_scale(grown, SCALE))
}

/// Interest earned to date: [`value`] minus the principal.
pub fn earned(principal: Decimal, rate_ms: Decimal) -> Option<Decimal> {
    value(principal, rate_ms).map(|v| v - principal)
}

/// The seed's calculator: simple interest with its steps, and the vault's
/// continuous-compounding figure for the same inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Projection {
    pub principal: Decimal,
    pub days: Decimal,
    pub rate_pct: Decimal,
    /// principal × rate × days ÷ 365, toward zero to the scale.
    pub simple_interest: Decimal,
    pub steps: Vec<String>,
    /// P·e^(r·days/365), as [`value`] computes it.
    pub compounded_total: Decimal,
}

pub const SIMPLE_FORMULA: &str = "principal × rate × (days ÷ 365)";
pub const COMPOUND_FORMULA: &str = "principal × e^(rate × days ÷ 365)";

fn six(d: Decimal) -> String {
    format!(
        "{:.6}",
        d.round_dp_with_strategy(6, RoundingStrategy::ToZero)
    )
}

/// Projects `principal` over `days` at `rate_pct`. Inputs are checked:
/// principal a positive USDC amount, 0 < days ≤ [`CALCULATOR_DAYS_MAX`]
/// (up to 6 decimal places), rate within [`RATE_PCT_MAX`].
pub fn project(
    principal: Decimal,
    days: Decimal,
    rate_pct: Decimal,
) -> Result<Projection, SchemaError> {
    let principal = money::validate_positive(principal, CURRENCY)?;
    let rate_pct = check_rate(rate_pct)?;
    if days <= Decimal::ZERO || days > Decimal::from(CALCULATOR_DAYS_MAX) || days.scale() > 6 {
        return Err(bad_rate(format!(
            "days must be more than 0 and at most {CALCULATOR_DAYS_MAX}"
        )));
    }
    let days = days.normalize();
    let rate = rate_pct / Decimal::ONE_HUNDRED;
    let year_share = days / Decimal::from(365);
    let simple_interest = money::round_to_scale(principal * rate * year_share, SCALE);
    let steps = vec![
        format!("{principal} × {rate} × {days}/365"),
        format!("{principal} × {rate} × {}", six(year_share)),
        format!("{principal} × {}", six(rate * year_share)),
        six(simple_interest),
    ];
    // days × 86,400,000 ms is exact for days with ≤ 6 decimals.
    let rate_ms = rate_pct * days * Decimal::from(86_400_000);
    let compounded_total =
        value(principal, rate_ms).ok_or_else(|| bad_rate("the projection overflows"))?;
    Ok(Projection {
        principal,
        days,
        rate_pct,
        simple_interest,
        steps,
        compounded_total,
    })
}

/// Cents for display (`"45.00"`), toward zero like every rounding here.
pub fn cents(amount: Decimal) -> String {
    format!(
        "{:.2}",
        amount.round_dp_with_strategy(2, RoundingStrategy::ToZero)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn the_seed_example_projects_as_documented() {
        let p = project(d("1000"), d("365"), d("4.5")).unwrap();
        assert_eq!(cents(p.simple_interest), "45.00");
        assert_eq!(cents(p.principal + p.simple_interest), "1045.00");
        assert_eq!(
            p.steps,
            [
                "1000 × 0.045 × 365/365",
                "1000 × 0.045 × 1.000000",
                "1000 × 0.045000",
                "45.000000"
            ]
        );
        // 1000·e^0.045 = 1046.027859908717…
        assert_eq!(p.compounded_total, d("1046.027859"));
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(project(d("0"), d("1"), d("1")).is_err());
        assert!(project(d("1"), d("0"), d("1")).is_err());
        assert!(project(d("1"), d("3651"), d("1")).is_err());
        assert!(project(d("1"), d("1"), d("100.5")).is_err());
        assert!(project(d("1"), d("1"), d("-1")).is_err());
        assert!(project(d("0.0000001"), d("1"), d("1")).is_err());
        // The extremes stay in range.
        let max = project(money::AMOUNT_MAX, d("3650"), RATE_PCT_MAX).unwrap();
        assert!(max.compounded_total > money::AMOUNT_MAX * d("22026"));
    }

    #[test]
    fn schedules_parse_and_apply_from_their_effective_time() {
        let s = RateSchedule::parse("4.5").unwrap();
        assert_eq!(s.at(0).rate_pct, d("4.5"));
        let s = RateSchedule::parse("2026-01-01T00:00:00Z=4,2026-01-02T00:00:00Z=5").unwrap();
        let change = 1_767_312_000_000; // 2026-01-02
        assert_eq!(s.at(change - 1).rate_pct, d("4"));
        assert_eq!(s.at(change).rate_pct, d("5"));
        // Before the first entry, the first rate applies.
        assert_eq!(s.at(0).rate_pct, d("4"));
        assert_eq!(s.rate_ms(change - 10, change + 10), d("90"));
        assert_eq!(s.rate_ms(5, 5), Decimal::ZERO);
        for bad in [
            "",
            "x",
            "101",
            "2026-01-02T00:00:00Z=4,2026-01-01T00:00:00Z=5",
            "yesterday=4",
        ] {
            assert!(RateSchedule::parse(bad).is_err(), "{bad}");
        }
    }

    fn schedule() -> impl Strategy<Value = RateSchedule> {
        prop::collection::vec((1i64..10_000_000_000, 0u32..=1_000_000), 1..5).prop_map(|v| {
            let mut at = 0;
            let spec: Vec<String> = v
                .into_iter()
                .map(|(gap, rate)| {
                    at += gap;
                    let t = chrono::DateTime::from_timestamp_millis(at).unwrap();
                    format!("{}={}", t.to_rfc3339(), Decimal::new(rate.into(), 4))
                })
                .collect();
            RateSchedule::parse(&spec.join(",")).unwrap()
        })
    }

    proptest! {
        /// However a period is cut into ticks, the accrued exponent is the
        /// same number, so the value is the same to the unit.
        #[test]
        fn accrual_over_any_split_equals_the_whole(
            s in schedule(),
            start in 0i64..20_000_000_000,
            cuts in prop::collection::vec(0i64..40_000_000_000, 0..12),
            principal in 1i64..1_000_000_000_000_000,
        ) {
            let end = start + 40_000_000_000;
            let mut points: Vec<i64> = cuts.into_iter().map(|c| start + c).collect();
            points.push(start);
            points.push(end);
            points.sort();
            let split: Decimal = points.windows(2).map(|w| s.rate_ms(w[0], w[1])).sum();
            prop_assert_eq!(split, s.rate_ms(start, end));
            let p = Decimal::new(principal, 6);
            prop_assert_eq!(value(p, split), value(p, s.rate_ms(start, end)));
        }

        /// Posting, at each tick, the rounded total minus what was posted
        /// never exceeds the formula, misses it by less than one unit, and
        /// never posts a negative amount.
        #[test]
        fn posted_interest_never_exceeds_the_formula(
            s in schedule(),
            ticks in prop::collection::vec(1i64..5_000_000_000, 1..20),
            principal in 1i64..1_000_000_000_000_000,
        ) {
            let p = Decimal::new(principal, 6);
            let (mut at, mut acc, mut posted) = (0i64, Decimal::ZERO, Decimal::ZERO);
            for gap in ticks {
                acc += s.rate_ms(at, at + gap);
                at += gap;
                let due = earned(p, acc).unwrap() - posted;
                prop_assert!(due >= Decimal::ZERO);
                posted += due;
            }
            let exact = p * (acc / (Decimal::ONE_HUNDRED * Decimal::from(YEAR_MS))).exp() - p;
            prop_assert!(posted <= exact);
            prop_assert!(exact - posted < Decimal::new(1, 6));
        }

        /// The calculator's compounded figure is the vault's own, to the unit.
        #[test]
        fn calculator_and_accrual_agree(
            principal in 1i64..1_000_000_000_000,
            days in 1i64..3_650,
            rate in 0u32..1_000_000,
        ) {
            let (p, rate) = (Decimal::new(principal, 2), Decimal::new(rate.into(), 4));
            let s = RateSchedule::parse(&rate.to_string()).unwrap();
            let from = 1_700_000_000_000;
            let accrued = value(p, s.rate_ms(from, from + days * 86_400_000)).unwrap();
            prop_assert_eq!(project(p, Decimal::from(days), rate).unwrap().compounded_total, accrued);
        }
    }
}
