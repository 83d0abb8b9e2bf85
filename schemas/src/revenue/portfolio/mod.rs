//! The portfolio: positions opened by executing opportunities, the capital
//! each holds, rebalancing trades, and its valuation — each position is
//! worth its net capital plus the revenue its product earned since it
//! opened (a product's daily revenue split among the tenant's positions on
//! it by capital), day by day, so imported past revenue gives a past value
//! series. The figures and solvers are in [`math`]; definitions in
//! `docs/revenue.md`.

pub mod math;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod valuation_tests;

use std::collections::{BTreeMap, HashMap};

use chrono::{Days, NaiveDate};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The portfolio machine's key of a tenant's portfolio.
pub fn portfolio_key(tenant: Uuid) -> Uuid {
    Uuid::new_v5(&tenant, b"portfolio")
}

/// `OpenPosition` (key: the portfolio): executing an opportunity allocates
/// capital to it. Idempotent by opportunity id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenPosition {
    #[serde(with = "crate::ids::uuid_text")]
    pub opportunity_id: Uuid,
    /// The product whose revenue values the position.
    pub product_id: String,
    #[serde(with = "rust_decimal::serde::str")]
    pub capital: Decimal,
    /// When the capital went in (may be in the past, to value history).
    pub opened_ms: i64,
}

/// One position's capital change: + buys, − sells (USD).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trade {
    #[serde(with = "crate::ids::uuid_text")]
    pub opportunity_id: Uuid,
    #[serde(with = "rust_decimal::serde::str")]
    pub amount: Decimal,
}

/// `ApplyRebalance`: the trades of a rebalance, applied only if the
/// portfolio is still at `expected_version` (what the weights were solved
/// against).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyRebalance {
    pub strategy: String,
    pub expected_version: i64,
    pub trades: Vec<Trade>,
    pub reason: String,
}

/// A position as the portfolio machine holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Position {
    #[serde(with = "crate::ids::uuid_text")]
    pub opportunity_id: Uuid,
    #[serde(with = "crate::ids::uuid_text")]
    pub tenant_id: Uuid,
    pub product_id: String,
    /// Net capital put in (USD): the allocation plus trades.
    #[serde(with = "rust_decimal::serde::str")]
    pub capital: Decimal,
    pub opened_ms: i64,
}

/// `PositionOpened`: the position, and the portfolio's version after it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionOpened {
    pub position: Position,
}

/// `PortfolioRebalanced`: the trades applied and every position after.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortfolioRebalanced {
    pub strategy: String,
    pub reason: String,
    pub trades: Vec<Trade>,
    pub positions: Vec<Position>,
}

impl Position {
    /// A webhook's `data`: the position opened.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "opportunity_id": crate::ids::short(crate::ids::Kind::Opportunity, self.opportunity_id),
            "product_id": self.product_id,
            "capital": crate::money::json_number(self.capital),
            "opened_at": super::rfc3339(self.opened_ms),
        })
    }
}

impl PortfolioRebalanced {
    /// `portfolio.rebalanced`'s `data`: the strategy, why, and the trades.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "strategy": self.strategy,
            "reason": self.reason,
            "trades": self.trades.iter().map(|t| serde_json::json!({
                "opportunity_id": crate::ids::short(crate::ids::Kind::Opportunity, t.opportunity_id),
                "amount": crate::money::json_number(t.amount),
            })).collect::<Vec<_>>(),
        })
    }
}

/// A position's cash flow on a day: its opening capital or a trade.
#[derive(Debug, Clone, PartialEq)]
pub struct Flow {
    pub opportunity_id: Uuid,
    pub day: NaiveDate,
    pub amount: Decimal,
}

/// What valuation needs of a position.
#[derive(Debug, Clone, PartialEq)]
pub struct Holding {
    pub opportunity_id: Uuid,
    pub product_id: String,
    pub opened: NaiveDate,
}

/// Daily values (USD) and returns of each position and of the portfolio,
/// from the first position's opening to `end`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Valuation {
    pub dates: Vec<NaiveDate>,
    pub portfolio: Series,
    /// In the holdings' order.
    pub positions: Vec<Series>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    pub values: Vec<Decimal>,
    pub flows: Vec<Decimal>,
    /// `(value − flow) / previous value − 1`; `None` on the first day held
    /// (or after a zero value).
    pub returns: Vec<Option<f64>>,
}

impl Series {
    fn push(&mut self, value: Decimal, flow: Decimal) {
        let ret = self.values.last().and_then(|prev| {
            (*prev > Decimal::ZERO)
                .then(|| ((value - flow) / prev).to_f64().map(|r| r - 1.0 + 0.0))
                .flatten()
        });
        self.values.push(value);
        self.flows.push(flow);
        self.returns.push(ret);
    }

