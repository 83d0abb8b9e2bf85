//! On-chain transfers as the settlement service recorded them, for the
//! routes that answer with a transaction hash; and a liveness ping.

use sqlx::PgPool;
use uuid::Uuid;

use crate::ConnectorError;

/// A settlement's record.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Transfer {
    pub status: String,
    pub tx_hash: Option<String>,
    pub reason: String,
    pub reported: bool,
}

impl Transfer {
    /// Confirmed or failed (and reported to the agent's processor).
    pub fn decided(&self) -> bool {
        self.reported && (self.status == "confirmed" || self.status == "failed")
    }
}

pub async fn transfer(pool: &PgPool, settlement: Uuid) -> Result<Option<Transfer>, ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT status, tx_hash, reason, reported FROM chain_transfers WHERE id = $1",
    )
    .bind(settlement)
    .fetch_optional(pool)
    .await?)
}

/// A settlement as its owner sees it (`GET /settlements/{id}`).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Settlement {
    pub id: Uuid,
    pub agent_id: Uuid,
    pub kind: String,
    pub asset: String,
    pub amount: rust_decimal::Decimal,
    pub status: String,
    pub tx_hash: Option<String>,
    pub to_address: String,
    pub reason: String,
    pub requested_at: chrono::DateTime<chrono::Utc>,
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One of `user`'s settlements.
pub async fn settlement(
    pool: &PgPool,
    user: Uuid,
    id: Uuid,
) -> Result<Option<Settlement>, ConnectorError> {
    Ok(sqlx::query_as(
        "SELECT id, agent_id, kind, asset, amount, status, tx_hash, to_address, reason, \
         requested_at, decided_at FROM chain_transfers WHERE id = $1 AND user_id = $2",
    )
    .bind(id)
    .bind(user)
    .fetch_optional(pool)
    .await?)
}

/// Whether Postgres answers.
pub async fn ping(pool: &PgPool) -> Result<(), ConnectorError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
