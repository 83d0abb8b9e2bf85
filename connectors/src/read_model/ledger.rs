//! Ledger queries: what a user's agents earned and spent over a period (the
//! `transactions` rows the sink writes, by kind), and an account's balance
//! from the journal.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ConnectorError;

/// Transaction kinds (the sink's `transactions.kind`) that bring money to
/// an agent: deposits, initial balances, payments received, interest.
pub const EARNED_KINDS: [&str; 4] = ["deposit", "initial balance", "payment received", "interest"];
/// Those that take it away: withdrawals, payments sent.
pub const SPENT_KINDS: [&str; 2] = ["withdrawal", "payment sent"];

/// Earned, spent, and how many transactions of either kind, in `[start, end]`.
pub async fn summary(
    pool: &PgPool,
    user: Uuid,
    agent: Option<Uuid>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<(Decimal, Decimal, i64), ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT COALESCE(SUM(amount) FILTER (WHERE kind = ANY($4)), 0),
                COALESCE(SUM(amount) FILTER (WHERE kind = ANY($5)), 0),
                COUNT(*) FILTER (WHERE kind = ANY($4) OR kind = ANY($5))
         FROM transactions
         WHERE user_id = $1 AND ($2::uuid IS NULL OR agent_id = $2)
           AND occurred_at >= $3 AND occurred_at <= $6",
    )
    .bind(user)
    .bind(agent)
    .bind(start)
    .bind(EARNED_KINDS.as_slice())
    .bind(SPENT_KINDS.as_slice())
    .bind(end)
    .fetch_one(pool)
    .await?)
}

/// The balance of journal account `account`.
pub async fn account_balance(pool: &PgPool, account: &str) -> Result<Decimal, ConnectorError> {
    Ok(sqlx::query_scalar(
        "SELECT COALESCE(SUM(amount), 0) FROM journal_postings WHERE account = $1",
    )
    .bind(account)
    .fetch_one(pool)
    .await?)
}
