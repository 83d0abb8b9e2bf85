//! `/v1/portfolio`: the status and history of the tenant's positions
//! (valued from the revenue ledger's daily aggregates, `schemas::revenue::
//! portfolio`), and rebalancing — target weights solved over the
//! covariance of the positions' daily returns under the caller's
//! constraints, answered as a dry run or applied through the portfolio
//! machine (refused with 409 if the portfolio changed meanwhile).

use std::time::Instant;

use axum::extract::State;
use axum::Json;
use chrono::{NaiveDate, Utc};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

use connectors::read_model::portfolio as model;
use schemas::ids::{self, Kind};
use schemas::reply::{Outcome, RejectCode};
use schemas::revenue::portfolio::math::{self, Constraints, Strategy};
use schemas::revenue::portfolio::{
    portfolio_key, return_covariance, status as status_of, valuation, ApplyRebalance, Holding,
    OpenPosition, Position, Trade, Valuation,
};
use schemas::CommandPayload;

use crate::auth::Caller;
use crate::body::JsonObject;
use crate::commands::{command, unexpected};
use crate::error::ApiError;
use crate::revenue::fields::{invalid, Fields};
#[allow(unused_imports)] // named by the OpenAPI attributes
use crate::revenue::schema::{
    CommonErrors, ErrorEnvelope, PortfolioHistory, RebalanceAnswer, RebalanceRequest,
};
use crate::AppState;
#[allow(unused_imports)]
use schemas::revenue::portfolio::StatusView;

/// Largest allocation of one position (USD).
pub const ALLOCATION_MAX: i64 = 1_000_000_000_000;

/// The tenant's positions and their valuation up to today.
struct Book {
    positions: Vec<Position>,
    version: i64,
    holdings: Vec<Holding>,
    valuation: Valuation,
}

fn day_of(ms: i64) -> NaiveDate {
    schemas::revenue::analytics::day_of(ms)
}

async fn book(state: &AppState, tenant: Uuid) -> Result<Book, ApiError> {
    let (positions, version) = model::positions(&state.pool, tenant).await?;
    let flows = model::flows(&state.pool, tenant).await?;
    let holdings: Vec<Holding> = positions
        .iter()
        .map(|p| Holding {
            opportunity_id: p.opportunity_id,
            product_id: p.product_id.clone(),
            opened: day_of(p.opened_ms),
        })
        .collect();
    let mut products: Vec<String> = holdings.iter().map(|h| h.product_id.clone()).collect();
    products.sort();
    products.dedup();
    let first = holdings
        .iter()
        .map(|h| h.opened)
        .min()
        .unwrap_or_else(|| Utc::now().date_naive());
    let revenue = model::product_revenue(&state.pool, tenant, &products, first).await?;
    let valuation = valuation(&holdings, &flows, &revenue, Utc::now().date_naive());
    Ok(Book {
        positions,
        version,
        holdings,
        valuation,
    })
}

/// `GET /v1/portfolio/status`.
#[utoipa::path(get, path = "/portfolio/status", tag = "portfolio",
    responses((status = 200, description = "Value, performance and risk", body = StatusView), CommonErrors))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let b = book(&state, caller.user_id).await?;
    let capital: Vec<Decimal> = b.positions.iter().map(|p| p.capital).collect();
    Ok(Json(json!(status_of(
        &b.holdings,
        &capital,
        &b.valuation,
        state.config.risk_free_rate
    ))))
}

fn numbers(values: &[Decimal]) -> Vec<Value> {
    values
        .iter()
        .map(|v| schemas::money::json_number(*v))
        .collect()
}

/// `GET /v1/portfolio/history`: the daily series the status was computed
/// from (at most 730 days), so anyone can recompute it.
#[utoipa::path(get, path = "/portfolio/history", tag = "portfolio",
    responses((status = 200, description = "Daily values, flows and returns", body = PortfolioHistory), CommonErrors))]
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let b = book(&state, caller.user_id).await?;
    let v = &b.valuation;
    Ok(Json(json!({
        "currency": "USD",
        "risk_free_rate": state.config.risk_free_rate,
        "dates": v.dates.iter().map(|d| d.format("%Y-%m-%d").to_string()).collect::<Vec<_>>(),
        "portfolio": {"values": numbers(&v.portfolio.values), "flows": numbers(&v.portfolio.flows),
                      "returns": v.portfolio.returns},
        "positions": b.positions.iter().zip(&v.positions).map(|(p, s)| json!({
            "opportunity_id": ids::short(Kind::Opportunity, p.opportunity_id),
            "product_id": p.product_id,
            "capital": schemas::money::json_number(p.capital),
            "values": numbers(&s.values), "flows": numbers(&s.flows), "returns": s.returns,
        })).collect::<Vec<_>>(),
    })))
}

