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
}

pub async fn transfer(pool: &PgPool, settlement: Uuid) -> Result<Option<Transfer>, ConnectorError> {
    Ok(
        sqlx::query_as("SELECT status, tx_hash, reason FROM chain_transfers WHERE id = $1")
            .bind(settlement)
            .fetch_optional(pool)
            .await?,
    )
}

/// Whether Postgres answers.
pub async fn ping(pool: &PgPool) -> Result<(), ConnectorError> {
    sqlx::query("SELECT 1").execute(pool).await?;
    Ok(())
}
