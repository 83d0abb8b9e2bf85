//! The events table as a feed: rows after a position (for one user or
//! everyone), and the table's last position. The WebSocket channel reads
//! this; each row carries the webhook envelope the sink wrote with it.

use sqlx::PgPool;
use uuid::Uuid;

use crate::ConnectorError;

/// One event row: its position, its user and its envelope (JSON text;
/// `None` for rows written before envelopes were stored).
#[derive(sqlx::FromRow)]
pub struct EventRow {
    pub seq: i64,
    pub user_id: Uuid,
    pub envelope: Option<String>,
}

/// Up to `limit` rows after position `after`, oldest first.
pub async fn after(
    pool: &PgPool,
    user: Option<Uuid>,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT seq, user_id, envelope FROM events
         WHERE seq > $1 AND ($2::uuid IS NULL OR user_id = $2) ORDER BY seq LIMIT $3",
    )
    .bind(after)
    .bind(user)
    .bind(limit)
    .fetch_all(pool)
    .await?)
}

/// The table's last position (0 when empty).
pub async fn end(pool: &PgPool) -> Result<i64, ConnectorError> {
    Ok(
        sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events")
            .fetch_one(pool)
            .await?,
    )
}
