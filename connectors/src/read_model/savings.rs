//! Savings-vault queries: positions with their agent's name and balance
//! (active ones of a user, one by id, an agent's page), and a position's
//! existence and agent. A position's value to an instant is computed here
//! from the stored growth (`rate_ms` to `accrued_to`) plus the position's
//! own rate since (`schemas::interest`).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use schemas::interest::{self, RateSchedule};

use crate::ConnectorError;

/// A position as the read model holds it, with its agent's name and balance.
#[derive(sqlx::FromRow)]
pub struct PositionRow {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub principal: Decimal,
    pub invested_at: DateTime<Utc>,
    pub status: String,
    pub rate_ms: Decimal,
    pub accrued_to: i64,
    pub interest_posted: Decimal,
    pub closed_at: Option<DateTime<Utc>>,
    /// Recorded at opening (null for an older position until its next accrual).
    pub rate_pct: Option<Decimal>,
    pub agent_name: String,
    pub agent_balance: Decimal,
}

const POSITION_COLUMNS: &str = "s.id, s.agent_id, s.principal, s.invested_at, s.status, s.rate_ms,
    s.accrued_to, s.interest_posted, s.closed_at, s.rate_pct, a.name AS agent_name,
    a.balance AS agent_balance";

impl PositionRow {
    /// Value at `at_ms`: exact growth to date; a closed position stays at
    /// what it paid out.
    pub fn value_at(&self, rates: &RateSchedule, at_ms: i64) -> Decimal {
        if self.status != schemas::event::SavingsPosition::ACTIVE {
            return self.principal + self.interest_posted;
        }
        let growing = Decimal::from((at_ms - self.accrued_to).max(0));
        let rate_ms = self.rate_ms + self.rate(rates) * growing;
        interest::value(self.principal, rate_ms).unwrap_or(self.principal + self.interest_posted)
    }

    /// The position's annual rate (%): recorded at opening, or for an
    /// older position the schedule's then.
    pub fn rate(&self, rates: &RateSchedule) -> Decimal {
        self.rate_pct
            .unwrap_or_else(|| rates.at(self.invested_at.timestamp_millis()).rate_pct)
    }

    pub fn days_invested(&self, now: DateTime<Utc>) -> i64 {
        (self.closed_at.unwrap_or(now) - self.invested_at).num_days()
    }
}

/// `user`'s active positions (only `agent`'s when set), oldest first, at most `max`.
pub async fn active(
    pool: &PgPool,
    user: Uuid,
    agent: Option<Uuid>,
    max: i64,
) -> Result<Vec<PositionRow>, ConnectorError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {POSITION_COLUMNS} FROM savings s JOIN agents a ON a.id = s.agent_id
         WHERE s.user_id = $1 AND s.status = 'active' AND ($2::uuid IS NULL OR s.agent_id = $2)
         ORDER BY s.invested_at, s.id LIMIT $3"
    ))
    .bind(user)
    .bind(agent)
    .bind(max)
    .fetch_all(pool)
    .await?)
}

/// Position `id` (any owner: the caller checked it).
pub async fn position(pool: &PgPool, id: Uuid) -> Result<Option<PositionRow>, ConnectorError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {POSITION_COLUMNS} FROM savings s JOIN agents a ON a.id = s.agent_id WHERE s.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// A page of agent `agent`'s positions, every status, newest first.
pub async fn of_agent(
    pool: &PgPool,
    agent: Uuid,
    limit: i64,
    offset: i64,
) -> Result<Vec<PositionRow>, ConnectorError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {POSITION_COLUMNS} FROM savings s JOIN agents a ON a.id = s.agent_id
         WHERE s.agent_id = $1 ORDER BY s.invested_at DESC, s.id LIMIT $2 OFFSET $3"
    ))
    .bind(agent)
    .bind(limit)
    .bind(offset)
    .fetch_all(pool)
    .await?)
}

/// The agent of `user`'s position `id`.
pub async fn agent_of(pool: &PgPool, user: Uuid, id: Uuid) -> Result<Option<Uuid>, ConnectorError> {
    Ok(
        sqlx::query_scalar("SELECT agent_id FROM savings WHERE id = $1 AND user_id = $2")
            .bind(id)
            .bind(user)
            .fetch_optional(pool)
            .await?,
    )
}
