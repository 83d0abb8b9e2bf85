//! Money: amounts are `rust_decimal::Decimal`, never floats.
//!
//! **The rounding rule, stated once.** Every amount is held at its currency's
//! scale (USDC: 6 decimal places). Input with more places than the scale is
//! rejected, never rounded. Where arithmetic yields more places (interest,
//! fees, splits), the result is rounded once, toward zero, to the currency's
//! scale ([`round_to_scale`]), so the bank never credits a unit it does not hold.

use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;

use crate::SchemaError;

/// The currencies agentbank holds, with their scale. Only USDC for now.
pub const SUPPORTED_CURRENCIES: &[(&str, u32)] = &[("USDC", 6)];

/// The largest amount accepted in one command: 10^12 units, far above any
/// sane limit, so sums of many amounts stay well inside `Decimal`'s range.
pub const AMOUNT_MAX: Decimal = Decimal::from_parts(3_567_587_328, 232, 0, false, 0); // 1_000_000_000_000

/// The decimal places of `currency`, or `None` when we do not hold it.
pub fn currency_scale(currency: &str) -> Option<u32> {
    SUPPORTED_CURRENCIES
        .iter()
        .find(|(c, _)| *c == currency)
        .map(|(_, s)| *s)
}

/// The revenue ledger's currencies: the scale (minor-unit digits) of an
/// ISO 4217 currency with minor units; `None` for unknown codes and for
/// funds, metals and test codes. (The bank's own are [`currency_scale`].)
pub fn iso_4217_scale(code: &str) -> Option<u32> {
    let c = iso_currency::Currency::from_code(code)?;
    if c.is_fund() || c.is_special() {
        return None;
    }
    c.exponent().map(u32::from)
}

/// The rounding rule: toward zero, to the currency's scale.
pub fn round_to_scale(amount: Decimal, scale: u32) -> Decimal {
    amount.round_dp_with_strategy(scale, RoundingStrategy::ToZero)
}

/// Parses decimal text exactly (`"50"`, `"0.000001"`, `"1e2"`); no float on the way.
pub fn parse_exact(text: &str) -> Result<Decimal, SchemaError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 {
        return Err(SchemaError::Amount(format!("'{text}' is not a number")));
    }
    Decimal::from_str_exact(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map(|d| d.normalize())
        .map_err(|_| SchemaError::Amount(format!("'{text}' is not a number")))
}

/// Checks a positive amount of `currency`: > 0, ≤ [`AMOUNT_MAX`], and no more
/// decimal places than the currency has.
pub fn validate_positive(amount: Decimal, currency: &str) -> Result<Decimal, SchemaError> {
    let scale = currency_scale(currency)
        .ok_or_else(|| SchemaError::Amount(format!("unsupported currency '{currency}'")))?;
    validate_non_negative(amount, currency)?;
    if amount.is_zero() {
        return Err(SchemaError::Amount("amount must be greater than 0".into()));
    }
    debug_assert!(amount.scale() <= scale);
    Ok(amount)
}

/// Like [`validate_positive`] but allows zero (limits, initial balances).
pub fn validate_non_negative(amount: Decimal, currency: &str) -> Result<Decimal, SchemaError> {
    let scale = currency_scale(currency)
        .ok_or_else(|| SchemaError::Amount(format!("unsupported currency '{currency}'")))?;
    let amount = amount.normalize();
    if amount.is_sign_negative() && !amount.is_zero() {
        return Err(SchemaError::Amount("amount must not be negative".into()));
    }
    if amount > AMOUNT_MAX {
        return Err(SchemaError::Amount(format!(
            "amount must not exceed {AMOUNT_MAX}"
        )));
    }
    if amount.scale() > scale {
        return Err(SchemaError::Amount(format!(
            "amount has more than {scale} decimal places"
        )));
    }
    Ok(amount.abs())
}

/// Renders an amount as the API shows it: plain decimal, no trailing zeros.
pub fn display(amount: Decimal) -> String {
    amount.normalize().to_string()
}

/// Decimal from its canonical string on the topics (exact).
pub fn from_wire(text: &str) -> Result<Decimal, SchemaError> {
    Decimal::from_str(text).map_err(|_| SchemaError::Amount(format!("'{text}' on the wire")))
}

/// The sandbox sign-up bonus (Mage: "a $20 deposit as soon as you register").
pub const SIGNUP_BONUS: Decimal = Decimal::from_parts(20, 0, 0, false, 0);

/// Renders a Decimal as a JSON number with its exact digits (serde_json's
/// `arbitrary_precision`: never through `f64`).
pub fn json_number(d: Decimal) -> serde_json::Value {
    let text = display(d);
    serde_json::from_str::<serde_json::Number>(&text)
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::String(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn amount_max_is_ten_to_the_twelve() {
        assert_eq!(AMOUNT_MAX, Decimal::from(1_000_000_000_000u64));
    }

    #[test]
    fn parses_exactly_and_rejects_overprecise() {
        assert_eq!(parse_exact("0.1").unwrap().to_string(), "0.1");
        assert_eq!(parse_exact("1e2").unwrap(), Decimal::from(100));
        assert!(validate_positive(parse_exact("0.0000001").unwrap(), "USDC").is_err());
        assert!(validate_positive(parse_exact("0.000001").unwrap(), "USDC").is_ok());
        assert!(validate_positive(parse_exact("-1").unwrap(), "USDC").is_err());
        assert!(validate_positive(Decimal::ZERO, "USDC").is_err());
        assert!(validate_positive(Decimal::ONE, "EUR").is_err());
        assert!(parse_exact("abc").is_err());
        assert!(parse_exact("NaN").is_err());
    }

    proptest! {
        #[test]
        fn rounding_is_toward_zero_and_at_most_scale(units in any::<i64>(), extra in 0u32..6) {
            let d = Decimal::new(units, 6 + extra);
            let r = round_to_scale(d, 6);
            prop_assert!(r.scale() <= 6);
            prop_assert!(r.abs() <= d.abs());
            prop_assert!((d - r).abs() < Decimal::new(1, 6));
        }

        #[test]
        fn display_round_trips(units in 0i64..1_000_000_000_000_000) {
            let d = Decimal::new(units, 6);
            prop_assert_eq!(parse_exact(&display(d)).unwrap(), d);
        }
    }
}