/// The rebalance body's fields.
pub const REBALANCE_FIELDS: [&str; 4] = ["strategy", "constraints", "dry_run", "reason"];

struct RebalanceBody {
    strategy: Strategy,
    constraints: Constraints,
    dry_run: bool,
    reason: String,
}

fn parse_rebalance(body: &JsonObject) -> Result<RebalanceBody, ApiError> {
    let f = Fields::root(&body.0);
    f.only(&REBALANCE_FIELDS)?;
    let names: Vec<&str> = Strategy::ALL.iter().map(|s| s.as_str()).collect();
    let strategy = f
        .text("strategy", 40)?
        .and_then(|s| Strategy::parse(&s))
        .ok_or_else(|| ApiError::Validation {
            message: format!("strategy must be one of {}", names.join(", ")),
            details: json!({"field": "strategy", "allowed": names}),
        })?;
    let mut constraints = Constraints::default();
    if let Some(c) = f.object("constraints")? {
        c.only(&[
            "max_position_size",
            "min_position_size",
            "target_risk",
            "turnover_limit",
        ])?;
        if let Some(x) = c.rate("max_position_size", 0.0, 1.0)? {
            constraints.max_position_size = x;
        }
        if let Some(x) = c.rate("min_position_size", 0.0, 1.0)? {
            constraints.min_position_size = x;
        }
        constraints.target_risk = c.rate("target_risk", 0.0, 100.0)?;
        constraints.turnover_limit = c.rate("turnover_limit", 0.0, 1.0)?;
    }
    let dry_run = match f.get("dry_run") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("dry_run", "dry_run must be true or false")),
    };
    Ok(RebalanceBody {
        strategy,
        constraints,
        dry_run,
        reason: f.text("reason", 200)?.unwrap_or_default(),
    })
}

fn to_f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Trades moving today's values to `target` weights of `total`, in cents,
/// summing to zero exactly (the rounding remainder on the largest trade).
fn trades(
    positions: &[Position],
    values: &[Decimal],
    target: &[f64],
    total: Decimal,
) -> Vec<Decimal> {
    let mut t: Vec<Decimal> = values
        .iter()
        .zip(target)
        .map(|(v, w)| {
            let want = Decimal::from_f64(*w).unwrap_or_default() * total;
            (want - v).round_dp(2)
        })
        .collect();
    let rest: Decimal = t.iter().sum();
    if let Some(i) = (0..t.len()).max_by_key(|i| t[*i].abs()) {
        t[i] -= rest;
    }
    debug_assert_eq!(t.len(), positions.len());
    t
}

/// `POST /v1/portfolio/rebalance`.
#[utoipa::path(post, path = "/portfolio/rebalance", tag = "portfolio",
    request_body = RebalanceRequest,
    responses((status = 200, description = "Target weights, trades and risk contributions", body = RebalanceAnswer), CommonErrors,
              (status = 409, description = "The portfolio changed while solving; solve again", body = ErrorEnvelope)))]
