//! The savings vault over HTTP: deposit into and withdraw from positions
//! (commands to the agent's processor), and the views of them, valued to the
//! request's instant exactly from the read model's growth (`rate_ms` to
//! `accrued_to`) plus the rate history since (`schemas::interest`).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use schemas::command::{DepositSavings, WithdrawSavings};
use schemas::ids::{self, Kind};
use schemas::interest::{self, RateSchedule};
use schemas::money;
use schemas::reply::Outcome;
use schemas::CommandPayload;

use connectors::read_model::savings::PositionRow;
use connectors::read_model::{agents, savings};

use crate::auth::Caller;
use crate::bank::agents::{page_bounds, PageQuery};
use crate::body::{number, JsonObject, Query};
use crate::commands::{command, command_id, unexpected};
use crate::{ApiError, AppState};

/// The API's views of a position.
trait PositionView {
    fn summary(&self, value: Decimal, rate: Decimal, now: DateTime<Utc>) -> Value;
    fn savings(&self, rates: &RateSchedule, now: DateTime<Utc>) -> Value;
}

impl PositionView for PositionRow {
    /// One entry of the dashboard's and `myinvestments`' `agents` lists,
    /// for the position's `value` now.
    fn summary(&self, value: Decimal, rate: Decimal, now: DateTime<Utc>) -> Value {
        json!({
            "interestRate": number(rate),
            "agent": self.agent_name,
            "agentId": ids::short(Kind::Agent, self.agent_id),
            "investment_id": ids::short(Kind::Investment, self.id),
            "totalBalance": number(self.agent_balance + value),
            "investedAmount": number(self.principal),
            "currentValue": number(value),
            "interest": number(value - self.principal),
            "current": number(self.agent_balance),
            "daysInvested": self.days_invested(now),
        })
    }

    /// The contract's `Savings` object.
    fn savings(&self, rates: &RateSchedule, now: DateTime<Utc>) -> Value {
        let value = self.value_at(rates, now.timestamp_millis());
        json!({
            "id": ids::short(Kind::Investment, self.id),
            "agent_id": ids::short(Kind::Agent, self.agent_id),
            "amount": number(self.principal),
            "invested_at": self.invested_at.to_rfc3339(),
            "status": self.status,
            "interest_rate": number(self.rate(rates)),
            "current_value": money::display(value),
            "interest_earned": money::display(value - self.principal),
            "closed_at": self.closed_at.map(|t| t.to_rfc3339()),
        })
    }
}

/// The caller's active positions (an agent key: that agent's), oldest first.
async fn active_positions(state: &AppState, caller: &Caller) -> Result<Vec<PositionRow>, ApiError> {
    Ok(savings::active(
        &state.pool,
        caller.user_id,
        caller.agent_id,
        ACTIVE_LISTED_MAX,
    )
    .await?)
}

/// Active positions listed at most (an agent holds ≤ 100 at once).
const ACTIVE_LISTED_MAX: i64 = 10_000;

/// `POST /savings/deposit` — a new position from the agent's balance.
pub async fn deposit(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let missing = "agentId and amount are required";
    let agent_text = body.str("agentId", ids::ID_TEXT_MAX, missing)?;
    if !body.has("amount") {
        return Err(ApiError::BadRequest(missing.into()));
    }
    let agent_id = ids::parse(Kind::Agent, &agent_text)
        .ok()
        .filter(|a| caller.may_act_for(*a))
        .ok_or_else(|| ApiError::NotFound("Agent not found".into()))?;
    let amount = body
        .opt_amount("amount")
        .ok()
        .flatten()
        .and_then(|a| money::validate_positive(a, interest::CURRENCY).ok())
        .ok_or_else(|| {
            ApiError::BadRequest(
                "Amount must be a positive number with at most 6 decimal places".into(),
            )
        })?;
    // The position's id is the command's: a retried deposit is the same one.
    let id = command_id(&headers, caller.user_id, "savings/deposit")?;
    let answer = || {
        Json(json!({
            "success": true,
            "message": format!("Successfully invested {} USDC.", money::display(amount)),
            "investmentId": ids::short(Kind::Investment, id),
        }))
    };
    // A late retry of a deposit that took effect: answered from the read
    // model (the processor's dedupe window is bounded).
    if headers.contains_key("idempotency-key")
        && savings::agent_of(&state.pool, caller.user_id, id)
            .await?
            .is_some()
    {
        return Ok(answer());
    }
    let payload = CommandPayload::DepositSavings(DepositSavings {
        investment_id: id.to_string(),
        amount,
        currency: interest::CURRENCY.into(),
    });
    match state
        .bus
        .execute(command(id, agent_id, &caller, payload))
        .await?
    {
        Outcome::Done | Outcome::Agent(_) => Ok(answer()),
        other => Err(unexpected(other)),
    }
}

