//! Pricing quotes as the sink holds them (latest version), by id, scoped to
//! their tenant.

use sqlx::PgPool;
use uuid::Uuid;

use schemas::revenue::pricing::Quote;

use crate::ConnectorError;

pub async fn get(pool: &PgPool, tenant: Uuid, id: Uuid) -> Result<Option<Quote>, ConnectorError> {
    let record: Option<sqlx::types::Json<Quote>> =
        sqlx::query_scalar("SELECT record FROM quotes WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant)
            .fetch_optional(pool)
            .await?;
    Ok(record.map(|r| r.0))
}
