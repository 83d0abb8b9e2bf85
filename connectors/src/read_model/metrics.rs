//! A tenant's business figures for the SSE metrics stream: agents and their
//! balances, payments sent and their volume, savings held, opportunities
//! executing. Narrowed to one agent for an agent's key.

use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ConnectorError;

/// The currency of `revenue_total` (the revenue API's default currency;
/// other currencies are in the analytics).
pub const REVENUE_TOTAL_CURRENCY: &str = "USD";

/// The figures, named as the stream shows them.
pub async fn snapshot(
    pool: &PgPool,
    user: Uuid,
    agent: Option<Uuid>,
) -> Result<Vec<(&'static str, Decimal)>, ConnectorError> {
    let (agents, balance): (i64, Decimal) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(balance), 0) FROM agents
         WHERE user_id = $1 AND ($2::uuid IS NULL OR id = $2)",
    )
    .bind(user)
    .bind(agent)
    .fetch_one(pool)
    .await?;
    let (payments, volume): (i64, Decimal) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(amount), 0) FROM payments
         WHERE sender_user_id = $1 AND status = 'Confirmed' AND approval_status = 'Approved'
           AND ($2::uuid IS NULL OR sender_agent_id = $2)",
    )
    .bind(user)
    .bind(agent)
    .fetch_one(pool)
    .await?;
    let savings: Decimal = sqlx::query_scalar(
        "SELECT coalesce(sum(principal + interest_posted), 0) FROM savings
         WHERE user_id = $1 AND status = 'active' AND ($2::uuid IS NULL OR agent_id = $2)",
    )
    .bind(user)
    .bind(agent)
    .fetch_one(pool)
    .await?;
    // Opportunities belong to the tenant, not to an agent's key.
    let (active, revenue) = match agent {
        None => (
            super::opportunities::active_count(pool, user).await?,
            super::revenue::total(pool, user, REVENUE_TOTAL_CURRENCY).await?,
        ),
        Some(_) => (0, Decimal::ZERO),
    };
    Ok(vec![
        ("active_opportunities", Decimal::from(active)),
        ("agents_total", Decimal::from(agents)),
        ("balance_total", balance),
        ("payments_sent_total", Decimal::from(payments)),
        ("payment_volume_sent", volume),
        ("revenue_total", revenue),
        ("savings_total", savings),
    ])
}