    /// Returns where defined.
    pub fn defined_returns(&self) -> Vec<f64> {
        self.returns.iter().flatten().copied().collect()
    }
}

/// Longest valuation window (days).
pub const HISTORY_DAYS_MAX: u64 = 730;

/// Values every holding from the first opening (or `end − 730 days`) to
/// `end`. `revenue` is each product's net revenue per day; a product's
/// revenue of a day goes to the holdings on it opened by then, by their
/// capital at the day's start (equally when none has positive capital).
pub fn valuation(
    holdings: &[Holding],
    flows: &[Flow],
    revenue: &HashMap<(String, NaiveDate), Decimal>,
    end: NaiveDate,
) -> Valuation {
    let Some(first) = holdings.iter().map(|h| h.opened).min() else {
        return Valuation::default();
    };
    let start = first.max(end - Days::new(HISTORY_DAYS_MAX));
    let index: HashMap<Uuid, usize> = holdings
        .iter()
        .enumerate()
        .map(|(i, h)| (h.opportunity_id, i))
        .collect();
    let mut by_day: BTreeMap<NaiveDate, Vec<(usize, Decimal)>> = BTreeMap::new();
    let mut capital = vec![Decimal::ZERO; holdings.len()];
    for f in flows {
        if let Some(i) = index.get(&f.opportunity_id) {
            if f.day < start {
                capital[*i] += f.amount; // before the window: part of the opening capital
            } else {
                by_day.entry(f.day).or_default().push((*i, f.amount));
            }
        }
    }
    let mut earned = vec![Decimal::ZERO; holdings.len()];
    let mut v = Valuation {
        positions: vec![Series::default(); holdings.len()],
        ..Valuation::default()
    };
    let mut day = start;
    while day <= end {
        let mut flow_today = vec![Decimal::ZERO; holdings.len()];
        for (i, amount) in by_day.get(&day).into_iter().flatten() {
            flow_today[*i] += *amount;
        }
        // Revenue by the capital held at the day's start.
        let mut on_product: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, h) in holdings.iter().enumerate() {
            if h.opened <= day {
                on_product.entry(&h.product_id).or_default().push(i);
            }
        }
        for (product, held) in on_product {
            let Some(r) = revenue.get(&(product.to_string(), day)) else {
                continue;
            };
            let basis: Vec<Decimal> = held
                .iter()
                .map(|i| (capital[*i] + flow_today[*i]).max(Decimal::ZERO))
                .collect();
            let total: Decimal = basis.iter().sum();
            for (k, i) in held.iter().enumerate() {
                earned[*i] += if total > Decimal::ZERO {
                    *r * basis[k] / total
                } else {
                    *r / Decimal::from(held.len())
                };
            }
        }
        let mut portfolio_value = Decimal::ZERO;
        let mut portfolio_flow = Decimal::ZERO;
        for (i, h) in holdings.iter().enumerate() {
            capital[i] += flow_today[i];
            let s = &mut v.positions[i];
            if h.opened > day {
                // Not held yet: a zero, so the first day held has no return.
                s.values.push(Decimal::ZERO);
                s.flows.push(Decimal::ZERO);
                s.returns.push(None);
                continue;
            }
            let value = capital[i] + earned[i];
            s.push(value, flow_today[i]);
            portfolio_value += value;
            portfolio_flow += flow_today[i];
        }
        v.portfolio.push(portfolio_value, portfolio_flow);
        v.dates.push(day);
        day = day + Days::new(1);
    }
    v
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PerformanceMetrics {
    pub total_return: Option<f64>,
    pub annualized_return: Option<f64>,
    pub sharpe_ratio: Option<f64>,
    pub max_drawdown: f64,
    /// One-day historical VaR at 95 %, USD.
    pub value_at_risk: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RiskMetrics {
    /// One-day historical CVaR (expected shortfall) at 95 %, USD.
    pub portfolio_cvar: Option<f64>,
    /// Σ weight² (Herfindahl).
    pub concentration_risk: f64,
    /// Mean pairwise correlation of the positions' daily returns.
    pub correlation_risk: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PositionView {
    /// `opp_…`
    pub opportunity_id: String,
    pub product_id: String,
    pub weight: f64,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub capital: Decimal,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub current_value: Decimal,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub unrealized_pnl: Decimal,
    /// `unrealized_pnl / capital`; null when the capital is not positive.
    #[serde(rename = "return")]
    pub return_: Option<f64>,
}

/// `GET /v1/portfolio/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusView {
    pub currency: String,
    /// The last valued day (UTC).
    pub as_of: Option<String>,
    #[serde(serialize_with = "super::json_number")]
    #[cfg_attr(feature = "openapi", schema(value_type = f64))]
    pub portfolio_value: Decimal,
    pub total_positions: usize,
    pub active_positions: usize,
    pub performance_metrics: PerformanceMetrics,
    pub risk_metrics: RiskMetrics,
    pub positions: Vec<PositionView>,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f + 0.0
}

/// The status of holdings `h` (capital per position in `capital`) from
/// their valuation; `risk_free` is the annual risk-free rate.
pub fn status(h: &[Holding], capital: &[Decimal], v: &Valuation, risk_free: f64) -> StatusView {
    let last = |s: &Series| s.values.last().copied().unwrap_or_default();
    let value = last(&v.portfolio);
    let invested: Decimal = capital.iter().sum();
    let rets = v.portfolio.defined_returns();
    let to_f = |d: Decimal| d.to_f64().unwrap_or(0.0);
    let total_return = (invested > Decimal::ZERO).then(|| to_f((value - invested) / invested));
    let days = v.dates.len().saturating_sub(1).max(1) as f64;
    let annualized = total_return
        .filter(|r| *r > -1.0)
        .map(|r| (1.0 + r).powf(math::DAYS_A_YEAR / days) - 1.0);
    let sd = math::std_dev(&rets);
    let sharpe = (rets.len() >= 2 && sd > 0.0).then(|| {
        (math::mean(&rets) - risk_free / math::DAYS_A_YEAR) / sd * math::DAYS_A_YEAR.sqrt()
    });
    let tail = math::var_cvar(&rets, math::VAR_CONFIDENCE);
    let values: Vec<f64> = v.portfolio.values.iter().map(|d| to_f(*d)).collect();
    let weights: Vec<f64> = v
        .positions
        .iter()
        .map(|s| {
            if value > Decimal::ZERO {
                to_f(last(s) / value)
            } else {
                0.0
            }
        })
        .collect();
    let position_returns: Vec<Vec<Option<f64>>> =
        v.positions.iter().map(|s| s.returns.clone()).collect();
    StatusView {
        currency: "USD".into(),
        as_of: v.dates.last().map(|d| d.format("%Y-%m-%d").to_string()),
        portfolio_value: value,
        total_positions: h.len(),
        active_positions: h.len(),
        performance_metrics: PerformanceMetrics {
            total_return: total_return.map(|r| round(r, 6)),
            annualized_return: annualized.map(|r| round(r, 6)),
            sharpe_ratio: sharpe.map(|r| round(r, 6)),
            max_drawdown: round(math::max_drawdown(&values), 6),
            value_at_risk: tail.map(|(var, _)| round(var * to_f(value), 2)),
        },
        risk_metrics: RiskMetrics {
            portfolio_cvar: tail.map(|(_, cvar)| round(cvar * to_f(value), 2)),
            concentration_risk: round(math::herfindahl(&weights), 6),
            correlation_risk: average_pairwise(&position_returns).map(|r| round(r, 6)),
        },
        positions: h
            .iter()
            .zip(&v.positions)
            .zip(capital)
            .zip(&weights)
            .map(|(((h, s), c), w)| {
                let pnl = last(s) - c;
                PositionView {
                    opportunity_id: crate::ids::short(
                        crate::ids::Kind::Opportunity,
                        h.opportunity_id,
                    ),
                    product_id: h.product_id.clone(),
                    weight: round(*w, 6),
                    capital: *c,
                    current_value: last(s),
                    unrealized_pnl: pnl,
                    return_: (*c > Decimal::ZERO).then(|| round(to_f(pnl / c), 6)),
                }
            })
            .collect(),
    }
}

/// Mean pairwise correlation over the days both positions have a return.
pub fn average_pairwise(returns: &[Vec<Option<f64>>]) -> Option<f64> {
    let mut sum = 0.0;
    let mut pairs = 0usize;
    for i in 0..returns.len() {
        for j in i + 1..returns.len() {
            let (a, b): (Vec<f64>, Vec<f64>) = returns[i]
                .iter()
                .zip(&returns[j])
                .filter_map(|(x, y)| Some(((*x)?, (*y)?)))
                .unzip();
            if let Some(c) = math::correlation(&a, &b) {
                sum += c;
                pairs += 1;
            }
        }
    }
    (pairs > 0).then(|| sum / pairs as f64)
}

/// The covariance of the positions' daily returns over the days all of
/// them have one (the solvers' input); zeros when there are under two.
pub fn return_covariance(v: &Valuation) -> Vec<Vec<f64>> {
    let n = v.positions.len();
    let days = v.dates.len();
    let common: Vec<usize> = (0..days)
        .filter(|t| v.positions.iter().all(|s| s.returns[*t].is_some()))
        .collect();
    let series: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            common
                .iter()
                .filter_map(|t| v.positions[i].returns[*t])
                .collect()
        })
        .collect();
    math::covariance(&series)
}
