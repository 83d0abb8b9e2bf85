//! An agent's history: every movement of its money in one list — deposits,
//! withdrawals (and returned ones), payments sent and received, savings in
//! and out, interest — from the `transactions` rows the sink writes, newest
//! first, by a keyset cursor (stable while new rows arrive).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::ConnectorError;

/// The kinds a history row can have (`transactions.kind`).
pub const KINDS: [&str; 9] = [
    "initial balance",
    "deposit",
    "withdrawal",
    "withdrawal returned",
    "payment sent",
    "payment received",
    "savings deposit",
    "savings withdrawal",
    "interest",
];

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryRow {
    pub event_id: Uuid,
    pub kind: String,
    pub amount: Decimal,
    pub currency: String,
    pub balance_after: Decimal,
    pub occurred_at: DateTime<Utc>,
}

/// Which rows: one agent of one user, optional kinds and `[start, end]`,
/// and for a page the row the previous page ended at.
#[derive(Debug, Clone)]
pub struct HistoryQuery {
    pub user: Uuid,
    pub agent: Uuid,
    pub kinds: Vec<String>,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

/// Up to `limit` rows, newest first.
pub async fn page(pool: &PgPool, q: &HistoryQuery) -> Result<Vec<HistoryRow>, ConnectorError> {
    let (after_at, after_id) = q.after.unzip();
    Ok(sqlx::query_as(
        "SELECT event_id, kind, amount, currency, balance_after, occurred_at FROM transactions
         WHERE user_id = $1 AND agent_id = $2
           AND (cardinality($3::text[]) = 0 OR kind = ANY($3))
           AND ($4::timestamptz IS NULL OR occurred_at >= $4)
           AND ($5::timestamptz IS NULL OR occurred_at <= $5)
           AND ($6::timestamptz IS NULL OR (occurred_at, event_id) < ($6, $7))
         ORDER BY occurred_at DESC, event_id DESC LIMIT $8",
    )
    .bind(q.user)
    .bind(q.agent)
    .bind(&q.kinds)
    .bind(q.start)
    .bind(q.end)
    .bind(after_at)
    .bind(after_id)
    .bind(q.limit)
    .fetch_all(pool)
    .await?)
}