/// `POST /savings/withdraw` — closes a position: principal and interest to
/// the agent's balance, interest accrued to this instant.
pub async fn withdraw(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: JsonObject,
) -> Result<Json<Value>, ApiError> {
    let text = body.str(
        "investmentId",
        ids::ID_TEXT_MAX,
        "Investment ID is required",
    )?;
    let not_found = || ApiError::NotFound("Investment not found".into());
    let investment = ids::parse(Kind::Investment, &text).map_err(|_| not_found())?;
    let agent = savings::agent_of(&state.pool, caller.user_id, investment)
        .await?
        .filter(|a| caller.may_act_for(*a))
        .ok_or_else(not_found)?;
    let id = command_id(&headers, caller.user_id, "savings/withdraw")?;
    let payload = CommandPayload::WithdrawSavings(WithdrawSavings {
        investment_id: investment.to_string(),
    });
    match state
        .bus
        .execute(command(id, agent, &caller, payload))
        .await?
    {
        Outcome::Done | Outcome::Agent(_) => {}
        other => return Err(unexpected(other)),
    }
    // Answered after the read model holds the withdrawal (read your writes).
    let row = savings::position(&state.pool, investment)
        .await?
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "position {investment} withdrawn but not in the read model"
            ))
        })?;
    let lasted = row.closed_at.unwrap_or_else(Utc::now) - row.invested_at;
    Ok(Json(json!({
        "success": true,
        "message": "Withdrawal completed successfully.",
        "withdrawalDetails": {
            "principal": money::display(row.principal),
            "interest": money::display(row.interest_posted),
            "totalAmount": money::display(row.principal + row.interest_posted),
            "duration": {
                "days": lasted.num_days(),
                "hours": lasted.num_hours() % 24,
                "minutes": lasted.num_minutes() % 60,
            },
        },
        "transaction": {"txHash": null, "status": "completed"},
        "agentId": ids::short(Kind::Agent, row.agent_id),
        "updatedBalance": money::display(row.agent_balance),
    })))
}

/// `GET /savings/dashboard` — totals over the caller's active positions.
pub async fn dashboard(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let rows = active_positions(&state, &caller).await?;
    let now = Utc::now();
    let rates = &state.config.interest_rates;
    let (now_ms, year_ms) = (
        now.timestamp_millis(),
        now.timestamp_millis() + interest::YEAR_MS,
    );
    let (mut total, mut invested, mut projected) = (Decimal::ZERO, Decimal::ZERO, Decimal::ZERO);
    let mut agents = Vec::with_capacity(rows.len());
    for r in &rows {
        let value = r.value_at(rates, now_ms);
        total += value;
        invested += r.principal;
        projected += r.value_at(rates, year_ms);
        agents.push(r.summary(value, r.rate(rates), now));
    }
    Ok(Json(json!({
        "totalSavings": number(total),
        "interestRate": number(rates.at(now_ms).rate_pct),
        "totalInvested": number(invested),
        "yearProjection": number(projected),
        "agents": agents,
    })))
}

/// `GET /savings/myinvestments` — the caller's active positions.
pub async fn my_investments(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Value>, ApiError> {
    let rows = active_positions(&state, &caller).await?;
    let now = Utc::now();
    let rates = &state.config.interest_rates;
    let agents: Vec<Value> = rows
        .iter()
        .map(|r| {
            r.summary(
                r.value_at(rates, now.timestamp_millis()),
                r.rate(rates),
                now,
            )
        })
        .collect();
    Ok(Json(json!({"agents": agents})))
}

/// `GET /savings/{agentId}` — one agent's positions, every status, newest
/// first, paginated (`page`, `limit` ≤ 100).
pub async fn for_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(agent): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound("Agent not found".into());
    let agent = ids::parse(Kind::Agent, &agent)
        .ok()
        .filter(|a| caller.may_act_for(*a))
        .ok_or_else(not_found)?;
    if !agents::owned(&state.pool, caller.user_id, agent).await? {
        return Err(not_found());
    }
    let (page, limit) = page_bounds(&q)?;
    let rows = savings::of_agent(&state.pool, agent, limit, (page - 1) * limit).await?;
    let now = Utc::now();
    let rates = &state.config.interest_rates;
    Ok(Json(json!({
        "investments": rows.iter().map(|r| r.savings(rates, now)).collect::<Vec<_>>(),
    })))
}