pub async fn rebalance(
    State(state): State<AppState>,
    caller: Caller,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    caller.require_user_key()?;
    let r = parse_rebalance(&body)?;
    let b = book(&state, caller.user_id).await?;
    if b.positions.is_empty() {
        return Err(invalid(
            "strategy",
            "The portfolio has no positions to rebalance",
        ));
    }
    let solving = Instant::now();
    let values: Vec<Decimal> = b
        .valuation
        .positions
        .iter()
        .map(|s| s.values.last().copied().unwrap_or_default())
        .collect();
    let total: Decimal = values.iter().sum();
    let current: Vec<f64> = values
        .iter()
        .map(|v| {
            if total > Decimal::ZERO {
                to_f(*v / total)
            } else {
                1.0 / values.len() as f64
            }
        })
        .collect();
    let cov = return_covariance(&b.valuation);
    let target = math::rebalance(r.strategy, &cov, &current, &r.constraints).map_err(|e| {
        ApiError::Validation {
            message: e.message,
            details: json!({"field": format!("constraints.{}", e.constraint), "constraint": e.constraint}),
        }
    })?;
    let amounts = trades(&b.positions, &values, &target, total);
    let solve_ms = solving.elapsed().as_secs_f64() * 1_000.0;
    metrics::histogram!("agentbank_portfolio_rebalance_solve_seconds").record(solve_ms / 1_000.0);
    let (before, after) = (
        math::risk_contributions(&cov, &current),
        math::risk_contributions(&cov, &target),
    );
    let mut applied = false;
    if !r.dry_run {
        let payload = CommandPayload::ApplyRebalance(ApplyRebalance {
            strategy: r.strategy.as_str().into(),
            expected_version: b.version,
            trades: b
                .positions
                .iter()
                .zip(&amounts)
                .filter(|(_, a)| !a.is_zero())
                .map(|(p, a)| Trade {
                    opportunity_id: p.opportunity_id,
                    amount: *a,
                })
                .collect(),
            reason: r.reason.clone(),
        });
        match state
            .bus
            .execute(command(
                Uuid::new_v4(),
                portfolio_key(caller.user_id),
                &caller,
                payload,
            ))
            .await?
        {
            Outcome::Done => applied = true,
            Outcome::Rejected {
                code: RejectCode::Conflict,
                message,
            } => return Err(ApiError::Conflict(message)),
            other => return Err(unexpected(other)),
        }
    }
    let round = |x: f64| (x * 1e9).round() / 1e9 + 0.0;
    Ok(Json(json!({
        "strategy": r.strategy.as_str(),
        "dry_run": r.dry_run,
        "applied": applied,
        "portfolio_value": schemas::money::json_number(total),
        "turnover": round(math::turnover(&current, &target)),
        "volatility_before": round(math::volatility(&cov, &current)),
        "volatility_after": round(math::volatility(&cov, &target)),
        "solve_ms": (solve_ms * 1_000.0).round() / 1_000.0,
        "positions": b.positions.iter().enumerate().map(|(i, p)| json!({
            "opportunity_id": ids::short(Kind::Opportunity, p.opportunity_id),
            "current_weight": round(current[i]),
            "target_weight": round(target[i]),
            "trade_amount": schemas::money::json_number(amounts[i]),
            "risk_contribution_before": round(before[i]),
            "risk_contribution_after": round(after[i]),
        })).collect::<Vec<_>>(),
    })))
}

/// What executing an opportunity allocates: `allocation` (USD; default the
/// plan's execution cost), the `product_id` whose revenue values it
/// (default the opportunity's own id) and `opened_at` (default now).
pub struct Allocation {
    pub capital: Option<Decimal>,
    pub product_id: Option<String>,
    pub opened_ms: Option<i64>,
}

/// The execute body's fields.
pub const EXECUTE_FIELDS: [&str; 3] = ["allocation", "product_id", "opened_at"];

pub fn parse_allocation(body: Option<&JsonObject>) -> Result<Allocation, ApiError> {
    let Some(body) = body else {
        return Ok(Allocation {
            capital: None,
            product_id: None,
            opened_ms: None,
        });
    };
    let f = Fields::root(&body.0);
    f.only(&EXECUTE_FIELDS)?;
    let capital = f.decimal("allocation", ALLOCATION_MAX)?;
    if capital.is_some_and(|c| c.normalize().scale() > 2) {
        return Err(invalid(
            "allocation",
            "allocation has at most 2 decimals (USD)",
        ));
    }
    let opened_ms = match f.text("opened_at", 40)? {
        None => None,
        Some(t) => {
            let at = chrono::DateTime::parse_from_rfc3339(&t)
                .map_err(|_| invalid("opened_at", "opened_at must be RFC 3339"))?
                .timestamp_millis();
            let now = Utc::now().timestamp_millis();
            if at > now + 60_000 || at < crate::revenue::ledger::OCCURRED_MIN_MS {
                return Err(invalid(
                    "opened_at",
                    "opened_at must be from 2000 and not in the future",
                ));
            }
            Some(at)
        }
    };
    Ok(Allocation {
        capital,
        product_id: f.text("product_id", crate::revenue::ledger::ID_CHARS_MAX)?,
        opened_ms,
    })
}

/// Opens the executed opportunity's position (idempotent by opportunity).
pub async fn open_position(
    state: &AppState,
    caller: &Caller,
    o: &schemas::revenue::opportunity::Opportunity,
    a: &Allocation,
) -> Result<(), ApiError> {
    let payload = CommandPayload::OpenPosition(OpenPosition {
        opportunity_id: o.id,
        product_id: a
            .product_id
            .clone()
            .unwrap_or_else(|| ids::short(Kind::Opportunity, o.id)),
        capital: a
            .capital
            .unwrap_or(o.economic_analysis.execution_cost)
            .round_dp(2),
        opened_ms: a.opened_ms.unwrap_or_else(|| Utc::now().timestamp_millis()),
    });
    let id = Uuid::new_v5(&o.id, b"open-position");
    match state
        .bus
        .execute(command(id, portfolio_key(caller.user_id), caller, payload))
        .await?
    {
        Outcome::Done => Ok(()),
        other => Err(unexpected(other)),
    }
}
