//! The investment endpoints that need no position: the vault's current rate
//! and the interest calculator. The arithmetic is `schemas::interest`'s.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rust_decimal::Decimal;
use serde_json::{json, Value};

use schemas::interest::{
    self, CALCULATOR_DAYS_MAX, COMPOUND_FORMULA, RATE_PCT_MAX, SIMPLE_FORMULA,
};

use crate::auth::Caller;
use crate::bank::reports::summary_error;
use crate::body::{number, JsonObject};
use crate::{ApiError, AppState};

/// `GET /investment/interest-rate` — the rate in force now and since when.
pub async fn interest_rate(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    let now = chrono::Utc::now().timestamp_millis();
    let current = state.config.interest_rates.at(now);
    // The first entry applies since forever: report it as in force since
    // the epoch rather than an unrepresentable time.
    let since =
        chrono::DateTime::from_timestamp_millis(current.effective_ms.max(0)).unwrap_or_default();
    Json(json!({
        "interestRate": number(current.rate_pct),
        "lastUpdated": since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }))
}

/// `POST /investment/calculator` — simple interest as documented (principal ×
/// rate × days ÷ 365, with its steps), plus what a vault position earns over
/// the same period by continuous compounding. Needs an API key (the
/// contract's global security), like every operation.
pub async fn calculator(
    State(state): State<AppState>,
    _caller: Caller,
    body: JsonObject,
) -> Result<Response, ApiError> {
    let amount_msg = "Amount must be a positive number";
    let days_msg = "Days must be a positive number";
    let rate_msg = format!("Custom rate must be a number between 0 and {RATE_PCT_MAX}");
    // Each field a JSON number or decimal string, else the documented message.
    let amount = match body.opt_amount("amount") {
        Ok(v) => v,
        Err(_) => return Ok(summary_error(amount_msg)),
    };
    let days = match body.opt_amount("days") {
        Ok(v) => v,
        Err(_) => return Ok(summary_error(days_msg)),
    };
    let Ok(custom_rate) = body.opt_amount("customRate") else {
        return Ok(summary_error(&rate_msg));
    };
    let (Some(amount), Some(days)) = (amount, days) else {
        return Ok(summary_error("Amount and days are required"));
    };
    if schemas::money::validate_positive(amount, interest::CURRENCY).is_err() {
        return Ok(summary_error(
            "Amount must be a positive number of at most 10^12 with at most 6 decimal places",
        ));
    }
    if days <= Decimal::ZERO || days.scale() > 6 {
        return Ok(summary_error(days_msg));
    }
    if days > Decimal::from(CALCULATOR_DAYS_MAX) {
        return Ok(summary_error(&format!(
            "Days must be at most {CALCULATOR_DAYS_MAX}"
        )));
    }
    let rate = match custom_rate.map(interest::check_rate) {
        Some(Err(_)) => return Ok(summary_error(&rate_msg)),
        Some(Ok(r)) => r,
        None => {
            let now = chrono::Utc::now().timestamp_millis();
            state.config.interest_rates.at(now).rate_pct
        }
    };
    let p =
        interest::project(amount, days, rate).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let total = p.principal + p.simple_interest;
    Ok(Json(json!({
        "principal": number(p.principal),
        "days": number(p.days),
        "interestRate": number(p.rate_pct),
        "interestEarned": interest::cents(p.simple_interest),
        "totalAmount": interest::cents(total),
        "annualYield": format!("{}%", interest::cents(p.rate_pct)),
        "calculation": {"formula": SIMPLE_FORMULA, "steps": p.steps},
        "compounding": {
            "formula": COMPOUND_FORMULA,
            "interestEarned": schemas::money::display(p.compounded_total - p.principal),
            "totalAmount": schemas::money::display(p.compounded_total),
        },
    }))
    .into_response())
}
